"""Capacity as the program declares it, under Pulumi's mocks: autoscalers that pass Kubernetes'
strict schema, Deployments that leave their count to them, and the dependencies that order a
change of replicas against the change of traffic (capacity before weight)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from unittest import mock

import pytest

from mlserve import capacity
from mlserve import render as render_module
from mlserve.backends import workloads
from mlserve.capacity import Scale
from mlserve.program import build_program
from mlserve.render import RenderedResource, render_program
from mlserve.spec import Spec
from mlserve.traffic import TrafficState
from tests.k8s_helpers import (
    K8S_GATEWAYS,
    RecordingMonitor,
    kind,
    of_kind,
    spec_dict,
    validate_manifest,
)

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
AUTO = {
    "autoscale": {"min": 2, "max": 12, "cpu": 70, "memory": 80},
    "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
}


def make(gateway: str = "istio", stable: Any = None, canary: Any = None, **traffic: Any) -> Spec:
    doc = spec_dict(gateway, versions=2, weight=10)
    doc["versions"][0]["replicas"] = 4
    for i, keys in ((0, stable), (1, canary)):
        if keys:
            doc["versions"][i].pop("replicas", None)
            doc["versions"][i].update(keys)
    doc["traffic"].update(traffic)
    return Spec.from_dict(doc)


class Recording(RecordingMonitor):
    """Also keeps each registration's ignoreChanges."""

    def __init__(self, mocks: Any) -> None:
        super().__init__(mocks)
        self.ignored: dict[tuple[str, str], list[str]] = {}

    def RegisterResource(self, request: Any) -> Any:
        self.ignored[(request.type, request.name)] = list(request.ignoreChanges)
        return super().RegisterResource(request)


def declared(
    spec: Spec, state: TrafficState, before: Mapping[str, Scale] | None = None
) -> tuple[list[RenderedResource], Recording]:
    monitors: list[Recording] = []

    def factory(mocks: Any) -> Recording:
        monitors.append(Recording(mocks))
        return monitors[-1]

    with mock.patch.object(render_module, "MockMonitor", factory):
        resources = render_program(build_program(spec, state, before), spec.name, "dev")
    return resources, monitors[0]


def one(resources: list[RenderedResource], type_: str, name: str) -> dict[str, Any]:
    [found] = [r.inputs for r in resources if (r.type, r.name) == (type_, name)]
    return found


# --- what is rendered ------------------------------------------------------------------------


@pytest.mark.parametrize("gateway", K8S_GATEWAYS)
def test_autoscalers_pass_kubernetes_strict_schema(gateway: str) -> None:
    spec = make(gateway, AUTO, AUTO, canaryReplicas="proportional", previousReplicas=0)
    for state in (TrafficState("v1", "v2", 50), TrafficState("v2", previous="v1")):
        resources, _ = declared(spec, state)
        hpas = of_kind(resources, "HorizontalPodAutoscaler")
        assert len(hpas) == 2
        for r in resources:
            if kind(r) in ("HorizontalPodAutoscaler", "Deployment", "Service"):
                validate_manifest(r.inputs)


def test_an_autoscaler_targets_its_versions_deployment_on_cpu_and_memory() -> None:
    resources, _ = declared(make(canary=AUTO), TrafficState("v1", "v2", 10))
    assert one(resources, HPA, "fraud-detector-v2") == {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": "fraud-detector-v2",
            "namespace": "ml",
            "labels": {
                "app.kubernetes.io/managed-by": "mlserve",
                "app.kubernetes.io/name": "fraud-detector",
                "app.kubernetes.io/version": "v2",
            },
        },
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": "fraud-detector-v2",
            },
            "minReplicas": 2,
            "maxReplicas": 12,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                },
                {
                    "type": "Resource",
                    "resource": {
                        "name": "memory",
                        "target": {"type": "Utilization", "averageUtilization": 80},
                    },
                },
            ],
        },
    }


def test_an_autoscaled_deployment_leaves_its_count_to_the_autoscaler_and_waits_for_its_min() -> (
    None
):
    resources, monitor = declared(make(canary=AUTO), TrafficState("v1", "v2", 10))
    dep = one(resources, DEPLOYMENT, "fraud-detector-v2")
    assert "replicas" not in dep["spec"]
    assert json.loads(dep["metadata"]["annotations"]["pulumi.com/waitFor"]) == [
        "jsonpath={.status.conditions[?@.type=='Progressing'].reason}=NewReplicaSetAvailable",
        "jsonpath={$[?@.readyReplicas > 1]}",
    ]
    assert dep["metadata"]["annotations"]["pulumi.com/patchForce"] == "true"
    assert monitor.ignored[(DEPLOYMENT, "fraud-detector-v2")] == ["spec.replicas"]
    # it is updated after its autoscaler, whose new min it waits for
    assert (HPA, "fraud-detector-v2") in monitor.dependencies[(DEPLOYMENT, "fraud-detector-v2")]
    fixed = one(resources, DEPLOYMENT, "fraud-detector-v1")
    assert fixed["spec"]["replicas"] == 4 and "annotations" not in fixed["metadata"]
    assert monitor.ignored[(DEPLOYMENT, "fraud-detector-v1")] == []


