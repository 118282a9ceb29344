"""`/openapi.json` is a valid OpenAPI 3.1 document that tells the truth."""

import re

from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError  # noqa: F401

# A value for each path parameter, so every documented GET can be called.
SAMPLES = {"id": "1", "key": "test", "seconds": "0", "code": "200", "item_id": "42"}
# Too slow for a quick conformance pass; covered by the Rust tests.
SKIP = {"/api/slow"}


def test_document_is_valid_openapi_3_1(pulse):
    spec = pulse.json("/openapi.json")
    assert spec["openapi"].startswith("3.1")
    validate(spec)  # raises on any schema violation


def test_every_documented_get_answers_a_documented_status(pulse):
    spec = pulse.json("/openapi.json")
    checked = 0
    for path, operations in spec["paths"].items():
        if "get" not in operations or path in SKIP:
            continue
        concrete = re.sub(r"\{(\w+)\}", lambda m: SAMPLES[m.group(1)], path)
        query = {"/update": "?users=1", "/cpu": "?value=1"}.get(path, "")
        status, headers, _ = pulse.request("GET", concrete + query)
        documented = operations["get"]["responses"]
        assert str(status) in documented or "default" in documented, (path, status, documented)
        checked += 1
    assert checked >= 15


def test_every_media_type_documented_for_a_get_is_what_that_accept_gets(pulse):
    """Where a GET documents more than one media type (`/` its JSON and the page for people as
    `text/html`, `/metrics` its two formats), asking for each one with `Accept` gets that one."""
    spec = pulse.json("/openapi.json")
    checked = set()
    for path, operations in spec["paths"].items():
        content = operations.get("get", {}).get("responses", {}).get("200", {}).get("content", {})
        if len(content) < 2:
            continue
        for media_type in content:
            status, headers, _ = pulse.request("GET", path, headers={"Accept": media_type})
            assert status == 200, (path, media_type)
            got, wanted = headers["content-type"].split(";")[0], media_type.split(";")[0]
            assert got == wanted, (path, media_type, headers["content-type"])
            assert headers.get("vary", "").lower() == "accept", (path, headers)
            checked.add((path, wanted))
    assert {("/", "application/json"), ("/", "text/html")} <= checked
