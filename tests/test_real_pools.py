"""InferencePools (issue 25) against the REAL stack (tests/realstack.py): specs/llm-gateway-api.yaml
deploys, promotes, rolls out with a real Prometheus and rolls back, as fresh processes, and after
each step the InferencePools and the HTTPRoute, read with kubectl and not through mlserve, are what
the API server accepted under the CRDs of Gateway API Inference Extension v1.6.0 and Gateway API
v1.6.3 (their schemas and CEL rules), with the weights the command reported.

No gateway, endpoint picker or vLLM runs: `Gateway` below writes the route's and the pools' status
as a Gateway that implements InferencePool backends would once it reconciled each generation
(Accepted and ResolvedRefs, with observedGeneration), which mlserve waits for. kwok makes the pods
Ready; the GPUs are allocatable on the stack's Node (scripts/realstack).
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.prometheus_fixture import AUTH, Prometheus
from tests.realstack import Real, missing_from
from tests.test_real_capacity import Watch
from tests.test_real_smoke import rendered

# `waits`: about a minute each, mostly the provider waiting on Deployments (tests/conftest.py).
pytestmark = [pytest.mark.real, pytest.mark.waits]

HTTPROUTES = "httproutes.gateway.networking.k8s.io"
POOLS = "inferencepools.inference.networking.k8s.io"
KINDS = {
    "kubernetes:apps/v1:Deployment": "deployments.apps",
    "kubernetes:core/v1:Service": "services",
    "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute": HTTPROUTES,
    "kubernetes:inference.networking.k8s.io/v1:InferencePool": POOLS,
}
ROUTE = "chat"
V1, V2 = "chat-qwen3-8b-v1", "chat-qwen3-8b-v2"
PARENT = {"group": "gateway.networking.k8s.io", "kind": "Gateway",
          "name": "inference-gateway", "namespace": "infra"}  # fmt: skip
CONTROLLER = "example.com/test-controller"


def condition(kind: str, generation: int) -> dict[str, Any]:
    # metav1.Condition; the reason of Accepted=True and ResolvedRefs=True is the type's name
    # (gateway-api apis/v1/shared_types.go; GIE api/v1/inferencepool_types.go).
    return {"type": kind, "status": "True", "reason": kind, "message": "by the test",
            "observedGeneration": generation,
            "lastTransitionTime": "2026-01-01T00:00:00Z"}  # fmt: skip


class Gateway:
    """What a Gateway implementing InferencePool backends writes: for each generation of the
    route, Accepted and then ResolvedRefs (httproute_types.go RouteParentStatus), and on each
    pool the route names, its own parent status (inferencepool_types.go ParentStatus). It
    answers a new generation `delay` seconds after it appears, as a controller's reconcile does,
    and resolves its backends `resolve` seconds later still."""

    def __init__(self, real: Real, delay: float = 0.5, resolve: float = 0) -> None:
        self.real, self.delay, self.resolve = real, delay, resolve
        self.resolved: dict[int, float] = {}  # route generation -> when ResolvedRefs was written
        self.pools: set[str] = set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _patch(self, kind: str, name: str, status: dict[str, Any]) -> None:
        self.real.stack.kubectl(
            "patch", kind, name, "-n", self.real.namespace, "--subresource=status",
            "--type=merge", "-p", json.dumps({"status": status}),
        )  # fmt: skip

    def _route_status(self, generation: int, *conditions: str) -> None:
        self._patch(HTTPROUTES, ROUTE, {"parents": [{
            "parentRef": PARENT, "controllerName": CONTROLLER,
            "conditions": [condition(c, generation) for c in conditions],
        }]})  # fmt: skip

    def _run(self) -> None:
        while not self._done.wait(0.2):
            if not self.real.stack.exists(HTTPROUTES, ROUTE, self.real.namespace):
                continue
            route = self.real.get(HTTPROUTES, ROUTE)
            generation = route["metadata"]["generation"]
            if generation in self.resolved:
                continue
            time.sleep(self.delay)
            if self.resolve:
                self._route_status(generation, "Accepted")
                time.sleep(self.resolve)
            self._route_status(generation, "Accepted", "ResolvedRefs")
            self.resolved[generation] = time.monotonic()
            for rule in route["spec"]["rules"]:
                for ref in rule["backendRefs"]:
                    if ref.get("kind") == "InferencePool" and ref["name"] not in self.pools:
                        pool = self.real.get(POOLS, ref["name"])["metadata"]["generation"]
                        self._patch(POOLS, ref["name"], {"parents": [{
                            "parentRef": PARENT, "controllerName": CONTROLLER,
                            "conditions": [condition(c, pool)
                                           for c in ("Accepted", "ResolvedRefs")],
                        }]})  # fmt: skip
                        self.pools.add(ref["name"])

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=30)


@pytest.fixture
def gateway(real: Real, request: pytest.FixtureRequest) -> Iterator[Gateway]:
    g = Gateway(real, resolve=getattr(request, "param", 0))
    yield g
    g.stop()


def pooled_spec(real: Real, **changes: Any) -> Path:
    """specs/llm-gateway-api.yaml in the test's namespace, with `changes` to its top level."""
    path = real.spec("llm-gateway-api.yaml")
    if changes:
        spec = yaml.safe_load(path.read_text())
        spec.update(changes)
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def weighted(route: dict[str, Any]) -> dict[str, int]:
    """The unpinned rule's split, by pool; every backendRef names an InferencePool."""
    *pins, rule = route["spec"]["rules"]
    for pin, pool in zip(pins, (V1, V2), strict=True):
        assert pin["backendRefs"] == [
            {
                "group": "inference.networking.k8s.io",
                "kind": "InferencePool",
                "name": pool,
                "weight": 1,
            }
        ]
    refs = rule["backendRefs"]
    assert {(r["group"], r["kind"]) for r in refs} == {
        ("inference.networking.k8s.io", "InferencePool")
    }
    assert all("port" not in r for r in refs)  # the pool's targetPorts say where
    return {r["name"]: r["weight"] for r in refs}


