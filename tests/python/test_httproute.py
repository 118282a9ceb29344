"""The chart's Gateway API HTTPRoute (`httpRoute.*`), rendered by the real Helm engine.

Off by default; when on, it validates against the Gateway API's own HTTPRoute CRD schema (v1, unknown
fields rejected), pinned by version and SHA-256 and vendored in tests/crds/; its parents, hostnames
and matches are the values'; every rule sends to the Service the chart renders; values.schema.json
refuses what the Gateway API would, and the chart refuses a route with nowhere to attach or an Ingress
beside it unless asked.
"""

from __future__ import annotations

import hashlib
import re

import helm_python
import pulsechart as pc
import pytest
import yaml
from crds import GATEWAY_API_SHA256, GATEWAY_API_VERSION, VENDORED, gateway_api_crd_text, gateway_api_file
from test_chart import crd_validator, instances, kinds, one, pulse_service

GATEWAY = [{"name": "public", "namespace": "gateways", "sectionName": "https"}]
ON = {"httpRoute": {"enabled": True, "parentRefs": GATEWAY}}


def route_of(values: dict, **kw) -> dict:
    return one(pc.render_objects(values, **kw), "HTTPRoute")


def crd_errors(route: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in crd_validator("HTTPRoute").iter_errors(route)]


# --- the pinned CRD -----------------------------------------------------------------------------

def test_the_vendored_crd_is_the_pinned_upstream_file():
    path = gateway_api_file("httproutes")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == GATEWAY_API_SHA256["httproutes"]
    crd = yaml.safe_load(gateway_api_crd_text("httproutes"))
    annotations = crd["metadata"]["annotations"]
    assert annotations["gateway.networking.k8s.io/bundle-version"] == GATEWAY_API_VERSION
    assert annotations["gateway.networking.k8s.io/channel"] == "standard"
    assert crd["spec"]["names"]["kind"] == "HTTPRoute"
    # The README beside it says where it came from: the same version and checksum.
    readme = (VENDORED / "README.md").read_text()
    assert GATEWAY_API_VERSION in readme and GATEWAY_API_SHA256["httproutes"] in readme
    assert (VENDORED / "LICENSE").read_text().lstrip().startswith("Apache License")


# --- off by default -----------------------------------------------------------------------------

@pytest.mark.parametrize("value_set", ["default", "stack", "kind"])
def test_no_route_unless_enabled(value_set):
    assert kinds(pc.objects_of(pc.render_set(value_set)), "HTTPRoute") == []


# --- the Gateway API's schema -------------------------------------------------------------------

@pytest.mark.parametrize("values", [
    pc.load_values("all-on"),  # parents with namespace and listener, matches of every kind, filters, timeouts
    ON,  # the defaults: hostname pulse.local, PathPrefix /
    {"httpRoute": {"enabled": True, "parentRefs": [{"name": "eg"}], "hostnames": [], "rules": [{}]}},
], ids=["all-on", "defaults", "bare"])
def test_the_route_passes_the_gateway_api_crd_schema(values):
    route = route_of(values)
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert crd_errors(route) == []


BROKEN = {  # what a template slip would render, and the API server would refuse
    "misspelled backendRef field": lambda r: r["spec"]["rules"][0]["backendRefs"][0].update(prot=8080),
    "port as a name": lambda r: r["spec"]["rules"][0]["backendRefs"][0].update(port="http"),
    "Ingress's path type": lambda r: r["spec"]["rules"][0]["matches"][0]["path"].update(type="Prefix"),
    "hostname with a scheme": lambda r: r["spec"].update(hostnames=["http://pulse.local"]),
}


@pytest.mark.parametrize("broken", BROKEN)
def test_the_crd_check_rejects_what_the_api_server_would(broken):
    route = route_of(ON)
    BROKEN[broken](route)
    assert crd_errors(route), f"{broken} must fail the CRD schema"


# --- from the values ----------------------------------------------------------------------------

def test_parents_hostnames_matches_and_filters_come_from_the_values():
    values = pc.load_values("all-on")
    wanted = values["httpRoute"]
    route = route_of(values)
    assert route["spec"]["parentRefs"] == wanted["parentRefs"]
    assert route["spec"]["hostnames"] == wanted["hostnames"]
    assert [r["matches"] for r in route["spec"]["rules"]] == [r["matches"] for r in wanted["rules"]]
    assert [r["filters"] for r in route["spec"]["rules"]] == [r["filters"] for r in wanted["rules"]]
    assert [r.get("timeouts") for r in route["spec"]["rules"]] == [r.get("timeouts") for r in wanted["rules"]]
    assert route["metadata"]["labels"]["exposure"] == "public"
    assert route["metadata"]["labels"]["app.kubernetes.io/name"] == "pulse"  # the chart's own labels too
    assert route["metadata"]["annotations"] == wanted["annotations"]


def test_the_documented_example_renders_a_valid_route():
    docs = (pc.ROOT / "docs" / "kubernetes.md").read_text()
    section = docs.split("### Exposing Pulse: an Ingress or a Gateway", 1)[1]
    example = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    route = route_of(example)
    assert route["spec"]["hostnames"] == ["pulse.example.com"]
    assert crd_errors(route) == []


def test_the_default_rule_sends_every_path_of_pulse_local():
    spec = route_of(ON)["spec"]
    assert spec["hostnames"] == ["pulse.local"]
    assert [r["matches"] for r in spec["rules"]] == [[{"path": {"type": "PathPrefix", "value": "/"}}]]