def test_the_wait_conditions_parse_as_the_provider_parses_them() -> None:
    """provider/pkg/jsonpath/jsonpath.go Parse: `jsonpath=` prefix, split on a single `=`
    (`==` kept), the path in braces; RFC 9535 syntax inside."""
    for expression in json.loads(workloads.ready_condition(3)):
        assert expression.startswith("jsonpath=")
        body = expression.removeprefix("jsonpath=").replace("==", "\0")
        parts = body.split("=")
        assert len(parts) <= 2
        path = parts[0].replace("\0", "==")
        assert path.startswith("{") and path.endswith("}") and path.count("{") == 1
    assert "> 2]" in workloads.ready_condition(3)


def test_a_previous_stable_held_at_zero_and_its_autoscaler() -> None:
    spec = make(stable=AUTO, previousReplicas=0)
    resources, monitor = declared(spec, TrafficState("v2", previous="v1"))
    dep = one(resources, DEPLOYMENT, "fraud-detector-v1")
    assert dep["spec"]["replicas"] == 0
    # Forced: the autoscaler controller owns spec.replicas once it has scaled the Deployment.
    assert dep["metadata"]["annotations"] == {"pulumi.com/patchForce": "true"}
    assert monitor.ignored[(DEPLOYMENT, "fraud-detector-v1")] == []
    assert one(resources, HPA, "fraud-detector-v1")["spec"]["minReplicas"] == 2


# --- the order of a change: capacity before weight -------------------------------------------


def routing(resources: list[RenderedResource]) -> set[tuple[str, str]]:
    return {(r.type, r.name) for r in resources if kind(r) in ("VirtualService", "DestinationRule")}


@pytest.mark.parametrize(
    ("weights", "late"),
    [((10, 50), False), ((50, 10), True), ((50, 0), True), ((10, 20), False)],
)
def test_a_rising_canary_is_ready_before_the_routing_and_a_falling_one_after(
    weights: tuple[int, int], late: bool
) -> None:
    spec = make(canaryReplicas="proportional")
    live, new = (TrafficState("v1", "v2", w) for w in weights)
    before = capacity.plan(spec, live)
    resources, monitor = declared(spec, new, before)
    canary = (DEPLOYMENT, "fraud-detector-v2")
    deps = monitor.dependencies
    for route in routing(resources):
        assert (canary in deps[route]) is not late, route
        assert (route in deps[canary]) is late
    # the stable's Deployment keeps its place: the routing waits for it
    for route in routing(resources):
        assert (DEPLOYMENT, "fraud-detector-v1") in deps[route]


def test_an_autoscaled_canary_falling_moves_its_autoscaler_after_the_routing_too() -> None:
    spec = make(canary=AUTO, canaryReplicas="proportional")
    resources, monitor = declared(
        spec, TrafficState("v1", "v2", 10), capacity.plan(spec, TrafficState("v1", "v2", 90))
    )
    for key in ((DEPLOYMENT, "fraud-detector-v2"), (HPA, "fraud-detector-v2")):
        assert routing(resources) <= monitor.dependencies[key]
    assert one(resources, HPA, "fraud-detector-v2")["spec"]["minReplicas"] == 1


def test_a_rollback_to_a_previous_stable_at_zero_wakes_it_before_the_routing() -> None:
    spec = make(stable=AUTO, previousReplicas=0)
    live = TrafficState("v2", previous="v1")
    resources, monitor = declared(spec, TrafficState("v1"), capacity.plan(spec, live))
    dep = one(resources, DEPLOYMENT, "fraud-detector-v1")
    # The autoscaler leaves a Deployment at 0 alone: the update sets its min itself, forced.
    assert dep["spec"]["replicas"] == 2
    assert dep["metadata"]["annotations"] == {"pulumi.com/patchForce": "true"}
    for route in routing(resources):
        assert (DEPLOYMENT, "fraud-detector-v1") in monitor.dependencies[route]


@pytest.mark.parametrize("gateway", ["istio", "gateway-api", "ingress-nginx", "kong-images"])
def test_a_routing_update_changes_nothing_but_routing_and_the_capacity_it_targets(
    gateway: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """test_routing_targets' property, with capacity following traffic: every resource a promote
    or rollback changes is a routing resource or the Deployment of a version whose replicas
    change (live.capacity_targets adds those)."""
    import dataclasses

    from tests.test_routing_targets import SPECS, Router, changed, live_states, transitions

    base_spec = SPECS[gateway]()
    versions = tuple(dataclasses.replace(v, replicas=4) for v in base_spec.versions)
    spec = dataclasses.replace(
        base_spec,
        versions=versions,
        traffic=dataclasses.replace(
            base_spec.traffic, canary_replicas="proportional", previous_replicas=0
        ),
    )
    router = Router(spec, monkeypatch)
    names = spec.version_names[:2] if gateway == "ingress-nginx" else spec.version_names[:3]
    failures, checked, scaled = [], 0, 0
    for live in live_states(names, (0, 30, 100)):
        if len(names) == 2 and live.previous is not None:
            continue
        before = router.declared(live)
        for what, new in transitions(live, (10, 60, 100)):
            checked += 1
            after = router.declared(new)
            plan = capacity.plan(spec, live)
            scales = capacity.changed(plan, capacity.settle(capacity.plan(spec, new), plan))
            allowed = before.routing | after.routing
            allowed |= {(DEPLOYMENT, spec.object_name(v)) for v in scales}
            scaled += bool(scales)
            outside = changed(before, after) - allowed
            if outside:
                failures.append(f"{live} --{what}--> {new}: changes {sorted(outside)}")
    assert checked >= 20 and scaled >= 10
    assert failures == []
