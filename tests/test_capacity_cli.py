"""Capacity that follows traffic at the CLI, through the REAL pulumi.automation code and the
stand-in CLI (tests/fake_pulumi): which resources each promote, rollback and deploy targets, the
order their steps run in, what the stack records, and what status and plan say.

The stand-in runs steps in the order the program registers resources, and a resource with
`depends_on` registers only once its dependencies' steps are done, as the Python SDK and the
engine do: so the order of the step events below is the order capacity and routing changed. It
does not run pods: the Ready counts are its imitation of what pulumi-kubernetes records after its
await (providers.py `_deployment_live`). tests/test_real_capacity.py checks the same walk against
a real API server, controller manager and kwok.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlserve import live as live_module
from tests.fake_pulumi import fixture
from tests.fake_pulumi.fixture import Fake
from tests.helpers import run_cli as mlserve
from tests.test_promote_rollback import ROUTES, resources, up_targets

fake = fixture.fake
PROJECT = ("--project", "fraud-detector")
DEPLOYMENT = "urn:pulumi:dev::fraud-detector::kubernetes:apps/v1:Deployment::fraud-detector-"
SPEC = """\
apiVersion: mlserve/v1
name: fraud-detector
namespace: ml
gateway:
  type: istio
  host: fraud.models.example.com
  path: /fraud
  istio: {gateways: [istio-system/public]}
versions:
  - {name: v1, image: "ghcr.io/acme/fraud:1.4.2", replicas: 4}
  - {name: v2, image: "ghcr.io/acme/fraud:1.5.0", replicas: 2}
traffic: {stable: v1, canary: v2, weight: 10, canaryReplicas: proportional, previousReplicas: 0}
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    return path


