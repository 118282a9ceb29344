"""The page `GET /` answers a browser, as a browser shows it.

Headless Chromium (Debian's `chromium`) loads the page from the real binary, started with
`--ui-color '#ff00aa' --ui-message 'canary <b>v2</b>'` and a pod's downward-API variables, while traffic
with errors in it runs; the page's own script polls `GET /stats` meanwhile (`--virtual-time-budget` lets
its timers run). Then the DOM Chromium dumps must show the version, the pod, namespace and node, the
message as text (not markup), a live request rate and the error count, and the screenshot it takes must
have the banner in the configured colour. The screenshot is left in target/ui-page.png for a reviewer to
look at (docs/images/ui-page.png is one).

Without chromium the browser test is skipped with the reason, unless PULSE_TEST_ALL=1 (`make test`
sets it): there a missing chromium fails it.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import struct
import subprocess
import threading
import zlib
from pathlib import Path

import jsonschema
import pytest
from conftest import ROOT, PulseProcess

# Debian's chromium; Google Chrome (on GitHub's Ubuntu runners) takes the same flags.
CHROMIUM = shutil.which("chromium") or shutil.which("google-chrome")
COLOUR = "#ff00aa"
MESSAGE = "canary <b>v2</b>"
SCREENSHOT = ROOT / "target" / "ui-page.png"
# What the chart's Deployment gives the pod through the downward API.
DOWNWARD_API = {"POD_NAME": "pulse-canary-7d9c6b5f4-x2k8q", "POD_NAMESPACE": "shop", "NODE_NAME": "kind-worker"}
# Virtual time for the page's timers (it polls every 2 s): a few polls after the first.
BUDGET_MS = 8000


def chromium() -> str:
    if CHROMIUM:
        return CHROMIUM
    if os.environ.get("PULSE_TEST_ALL"):
        pytest.fail("chromium missing: apt-get install chromium (or run .ci/run)")
    pytest.skip("chromium is not installed (apt-get install chromium); `make test` runs this test")


@pytest.fixture(scope="module")
def canary():
    server = PulseProcess(args=["--ui-color", COLOUR, "--ui-message", MESSAGE], env=DOWNWARD_API)
    try:
        yield server
    finally:
        server.stop()


class Traffic(threading.Thread):
    """Requests to Pulse over one keep-alive connection, one in four answered 503, about 200 a second,
    until stopped (and never more than 10,000)."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port, self.done, self.sent = port, threading.Event(), 0

    def run(self):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        while not self.done.is_set() and self.sent < 10_000:
            connection.request("GET", "/status/503" if self.sent % 4 == 0 else "/status/200")
            connection.getresponse().read()
            self.sent += 1
            self.done.wait(0.005)
        connection.close()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *_):
        self.done.set()
        self.join(timeout=10)


def run_chromium(url: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
         f"--virtual-time-budget={BUDGET_MS}", *args, url],
        capture_output=True, text=True, timeout=120, check=True)


