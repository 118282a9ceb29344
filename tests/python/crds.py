"""The prometheus-operator CRD schemas the chart's monitoring objects are validated against.

Pinned: prometheus-operator v0.93.1 (the operator of kube-prometheus-stack 88.x), each file by SHA-256.

- PULSE_CRD_DIR set: read `crd-servicemonitors.yaml`, `crd-prometheusrules.yaml`, `crd-podmonitors.yaml`
  from that directory (offline runs). The upstream files are accepted as they are or with leading `#`
  comment lines, as kube-prometheus-stack ships them (it prepends its source URL).
- Otherwise: downloaded once from the release tag on GitHub into `.tmp/crds/` (inside the checkout,
  gitignored) and reused while the checksum matches.
- Neither possible (offline, no PULSE_CRD_DIR): the tests that need them are skipped with one line
  saying how to get them (failed instead when PULSE_CRD_REQUIRED=1, as in the GitHub workflow, so CI
  cannot pass without the check). A file whose checksum differs fails them: it is not the pinned version.

The Gateway API's HTTPRoute CRD is vendored instead (tests/crds/, with its source, tag and license in
the README there): no download, so its check runs everywhere and is never skipped. Pinned below by
version and SHA-256 like the operator's; a file that differs fails the tests that read it.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT

VERSION = "v0.93.1"
URL = ("https://raw.githubusercontent.com/prometheus-operator/prometheus-operator/"
       f"{VERSION}/example/prometheus-operator-crd/monitoring.coreos.com_{{plural}}.yaml")
# SHA-256 of the upstream files at the tag, byte for byte.
SHA256 = {
    "servicemonitors": "7dd4206947c94bc76f71daa07c45a1010a5d697c54fe079f8207b0e82026a26a",
    "prometheusrules": "2d72928f7ceb99d153f2f91d2c2fd68d4b89c4914f2a09e15ac049b2f0316df3",
    "podmonitors": "eef45bb50df838a85226eb6b03c0c7094c54d605776bdf2ec149f17fba8a1df0",
}
CACHE = ROOT / ".tmp" / "crds"
HOW_TO_GET = (f"set PULSE_CRD_DIR to a directory holding the prometheus-operator {VERSION} files "
              "crd-servicemonitors.yaml, crd-prometheusrules.yaml and crd-podmonitors.yaml, or run online "
              "once to download them into .tmp/crds/")

_unavailable: dict[str, str] = {}  # plural -> why, so an offline run tries each download once


def file_name(plural: str) -> str:
    return f"crd-{plural}.yaml"


def digest(data: bytes) -> str:
    """SHA-256 of the upstream bytes: leading `#` lines (a distributor's header) do not count."""
    lines = data.splitlines(keepends=True)
    while lines and lines[0].startswith(b"#"):
        lines.pop(0)
    return hashlib.sha256(b"".join(lines)).hexdigest()


def _check(path: Path, plural: str) -> str:
    got = digest(path.read_bytes())
    if got != SHA256[plural]:
        pytest.fail(f"{path}: SHA-256 {got}, expected {SHA256[plural]} (prometheus-operator {VERSION}); "
                    f"{HOW_TO_GET}", pytrace=False)
    return path.read_text()


def _skip(why: str):
    if os.environ.get("PULSE_CRD_REQUIRED") == "1":
        pytest.fail(why, pytrace=False)
    pytest.skip(why)


def _download(plural: str) -> Path:
    path = CACHE / file_name(plural)
    if path.is_file() and digest(path.read_bytes()) == SHA256[plural]:
        return path
    if plural in _unavailable:
        _skip(_unavailable[plural])
    url = URL.format(plural=plural)
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            data = response.read()
    except OSError as e:  # URLError, timeouts, DNS: offline
        _unavailable[plural] = f"CRD schemas unavailable ({url}: {e}): {HOW_TO_GET}"
        _skip(_unavailable[plural])
    if (got := digest(data)) != SHA256[plural]:  # checked before it is cached
        pytest.fail(f"{url}: SHA-256 {got}, expected {SHA256[plural]}", pytrace=False)
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(path)
    return path


def crd_text(plural: str) -> str:
    """The CustomResourceDefinition YAML for `plural` (servicemonitors, prometheusrules, podmonitors)."""
    if directory := os.environ.get("PULSE_CRD_DIR"):
        path = Path(directory) / file_name(plural)
        if not path.is_file():
            pytest.fail(f"PULSE_CRD_DIR={directory} has no {file_name(plural)}: {HOW_TO_GET}", pytrace=False)
        return _check(path, plural)
    return _check(_download(plural), plural)


GATEWAY_API_VERSION = "v1.6.1"
# SHA-256 of the upstream files at the tag (config/crd/standard/), byte for byte.
GATEWAY_API_SHA256 = {
    "httproutes": "a424a0d6c953b162e71d1d97bb7e75012d8f1ac264e7274f2763d1b96ab39852",
}
VENDORED = ROOT / "tests" / "crds"


def gateway_api_file(plural: str) -> Path:
    return VENDORED / f"gateway.networking.k8s.io_{plural}.yaml"


def gateway_api_crd_text(plural: str) -> str:
    """The Gateway API CustomResourceDefinition YAML for `plural` (httproutes), from tests/crds/."""
    path = gateway_api_file(plural)
    got = hashlib.sha256(path.read_bytes()).hexdigest()
    if got != GATEWAY_API_SHA256[plural]:
        pytest.fail(f"{path}: SHA-256 {got}, expected {GATEWAY_API_SHA256[plural]} (Gateway API "
                    f"{GATEWAY_API_VERSION}): restore the upstream file, or update the pin and "
                    "tests/crds/README.md together", pytrace=False)
    return path.read_text()