def split(report: dict[str, Any]) -> dict[str, int]:
    """The split a command's --json report says it left, by pool."""
    after = report.get("after", report)
    out = {f"chat-{after['stable']}": 100 - (after.get("weight") or 0)}
    if after.get("canary"):
        out[f"chat-{after['canary']}"] = after["weight"]
    return out


def command(real: Real, *args: str) -> Any:
    result = real.mlserve(*args, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("gateway", [2.0], indirect=True)
def test_pools_and_the_route_to_them_are_accepted_and_move_with_promote_and_rollback(
    real: Real, gateway: Gateway
) -> None:
    spec = str(pooled_spec(real))
    deployed = real.mlserve("deploy", spec, "--yes")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    # The API server accepted the pools and the route as rendered (its defaults aside): weight 0
    # for the canary at 0% included, and backendRefs to pools without a port.
    for r in rendered(real, spec):
        manifest = r["inputs"]
        live = real.get(KINDS[r["type"]], manifest["metadata"]["name"])
        for key in ("spec", "metadata"):
            assert missing_from(live[key], manifest[key], key) == [], (r["type"], key)
    for pool, version in ((V1, "qwen3-8b-v1"), (V2, "qwen3-8b-v2")):
        live = real.get(POOLS, pool)
        assert live["spec"] == {
            "selector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "chat",
                    "app.kubernetes.io/version": version,
                }
            },
            "targetPorts": [{"number": 8000}],
            "appProtocol": "http",  # the CRD's default (GIE v1.6 AppProtocol: http or http2)
            "endpointPickerRef": {
                "group": "",
                "kind": "Service",
                "name": f"{pool}-epp",
                "port": {"number": 9002},
                "failureMode": "FailClose",
            },
        }
        # the selector picks exactly the version's pods, which kwok made Ready
        selector = ",".join(f"{k}={v}" for k, v in live["spec"]["selector"]["matchLabels"].items())
        assert len(real.items("pods", selector)) == 2
        # and the Gateway's status for the pool passed the CRD's status schema
        assert live["status"]["parents"][0]["parentRef"]["name"] == "inference-gateway"
    assert weighted(real.get(HTTPROUTES, ROUTE)) == {V1: 100, V2: 0}
    # What the API server added (appProtocol) is no drift, and a new plan changes nothing.
    assert command(real, "status", "--project", "chat", "--refresh")["drift"] == {}
    plan = real.mlserve("plan", spec)
    assert plan.returncode == 0 and "  resources: 7 unchanged\n" in plan.stdout, plan.stdout
    doctor = real.mlserve("doctor", spec)
    assert doctor.returncode == 0, doctor.stdout
    assert re.search(
        r"(?m)^InferencePool CRD +ok +context 'realstack': \S+ serves "
        r"inferencepools\.inference\.networking\.k8s\.io/v1$",
        doctor.stdout,
    )

    for args, want in (
        (("promote", "--weight", "10"), {V1: 90, V2: 10}),
        (("promote", "--weight", "50", "--expect-weight", "10"), {V1: 50, V2: 50}),
        (("rollback",), {V1: 100, V2: 0}),
        (("promote", "--weight", "1"), {V1: 99, V2: 1}),
        (("promote", "--complete"), {V2: 100}),
        (("rollback", "--to", "3"), {V1: 90, V2: 10}),  # 2 is the refresh
    ):
        report = command(real, *args, "--project", "chat")
        ended = time.monotonic()
        route = real.get(HTTPROUTES, ROUTE)
        assert weighted(route) == want == split(report), args
        # each update waited until the Gateway had resolved the pools for the new generation,
        # not just accepted it: ResolvedRefs came 2 s after Accepted
        assert gateway.resolved[route["metadata"]["generation"]] < ended, args
    # the pools never changed with the weights: one generation each
    assert [real.get(POOLS, p)["metadata"]["generation"] for p in (V1, V2)] == [1, 1]

    history = command(real, "history", "--project", "chat")
    assert [(h["revision"], h["kind"], h["canary"], h["weight"]) for h in history] == [
        (8, "update", "qwen3-8b-v2", 10),
        (7, "update", None, 0),
        (6, "update", "qwen3-8b-v2", 1),
        (5, "update", "qwen3-8b-v2", 0),
        (4, "update", "qwen3-8b-v2", 50),
        (3, "update", "qwen3-8b-v2", 10),
        (2, "refresh", None, None),
        (1, "update", "qwen3-8b-v2", 0),
    ]