@pytest.mark.parametrize("values, release", [
    (ON, "pulse"),
    (ON, "shop"),  # objects named shop-pulse
    ({**ON, "fullnameOverride": "api", "service": {"port": 9090}}, "pulse"),
])
def test_every_rule_sends_to_the_service_and_port_the_chart_renders(values, release):
    objects = pc.render_objects(values, name=release)
    service = pulse_service(objects)
    (http,) = [p for p in service["spec"]["ports"] if p["name"] == "http"]
    route = one(objects, "HTTPRoute")
    for rule in route["spec"]["rules"]:
        assert rule["backendRefs"] == [{"name": service["metadata"]["name"], "port": http["port"]}]
    assert route["metadata"]["namespace"] == service["metadata"]["namespace"]  # a backendRef is same-namespace


def test_under_the_stack_the_route_sends_to_that_pulse():
    objects = pc.objects_of(pc.render({"pulse": ON}, chart=pc.STACK, name="lab"))
    (route,) = kinds(instances(objects)["pulse"], "HTTPRoute")
    assert route["spec"]["rules"][0]["backendRefs"][0]["name"] == pulse_service(objects)["metadata"]["name"]


def test_the_notes_say_where_the_route_answers():
    notes = pc.render({**ON, "httpRoute": {**ON["httpRoute"], "hostnames": ["pulse.example.com"]}})
    text = next(t for p, t in notes.items() if p.endswith("NOTES.txt"))
    assert "gateways/public (listener https)" in text and "pulse.example.com" in text
    assert "kubectl -n monitoring describe httproute pulse" in text


# --- refused ------------------------------------------------------------------------------------

def test_a_route_with_no_gateway_to_attach_to_is_refused():
    with pytest.raises(helm_python.HelmError, match="httpRoute.enabled needs httpRoute.parentRefs"):
        pc.render({"httpRoute": {"enabled": True}})


def test_an_ingress_beside_the_route_only_when_asked():
    both = {**ON, "ingress": {"enabled": True}}
    with pytest.raises(helm_python.HelmError, match="ingress.enabled and httpRoute.enabled both expose Pulse"):
        pc.render(both)
    objects = pc.render_objects({**both, "httpRoute": {**ON["httpRoute"], "alongsideIngress": True}})
    assert one(objects, "Ingress") and one(objects, "HTTPRoute")


def path_match(path: dict) -> dict:
    return {"httpRoute": {"rules": [{"matches": [{"path": path}]}]}}


@pytest.mark.parametrize("values, where", [
    ({"httpRoute": {"enabled": "yes"}}, "/httpRoute/enabled"),
    ({"httpRoute": {"hostname": ["pulse.local"]}}, "/httpRoute"),  # misspelled key
    ({"httpRoute": {"hostnames": ["https://pulse.local"]}}, "/httpRoute/hostnames/0"),
    ({"httpRoute": {"hostnames": ["Pulse.Local"]}}, "/httpRoute/hostnames/0"),
    ({"httpRoute": {"parentRefs": [{"namespace": "gateways"}]}}, "/httpRoute/parentRefs/0"),  # no name
    ({"httpRoute": {"parentRefs": [{"name": "eg", "port": "https"}]}}, "/httpRoute/parentRefs/0/port"),
    ({"httpRoute": {"parentRefs": [{"name": "eg", "section": "https"}]}}, "/httpRoute/parentRefs/0"),
    ({"httpRoute": {"rules": []}}, "/httpRoute/rules"),
    # The backend is always Pulse's own Service.
    ({"httpRoute": {"rules": [{"backendRefs": [{"name": "elsewhere", "port": 80}]}]}}, "/httpRoute/rules/0"),
    (path_match({"type": "Prefix", "value": "/"}), "/httpRoute/rules/0/matches/0/path/type"),  # Ingress's
    (path_match({"type": "PathPrefix", "value": "api"}), "/httpRoute/rules/0/matches/0/path/value"),
    (path_match({"type": "PathPrefix"}), "/httpRoute/rules/0/matches/0/path"),
    ({"httpRoute": {"rules": [{"matches": [{"method": "get"}]}]}}, "/httpRoute/rules/0/matches/0/method"),
    ({"httpRoute": {"rules": [{"matches": [{"headers": [{"name": "X-Canary"}]}]}]}},
     "/httpRoute/rules/0/matches/0/headers/0"),
    ({"httpRoute": {"rules": [{"filters": [{"type": "Rewrite"}]}]}}, "/httpRoute/rules/0/filters/0/type"),
    ({"httpRoute": {"rules": [{"filters": [{"type": "URLRewrite", "urlRewrit": {}}]}]}},
     "/httpRoute/rules/0/filters/0"),
    ({"httpRoute": {"rules": [{"timeouts": {"request": "30 seconds"}}]}}, "/httpRoute/rules/0/timeouts/request"),
    ({"httpRoute": {"rules": [{"timeouts": {"idle": "1h"}}]}}, "/httpRoute/rules/0/timeouts"),
    ({"httpRoute": {"alongsideIngress": 1}}, "/httpRoute/alongsideIngress"),
])
def test_schema_rejects_bad_route_values(values, where):
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(f"at '{where}':")):
        pc.render(values)


def test_schema_takes_a_regular_expression_path_as_it_is():
    values = path_match({"type": "RegularExpression", "value": "^/api/(users|items)"})
    values["httpRoute"].update(ON["httpRoute"])
    route = route_of(values)
    assert route["spec"]["rules"][0]["matches"][0]["path"]["value"] == "^/api/(users|items)"
    assert crd_errors(route) == []