def text_of(dom: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', dom)
    assert match, f"no #{element_id} in the page:\n{dom}"
    return match[1]


def png_pixel(path: Path, x: int, y: int) -> tuple[int, int, int]:
    """The (red, green, blue) at (x, y) of an 8-bit RGB or RGBA, non-interlaced PNG (Chromium's)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat, header = 8, bytearray(), None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, _, depth, colour_type, _, _, interlace = header
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, header
    bpp = 3 if colour_type == 2 else 4
    raw, stride = zlib.decompress(bytes(idat)), width * bpp
    previous = bytearray(stride)
    for row in range(y + 1):  # each row is unfiltered against the one above it
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = previous[i]
            c = previous[i - bpp] if i >= bpp else 0
            if kind == 4:  # Paeth
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                predictor = a if pa <= pb and pa <= pc else b if pb <= pc else c
            else:
                predictor = [0, a, b, (a + b) // 2][kind]
            line[i] = (line[i] + predictor) & 0xFF
        previous = line
    return tuple(previous[x * bpp:x * bpp + 3])


def test_chromium_shows_the_version_colour_message_and_live_counters(canary, tmp_path):
    for path in ["/status/200"] * 10 + ["/status/500"] * 3:
        canary.request("GET", path)
    before = canary.json("/stats")
    shot = tmp_path / "ui-page.png"
    with Traffic(canary.port) as traffic:
        dom = run_chromium(canary.base + "/", tmp_path / "profile", "--dump-dom").stdout
        run_chromium(canary.base + "/", tmp_path / "profile", "--hide-scrollbars", "--window-size=1200,800",
                     f"--screenshot={shot}")
    assert traffic.sent > 0
    SCREENSHOT.parent.mkdir(exist_ok=True)
    shutil.copyfile(shot, SCREENSHOT)

    assert text_of(dom, "version") == canary.json("/version")["version"]
    assert (text_of(dom, "pod"), text_of(dom, "namespace"), text_of(dom, "node")) == tuple(DOWNWARD_API.values())
    # The message is text: escaped in the DOM, no <b> element made of it.
    assert text_of(dom, "message") == "canary &lt;b&gt;v2&lt;/b&gt;"
    assert "<b>" not in dom
    assert f"--accent: {COLOUR};" in dom
    # The script ran and polled: the rate (a dash as served) is a number, the counters moved on.
    assert text_of(dom, "status").startswith("Live"), text_of(dom, "status")
    assert float(text_of(dom, "rate")) > 0, dom
    assert int(text_of(dom, "requests")) > before["requests_total"]
    assert int(text_of(dom, "errors")) > before["server_errors_total"] >= 3
    assert re.fullmatch(r"(\d+[dhm] )*\d+s", text_of(dom, "uptime"))
    # What a person sees: the banner in the configured colour, the page below it not.
    assert png_pixel(shot, 600, 10) == (0xFF, 0x00, 0xAA), "the banner's colour"
    assert png_pixel(shot, 600, 790) != (0xFF, 0x00, 0xAA)


def test_curl_still_gets_json(canary):
    if shutil.which("curl"):
        out = subprocess.run(["curl", "-s", "-i", canary.base + "/"], capture_output=True, check=True,
                             timeout=30).stdout.decode()
        head, _, body = out.partition("\r\n\r\n")
    else:
        _, headers, raw = canary.request("GET", "/", headers={"Accept": "*/*"})
        head, body = "\r\n".join(f"{k}: {v}" for k, v in headers.items()), raw.decode()
    assert re.search(r"^content-type: application/json", head, re.I | re.M), head
    assert re.search(r"^vary: accept", head, re.I | re.M), head
    assert json.loads(body)["version"] == canary.json("/version")["version"]


UI_SCHEMA = json.loads((ROOT / "charts" / "pulse" / "values.schema.json").read_text())["properties"]["ui"]


@pytest.mark.parametrize("colour, binary_accepts", [
    ("#ff00aa", True), ("#ABC", True), ("teal", True), ("white", True), ("Teal", True),
    ("#ff00a", False), ("ff00aa", False), ("navy", False), ("#ff00aa;}", False), ("rgb(1,2,3)", False),
])
def test_every_colour_the_chart_accepts_the_binary_starts_with(colour, binary_accepts):
    """values.schema.json's `ui.color` is never looser than `--ui-color`: what the chart lets through,
    the pod starts with (the binary also takes any case of a name; the schema need not)."""
    try:
        PulseProcess(env={"PULSE_UI_COLOR": colour}).stop()
        started = True
    except RuntimeError:
        started = False
    assert started == binary_accepts, f"PULSE_UI_COLOR={colour!r}"
    if jsonschema.Draft7Validator(UI_SCHEMA).is_valid({"color": colour}):
        assert started, f"ui.color {colour!r} passes the chart's schema, but pulse refuses it"