def test_a_rollout_between_pools_gated_by_vllm_metrics_completes_and_one_that_fails_aborts(
    real: Real, gateway: Gateway, prometheus: Prometheus
) -> None:
    """The example's own analysis (vLLM's time to first token and 5xx share) against the real
    Prometheus, scraping series named and labelled as vLLM exposes them, with short pauses."""
    real.extra_env.update(AUTH)
    path = pooled_spec(real)
    spec = yaml.safe_load(path.read_text())
    analysis = spec["rollout"]["analysis"]
    # failureLimit 0: the first failed measurement aborts, whichever step it falls in
    analysis.update(prometheus={"address": prometheus.url}, interval="1s", failureLimit=0)
    steps = [{"weight": 1, "pause": "2s"}, {"weight": 10, "pause": "2s"}]
    path = pooled_spec(real, rollout={"steps": steps, "complete": False, "analysis": analysis})
    m = prometheus.metrics  # the series of `chat`: no other test uses that name
    m.set_vllm("chat", "qwen3-8b-v2", requests=20, ttft=0.3)
    target = 'app_kubernetes_io_name="chat", app_kubernetes_io_version="qwen3-8b-v2"'
    prometheus.wait_for(f"rate(vllm:time_to_first_token_seconds_count{{{target}}}[5m]) > 0")
    deployed = real.mlserve("deploy", str(path), "--yes")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    def rollout() -> tuple[subprocess.CompletedProcess[str], list[dict[str, int]]]:
        """The rollout, and each split the route had while it ran, in order."""
        watch = Watch(real, HTTPROUTES)
        result = real.mlserve("rollout", str(path), "--yes", "--json")
        seen: list[dict[str, int]] = []
        for e in watch.stop():
            if e.type == "MODIFIED" and e.obj["metadata"]["name"] == ROUTE:
                now = weighted(e.obj)
                if not seen or seen[-1] != now:
                    seen.append(now)
        return result, seen

    result, seen = rollout()
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["status"] == "completed"
    assert seen == [{V1: 99, V2: 1}, {V1: 90, V2: 10}]

    # The canary turns slow: after a rollback, the next rollout aborts at its first step and
    # sends it back to 0%, in the API server.
    m.set_vllm("chat", "qwen3-8b-v2", requests=20, ttft=4)
    prometheus.wait_for(
        "histogram_quantile(0.95, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket"
        f"{{{target}}}[5m]))) > 2",
        timeout=60,
    )
    command(real, "rollback", "--project", "chat")
    aborted, seen = rollout()
    assert aborted.returncode == 7, aborted.stdout + aborted.stderr
    assert json.loads(aborted.stdout)["status"] == "aborted"
    assert seen == [{V1: 99, V2: 1}, {V1: 100, V2: 0}]