def ok(*args: str) -> str:
    result = mlserve(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def steps(output: str) -> list[str]:
    """The `updated` step lines of a command's progress, as `Kind name`."""
    return [
        " ".join(line.split()[2:4])
        for line in output.splitlines()
        if line.startswith("  ~ update") and " updated" in line
    ]


def replicas(fake: Fake) -> dict[str, Any]:
    """Each Deployment's spec.replicas as the stack's state records it."""
    return {
        r["urn"].rsplit("-", 1)[1]: r["outputs"]["spec"].get("replicas")
        for r in resources(fake)
        if r["type"] == "kubernetes:apps/v1:Deployment"
    }


def dependencies(fake: Fake, version: str) -> list[str]:
    [dep] = [r for r in resources(fake) if r["urn"] == DEPLOYMENT + version]
    return list(dep.get("dependencies") or [])


def test_a_canary_rises_before_its_weight_and_falls_after_it(fake: Fake, spec: Path) -> None:
    fake.deployed(spec)
    assert replicas(fake) == {"v1": 4, "v2": 1}  # 10% of 4: one replica

    up = ok("promote", "--weight", "50", *PROJECT)
    assert steps(up) == ["Deployment fraud-detector-v2", "VirtualService fraud-detector"]
    assert (
        "Promoted: revision 2 of stack 'dev' of project 'fraud-detector', routing and the "
        "replicas of v2 (3 resources targeted): 2 updated, 1 unchanged; 4 others not touched\n"
        in up
    )
    assert up.endswith("  replicas: v2 1 -> 2, Ready before the traffic moved\n")
    assert replicas(fake) == {"v1": 4, "v2": 2}

    down = ok("promote", "--weight", "10", *PROJECT)
    assert steps(down) == ["VirtualService fraud-detector", "Deployment fraud-detector-v2"]
    assert down.endswith("  replicas: v2 2 -> 1, scaled down after the traffic moved\n")
    # The scale-down waited on the routing: the state records it.
    assert sorted(dependencies(fake, "v2")) == ROUTES

    # 20% of 4 is still one replica: the routing alone changes. The Deployment is targeted all
    # the same, because its recorded dependencies point at the routing (see the next test).
    same = ok("promote", "--weight", "20", *PROJECT)
    assert steps(same) == ["VirtualService fraud-detector"]
    assert "routing only (3 resources targeted): 1 updated, 2 unchanged;" in same
    assert "replicas:" not in same
    assert dependencies(fake, "v2") == []  # registered anew, without them
    assert up_targets(fake) == [[*ROUTES, DEPLOYMENT + "v2"]] * 3

    # A fourth promote, with nothing recorded against the routing, targets the routing alone.
    ok("promote", "--weight", "25", *PROJECT)
    assert up_targets(fake)[-1] == ROUTES


def test_without_targeting_a_deployment_that_waited_on_the_routing_the_update_fails(
    fake: Fake, spec: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why capacity_targets adds a Deployment whose recorded dependencies name the routing:
    untargeted, the engine steps the routing it depends on first, and the routing's own
    registration is then a duplicate URN (step_generator.go; the stand-in imitates it)."""
    fake.deployed(spec)
    ok("promote", "--weight", "50", *PROJECT)
    ok("promote", "--weight", "10", *PROJECT)

    def only_changed(
        eng: Any, live: Any, routing: list[str], changed: frozenset[str], late: frozenset[str]
    ) -> list[str]:
        return [DEPLOYMENT + v for v in sorted(changed)]

    monkeypatch.setattr(live_module, "capacity_targets", only_changed)
    result = mlserve("promote", "--weight", "20", *PROJECT)
    assert result.returncode == 5
    # Which URN comes out a duplicate depends on the order the SDK registers them in: the
    # routing, or another Deployment the routing's recorded dependencies name.
    assert "error: the update failed: " in result.stderr
    assert "Duplicate resource URN 'urn:pulumi:dev::fraud-detector::" in result.stderr


def test_a_rollback_moves_traffic_first_and_scales_the_canary_down_after(
    fake: Fake, spec: Path
) -> None:
    fake.deployed(spec)
    ok("promote", "--weight", "60", *PROJECT)  # ceil(2.4): 3 replicas
    back = ok("rollback", *PROJECT)
    assert steps(back) == ["VirtualService fraud-detector", "Deployment fraud-detector-v2"]
    assert back.endswith("  replicas: v2 3 -> 1, scaled down after the traffic moved\n")
    document = json.loads(ok("status", *PROJECT, "--json"))
    rows = [(r["version"], r["weight"], r["replicas"], r["ready"]) for r in document["replicas"]]
    assert rows == [("v1", 100, 4, 4), ("v2", 0, 1, 1)]


def test_a_completed_promotion_keeps_the_old_stable_at_zero_and_a_rollback_wakes_it_first(
    fake: Fake, spec: Path
) -> None:
    fake.deployed(spec)
    done = ok("promote", "--complete", *PROJECT)
    # v2 to its own 2 replicas before the switch, v1 to 0 after it.
    assert steps(done) == [
        "Deployment fraud-detector-v2",
        "VirtualService fraud-detector",
        "Deployment fraud-detector-v1",
    ]
    assert done.endswith(
        "  replicas: v1 4 -> 0, scaled down after the traffic moved\n"
        "  replicas: v2 1 -> 2, Ready before the traffic moved\n"
    )
    assert replicas(fake) == {"v1": 0, "v2": 2}
    status = ok("status", *PROJECT)
    assert (
        "VERSION  ROLE      WEIGHT  REPLICAS  READY  AUTOSCALER\n"
        "v1       previous  -       0         0      -\n"
        "v2       stable    100%    2         2      -\n"
    ) in status

    back = ok("rollback", *PROJECT)
    assert steps(back) == ["Deployment fraud-detector-v1", "VirtualService fraud-detector"]
    assert back.endswith("  replicas: v1 0 -> 4, Ready before the traffic moved\n")
    assert replicas(fake) == {"v1": 4, "v2": 2}


def test_plan_says_a_rollback_to_a_previous_stable_at_zero_is_not_instant(
    fake: Fake, spec: Path
) -> None:
    fake.deployed(spec)
    ok("promote", "--complete", *PROJECT)
    planned = mlserve("plan", str(spec))
    assert planned.returncode == 0, planned.stderr
    assert (
        "warning: v1, the previous stable, keeps no pods (traffic.previousReplicas): "
        "`mlserve rollback` to it scales it back and moves traffic only once its pods are "
        "Ready, so it is not instant: it waits for the model to start, and with pods that start "
        "at once it took 0.6 s more than one to a stable that kept its pods (measured on a real "
        "API server)\n"
    ) in planned.stdout + planned.stderr


def test_a_deploy_that_lowers_the_weight_scales_down_after_the_routing(
    fake: Fake, spec: Path
) -> None:
    fake.deployed(spec)
    ok("promote", "--weight", "80", *PROJECT)
    deployed = ok("deploy", str(spec), "--reset-traffic", "--yes")
    assert "  replicas: v2 4 -> 1, scaled down after the traffic moves\n" in deployed
    assert steps(deployed) == ["VirtualService fraud-detector", "Deployment fraud-detector-v2"]
    assert replicas(fake) == {"v1": 4, "v2": 1}
    document = json.loads(ok("plan", str(spec), "--json"))
    assert document["capacity"] == []


def test_json_reports_carry_the_capacity_changes(fake: Fake, spec: Path) -> None:
    fake.deployed(spec)
    document = json.loads(ok("promote", "--weight", "50", *PROJECT, "--json"))
    assert document["capacity"] == [
        {
            "version": "v2",
            "before": {"replicas": 1, "autoscaler": None, "floor": 1, "why": "proportional"},
            "after": {"replicas": 2, "autoscaler": None, "floor": 2, "why": "proportional"},
            "when": "before",
        }
    ]
    assert sorted(document["targets"]) == sorted([*ROUTES, DEPLOYMENT + "v2"])


def test_each_rollout_step_sizes_the_canary_before_its_weight(fake: Fake, tmp_path: Path) -> None:
    """A rollout without analysis: each step is a routing update made as promote makes it."""
    path = tmp_path / "rollout.yaml"
    path.write_text(
        SPEC + "rollout:\n  steps: [{weight: 30, pause: 1s}, {weight: 60, pause: 1s}]\n"
    )
    fake.deployed(path)
    out = ok("rollout", *PROJECT)
    assert [line for line in out.splitlines() if line.startswith("  replicas:")] == [
        "  replicas: v2 1 -> 2, Ready before the traffic moved",  # ceil(1.2)
        "  replicas: v2 2 -> 3, Ready before the traffic moved",  # ceil(2.4)
        # completed: v1 kept at 0 after the switch, v2 on its own 2 replicas after it too
        "  replicas: v1 4 -> 0, scaled down after the traffic moved",
        "  replicas: v2 3 -> 2, scaled down after the traffic moved",
    ]
    shown = steps(out)
    assert shown[:5] == [
        "Deployment fraud-detector-v2",
        "VirtualService fraud-detector",
        "Deployment fraud-detector-v2",
        "VirtualService fraud-detector",
        "VirtualService fraud-detector",
    ]
    # Both scale-downs wait on the route and not on each other: the engine may step them in
    # either order (two helpers saw v2 first under xdist).
    assert sorted(shown[5:]) == ["Deployment fraud-detector-v1", "Deployment fraud-detector-v2"]
    assert replicas(fake) == {"v1": 0, "v2": 2}


def test_status_reads_counts_from_the_state_and_caps_ready_at_the_desired_count() -> None:
    """A scale-down's await ends once Ready >= desired (provider/pkg/await/deployment.go), so the
    state can record pods that were still stopping: status shows what serves."""
    from mlserve.engine import StackState
    from mlserve.live import Record
    from mlserve.ops import running
    from mlserve.spec import Spec
    from mlserve.traffic import TrafficState
    from tests.k8s_helpers import spec_dict

    doc = spec_dict("istio", versions=2)
    doc["versions"][1].update(
        autoscale={"min": 2, "max": 6, "cpu": 50}, resources={"requests": {"cpu": "1"}}
    )
    doc["traffic"]["previousReplicas"] = 0
    spec = Spec.from_dict(doc)
    state = StackState(
        urns=frozenset(),
        outputs={},
        providers={},
        plugins=frozenset(),
        pending_creates=(),
        workloads={
            ("kubernetes:apps/v1:Deployment", "fraud-detector-v1"): {
                "spec": {"replicas": 0},
                "status": {"readyReplicas": 4, "replicas": 4},
            },
            ("kubernetes:apps/v1:Deployment", "fraud-detector-v2"): {
                "spec": {"replicas": 3.0},
                "status": {"replicas": 3},  # no readyReplicas: none Ready
            },
            ("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "fraud-detector-v2"): {
                "spec": {"minReplicas": 2, "maxReplicas": 6}
            },
        },
    )
    record = Record(3, "mlserve promote --complete", TrafficState("v2", previous="v1"), spec, {})
    rows = [
        (r.version, r.role, r.weight, r.desired, r.ready, r.autoscaler)
        for r in running(record, state)
    ]
    assert rows == [("v1", "previous", None, 0, 0, None), ("v2", "stable", 100, 3, 0, (2, 6))]


POOLS = """\
apiVersion: mlserve/v1
name: chat
namespace: llm
gateway:
  type: gateway-api
  host: llm.example.com
  gatewayApi:
    parentRefs: [{name: inference-gateway, namespace: infra}]
    inferencePool: {}
versions:
  - {name: v1, image: "vllm/vllm-openai:v0.11.0", port: 8000, replicas: 4}
  - {name: v2, image: "vllm/vllm-openai:v0.12.0", port: 8000, replicas: 4}
traffic: {stable: v1, canary: v2, weight: 10, canaryReplicas: proportional}
"""


def test_an_inference_pool_that_waited_on_a_canary_scaled_down_later_is_targeted_too(
    fake: Fake, tmp_path: Path
) -> None:
    """Each InferencePool waits on its version's Deployment. When the canary's Deployment is
    declared after the route (its capacity falls), its pool no longer does, and is targeted:
    left untargeted, its recorded dependency on that Deployment would be stepped first, and the
    Deployment's own registration then a duplicate URN (the stand-in imitates step_generator.go)."""
    path = tmp_path / "pools.yaml"
    path.write_text(POOLS)
    fake.deployed(path)
    pool = "urn:pulumi:dev::chat::kubernetes:inference.networking.k8s.io/v1:InferencePool::chat-v2"
    ok("promote", "--weight", "50", "--project", "chat")
    down = ok("promote", "--weight", "10", "--project", "chat")
    assert steps(down) == ["HTTPRoute chat", "Deployment chat-v2"]
    assert pool in up_targets(fake)[-1]  # type: ignore[operator]
    ok("promote", "--weight", "20", "--project", "chat")
