"""The Kubernetes workloads and the istio, gateway-api and ingress-nginx gateways, rendered under
Pulumi's mocks and checked against the upstream schemas."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlserve import render as render_module
from mlserve.backends import gateway_api, workloads
from mlserve.render import RenderedResource
from mlserve.spec import Spec
from mlserve.traffic import Mirror, TrafficState, initial
from tests.k8s_helpers import (
    K8S_GATEWAYS,
    kind,
    make_spec,
    of_kind,
    render_recorded,
    spec_dict,
    urn_key,
    validate_manifest,
)
from tests.render_memo import render

LONG_NAME = "m" * 40  # the longest name the spec allows
LONG_VERSION_PREFIX = "release-2024-0"  # + one digit: a 15-character version, the longest


def _cases() -> list[Any]:
    cases = []
    for gw in K8S_GATEWAYS:
        many = 2 if gw == "ingress-nginx" else 10
        cases += [
            pytest.param(gw, {"versions": 1, "canary": False, "header": None}, None, id=f"{gw}-1"),
            pytest.param(gw, {"rich": True}, None, id=f"{gw}-canary-header-rich"),
            pytest.param(gw, {"weight": 0, "header": None}, None, id=f"{gw}-canary-at-0"),
            pytest.param(gw, {"versions": 2, "canary": False}, None, id=f"{gw}-no-canary-header"),
            pytest.param(
                gw, {"versions": many, "weight": 30, "rich": True}, None, id=f"{gw}-{many}-versions"
            ),
            pytest.param(
                gw,
                {"versions": 2, "name": LONG_NAME, "version_prefix": LONG_VERSION_PREFIX},
                None,
                id=f"{gw}-longest-names",
            ),
            # After a completed promotion `previous` stays deployed at 0%: a third version.
            pytest.param(
                gw,
                {"versions": 3, "canary": False},
                TrafficState(stable="v2", previous="v1"),
                id=f"{gw}-previous",
            ),
            pytest.param(
                gw,
                {"versions": 3},
                TrafficState(stable="v2", canary="v3", weight=25, previous="v1"),
                id=f"{gw}-previous-and-canary",
            ),
        ]
    cases.append(pytest.param("istio", {"istio_gateways": ()}, None, id="istio-mesh-only"))
    # gateway-api with an InferencePool per version (tests/test_inference_pool.py says more).
    picker = {"endpointPicker": {"name": "{{pool}}-epp", "port": 9002, "failureMode": "FailOpen"}}
    cases += [
        pytest.param(
            "gateway-api",
            {"versions": 3, "rich": True, "inference_pool": picker},
            TrafficState("v2", "v3", 25, previous="v1"),
            id="gateway-api-pools-previous-and-canary",
        ),
        pytest.param(
            "gateway-api",
            {"inference_pool": {}, "header": None, "weight": 0},
            None,
            id="gateway-api-pools-without-picker",
        ),
        pytest.param(
            "gateway-api",
            {"versions": 10, "weight": 30, "inference_pool": {"endpointPicker": {}}},
            None,
            id="gateway-api-pools-10-versions",
        ),
        pytest.param(
            "gateway-api",
            {
                "versions": 2,
                "name": LONG_NAME,
                "version_prefix": LONG_VERSION_PREFIX,
                "inference_pool": picker,
            },
            None,
            id="gateway-api-pools-longest-names",
        ),
    ]
    for gw in K8S_GATEWAYS:
        cases.append(pytest.param(gw, {"strip_path": True}, None, id=f"{gw}-strip-path"))
        cases.append(
            pytest.param(
                gw,
                {"versions": 3, "strip_path": True, "rich": True},
                TrafficState("v2", "v3", 60, previous="v1"),
                id=f"{gw}-strip-path-previous-and-canary",
            )
        )
    # A mirror (shadow traffic): of the canary at 0%, with the path stripped or not; of another
    # version beside a weighted canary. ingress-nginx: 100% of an unstripped path only.
    for gw in ("istio", "gateway-api"):
        cases += [
            pytest.param(
                gw,
                {"versions": 2, "strip_path": True, "rich": True},
                TrafficState("v1", "v2", 0, mirror=Mirror("v2", 20)),
                id=f"{gw}-mirror-canary-at-0",
            ),
            pytest.param(
                gw,
                {"versions": 3, "strip_path": False},
                TrafficState("v1", "v2", 30, mirror=Mirror("v3", 100)),
                id=f"{gw}-mirror-beside-a-canary",
            ),
        ]
    cases += [
        pytest.param(
            "ingress-nginx",
            {"versions": 2, "strip_path": False, "rich": True},
            TrafficState("v1", "v2", 0, mirror=Mirror("v2")),
            id="ingress-nginx-mirror-canary-at-0",
        ),
        pytest.param(
            "ingress-nginx",
            {"versions": 2, "strip_path": False, "header": None},
            TrafficState("v2", previous="v1", mirror=Mirror("v1")),
            id="ingress-nginx-mirror-previous",
        ),
    ]
    for service_type in ("ClusterIP", "NodePort", "LoadBalancer"):
        cases.append(
            pytest.param(
                "service",
                {"versions": 3, "weight": 0, "header": None, "service_type": service_type},
                TrafficState("v2", "v3", 0, previous="v1"),
                id=f"service-{service_type}",
            )
        )
    return cases


CASES = _cases()


def _render(gw: str, kw: dict[str, Any], traffic: TrafficState | None) -> list[RenderedResource]:
    return render(make_spec(gw, **kw), traffic)


def _traffic(spec: Spec, traffic: TrafficState | None) -> TrafficState:
    return traffic or initial(spec)


def _service_version(spec: Spec, service: str) -> str:
    prefix = f"{spec.name}-"
    assert service.startswith(prefix), service
    return service[len(prefix) :]


# --- schemas and names -----------------------------------------------------------------------


@pytest.mark.parametrize(("gw", "kw", "traffic"), CASES)
def test_every_rendered_resource_passes_its_strict_upstream_schema(
    gw: str, kw: dict[str, Any], traffic: TrafficState | None
) -> None:
    resources = _render(gw, kw, traffic)
    assert resources
    for r in resources:
        assert r.type.startswith("kubernetes:"), r.type
        validate_manifest(r.inputs)


@pytest.mark.parametrize(("gw", "kw", "traffic"), CASES)
def test_names_are_explicit_deterministic_and_at_most_63_chars(
    gw: str, kw: dict[str, Any], traffic: TrafficState | None
) -> None:
    first = _render(gw, kw, traffic)
    again = render_module.render(make_spec(gw, **kw), traffic)  # a render of its own
    assert [r.to_json() for r in first] == [r.to_json() for r in again]
    seen = set()
    for r in first:
        meta = r.inputs["metadata"]
        assert r.name == meta["name"], "logical name and Kubernetes name differ"
        assert len(meta["name"]) <= 63, meta["name"]
        assert meta["namespace"] == "ml"
        assert all(len(v) <= 63 for v in meta["labels"].values())
        assert (r.type, r.name) not in seen, f"duplicate {r.type} {r.name}"
        seen.add((r.type, r.name))


def test_longest_names_reach_the_limits_they_are_checked_against() -> None:
    spec = make_spec("ingress-nginx", name=LONG_NAME, version_prefix=LONG_VERSION_PREFIX)
    names = [r.inputs["metadata"]["name"] for r in render(spec)]
    assert max(len(n) for n in names) == 40 + 1 + 15
    assert f"{LONG_NAME}-canary" in names


# --- workloads -------------------------------------------------------------------------------


def test_each_image_version_gets_a_deployment_and_service_named_name_version() -> None:
    spec = make_spec("gateway-api", versions=3)
    resources = render(spec)
    for k in ("Deployment", "Service"):
        assert [r.name for r in of_kind(resources, k)] == [
            "fraud-detector-v1",
            "fraud-detector-v2",
            "fraud-detector-v3",
        ]


def test_workloads_carry_the_standard_labels_plus_the_spec_labels() -> None:
    spec = make_spec("gateway-api", rich=True)
    for r in render(spec):
        labels = r.inputs["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "fraud-detector"
        assert labels["app.kubernetes.io/managed-by"] == "mlserve"
        assert labels["team"] == "risk"
        assert labels["cost-center"] == "ml-42"
        if kind(r) in ("Deployment", "Service"):
            assert labels["app.kubernetes.io/version"] == _service_version(spec, r.name)


def test_a_spec_label_cannot_override_a_standard_label() -> None:
    doc = spec_dict("gateway-api", rich=True)
    doc["labels"]["app.kubernetes.io/name"] = "something-else"
    [dep, *_] = of_kind(render(Spec.from_dict(doc)), "Deployment")
    assert dep.inputs["metadata"]["labels"]["app.kubernetes.io/name"] == "fraud-detector"


def test_deployment_selects_its_own_version_and_its_pods_match() -> None:
    [dep, *_] = of_kind(render(make_spec("istio", rich=True)), "Deployment")
    selector = dep.inputs["spec"]["selector"]["matchLabels"]
    assert selector == {
        "app.kubernetes.io/name": "fraud-detector",
        "app.kubernetes.io/version": "v1",
    }
    pod_labels = dep.inputs["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    assert pod_labels["team"] == "risk"


def test_deployment_has_replicas_port_resources_sorted_env_and_probes() -> None:
    [dep, *_] = of_kind(render(make_spec("istio", rich=True)), "Deployment")
    spec = dep.inputs["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    [container] = spec["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/acme/fraud:1.1.0"
    assert container["ports"] == [{"name": "http", "containerPort": 9001, "protocol": "TCP"}]
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"memory": "2Gi", "nvidia.com/gpu": "1"},
    }
    assert container["env"] == [
        {"name": "LOG_LEVEL", "value": "info"},
        {"name": "MODEL_URI", "value": "s3://models/fraud/1.1.0"},
    ]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    # The startup probe allows a slow model load before liveness can restart the pod.
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


def test_deployment_without_health_path_or_extras_has_no_probes_env_or_resources() -> None:
    [dep] = of_kind(render(make_spec("istio", versions=1, canary=False)), "Deployment")
    [container] = dep.inputs["spec"]["template"]["spec"]["containers"]
    assert set(container) == {"name", "image", "ports"}
    assert dep.inputs["spec"]["replicas"] == 1
    assert container["ports"][0]["containerPort"] == 8080


def test_service_port_80_forwards_to_the_named_container_port() -> None:
    spec = make_spec("gateway-api", rich=True)
    for svc in of_kind(render(spec), "Service"):
        assert svc.inputs["spec"]["ports"] == [
            {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
        ]
        assert svc.inputs["spec"]["selector"] == {
            "app.kubernetes.io/name": "fraud-detector",
            "app.kubernetes.io/version": _service_version(spec, svc.name),
        }


# --- weights and pinning ---------------------------------------------------------------------


def _weights(spec: Spec, resources: list[RenderedResource]) -> dict[str, int]:
    """The split of unpinned traffic, read back from the routing resources."""
    gw = spec.gateway.type
    if gw == "istio":
        [vs] = of_kind(resources, "VirtualService")
        route = vs.inputs["spec"]["http"][-1]["route"]
        return {d["destination"]["subset"]: d.get("weight", 100) for d in route}
    if gw == "gateway-api":
        [route] = of_kind(resources, "HTTPRoute")
        refs = route.inputs["spec"]["rules"][-1]["backendRefs"]
        return {_service_version(spec, b["name"]): b["weight"] for b in refs}
    if gw == "service":
        [front] = [r for r in of_kind(resources, "Service") if r.name == spec.name]
        return {front.inputs["spec"]["selector"]["app.kubernetes.io/version"]: 100}
    ingresses = {r.name: r.inputs for r in of_kind(resources, "Ingress")}

    def backend(ing: dict[str, Any]) -> str:
        [rule] = ing["spec"]["rules"]
        [path] = rule["http"]["paths"]
        return _service_version(spec, path["backend"]["service"]["name"])

    main = ingresses.pop(spec.name)
    if not ingresses:
        return {backend(main): 100}
    [canary] = ingresses.values()
    w = int(canary["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"])
    return {backend(main): 100 - w, backend(canary): w}


@pytest.mark.parametrize(("gw", "kw", "traffic"), CASES)
def test_weights_sum_to_100_and_match_the_traffic_state(
    gw: str, kw: dict[str, Any], traffic: TrafficState | None
) -> None:
    spec = make_spec(gw, **kw)
    weights = _weights(spec, render(spec, traffic))
    assert sum(weights.values()) == 100
    expected = _traffic(spec, traffic).weights()
    if gw == "service":  # one selector: the canary at 0% is in no routing resource at all
        expected = {v: w for v, w in expected.items() if w}
    assert weights == expected


@pytest.mark.parametrize("gw", ["istio", "gateway-api"])
@pytest.mark.parametrize("weight", [0, 1, 50, 99])
def test_a_promoted_weight_is_what_the_routing_carries(gw: str, weight: int) -> None:
    spec = make_spec(gw, versions=3)
    state = TrafficState("v1", "v3", weight)
    assert _weights(spec, render(spec, state)) == {"v1": 100 - weight, "v3": weight}


def _istio_pins(resources: list[RenderedResource]) -> list[tuple[str | None, str]]:
    [vs] = of_kind(resources, "VirtualService")
    out = []
    for route in vs.inputs["spec"]["http"]:
        exact, prefix = route["match"]  # by segment: /fraud, or /fraud/ and what follows
        assert (exact["uri"], prefix["uri"]) == ({"exact": "/fraud"}, {"prefix": "/fraud/"})
        [header] = {
            m.get("headers", {}).get("x-model-version", {}).get("exact") for m in route["match"]
        }
        out.append((header, ",".join(d["destination"]["subset"] for d in route["route"])))
    return out


def _httproute_pins(resources: list[RenderedResource]) -> list[tuple[str | None, str]]:
    [route] = of_kind(resources, "HTTPRoute")
    out = []
    for rule in route.inputs["spec"]["rules"]:
        [match] = rule["matches"]
        assert match["path"] == {"type": "PathPrefix", "value": "/fraud"}
        headers = match.get("headers", [])
        header = None
        if headers:
            [h] = headers
            assert (h["type"], h["name"]) == ("Exact", "x-model-version")
            header = h["value"]
        out.append((header, ",".join(b["name"].rsplit("-", 1)[1] for b in rule["backendRefs"])))
    return out


@pytest.mark.parametrize(("gw", "pins"), [("istio", _istio_pins), ("gateway-api", _httproute_pins)])
def test_pinned_routes_one_per_version_come_before_the_weighted_one(gw: str, pins: Any) -> None:
    spec = make_spec(gw, versions=3)
    state = TrafficState("v2", "v3", 40, previous="v1")
    assert pins(render(spec, state)) == [
        ("v1", "v1"),
        ("v2", "v2"),
        ("v3", "v3"),
        (None, "v2,v3"),
    ]


@pytest.mark.parametrize(("gw", "pins"), [("istio", _istio_pins), ("gateway-api", _httproute_pins)])
def test_without_a_version_header_there_is_only_the_weighted_route(gw: str, pins: Any) -> None:
    assert pins(render(make_spec(gw, header=None))) == [(None, "v1,v2")]


def test_istio_matches_the_version_header_in_lowercase() -> None:
    resources = render(make_spec("istio", header="X-Model-Version"))
    assert _istio_pins(resources)[0] == ("v1", "v1")


# --- istio -----------------------------------------------------------------------------------


def test_istio_destination_rule_has_a_subset_per_version_on_the_all_versions_service() -> None:
    resources = render(make_spec("istio", versions=3))
    [dr] = of_kind(resources, "DestinationRule")
    assert dr.inputs["spec"] == {
        "host": "fraud-detector.ml.svc.cluster.local",
        "subsets": [
            {"name": f"v{i}", "labels": {"app.kubernetes.io/version": f"v{i}"}} for i in (1, 2, 3)
        ],
    }
    [host_service] = [r for r in of_kind(resources, "Service") if r.name == "fraud-detector"]
    assert host_service.inputs["spec"]["selector"] == {"app.kubernetes.io/name": "fraud-detector"}
    [vs] = of_kind(resources, "VirtualService")
    for route in vs.inputs["spec"]["http"]:
        for d in route["route"]:
            assert d["destination"]["host"] == dr.inputs["spec"]["host"]


def test_istio_virtual_service_binds_the_named_gateways_and_the_mesh() -> None:
    [vs] = of_kind(render(make_spec("istio")), "VirtualService")
    assert vs.inputs["spec"]["hosts"] == [
        "models.example.com",
        "fraud-detector.ml.svc.cluster.local",
    ]
    assert vs.inputs["spec"]["gateways"] == ["istio-system/public", "mesh"]


def test_istio_without_gateways_leaves_the_mesh_default() -> None:
    [vs] = of_kind(render(make_spec("istio", istio_gateways=())), "VirtualService")
    assert "gateways" not in vs.inputs["spec"]


# --- gateway-api -----------------------------------------------------------------------------


def test_httproute_has_parent_refs_hostname_and_backend_refs_on_port_80() -> None:
    [route] = of_kind(render(make_spec("gateway-api", weight=0)), "HTTPRoute")
    spec = route.inputs["spec"]
    assert spec["parentRefs"] == [{"name": "public", "namespace": "infra", "sectionName": "https"}]
    assert spec["hostnames"] == ["models.example.com"]
    # The canary stays listed at weight 0, so a promotion changes one number.
    assert spec["rules"][-1]["backendRefs"] == [
        {"name": "fraud-detector-v1", "port": 80, "weight": 100},
        {"name": "fraud-detector-v2", "port": 80, "weight": 0},
    ]


def test_gateway_api_check_rejects_a_parent_listed_twice_without_distinct_sections() -> None:
    doc = spec_dict("gateway-api")
    doc["gateway"]["gatewayApi"]["parentRefs"] = [
        {"name": "public", "namespace": "infra"},
        {"name": "public", "namespace": "infra", "sectionName": "https"},
        {"name": "other"},
        {"name": "other", "namespace": "ml", "sectionName": "a"},
        {"name": "other", "sectionName": "a"},
    ]
    assert gateway_api.check(Spec.from_dict(doc)) == [
        (
            "gateway.gatewayApi.parentRefs",
            "parent infra/public is listed 2 times: each needs its own, distinct sectionName",
        ),
        (
            "gateway.gatewayApi.parentRefs",
            "parent ml/other is listed 3 times: each needs its own, distinct sectionName",
        ),
    ]


def test_gateway_api_check_accepts_distinct_section_names_of_one_parent() -> None:
    doc = spec_dict("gateway-api")
    doc["gateway"]["gatewayApi"]["parentRefs"] = [
        {"name": "public", "sectionName": "http"},
        {"name": "public", "sectionName": "https"},
    ]
    assert gateway_api.check(Spec.from_dict(doc)) == []


# --- ingress-nginx ---------------------------------------------------------------------------


def _rule(ing: RenderedResource) -> tuple[str, str, str, str]:
    [rule] = ing.inputs["spec"]["rules"]
    [path] = rule["http"]["paths"]
    return rule["host"], path["path"], path["pathType"], ing.inputs["spec"]["ingressClassName"]


def test_ingress_canary_shares_host_path_and_class_with_its_main_ingress() -> None:
    resources = render(make_spec("ingress-nginx", weight=15))
    main, canary = of_kind(resources, "Ingress")
    assert main.name == "fraud-detector"
    assert canary.name == "fraud-detector-canary"
    assert (
        _rule(main) == _rule(canary) == ("models.example.com", "/fraud", "Prefix", "nginx-public")
    )
    assert "annotations" not in main.inputs["metadata"]
    assert canary.inputs["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/canary": "true",
        "nginx.ingress.kubernetes.io/canary-weight": "15",
        "nginx.ingress.kubernetes.io/canary-by-header": "x-model-version",
        "nginx.ingress.kubernetes.io/canary-by-header-value": "v2",
    }


def test_ingress_canary_without_version_header_has_no_header_annotations() -> None:
    [_, canary] = of_kind(render(make_spec("ingress-nginx", header=None, weight=0)), "Ingress")
    assert canary.inputs["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/canary": "true",
        "nginx.ingress.kubernetes.io/canary-weight": "0",
    }


def test_ingress_without_canary_is_only_the_main_ingress() -> None:
    [main] = of_kind(render(make_spec("ingress-nginx", canary=False)), "Ingress")
    assert main.name == "fraud-detector"


def test_ingress_previous_version_keeps_its_workload_but_gets_no_ingress() -> None:
    spec = make_spec("ingress-nginx", versions=3)
    resources = render(spec, TrafficState("v2", "v3", 5, previous="v1"))
    assert [r.name for r in of_kind(resources, "Deployment")] == [
        "fraud-detector-v1",
        "fraud-detector-v2",
        "fraud-detector-v3",
    ]
    backends = [
        i.inputs["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
        for i in of_kind(resources, "Ingress")
    ]
    assert backends == ["fraud-detector-v2", "fraud-detector-v3"]


# --- dependencies and stack outputs ----------------------------------------------------------


def _routed_versions(spec: Spec, r: RenderedResource) -> set[str]:
    k = kind(r)
    if k == "Service":  # the service gateway's Service <name>
        return {r.inputs["spec"]["selector"]["app.kubernetes.io/version"]}
    if k == "Ingress":
        svc = r.inputs["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
        target = (r.inputs["metadata"].get("annotations") or {}).get(
            "nginx.ingress.kubernetes.io/mirror-target"
        )
        mirrored = {target.split("//")[1].split(".")[0]} if target else set()
        return {_service_version(spec, s) for s in {svc, *mirrored}}
    if k == "HTTPRoute":
        return {
            _service_version(spec, b["name"])
            for rule in r.inputs["spec"]["rules"]
            for b in [
                *rule["backendRefs"],
                *(
                    f["requestMirror"]["backendRef"]
                    for f in rule.get("filters", [])
                    if f["type"] == "RequestMirror"
                ),
            ]
        }
    if k == "VirtualService":
        return {
            d["subset"]
            for h in r.inputs["spec"]["http"]
            for d in [
                *(x["destination"] for x in h["route"]),
                *([h["mirror"]] if "mirror" in h else []),
            ]
        }
    assert k == "DestinationRule"
    return {s["name"] for s in r.inputs["spec"]["subsets"]}


@pytest.mark.parametrize(("gw", "kw", "traffic"), CASES)
def test_routing_resources_depend_on_the_workloads_they_route_to(
    gw: str, kw: dict[str, Any], traffic: TrafficState | None
) -> None:
    spec = make_spec(gw, **kw)
    resources, monitor = render_recorded(spec, traffic)
    workloads = {spec.object_name(v) for v in spec.version_names}
    # Istio's Service <name> spans every version for the DestinationRule; it routes nothing.
    routing = [
        r
        for r in resources
        if r.name not in workloads and not (gw == "istio" and kind(r) == "Service")
    ]
    assert routing
    for r in routing:
        deps = monitor.dependencies[(r.type, r.name)]
        versions = _routed_versions(spec, r)
        assert versions
        for v in versions:
            name = f"{spec.name}-{v}"
            assert ("kubernetes:apps/v1:Deployment", name) in deps, (r.name, v)
            assert ("kubernetes:core/v1:Service", name) in deps, (r.name, v)


def test_ingress_canary_also_depends_on_the_main_ingress() -> None:
    resources, monitor = render_recorded(make_spec("ingress-nginx"))
    [_, canary] = of_kind(resources, "Ingress")
    deps = monitor.dependencies[(canary.type, canary.name)]
    assert ("kubernetes:networking.k8s.io/v1:Ingress", "fraud-detector") in deps


def test_istio_virtual_service_depends_on_the_destination_rule() -> None:
    resources, monitor = render_recorded(make_spec("istio"))
    [vs] = of_kind(resources, "VirtualService")
    deps = monitor.dependencies[(vs.type, vs.name)]
    assert ("kubernetes:networking.istio.io/v1:DestinationRule", "fraud-detector") in deps
    assert ("kubernetes:core/v1:Service", "fraud-detector") in deps


@pytest.mark.parametrize(
    ("gw", "routing"),
    [
        ("istio", ["DestinationRule", "VirtualService"]),
        ("gateway-api", ["HTTPRoute"]),
        ("ingress-nginx", ["Ingress", "Ingress"]),
    ],
)
def test_stack_outputs_are_endpoint_traffic_weights_versions_and_routing_urns(
    gw: str, routing: list[str]
) -> None:
    spec = make_spec(gw, versions=3)
    state = TrafficState("v2", "v3", 20, previous="v1")
    _, monitor = render_recorded(spec, state)
    out = monitor.outputs
    assert out["endpoint"] == "http://models.example.com/fraud"
    assert out["traffic"] == {
        "stable": "v2",
        "canary": "v3",
        "weight": 20,
        "previous": "v1",
        "mirror": None,
    }
    assert out["weights"] == {"v2": 80, "v3": 20}
    assert out["versions"] == ["v1", "v2", "v3"]
    assert all(u.startswith("urn:pulumi:dev::fraud-detector::") for u in out["routing"])
    keys = [urn_key(u) for u in out["routing"]]
    assert [t.rsplit(":", 1)[-1] for t, _ in keys] == routing
    assert {n for _, n in keys} <= {"fraud-detector", "fraud-detector-canary"}
    assert set(out) == {"endpoint", "traffic", "weights", "versions", "routing"}


# --- mirrors: the served route unchanged, the copy on the weighted route only ---------------


def test_istio_mirrors_on_the_weighted_route_only_with_a_percentage() -> None:
    spec = make_spec("istio", versions=3)
    plain = TrafficState("v1", "v2", 30)
    [before] = of_kind(render(spec, plain), "VirtualService")
    [after] = of_kind(
        render(spec, TrafficState("v1", "v2", 30, mirror=Mirror("v3", 20))), "VirtualService"
    )
    *pins, weighted = after.inputs["spec"]["http"]
    assert all("mirror" not in p for p in pins)  # a pinned request is not copied
    assert weighted["mirror"] == {
        "host": "fraud-detector.ml.svc.cluster.local",
        "subset": "v3",
    }
    assert weighted["mirrorPercentage"] == {"value": 20.0}
    del weighted["mirror"], weighted["mirrorPercentage"]
    assert after.inputs == before.inputs  # nothing else changed


def test_gateway_api_mirrors_after_the_rewrite_with_percent_below_100_only() -> None:
    spec = make_spec("gateway-api", versions=2, strip_path=True)
    [route] = of_kind(
        render(spec, TrafficState("v1", "v2", 0, mirror=Mirror("v2", 20))), "HTTPRoute"
    )
    *pins, weighted = route.inputs["spec"]["rules"]
    assert all(f["type"] != "RequestMirror" for p in pins for f in p.get("filters", []))
    assert weighted["filters"] == [
        {
            "type": "URLRewrite",
            "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
        },
        {
            "type": "RequestMirror",
            "requestMirror": {
                "backendRef": {"name": "fraud-detector-v2", "port": 80},
                "percent": 20,
            },
        },
    ]
    [route] = of_kind(render(spec, TrafficState("v1", "v2", 0, mirror=Mirror("v2"))), "HTTPRoute")
    assert route.inputs["spec"]["rules"][-1]["filters"][-1] == {
        "type": "RequestMirror",
        "requestMirror": {"backendRef": {"name": "fraud-detector-v2", "port": 80}},
    }


def test_ingress_nginx_mirrors_on_the_main_ingress_to_the_original_uri() -> None:
    spec = make_spec("ingress-nginx", versions=2, strip_path=False)
    main, canary = of_kind(
        render(spec, TrafficState("v1", "v2", 0, mirror=Mirror("v2"))), "Ingress"
    )
    assert main.inputs["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/mirror-target": (
            "http://fraud-detector-v2.ml.svc.cluster.local:80$request_uri"
        )
    }
    assert not any("mirror" in a for a in canary.inputs["metadata"]["annotations"])


def test_traffic_naming_a_version_without_a_workload_is_refused() -> None:
    spec = make_spec("gateway-api", versions=2)
    with pytest.raises(ValueError, match="traffic names versions without a workload: v9"):
        render(spec, TrafficState("v1", "v9", 10))


def test_workload_dns_name_is_the_cluster_local_service_name() -> None:
    spec = make_spec("istio")
    assert workloads.dns_name(spec, "fraud-detector-v1") == "fraud-detector-v1.ml.svc.cluster.local"
    assert workloads.endpoint(spec) == "http://models.example.com/fraud"


# --- gateway-api: the deploy waits for every parent to accept the route -----------------------


def _split_on_value(raw: str) -> list[str]:
    """pulumi-kubernetes provider/pkg/jsonpath/jsonpath.go splitOnValue: split on '=' outside
    braces and string literals."""
    parts, element, depth, quote = [], "", 0, ""
    i = 0
    while i < len(raw):
        c = raw[i]
        if quote:
            if c == "\\" and i < len(raw) - 1:
                element += c + raw[i + 1]
                i += 2
                continue
            if c == quote:
                quote = ""
        elif depth > 0 and c in "'\"":
            quote = c
        elif c == "{":
            depth += 1
        elif c == "}":
            depth = max(depth - 1, 0)
        elif c == "=" and depth == 0:
            parts.append(element)
            element = ""
            i += 1
            continue
        element += c
        i += 1
    return [*parts, element]


def _ready(annotations: dict[str, str], route: dict[str, Any]) -> tuple[bool, list[str]]:
    """pulumi-kubernetes provider/pkg/metadata/annotations.go ReadyCondition with the JSONPath
    conditions of provider/pkg/await/condition/jsonpath.go: a JSON list of `jsonpath=` expressions,
    all of which must match; a path compares its first selected value. The JSONPath itself is
    RFC 9535 (the provider uses github.com/theory/jsonpath), evaluated here by jsonpath_rfc9535."""
    import jsonpath_rfc9535

    found = []
    ready = True
    for expr in json.loads(annotations["pulumi.com/waitFor"]):
        assert expr.startswith("jsonpath=")
        path, value = _split_on_value(expr.removeprefix("jsonpath="))
        assert path.startswith("{") and path.endswith("}") and value
        values = jsonpath_rfc9535.find("$" + path[1:-1], route).values()
        found.append(str(values[0]) if values else "selected nothing")
        ready = ready and bool(values) and str(values[0]) == value
    return ready, found


def _parent_status(ref: dict[str, str], reason: str) -> dict[str, Any]:
    status = "True" if reason == "Accepted" else "False"
    return {
        "parentRef": ref,
        "controllerName": "example.com/gateway",
        "conditions": [
            {"type": "Accepted", "status": status, "reason": reason},
            {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs"},
        ],
    }


def test_httproute_deploy_waits_until_each_parent_accepts_it_and_shows_the_refusal() -> None:
    doc = spec_dict("gateway-api")
    refs = [{"name": "public", "namespace": "infra", "sectionName": "https"}, {"name": "internal"}]
    doc["gateway"]["gatewayApi"]["parentRefs"] = refs
    [route] = of_kind(render(Spec.from_dict(doc)), "HTTPRoute")
    annotations = route.inputs["metadata"]["annotations"]
    assert annotations["pulumi.com/timeoutSeconds"] == "120"

    def status(*reasons: str) -> dict[str, Any]:
        parents = [_parent_status(r, why) for r, why in zip(refs, reasons, strict=False)]
        return {**route.inputs, "status": {"parents": parents}}

    assert _ready(annotations, status("Accepted", "Accepted")) == (True, ["Accepted"] * 2)
    assert _ready(annotations, status("Accepted", "NotAllowedByListeners")) == (
        False,
        ["Accepted", "NotAllowedByListeners"],
    )
    assert _ready(annotations, status("Accepted")) == (False, ["Accepted", "selected nothing"])
    assert _ready(annotations, {**route.inputs}) == (False, ["selected nothing"] * 2)
