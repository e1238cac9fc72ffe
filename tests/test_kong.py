"""The kong backend: what it declares (under Pulumi's mocks) and what `check` rejects."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import pytest

from mlserve.backends import kong
from mlserve.render import RenderedResource, render_program
from mlserve.spec import Spec
from mlserve.traffic import TrafficState
from tests.gateway_helpers import (
    SECRET_SIG,
    Registered,
    as_json,
    edit,
    fake_workloads,
    kong_hostname_ok,
    of_type,
    one,
    record,
    spec_of,
)

UPSTREAM = "kong:index/upstream:Upstream"
TARGET = "kong:index/target:Target"
SERVICE = "kong:index/service:Service"
ROUTE = "kong:index/route:Route"
PROVIDER = "pulumi:providers:kong"

IMAGES: dict[str, Any] = {
    "apiVersion": "mlserve/v1",
    "name": "fraud",
    "namespace": "ml",
    "gateway": {
        "type": "kong",
        "path": "/fraud",
        "kong": {"adminUrl": "http://kong-admin.kong:8001", "protocols": ["https"]},
    },
    "versions": [
        {"name": "v1", "image": "ghcr.io/acme/fraud:1.4.2"},
        {"name": "v2", "image": "ghcr.io/acme/fraud:1.5.0"},
    ],
    "traffic": {"stable": "v1", "canary": "v2", "weight": 10},
}

URLS: dict[str, Any] = {
    "apiVersion": "mlserve/v1",
    "name": "fraud",
    "gateway": {"type": "kong", "path": "/"},
    "versions": [
        {"name": "v1", "url": "https://fraud-v1.internal.example.com"},
        {"name": "v2", "url": "https://fraud-v2.internal.example.com:8443/"},
    ],
    "traffic": {"stable": "v1", "canary": "v2", "weight": 25},
}


def _program(spec: Spec, traffic: TrafficState | None = None) -> Any:
    t = traffic or TrafficState(spec.traffic.stable, spec.traffic.canary, spec.traffic.weight)

    def program() -> None:
        kong.declare(spec, t, fake_workloads(spec))

    return program


def render(spec: Spec, traffic: TrafficState | None = None) -> list[RenderedResource]:
    return render_program(_program(spec, traffic), spec.name, "dev")


def registered(spec: Spec, traffic: TrafficState | None = None) -> list[Registered]:
    return record(_program(spec, traffic), spec.name)


def weights(resources: list[RenderedResource]) -> dict[str, int]:
    return {r.name: r.inputs["weight"] for r in of_type(resources, TARGET)}


# --- what declare builds -------------------------------------------------------------------


def test_image_versions_split_by_target_weights_on_their_cluster_services() -> None:
    res = render(Spec.from_dict(IMAGES))
    targets = {r.name: r.inputs["target"] for r in of_type(res, TARGET)}
    assert targets == {
        "fraud-v1": "fraud-v1.ml.svc.cluster.local:80",
        "fraud-v2": "fraud-v2.ml.svc.cluster.local:80",
    }
    # 10%: 100 * 10 / 90 = 11.1, so 11 / (100 + 11) = 9.91% (kong.target_weights)
    assert weights(res) == {"fraud-v1": 100, "fraud-v2": 11}
    assert {r.inputs["upstreamId"] for r in of_type(res, TARGET)} == {"fraud-id"}


def test_upstream_name_is_a_valid_kong_hostname_and_the_service_host() -> None:
    res = render(Spec.from_dict(IMAGES))
    upstream = one(res, UPSTREAM)
    assert upstream.inputs["name"] == "fraud.ml.mlserve"
    assert kong_hostname_ok(upstream.inputs["name"])
    service = one(res, SERVICE, "fraud")
    assert service.inputs["host"] == upstream.inputs["name"]
    assert service.inputs["protocol"] == "http"


def test_all_numeric_service_name_still_gives_a_hostname_kong_accepts() -> None:
    res = render(spec_of(IMAGES, name="123", namespace="456"))
    assert kong_hostname_ok(one(res, UPSTREAM).inputs["name"])


def test_route_carries_path_protocols_and_strip_path_from_the_spec() -> None:
    spec = spec_of(IMAGES, **{"gateway.stripPath": False})
    route = one(render(spec), ROUTE, "fraud")
    # A plain Kong path is a string prefix (kong/router/transform.lua `http.path ^=`); the
    # anchored regex takes /fraud and /fraud/..., not /fraudulent.
    assert route.inputs["paths"] == ["~/fraud(/|$)"]
    assert route.inputs["name"] == "ml.fraud"
    assert route.inputs["protocols"] == ["https"]
    assert route.inputs["stripPath"] is False
    assert route.inputs["serviceId"] == "fraud-id"
    assert "headers" not in route.inputs and "hosts" not in route.inputs


def test_gateway_host_becomes_the_route_hosts_and_the_endpoint() -> None:
    spec = spec_of(IMAGES, **{"gateway.host": "models.example.com"})
    route = one(render(spec), ROUTE, "fraud")
    assert route.inputs["hosts"] == ["models.example.com"]

    captured: list[Any] = []

    def program() -> None:
        captured.append(kong.declare(spec, TrafficState("v1"), fake_workloads(spec)))

    render_program(program, "fraud", "dev")
    assert captured[0].endpoint == "https://models.example.com/fraud"


def test_url_versions_target_their_host_and_port_with_the_scheme_default() -> None:
    res = render(Spec.from_dict(URLS))
    targets = {r.name: r.inputs["target"] for r in of_type(res, TARGET)}
    assert targets == {
        "fraud-v1": "fraud-v1.internal.example.com:443",
        "fraud-v2": "fraud-v2.internal.example.com:8443",
    }
    assert weights(res) == {"fraud-v1": 100, "fraud-v2": 33}  # 33 / 133 = 24.8%
    service = one(res, SERVICE, "fraud")
    assert (service.inputs["protocol"], service.inputs["port"]) == ("https", 443)
    assert one(res, ROUTE).inputs["paths"] == ["/"]
    # url versions have no workloads of their own
    assert [r.type for r in res if not r.type.startswith("kong:")] == []


def test_a_stable_without_canary_gets_one_target_at_the_stable_weight() -> None:
    res = render(spec_of(IMAGES, **{"traffic.canary": None, "traffic.weight": None}))
    assert weights(res) == {"fraud-v1": kong.STABLE_WEIGHT}


def test_a_canary_at_zero_gets_no_target_because_the_provider_would_send_100() -> None:
    # terraform-provider-kong resource_reader.go reads weight with GetOk: 0 is never sent, and
    # Kong's default is 100 (kong/db/schema/entities/targets.lua).
    res = render(Spec.from_dict(IMAGES), TrafficState("v1", "v2", 0))
    assert weights(res) == {"fraud-v1": kong.STABLE_WEIGHT}


def test_previous_gets_no_target_and_a_canary_at_100_replaces_the_stables() -> None:
    res = render(Spec.from_dict(IMAGES), TrafficState("v2", previous="v1"))
    assert weights(res) == {"fraud-v2": kong.STABLE_WEIGHT}
    res = render(Spec.from_dict(IMAGES), TrafficState("v1", "v2", 100))
    assert weights(res) == {"fraud-v2": kong.STABLE_WEIGHT}


@pytest.mark.parametrize("weight", range(1, 100))
def test_target_weights_stay_in_kongs_range_and_carry_the_split(weight: int) -> None:
    # Kong's round-robin wheel gives a target weight/gcd slots of weight_total/gcd
    # (kong/runloop/balancer/round_robin.lua): its share is weight/(sum of weights).
    w = kong.target_weights(TrafficState("v1", "v2", weight))
    assert w["v1"] == kong.STABLE_WEIGHT
    assert all(1 <= x <= 65535 for x in w.values())
    assert abs(Fraction(w["v2"], w["v1"] + w["v2"]) - Fraction(weight, 100)) <= Fraction(41, 10000)


def test_services_never_carry_a_port_in_host_and_routes_paths_start_with_slash() -> None:
    spec = spec_of(URLS, **{"gateway.versionHeader": "x-model-version"})
    res = render(spec)
    for s in of_type(res, SERVICE):
        assert ":" not in s.inputs["host"]
        assert 0 <= s.inputs["port"] <= 65535
    for r in of_type(res, ROUTE):
        assert all(p.startswith("/") and "//" not in p for p in r.inputs["paths"])


def test_version_header_adds_a_route_and_service_per_version() -> None:
    spec = spec_of(IMAGES, **{"gateway.versionHeader": "x-model-version"})
    res = render(spec)
    services = {s.name: s.inputs for s in of_type(res, SERVICE)}
    assert services["fraud-v1"] == {
        "name": "ml.fraud.v1",  # Kong names are global: the namespace keeps them apart
        "protocol": "http",
        "host": "fraud-v1.ml.svc.cluster.local",
        "port": 80,
        "tags": ["mlserve", "fraud"],
    }
    assert services["fraud-v2"]["host"] == "fraud-v2.ml.svc.cluster.local"
    routes = {r.name: r.inputs for r in of_type(res, ROUTE)}
    assert routes["fraud-v2"]["headers"] == [{"name": "x-model-version", "values": ["v2"]}]
    assert routes["fraud-v2"]["serviceId"] == "fraud-v2-id"
    unpinned = routes["fraud"]
    for name in ("fraud-v1", "fraud-v2"):
        pinned = routes[name]
        # Kong tries routes with more matching attributes first: same paths and protocols,
        # plus a header.
        assert pinned["paths"] == unpinned["paths"]
        assert pinned["protocols"] == unpinned["protocols"]
        assert pinned["stripPath"] == unpinned["stripPath"]
        assert "headers" not in unpinned


def test_version_header_on_url_versions_pins_to_each_url() -> None:
    spec = spec_of(URLS, **{"gateway.versionHeader": "x-model-version"})
    services = {s.name: s.inputs for s in of_type(render(spec), SERVICE)}
    assert services["fraud-v2"]["host"] == "fraud-v2.internal.example.com"
    assert (services["fraud-v2"]["port"], services["fraud-v2"]["protocol"]) == (8443, "https")


def test_ipv6_url_becomes_a_bracketed_target() -> None:
    spec = spec_of(
        URLS, **{"versions.1.url": "http://[fd00::1]:9000", "versions.0.url": "http://a.example"}
    )
    targets = {r.name: r.inputs["target"] for r in of_type(render(spec), TARGET)}
    assert targets["fraud-v2"] == "[fd00::1]:9000"


# --- resource options: providers, replacement, dependencies ---------------------------------


def test_targets_are_deleted_before_replaced_so_kong_never_sees_two_for_one_address() -> None:
    regs = registered(Spec.from_dict(IMAGES))
    targets = of_type(regs, TARGET)
    assert len(targets) == 2
    assert all(t.delete_before_replace for t in targets)
    # Targets keep one logical name per version, so a weight change replaces that resource.
    assert {t.name for t in targets} == {"fraud-v1", "fraud-v2"}
    others = [r for r in regs if r.type.startswith("kong:") and r.type != TARGET]
    assert others and not any(r.delete_before_replace for r in others)


def _targets(state: TrafficState) -> dict[str, dict[str, Any]]:
    return {r.name: r.inputs for r in of_type(render(Spec.from_dict(IMAGES), state), TARGET)}


def _update_moments(
    old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]
) -> Iterator[tuple[str, dict[str, dict[str, Any]]]]:
    """Every set of Targets Kong holds during a Pulumi update from `old` to `new`, in every order
    Pulumi may take. While the program registers, a changed Target is replaced, deleted first
    (delete_before_replace, as every kong_target field is ForceNew in terraform-provider-kong
    resource_kong_target.go) and a new one created; a Target the program no longer declares is
    deleted after every registration (pulumi/pulumi deployment_executor.go performDeletes)."""
    steps = [n for n in new if n not in old or old[n] != new[n]]
    gone = [n for n in old if n not in new]
    for order in itertools.permutations(steps):
        current = dict(old)
        for name in order:
            if name in current:
                del current[name]
                yield "registering", dict(current)
            current[name] = new[name]
            yield "registering", dict(current)
        for deletes in itertools.permutations(gone):
            after = dict(current)
            for name in deletes:
                del after[name]
                yield "deleting", dict(after)


@pytest.mark.parametrize(
    ("live", "new"),
    [
        (TrafficState("v1", "v2", 0), TrafficState("v1", "v2", 10)),
        (TrafficState("v1", "v2", 10), TrafficState("v1", "v2", 50)),
        (TrafficState("v1", "v2", 50), TrafficState("v1", "v2", 99)),
        (TrafficState("v1", "v2", 50), TrafficState("v1", "v2", 0)),  # rollback
        (TrafficState("v1", "v2", 10), TrafficState("v2", previous="v1")),  # complete
        (TrafficState("v1", "v2", 50), TrafficState("v2", previous="v1")),
        (TrafficState("v2", previous="v1"), TrafficState("v1")),  # rollback to previous
        (TrafficState("v1", "v2", 100), TrafficState("v2", previous="v1")),
    ],
)
def test_no_weight_change_leaves_the_upstream_without_the_live_stables_target(
    live: TrafficState, new: TrafficState
) -> None:
    old_targets, new_targets = _targets(live), _targets(new)
    stable = f"fraud-{live.stable}"
    if stable in old_targets and stable in new_targets:
        assert old_targets[stable] == new_targets[stable], "the live stable's Target is replaced"
    for phase, targets in _update_moments(old_targets, new_targets):
        assert targets, f"{phase}: the upstream has no Target at all"
        if stable in old_targets and phase == "registering":
            assert stable in targets, f"{phase}: the live stable {live.stable} lost its Target"
        if phase == "deleting":
            assert {f"fraud-{live.stable}", f"fraud-{new.stable}"} & set(targets)


def test_services_and_routes_of_one_name_in_two_namespaces_do_not_collide() -> None:
    names = []
    for namespace in ("team-a", "team-b"):
        spec = spec_of(IMAGES, namespace=namespace, **{"gateway.versionHeader": "x-v"})
        names.append({r.inputs["name"] for r in render(spec) if r.type in (SERVICE, ROUTE)})
    assert names[0] and not names[0] & names[1]
    assert "team-a.fraud" in names[0] and "team-a.fraud.v2" in names[0]


def test_targets_and_pinned_services_depend_on_their_workloads() -> None:
    spec = spec_of(IMAGES, **{"gateway.versionHeader": "x-model-version"})
    regs = registered(spec)
    workload_urn = {r.name: r.urn for r in of_type(regs, "test:index:Workload")}
    for version in ("v1", "v2"):
        name = f"fraud-{version}"
        assert workload_urn[name] in one(regs, TARGET, name).dependencies
        assert workload_urn[name] in one(regs, SERVICE, name).dependencies


def test_every_kong_resource_uses_the_explicit_provider_built_from_admin_url() -> None:
    regs = registered(spec_of(IMAGES, **{"gateway.versionHeader": "x-model-version"}))
    provider = one(regs, PROVIDER)
    assert provider.inputs["kongAdminUri"] == "http://kong-admin.kong:8001"
    ref = f"{provider.urn}::{provider.name}-id"
    kong_resources = [r for r in regs if r.type.startswith("kong:")]
    assert len(kong_resources) == 9
    assert {r.provider for r in kong_resources} == {ref}


def test_admin_token_from_the_environment_is_a_secret_and_never_rendered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KONG_ADMIN_TOKEN", "s3cr3t-kong-token")
    spec = Spec.from_dict(IMAGES)
    provider = one(registered(spec), PROVIDER)
    assert provider.inputs["kongAdminToken"] == {
        SECRET_SIG: "1b47061264138c4ac30d75fd1eb44270",
        "value": "s3cr3t-kong-token",
    }
    assert "s3cr3t-kong-token" not in as_json(render(spec))


def test_admin_token_from_a_stack_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KONG_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"mlserve:kongAdminToken": "from-stack"}))
    provider = one(registered(Spec.from_dict(IMAGES)), PROVIDER)
    assert provider.inputs["kongAdminToken"]["value"] == "from-stack"
    assert SECRET_SIG in provider.inputs["kongAdminToken"]


def test_without_admin_url_the_stack_config_or_the_providers_env_fallback_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KONG_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG", raising=False)
    spec = Spec.from_dict(URLS)
    assert one(registered(spec), PROVIDER).inputs == {"tlsSkipVerify": "false"}

    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"kong:kongAdminUri": "http://k:8001"}))
    assert one(registered(spec), PROVIDER).inputs["kongAdminUri"] == "http://k:8001"


def test_the_backend_module_does_not_import_pulumi() -> None:
    code = "import sys, mlserve.backends.kong; sys.exit('pulumi' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --- check ---------------------------------------------------------------------------------


def problems(doc: dict[str, Any], **changes: Any) -> list[tuple[str, str]]:
    return kong.check(spec_of(doc, **changes))


def test_valid_specs_pass() -> None:
    assert kong.check(Spec.from_dict(IMAGES)) == []
    assert kong.check(Spec.from_dict(URLS)) == []
    assert problems(URLS, **{"gateway.versionHeader": "X-Model_Version"}) == []
    ips = {"versions.0.url": "http://10.0.0.7:8080", "versions.1.url": "http://[fd00::1]"}
    assert problems(URLS, **ips) == []


def test_url_with_a_path_is_rejected() -> None:
    assert problems(URLS, **{"versions.1.url": "https://fraud-v2.example.com/predict"}) == [
        (
            "versions[1].url",
            "'https://fraud-v2.example.com/predict' has a path ('/predict'): a Kong upstream "
            "target is host:port only, and every version is served under gateway.path",
        )
    ]


def test_urls_of_one_service_share_a_scheme() -> None:
    assert problems(URLS, **{"versions.1.url": "http://fraud-v2.example.com"}) == [
        (
            "versions[1].url",
            "is served over http but versions[0] is https: the versions behind one Kong "
            "upstream share one protocol",
        )
    ]


def test_an_https_url_next_to_an_image_version_is_rejected() -> None:
    doc = edit(IMAGES, **{"versions.1": {"name": "v2", "url": "https://v2.example.com"}})
    assert kong.check(Spec.from_dict(doc)) == [
        (
            "versions[1].url",
            "is served over https but versions[0] is an image version, served over http: "
            "the versions behind one Kong upstream share one protocol",
        )
    ]


def test_two_versions_on_one_address_are_rejected() -> None:
    assert problems(URLS, **{"versions.1.url": "https://fraud-v1.internal.example.com:443/"}) == [
        (
            "versions[1].url",
            "fraud-v1.internal.example.com:443 is also versions[0]'s address; Kong keeps one "
            "target per address in an upstream",
        )
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "ftp://h.example.com",
            "'ftp://h.example.com': Kong routes to http or https backends, not 'ftp'",
        ),
        (
            "https://bad_-.example.com",
            "'https://bad_-.example.com': 'bad_-.example.com' is not a valid hostname or IP "
            "address for Kong",
        ),
        ("https://123", "'https://123': '123' is not a valid hostname or IP address for Kong"),
        (
            "https://h.example.com:99999",
            "'https://h.example.com:99999' is not a valid URL: Port out of range 0-65535",
        ),
        (
            "https://h.example.com?a=1",
            "'https://h.example.com?a=1' must not have a query or a fragment",
        ),
        (
            "https://u:p@h.example.com",
            "'https://u:p@h.example.com' must not carry credentials: spec files hold no secrets",
        ),
        ("https:///nohost", "'https:///nohost' has no host"),
    ],
)
def test_bad_urls_are_rejected_with_the_reason(url: str, message: str) -> None:
    assert problems(URLS, **{"versions.1.url": url}) == [("versions[1].url", message)]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("fraud", "'fraud' must start with '/'"),
        ("/a//b", "'/a//b' must not contain '//' (Kong rejects empty path segments)"),
        ("/a b", "'/a b' has characters Kong does not allow in a path: ' '"),
        ("/a/%zz", "'/a/%zz': '%' must be followed by two hex digits"),
    ],
)
def test_bad_gateway_paths_are_rejected(path: str, message: str) -> None:
    assert problems(URLS, **{"gateway.path": path}) == [("gateway.path", message)]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            "x model",
            "'x model' is not a header name Kong can match: use letters, digits, '-' and '_'",
        ),
        ("Host", "Kong does not match the Host header in a route's headers; use gateway.host"),
    ],
)
def test_bad_version_headers_are_rejected(header: str, message: str) -> None:
    assert problems(URLS, **{"gateway.versionHeader": header}) == [
        ("gateway.versionHeader", message)
    ]


def test_protocols_other_than_http_and_https_are_rejected() -> None:
    assert problems(URLS, **{"gateway.kong": {"protocols": ["http", "grpc", "http"]}}) == [
        (
            "gateway.kong.protocols[1]",
            "'grpc': mlserve's Kong routes match a path and headers, so they take http and "
            "https only",
        ),
        ("gateway.kong.protocols[2]", "'http' is listed twice"),
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("kong-admin:8001", "'kong-admin:8001': the Kong Admin API is reached over http or https"),
        (
            "http://admin:pw@kong:8001",
            "must not carry credentials: spec files hold no secrets; set KONG_ADMIN_TOKEN or "
            "the stack secret mlserve:kongAdminToken",
        ),
    ],
)
def test_bad_admin_urls_are_rejected(url: str, message: str) -> None:
    assert problems(URLS, **{"gateway.kong": {"adminUrl": url}}) == [
        ("gateway.kong.adminUrl", message)
    ]


def test_every_problem_is_reported_not_just_the_first() -> None:
    found = problems(
        URLS,
        **{
            "gateway.path": "x",
            "gateway.versionHeader": "Host",
            "versions.0.url": "https://a.example.com/p",
            "versions.1.url": "gopher://b",
        },
    )
    assert [p for p, _ in found] == [
        "gateway.path",
        "gateway.versionHeader",
        "versions[0].url",
        "versions[1].url",
    ]
