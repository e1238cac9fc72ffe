"""The traffic each gateway really sends, computed from the rendered resources by a model of the
gateway's own routing rules (tests/gateway_models.py names the upstream source of each), over the
traffic lifecycle: a canary at 0%, at 1..99%, at 100%, a completed promotion with `previous`, and a
new canary after it. Unpinned requests must split as the traffic state says, and every version a
request can pin must be reachable by its header. A mirror never changes the served split, and the
mirrored version gets a copy of the share the state says, carrying the path the served one gets.

Only run against these models, never against a live gateway.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
from fractions import Fraction
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlserve.backends import base
from mlserve.errors import PreconditionError, SpecError
from mlserve.render import RenderedResource, render
from mlserve.spec import IstioOptions, Spec, Version, load_spec
from mlserve.traffic import Mirror, TrafficState
from tests.gateway_models import (
    MODELS,
    NOT_ROUTED,
    Backends,
    Request,
    Routed,
    conformance_tolerance,
    ingress_nginx_admission,
)
from tests.k8s_helpers import spec_dict

ROOT = Path(__file__).resolve().parents[1]
# The example specs, by name: one per gateway, and gateway-api with InferencePools.
GATEWAYS = (
    "istio",
    "gateway-api",
    "llm-gateway-api",
    "ingress-nginx",
    "kong",
    "azure-apim",
    "service",
)
# Kong's stable Target keeps one weight while the canary's moves (kong.target_weights), so a
# share is the nearest the integer weights give: at most this far from the spec's.
TOLERANCE = {"kong": Fraction(41, 10000)}


def three_versions(spec: Spec) -> Spec:
    """The example plus a third version, so a state can hold stable, canary and previous."""
    first = spec.versions[0]
    if first.url is not None:
        extra = Version(name="c.3", url=first.url.split("://")[0] + "://model-c3.example.com:9443")
    else:
        extra = dataclasses.replace(first, name="c.3", image="ghcr.io/acme/model:3.0.0")
    return dataclasses.replace(spec, versions=(*spec.versions[:2], extra))


@cache
def example(gateway: str) -> Spec:
    return three_versions(load_spec(ROOT / "specs" / f"{gateway}.yaml"))


@cache
def variant(gateway: str, strip: bool | None) -> Spec:
    """The example, with stripPath set to `strip` unless None."""
    spec = example(gateway)
    if strip is None:
        return spec
    return dataclasses.replace(spec, gateway=dataclasses.replace(spec.gateway, strip_path=strip))


@cache
def rendered(
    gateway: str, state: TrafficState, strip: bool | None = None
) -> tuple[RenderedResource, ...]:
    return tuple(render(variant(gateway, strip), state))


def backends(spec: Spec) -> Backends:
    return Backends(
        images={v.image: v.name for v in spec.versions if v.image},
        urls={v.url: v.name for v in spec.versions if v.url},
    )


def route(
    gateway: str,
    state: TrafficState,
    path: str,
    headers: dict[str, str] | None = None,
    strip: bool | None = None,
) -> Routed:
    spec = variant(gateway, strip)
    gw = spec.gateway
    via = gw.istio.gateways[0] if gw.type == "istio" and gw.istio.gateways else None
    request = Request(path=path, host=gw.host, headers=headers or {}, via=via)
    return MODELS[gw.type](list(rendered(gateway, state, strip)), request, backends(spec))


def served(r: Routed) -> tuple[object, object]:
    """Who serves the request, and the path the model sees; not the copies."""
    return r.shares, r.path


def expected(state: TrafficState) -> dict[str, Fraction]:
    return {v: Fraction(w, 100) for v, w in state.weights().items() if w > 0}


def assert_split(gateway: str, got: Routed, state: TrafficState) -> None:
    want = expected(state)
    assert set(got.shares) == set(want), (got.shares, want)
    for version, share in want.items():
        assert abs(got.shares[version] - share) <= TOLERANCE.get(gateway, 0), (version, got, want)


def pinnable(gateway: str, state: TrafficState) -> list[str]:
    """The versions a request may pin by header on this gateway, as the README table says."""
    if gateway == "service":
        return []
    if gateway == "ingress-nginx":  # canary-by-header-value matches the canary alone
        return [state.canary] if state.canary else []
    return list(state.versions())


def lifecycle(gateway: str, weight: int) -> list[TrafficState]:
    a, b, c = example(gateway).version_names
    return [
        TrafficState(a, b, 0),
        TrafficState(a, b, weight),
        TrafficState(a, b, 100),
        TrafficState(b, previous=a),  # promote --complete
        TrafficState(b, c, weight, previous=a),  # a new canary after it
        TrafficState(b, c, 0, previous=a),  # rolled back
        TrafficState(a),  # rollback after the completion
    ]


def check_state(gateway: str, state: TrafficState, strip: bool | None = None) -> None:
    spec = variant(gateway, strip)
    public = spec.gateway.path.rstrip("/")
    seen = "/predict" if spec.gateway.strip_path or not public else public + "/predict"
    unpinned = route(gateway, state, public + "/predict", strip=strip)
    assert_split(gateway, unpinned, state)
    assert unpinned.path == seen
    assert route(gateway, state, public or "/", strip=strip).path == (
        "/" if spec.gateway.strip_path else public or "/"
    )
    if public:  # matched by path segment: /fraud is not a prefix of /fraudulent
        assert route(gateway, state, public + "ulent", strip=strip) == NOT_ROUTED
    header = spec.gateway.version_header or (
        spec.gateway.azure_apim.header_name if spec.gateway.azure_apim else None
    )
    for version in state.versions():
        if header is None:
            break
        pinned = route(gateway, state, public + "/predict", {header.upper(): version}, strip)
        if version in pinnable(gateway, state):
            assert served(pinned) == ({version: Fraction(1)}, seen), version
        else:
            assert served(pinned) in (served(unpinned), served(NOT_ROUTED)), version
    if state.mirror is not None:
        check_mirror(gateway, state, strip)


def check_mirror(gateway: str, state: TrafficState, strip: bool | None) -> None:
    """The served split never changes because of a mirror; the mirrored version gets a copy of
    the state's share of unpinned requests (ingress-nginx: of every request, pinned ones too),
    carrying the path the served version gets."""
    assert state.mirror is not None
    spec = variant(gateway, strip)
    public = spec.gateway.path.rstrip("/")
    without = dataclasses.replace(state, mirror=None)
    header = spec.gateway.version_header
    requests = [(public + "/predict", {})] + [
        (public + "/predict", {header: v}) for v in state.versions() if header
    ]
    for path, headers in requests:
        got = route(gateway, state, path, headers, strip)
        assert served(got) == served(route(gateway, without, path, headers, strip)), headers
        pinned = bool(headers) and headers[header or ""] in pinnable(gateway, state)
        if pinned and gateway != "ingress-nginx":
            assert (got.mirrored, got.mirror_path) == ({}, None), headers
            continue
        # ingress-nginx copies every request of the Ingress, pinned ones included
        # (annotations.md, Mirror): validate and plan say so.
        assert got.mirrored == {state.mirror.version: Fraction(state.mirror.percent, 100)}
        assert got.mirror_path == got.path


# A completed promotion, a new canary and a rollback at one canary weight, per gateway.
@pytest.mark.parametrize(
    "gateway",
    [pytest.param(g, marks=pytest.mark.slow) if g == "azure-apim" else g for g in GATEWAYS],
)
def test_every_state_of_the_lifecycle_routes_as_its_traffic_says(gateway: str) -> None:
    for state in lifecycle(gateway, weight=25):
        if gateway == "service" and state.canary and state.weight:
            continue  # refused before anything renders (test at the end of this file)
        check_state(gateway, state)


# Canary weights 1..99, sampled. Not Azure API Management: it takes 2 s to render (some 30
# resources), its pool weights are the percentages themselves, and the lifecycle covers it.
@pytest.mark.parametrize("gateway", [g for g in GATEWAYS if g not in ("service", "azure-apim")])
@settings(max_examples=5, deadline=None)
@given(weight=st.integers(1, 99))
def test_any_canary_weight_is_the_canarys_share_of_unpinned_requests(
    gateway: str, weight: int
) -> None:
    a, b, c = example(gateway).version_names
    check_state(gateway, TrafficState(a, b, weight))
    check_state(gateway, TrafficState(b, c, weight, previous=a))


def mirrored_states(gateway: str, percent: int) -> list[TrafficState]:
    """Each lifecycle state with a mirror of each version that serves none of its traffic."""
    out = []
    for state in lifecycle(gateway, weight=25):
        for version in example(gateway).version_names:
            if version != state.stable and state.weights().get(version, 0) == 0:
                out.append(dataclasses.replace(state, mirror=Mirror(version, percent)))
    return out


# ingress-nginx mirrors only an unstripped path (validate refuses it with stripPath).
@pytest.mark.parametrize(
    ("gateway", "strip"),
    [
        *((g, strip) for g in ("istio", "gateway-api") for strip in (True, False)),
        ("llm-gateway-api", False),  # with pools, the copy goes to the version's Service
        ("ingress-nginx", False),
    ],
)
def test_every_lifecycle_state_with_a_mirror_serves_as_without_and_copies_its_share(
    gateway: str, strip: bool
) -> None:
    states = mirrored_states(gateway, 100 if gateway == "ingress-nginx" else 20)
    assert len(states) >= 10
    for state in states:
        check_state(gateway, state, strip)


@pytest.mark.parametrize("gateway", ["istio", "gateway-api"])
@settings(max_examples=5, deadline=None)
@given(percent=st.integers(1, 100), weight=st.integers(0, 99))
def test_any_mirrored_share_is_copied_beside_any_canary_weight(
    gateway: str, percent: int, weight: int
) -> None:
    a, b, c = example(gateway).version_names
    check_state(gateway, TrafficState(a, b, weight, mirror=Mirror(c, percent)), strip=True)
    if weight == 0:
        check_state(gateway, TrafficState(a, b, 0, mirror=Mirror(b, percent)), strip=True)


@pytest.mark.parametrize("weight", [1, 2, 33, 50, 67, 98, 99])
def test_kong_weights_at_the_edges_stay_within_the_tolerance(weight: int) -> None:
    a, b, _ = example("kong").version_names
    check_state("kong", TrafficState(a, b, weight))


def test_a_version_at_0_percent_has_no_kong_target_yet_is_reachable_by_its_pin() -> None:
    state = TrafficState("v1", "v2", 0)
    targets = [r for r in rendered("kong", state) if r.type == "kong:index/target:Target"]
    assert [(t.name, t.inputs["weight"]) for t in targets] == [("churn-v1", 100)]
    assert route("kong", state, "/churn/x", {"x-model-version": "v2"}).shares == {"v2": 1}


def test_the_kong_model_sees_the_providers_weight_0_as_kongs_default_100() -> None:
    # What declaring a Target at weight 0 would do: the provider omits it (GetOk), Kong stores
    # 100 (targets.lua), and the "0%" canary gets half the traffic.
    state = TrafficState("v1", "v2", 10)
    resources = [
        dataclasses.replace(r, inputs={**r.inputs, "weight": 0})
        if r.type == "kong:index/target:Target" and r.name == "churn-v2"
        else r
        for r in rendered("kong", state)
    ]
    spec = example("kong")
    got = MODELS["kong"](resources, Request("/churn/x", host=spec.gateway.host), backends(spec))
    assert got.shares["v2"] > Fraction(1, 10)


def test_ingress_nginx_pins_only_the_canary_and_says_so() -> None:
    state = TrafficState("v3", "v4", 30)
    stable_pin = route("ingress-nginx", state, "/sentiment/x", {"x-model-version": "v3"})
    assert stable_pin == route("ingress-nginx", state, "/sentiment/x")  # follows the weights
    assert route("ingress-nginx", state, "/sentiment/x", {"X-Model-Version": "v4"}).shares == {
        "v4": 1
    }
    [(where, message)] = [n for n in base.notes(example("ingress-nginx"), state) if "pin" in n[1]]
    assert where == "gateway.versionHeader"
    assert message.startswith("ingress-nginx can pin only the canary: `x-model-version: v4`")


def test_istio_without_gateways_serves_the_mesh_and_its_endpoint_says_so() -> None:
    istio = example("istio")
    spec = dataclasses.replace(
        istio, gateway=dataclasses.replace(istio.gateway, istio=IstioOptions())
    )
    resources = render(spec)
    mesh = "fraud-detector.ml.svc.cluster.local"
    b = backends(spec)
    assert MODELS["istio"](resources, Request("/fraud/x", host=mesh), b).shares == {
        "v1": Fraction(9, 10),
        "v2": Fraction(1, 10),
    }
    public = Request("/fraud/x", host=spec.gateway.host, via="istio-system/public")
    assert MODELS["istio"](resources, public, b) == NOT_ROUTED
    [(_, note)] = base.notes(spec, TrafficState("v1"))
    assert f"the endpoint is http://{mesh}/fraud" in note


def test_the_service_gateway_refuses_a_weighted_canary_before_anything_changes() -> None:
    a, b, _ = example("service").version_names
    with pytest.raises(PreconditionError, match="gateway service cannot split traffic"):
        base.require_supported(example("service"), TrafficState(a, b, 10))
    base.require_supported(example("service"), TrafficState(b, previous=a))


@pytest.mark.parametrize("weight", [0, 1, 5, 25, 33, 50, 99, 100])
def test_the_share_plan_and_status_show_for_kong_is_what_kong_routes(weight: int) -> None:
    a, b, _ = example("kong").version_names
    state = TrafficState(a, b, weight) if weight < 100 else TrafficState(b, previous=a)
    shown = base.served(example("kong"), state)
    got = route("kong", state, "/churn/x").shares
    if got == expected(state):  # 0% and 100% (one Target), 50% (100:100), 99% (100:9900)
        assert shown is None
        return
    assert shown is not None and shown.gateway == "Kong"
    assert shown.shares == {v: round(float(s * 100), 2) for v, s in got.items()}
    if weight == 5:
        assert (shown.shares, shown.why) == (
            {a: 95.24, b: 4.76},
            f"Target weights are integers: {a} 100, {b} 5",
        )


@pytest.mark.parametrize(
    "gateway", ["istio", "gateway-api", "llm-gateway-api", "ingress-nginx", "azure-apim"]
)
def test_other_gateways_send_the_specs_split_exactly(gateway: str) -> None:
    a, b, _ = example(gateway).version_names
    assert base.served(example(gateway), TrafficState(a, b, 5)) is None


# --- InferencePools (GIE v1.6.0) -----------------------------------------------------------------


@pytest.mark.parametrize("weight", [1, 30, 50, 99])
def test_a_split_between_pools_is_what_gies_conformance_test_accepts(weight: int) -> None:
    # The model's shares are exact; a conformant gateway draws each request by them, and GIE's
    # conformance test accepts its observed split over 200 requests within max(0.10, 4.5 sigma).
    # Drawn here with a fixed seed, as that test's requests would be.
    a, b, _ = example("llm-gateway-api").version_names
    shares = route("llm-gateway-api", TrafficState(a, b, weight), "/v1/chat/completions").shares
    assert shares == {a: Fraction(100 - weight, 100), b: Fraction(weight, 100)}
    draws = random.Random(weight).choices(list(shares), [float(x) for x in shares.values()], k=200)
    for version, share in shares.items():
        observed = draws.count(version) / len(draws)
        assert abs(observed - float(share)) <= conformance_tolerance(float(share), len(draws))


def test_the_pool_model_refuses_a_pool_its_pods_do_not_listen_on() -> None:
    # What the model checks besides the weights: a pool must select one version's pods on a
    # port they listen on, or the pool's endpoints are not the model server.
    state = TrafficState("qwen3-8b-v1", "qwen3-8b-v2", 10)
    resources = [
        dataclasses.replace(
            r, inputs={**r.inputs, "spec": {**r.inputs["spec"], "targetPorts": [{"number": 9}]}}
        )
        if r.type.endswith(":InferencePool")
        else r
        for r in rendered("llm-gateway-api", state)
    ]
    spec = example("llm-gateway-api")
    request = Request("/v1/models", host=spec.gateway.host)
    with pytest.raises(AssertionError, match=re.escape("targets {9}, pods listen on {8000}")):
        MODELS["gateway-api"](resources, request, backends(spec))


@pytest.mark.parametrize("strip", [False, True], ids=["stripPath-false", "stripPath-true"])
@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/churn/",
        "/v1_0/Churn-2",
        "/v1.0/churn",
        "/fr~aud",
        "/etc/nginx",
        "/api/var/run/secrets",
        "/content_by_lua",
    ],
)
def test_validate_takes_an_ingress_nginx_path_exactly_when_its_admission_webhook_would(
    tmp_path: Path, path: str, strip: bool
) -> None:
    """Issue 19 item 3: every path mlserve renders for a spec `validate` accepts passes
    ingress-nginx's admission (tests/gateway_models.py names the rules), and `validate` refuses
    the rest, for both stripPath values: a Prefix path without it, a regex path of type
    ImplementationSpecific with it."""
    doc = spec_dict("ingress-nginx", strip_path=strip)
    doc["gateway"]["path"] = path
    file = tmp_path / "spec.yaml"
    file.write_text(json.dumps(doc), encoding="utf-8")  # JSON is YAML
    try:
        load_spec(file)
        refused = []
    except SpecError as e:
        refused = [p.message for p in e.problems]
        assert {p.path for p in e.problems} == {"gateway.path"}, refused
    ingresses = [r.inputs for r in render(Spec.from_dict(doc)) if r.type.endswith(":Ingress")]
    assert len(ingresses) == 2  # the main Ingress and the canary's
    objections = [o for i in ingresses for o in ingress_nginx_admission(i)]
    assert bool(refused) == bool(objections), (refused, objections)
