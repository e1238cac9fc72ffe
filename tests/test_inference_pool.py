"""gateway-api with `gatewayApi.inferencePool`: an InferencePool per image version, the HTTPRoute's
backendRefs naming the pools, the notes `validate` prints, and the checks of the picker's name.

Rendered under Pulumi's mocks; the objects are checked against GIE v1.6.0's and Gateway API
v1.6.1's strict schemas (test_backends_k8s.py), not yet against an API server's CEL rules."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlserve.backends import base, gateway_api, inference_pool
from mlserve.errors import SpecError
from mlserve.render import write
from mlserve.spec import Spec, load_spec
from mlserve.traffic import TrafficState, initial
from tests.k8s_helpers import of_kind, render_recorded, spec_dict, urn_key
from tests.render_memo import render

REPO = Path(__file__).resolve().parents[1]
LLM = REPO / "specs" / "llm-gateway-api.yaml"
PICKER = {"endpointPicker": {"name": "{{pool}}-picker", "port": 9003, "failureMode": "FailOpen"}}


def pool_spec(inference_pool: dict[str, Any] | None = None, **kw: Any) -> Spec:
    return Spec.from_dict(
        spec_dict(
            "gateway-api", inference_pool=PICKER if inference_pool is None else inference_pool, **kw
        )
    )


def by_name(resources: list[Any], kind: str) -> dict[str, dict[str, Any]]:
    return {r.inputs["metadata"]["name"]: r.inputs for r in of_kind(resources, kind)}


def test_each_image_version_gets_a_pool_named_as_its_service_selecting_exactly_its_pods() -> None:
    spec = pool_spec(versions=3, rich=True)
    resources = render(spec, TrafficState("v2", "v3", 25, previous="v1"))
    pools = by_name(resources, "InferencePool")
    services = by_name(resources, "Service")
    deployments = by_name(resources, "Deployment")
    assert (
        list(pools)
        == list(services)
        == ["fraud-detector-v1", "fraud-detector-v2", "fraud-detector-v3"]
    )
    for name, pool in pools.items():
        assert pool["apiVersion"] == "inference.networking.k8s.io/v1"
        assert pool["metadata"]["namespace"] == "ml"
        assert pool["metadata"]["labels"] == deployments[name]["metadata"]["labels"]
        selector = pool["spec"]["selector"]["matchLabels"]
        # The labels the version's Deployment selects its pods by, as its Service does.
        assert selector == deployments[name]["spec"]["selector"]["matchLabels"]
        assert selector == services[name]["spec"]["selector"]
        [container] = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert pool["spec"]["targetPorts"] == [{"number": container["ports"][0]["containerPort"]}]
    assert pools["fraud-detector-v2"]["spec"]["targetPorts"] == [{"number": 9002}]


def test_each_pool_calls_its_own_endpoint_picker() -> None:
    pools = by_name(render(pool_spec()), "InferencePool")
    assert pools["fraud-detector-v1"]["spec"]["endpointPickerRef"] == {
        "name": "fraud-detector-v1-picker",
        "port": {"number": 9003},
        "failureMode": "FailOpen",
    }
    assert pools["fraud-detector-v2"]["spec"]["endpointPickerRef"]["name"] == (
        "fraud-detector-v2-picker"
    )


def test_the_picker_defaults_are_the_upstream_charts() -> None:
    # GIE v1.5.0 config/charts: the picker is `<pool>-epp` on 9002; the CRD defaults FailClose.
    spec = pool_spec({"endpointPicker": {}})
    assert spec.gateway.gateway_api.inference_pool is not None
    ref = by_name(render(spec), "InferencePool")["fraud-detector-v1"]["spec"]["endpointPickerRef"]
    assert ref == {
        "name": "fraud-detector-v1-epp",
        "port": {"number": 9002},
        "failureMode": "FailClose",
    }


def test_without_a_picker_a_pool_has_no_endpoint_picker_ref_and_validate_says_what_follows() -> (
    None
):
    spec = pool_spec({})
    pools = by_name(render(spec), "InferencePool")
    assert all("endpointPickerRef" not in p["spec"] for p in pools.values())
    assert base.notes(spec, initial(spec)) == [
        (
            "gateway.gatewayApi.inferencePool",
            "the InferencePools get no endpointPickerRef (no endpointPicker given): a gateway "
            "that needs one, as most do, may leave them Accepted=False with reason "
            "EndpointPickerRefMissing and route nothing to them",
        )
    ]


def test_validate_says_the_pickers_are_not_mlserves_to_deploy() -> None:
    spec = load_spec(LLM)
    assert [str(n) for n in spec.notes] == [
        f"{LLM}:24:9: gateway.gatewayApi.inferencePool.endpointPicker: note: each version's "
        "InferencePool calls an endpoint picker of its own, which mlserve does not deploy: "
        "deploy one per pool, watching that pool (the Services chat-qwen3-8b-v1-epp and "
        "chat-qwen3-8b-v2-epp, port 9002)"
    ]


def test_the_route_splits_between_pools_and_pins_each_version_to_its_pool() -> None:
    spec = pool_spec(versions=3)
    [route] = of_kind(render(spec, TrafficState("v2", "v3", 25, previous="v1")), "HTTPRoute")
    *pins, weighted = route.inputs["spec"]["rules"]

    def pool(name: str, weight: int) -> dict[str, Any]:
        # No port: a pool's targetPorts say where (GIE conformance, "Port Unspecified").
        group = "inference.networking.k8s.io"
        return {"group": group, "kind": "InferencePool", "name": name, "weight": weight}

    assert weighted["backendRefs"] == [pool("fraud-detector-v2", 75), pool("fraud-detector-v3", 25)]
    assert [(p["matches"][0]["headers"][0]["value"], p["backendRefs"]) for p in pins] == [
        (v, [pool(f"fraud-detector-{v}", 1)]) for v in ("v1", "v2", "v3")
    ]


def test_a_canary_at_0_percent_is_weight_0_and_validate_advises_starting_at_1() -> None:
    spec = pool_spec(header=None, weight=0)
    [route] = of_kind(render(spec), "HTTPRoute")
    [weighted] = route.inputs["spec"]["rules"]
    assert [(r["name"], r["weight"]) for r in weighted["backendRefs"]] == [
        ("fraud-detector-v1", 100),
        ("fraud-detector-v2", 0),
    ]
    notes = dict(base.notes(spec, initial(spec)))
    assert notes["traffic.weight"] == (
        "v2 is at 0%: a gateway may leave a pool at weight 0 out of its configuration (Istio "
        "does) and add it only when the weight rises; KServe advises starting an LLM version at "
        "weight 1. Start at weight: 1, or set gateway.versionHeader, whose pin rules keep every "
        "pool configured"
    )
    # With a version header, the canary's pin rule names its pool: no advice.
    pinned = pool_spec(weight=0)
    assert "traffic.weight" not in dict(base.notes(pinned, initial(pinned)))
    # Without pools, the gateway-api gateway has nothing to note.
    plain = Spec.from_dict(spec_dict("gateway-api", header=None, weight=0))
    assert base.notes(plain, initial(plain)) == []


def test_pools_wait_for_their_workloads_and_the_route_for_the_pools() -> None:
    spec = pool_spec(versions=3)
    _, monitor = render_recorded(spec, TrafficState("v2", "v3", 25, previous="v1"))
    pool_type = "kubernetes:inference.networking.k8s.io/v1:InferencePool"
    for v in ("v1", "v2", "v3"):
        name = f"fraud-detector-{v}"
        assert monitor.dependencies[(pool_type, name)] == {
            ("kubernetes:apps/v1:Deployment", name),
            ("kubernetes:core/v1:Service", name),
        }
    route_deps = monitor.dependencies[
        ("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute", "fraud-detector")
    ]
    assert {(pool_type, f"fraud-detector-{v}") for v in ("v1", "v2", "v3")} <= route_deps
    # promote and rollback target the route alone: the pools do not change with the weights.
    assert [urn_key(u) for u in monitor.outputs["routing"]] == [
        ("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute", "fraud-detector")
    ]


def test_the_deploy_waits_until_each_gateway_has_resolved_the_pools() -> None:
    [route] = of_kind(render(pool_spec()), "HTTPRoute")
    # `&&` without blanks: the real provider's parser refuses a second blank-delimited one
    # (gateway_api.wait_for_accepted; tests/test_real_smoke.py deploys such a route).
    parent = '@.parentRef.name=="public"&&@.parentRef.namespace=="infra"&&'
    parent += '@.parentRef.sectionName=="https"'
    # a condition the Gateway wrote for this generation of the route (or without a generation)
    current = "(@.observedGeneration==$.metadata.generation||!@.observedGeneration)"
    assert json.loads(route.inputs["metadata"]["annotations"]["pulumi.com/waitFor"]) == [
        f'jsonpath={{.status.parents[?({parent})].conditions[?(@.type=="Accepted"&&{current})]'
        ".reason}=Accepted",
        f'jsonpath={{.status.parents[?({parent})].conditions[?(@.type=="ResolvedRefs"&&{current})]'
        ".reason}=ResolvedRefs",
    ]
    # Without pools, Accepted only, as before.
    plain = gateway_api.wait_for_accepted(Spec.from_dict(spec_dict("gateway-api")))
    assert len(json.loads(plain["pulumi.com/waitFor"])) == 1


def test_render_yaml_includes_the_pools_before_the_route() -> None:
    out = io.StringIO()
    write(render(load_spec(LLM)), "yaml", out)
    kinds = [(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(out.getvalue())]
    assert kinds == [
        ("Deployment", "chat-qwen3-8b-v1"),
        ("Service", "chat-qwen3-8b-v1"),
        ("Deployment", "chat-qwen3-8b-v2"),
        ("Service", "chat-qwen3-8b-v2"),
        ("InferencePool", "chat-qwen3-8b-v1"),
        ("InferencePool", "chat-qwen3-8b-v2"),
        ("HTTPRoute", "chat"),
    ]


# --- the picker's name --------------------------------------------------------------------------


def test_one_picker_for_every_pool_is_refused() -> None:
    spec = pool_spec({"endpointPicker": {"name": "vllm-epp"}})
    assert inference_pool.check(spec) == [
        (
            "gateway.gatewayApi.inferencePool.endpointPicker.name",
            "'vllm-epp' would be one endpoint picker for every version's pool, and an endpoint "
            "picker serves one InferencePool: put {{pool}} in the name (the default is "
            "{{pool}}-epp)",
        )
    ]


def test_a_picker_name_too_long_for_a_service_is_refused(tmp_path: Path) -> None:
    doc = spec_dict("gateway-api", name="m" * 40, version_prefix="release-2024-0")
    doc["gateway"]["gatewayApi"]["inferencePool"] = {"endpointPicker": {"name": "{{pool}}-pickers"}}
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(doc))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    pool = "m" * 40 + "-release-2024-01"
    assert [p.message for p in err.value.problems] == [
        f"for the pool {pool} it gives '{pool}-pickers', which is longer than 63 characters"
    ]


def test_a_picker_name_that_is_no_service_name_is_refused() -> None:
    spec = pool_spec({"endpointPicker": {"name": "{{pool}}-"}})
    assert inference_pool.check(spec) == [
        (
            "gateway.gatewayApi.inferencePool.endpointPicker.name",
            "for the pool fraud-detector-v1 it gives 'fraud-detector-v1-', which is not a valid "
            "Service name",
        )
    ]


def test_the_options_survive_the_stacks_record() -> None:
    spec = load_spec(LLM)
    again = Spec.from_dict(spec.to_dict(), source=spec.source)
    assert again == spec
    assert spec.to_dict()["gateway"]["gatewayApi"]["inferencePool"] == {
        "endpointPicker": {"name": "{{pool}}-epp", "port": 9002, "failureMode": "FailClose"}
    }
    without = pool_spec({})
    assert without.to_dict()["gateway"]["gatewayApi"]["inferencePool"] == {}
    assert Spec.from_dict(without.to_dict()) == without
