"""gateway.timeout: each gateway's own request timeout, rendered where its upstream documents it,
checked against the strict upstream schemas; refused, with the reason, where there is none."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mlserve.errors import SpecError
from mlserve.render import RenderedResource
from mlserve.spec import Spec, load_spec
from tests.k8s_helpers import of_kind, validate_manifest
from tests.render_memo import render
from tests.test_spec_loader import MINIMAL

REPO = Path(__file__).resolve().parent.parent


def _with_timeout(gateway: str, timeout: str | None = "10m") -> Spec:
    spec = load_spec(REPO / "specs" / f"{gateway}.yaml")
    return dataclasses.replace(spec, gateway=dataclasses.replace(spec.gateway, timeout=timeout))


def _kubernetes(resources: list[RenderedResource]) -> None:
    for r in resources:
        if r.type.startswith("kubernetes:"):
            validate_manifest(r.inputs)


def test_istio_sets_the_timeout_on_every_route_in_seconds() -> None:
    # istio/api networking/v1 virtual_service.proto HTTPRoute.timeout (google.protobuf.Duration,
    # whose JSON form is seconds with an "s")
    resources = render(_with_timeout("istio"))
    _kubernetes(resources)
    [vs] = of_kind(resources, "VirtualService")
    assert [route["timeout"] for route in vs.inputs["spec"]["http"]] == ["600s"] * len(
        vs.inputs["spec"]["http"]
    )


def test_gateway_api_sets_timeouts_request_on_every_rule() -> None:
    # gateway-api apis/v1/httproute_types.go HTTPRouteRule.Timeouts.Request (GEP-1742, GEP-2257)
    resources = render(_with_timeout("gateway-api"))
    _kubernetes(resources)
    [route] = of_kind(resources, "HTTPRoute")
    rules = route.inputs["spec"]["rules"]
    assert [rule["timeouts"] for rule in rules] == [{"request": "600s"}] * len(rules)


def test_ingress_nginx_sets_proxy_read_timeout_on_the_main_ingress_only() -> None:
    # ingress-nginx internal/ingress/annotations/proxy/main.go: an integer of seconds; a canary
    # Ingress inherits the main one's (docs/user-guide/nginx-configuration/annotations.md, Canary)
    resources = render(_with_timeout("ingress-nginx"))
    _kubernetes(resources)
    annotations = {r.name: r.inputs["metadata"].get("annotations", {}) for r in resources
                   if r.type.endswith(":Ingress")}  # fmt: skip
    key = "nginx.ingress.kubernetes.io/proxy-read-timeout"
    [main] = [name for name in annotations if not name.endswith("-canary")]
    assert annotations[main][key] == "600"
    assert all(key not in a for name, a in annotations.items() if name != main)


def test_kong_sets_read_timeout_in_milliseconds_on_every_service() -> None:
    # kong/db/schema/entities/services.lua read_timeout: milliseconds, 1 to 2^31-2
    services = [r for r in render(_with_timeout("kong")) if r.type == "kong:index/service:Service"]
    assert services
    assert {s.inputs["readTimeout"] for s in services} == {600_000}


def test_azure_apim_forwards_with_the_timeout_in_every_api_policy() -> None:
    # Microsoft Learn, api-management/forward-request-policy.md: timeout in seconds
    resources = render(_with_timeout("azure-apim"))
    apis = [r.inputs["apiId"] for r in resources if r.type == "azure-native:apimanagement:Api"]
    policies = {
        r.inputs["apiId"]: ET.fromstring(r.inputs["value"])
        for r in resources
        if r.type == "azure-native:apimanagement:ApiPolicy"
    }
    assert sorted(policies) == sorted(apis)
    for policy in policies.values():
        [forward] = policy.findall("./backend/forward-request")
        assert forward.attrib == {"timeout": "600"}
        assert policy.find("./backend/base") is None


def _keys_and_text(value: object) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {w for v in value.values() for w in _keys_and_text(v)}
    if isinstance(value, list):
        return {w for v in value for w in _keys_and_text(v)}
    return {value} if isinstance(value, str) else set()


@pytest.mark.parametrize("gateway", ["istio", "gateway-api", "ingress-nginx", "kong", "azure-apim"])
def test_without_a_timeout_each_gateway_keeps_its_default(gateway: str) -> None:
    found = _keys_and_text([r.inputs for r in render(_with_timeout(gateway, None))])
    nginx = "nginx.ingress.kubernetes.io/proxy-read-timeout"
    assert not found & {"timeout", "timeouts", "readTimeout", nginx}
    assert not [text for text in found if "forward-request" in text]


def _problems(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "spec.yaml").write_text(text, encoding="utf-8")
    try:
        load_spec(tmp_path / "spec.yaml")
    except SpecError as e:
        return [str(p).removeprefix(f"{tmp_path}/") for p in e.problems]
    return []


def test_azure_apim_notes_a_timeout_it_may_not_honor(tmp_path: Path) -> None:
    text = (REPO / "specs" / "azure-apim.yaml").read_text(encoding="utf-8")
    path = tmp_path / "s.yaml"
    path.write_text(text.replace("  type: azure-apim\n", "  type: azure-apim\n  timeout: 5m\n"))
    line = text.splitlines().index("  type: azure-apim") + 2
    notes = [str(n) for n in load_spec(path).notes if "gateway.timeout" in n.path]
    assert notes == [
        f"{path}:{line}:12: gateway.timeout: note: API Management may not honor a "
        "forward-request timeout above 240 s: its network can drop a connection idle for longer"
    ]


def test_the_service_gateway_refuses_a_timeout_and_says_why(tmp_path: Path) -> None:
    text = MINIMAL.replace("type: istio", "type: service").replace(
        "  host: models.example.com", "  timeout: 10m"
    )
    assert _problems(tmp_path, text) == [
        "spec.yaml:5:12: gateway.timeout: gateway service has no request timeout: a Service "
        "forwards connections without reading requests; a client waits as long as it chooses"
    ]


@pytest.mark.parametrize("value", ["30s", "10m", "24h", "86400s"])
def test_a_timeout_of_up_to_24_hours_is_accepted(tmp_path: Path, value: str) -> None:
    text = MINIMAL.replace(
        "  host: models.example.com", f"  host: a.example.com\n  timeout: {value}"
    )
    assert _problems(tmp_path, text) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10 minutes", "'10 minutes' is not a duration such as 30s, 10m or 1h"),
        ("600", '600 is a number; quote it ("600")'),
        ("0s", "'0s' is not a duration such as 30s, 10m or 1h"),
        ("25h", "25h is longer than the 24h mlserve allows"),
    ],
)
def test_a_timeout_that_is_no_duration_or_too_long_is_refused(
    tmp_path: Path, value: str, message: str
) -> None:
    text = MINIMAL.replace(
        "  host: models.example.com", f"  host: a.example.com\n  timeout: {value}"
    )
    assert _problems(tmp_path, text) == [f"spec.yaml:6:12: gateway.timeout: {message}"]
