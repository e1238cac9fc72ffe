"""Mirrors (issue 24) against the REAL stack (tests/realstack.py): `mlserve mirror` sets, changes
and ends a mirror on istio, gateway-api and ingress-nginx, as fresh processes, and after each
step the routing object, read with kubectl and not through mlserve, carries what the command
reported: the API server accepted it with the CRDs' schemas and CEL rules. A rollout with a
shadow step runs against the real Prometheus (tests/prometheus_fixture.py).

No data plane runs: what Istio, a Gateway or ingress-nginx would copy is computed from their
rules elsewhere (tests/gateway_models.py). A Gateway's `Accepted` and an Ingress's address are
written by the test, as their controllers would.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.prometheus_fixture import AUTH, Prometheus
from tests.realstack import Real
from tests.test_real_capacity import Watch

# `waits`: 30-60 s each, mostly the provider waiting on Deployments (tests/conftest.py).
pytestmark = [pytest.mark.real, pytest.mark.waits]

VS = "virtualservices.networking.istio.io"
HTTPROUTES = "httproutes.gateway.networking.k8s.io"
INGRESSES = "ingresses.networking.k8s.io"
MIRROR_TARGET = "nginx.ingress.kubernetes.io/mirror-target"
ACCEPTED = {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "by the test",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}  # fmt: skip
ADDRESS = {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}


def shadow_spec(real: Real, example: str, weight: str, *, unstripped: bool = False) -> str:
    """An example with its canary at 0% (ready for a shadow phase) in the test's namespace."""
    path = real.spec(example)
    text, n = re.subn(rf"(?m)^  weight: {weight}\b.*$", "  weight: 0", path.read_text())
    assert n == 1
    if unstripped:  # ingress-nginx copies the original URI: the model serves under the prefix
        text = re.sub(r"(?m)^(  path: \S+).*$", r"\1\n  stripPath: false", text)
    path.write_text(text)
    return str(path)


def mirror(real: Real, project: str, *args: str) -> dict[str, Any]:
    """`mlserve mirror ARGS --json`: its report."""
    result = real.mlserve("mirror", *args, "--project", project, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def resource_version(real: Real, kind: str, name: str) -> str:
    return str(real.get(kind, name)["metadata"]["resourceVersion"])


def istio_mirror(vs: dict[str, Any]) -> tuple[str, float] | None:
    """(subset, percent) the weighted route mirrors, or None; no pinned route mirrors."""
    *pinned, weighted = vs["spec"]["http"]
    assert not any("mirror" in r or "mirrorPercentage" in r for r in pinned)
    if "mirror" not in weighted:
        assert "mirrorPercentage" not in weighted
        return None
    return weighted["mirror"]["subset"], weighted["mirrorPercentage"]["value"]


def route_mirror(route: dict[str, Any]) -> tuple[str, int] | None:
    """(Service, percent) the weighted rule's RequestMirror filter copies to, or None."""
    *pinned, weighted = route["spec"]["rules"]
    kinds = [f["type"] for r in pinned for f in r.get("filters", [])]
    assert "RequestMirror" not in kinds
    found = [
        f["requestMirror"] for f in weighted.get("filters", []) if f["type"] == "RequestMirror"
    ]
    if not found:
        return None
    [copy] = found
    return copy["backendRef"]["name"], copy.get("percent", 100)


def reported(report: dict[str, Any]) -> tuple[str, int] | None:
    after = report["after"]["mirror"]
    return (after["version"], after["percent"]) if after else None


def test_istio_mirror_set_changed_and_ended_as_reported(real: Real) -> None:
    spec = shadow_spec(real, "istio.yaml", "10")
    deployed = real.mlserve("deploy", spec, "--yes")
    assert deployed.returncode == 0, deployed.stderr
    vs = "fraud-detector"
    before = resource_version(real, VS, vs)

    dry = mirror(real, vs, "--version", "v2", "--percent", "20", "--dry-run")
    assert dry["dryRun"] and reported(dry) == ("v2", 20)
    assert resource_version(real, VS, vs) == before  # a preview changed nothing

    for args, want in (
        (("--version", "v2", "--percent", "20"), ("v2", 20)),
        (("--version", "v2", "--percent", "50", "--expect-mirror", "20"), ("v2", 50)),
    ):
        report = mirror(real, vs, *args)
        assert reported(report) == want
        live = real.get(VS, vs)
        assert istio_mirror(live) == want
        weighted = live["spec"]["http"][-1]
        assert weighted["mirror"]["host"] == f"fraud-detector.{real.namespace}.svc.cluster.local"
        # the served split never changes because of a mirror
        assert [r.get("weight") for r in weighted["route"]] == [100, 0]
    ended = mirror(real, vs, "--off", "--expect-mirror", "50")
    assert reported(ended) is None and istio_mirror(real.get(VS, vs)) is None


GATEWAY = {"name": "public", "namespace": "infra", "sectionName": "https"}


def accepted_at(generation: int) -> dict[str, Any]:
    """The route's status as its Gateway writes it once it accepted that generation."""
    return {"parents": [{
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", **GATEWAY},
        "controllerName": "example.com/test-controller",
        "conditions": [{**ACCEPTED, "observedGeneration": generation}],
    }]}  # fmt: skip


def accept_later(real: Real, name: str, generation: int, delay: float) -> list[float]:
    """Once the route is at `generation`, accept it `delay` seconds later, as a Gateway does
    once it has reconciled it; the list gets the time it was written."""
    written: list[float] = []

    def run() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if real.get(HTTPROUTES, name)["metadata"]["generation"] == generation:
                time.sleep(delay)
                real.stack.kubectl(
                    "patch", HTTPROUTES, name, "-n", real.namespace, "--subresource=status",
                    "--type=merge", "-p", json.dumps({"status": accepted_at(generation)}),
                )  # fmt: skip
                written.append(time.time())
                return
            time.sleep(0.2)

    threading.Thread(target=run, daemon=True).start()
    return written


def test_gateway_api_mirror_set_changed_and_ended_as_reported(real: Real) -> None:
    """A RequestMirror filter with `percent` (Standard since v1.3) passes the HTTPRoute CRD's
    CEL rules (a Service backendRef needs a port; percent and fraction exclusive). And each
    update waits for the Gateway to accept the route's new generation: the provider alone
    would take the last generation's Accepted (gateway_api.CURRENT)."""
    spec = shadow_spec(real, "gateway-api.yaml", "5")
    real.set_status(HTTPROUTES, "recommender", accepted_at(1))
    deployed = real.mlserve("deploy", spec, "--yes")
    assert deployed.returncode == 0, deployed.stderr
    before = resource_version(real, HTTPROUTES, "recommender")
    dry = mirror(real, "recommender", "--version", "8.0", "--percent", "20", "--dry-run")
    assert dry["dryRun"] and resource_version(real, HTTPROUTES, "recommender") == before

    for generation, args, want, copied in (
        (2, ("--version", "8.0", "--percent", "20"), ("8.0", 20), ("recommender-8-0", 20)),
        (3, ("--version", "8.0", "--expect-mirror", "20"), ("8.0", 100), ("recommender-8-0", 100)),
    ):
        written = accept_later(real, "recommender", generation, delay=3)
        report = mirror(real, "recommender", *args)
        assert written and written[0] < time.time()  # it ended only once the Gateway accepted
        assert reported(report) == want
        route = real.get(HTTPROUTES, "recommender")
        assert route_mirror(route) == copied
        weighted = route["spec"]["rules"][-1]
        # the copy gets the path the served version gets: the rewrite comes first, if any
        assert [f["type"] for f in weighted["filters"]][-1] == "RequestMirror"
        assert {b["name"]: b["weight"] for b in weighted["backendRefs"]} == {
            "recommender-7-2": 100,
            "recommender-8-0": 0,
        }
    # 100% is every request: the filter carries no percent (absent means all)
    assert (
        "percent"
        not in real.get(HTTPROUTES, "recommender")["spec"]["rules"][-1]["filters"][-1][
            "requestMirror"
        ]
    )
    accept_later(real, "recommender", 4, delay=0)
    ended = mirror(real, "recommender", "--off")
    assert reported(ended) is None
    assert route_mirror(real.get(HTTPROUTES, "recommender")) is None


def test_ingress_nginx_mirrors_every_request_from_the_main_ingress_only(real: Real) -> None:
    spec = shadow_spec(real, "ingress-nginx.yaml", "20", unstripped=True)
    for name in ("sentiment", "sentiment-canary"):
        real.set_status(INGRESSES, name, ADDRESS)
    deployed = real.mlserve("deploy", spec, "--yes")
    assert deployed.returncode == 0, deployed.stderr
    before = resource_version(real, INGRESSES, "sentiment")

    share = real.mlserve("mirror", "--version", "v4", "--percent", "20", "--project", "sentiment")
    assert share.returncode == 6, share.stderr
    assert "mirrors every request or none (20% asked)" in share.stderr
    assert resource_version(real, INGRESSES, "sentiment") == before

    report = mirror(real, "sentiment", "--version", "v4")
    assert reported(report) == ("v4", 100)
    main = real.get(INGRESSES, "sentiment")["metadata"]["annotations"]
    assert main[MIRROR_TARGET] == (
        f"http://sentiment-v4.{real.namespace}.svc.cluster.local:80$request_uri"
    )
    canary = real.get(INGRESSES, "sentiment-canary")["metadata"]["annotations"]
    assert MIRROR_TARGET not in canary  # a canary Ingress's other annotations are ignored
    assert canary["nginx.ingress.kubernetes.io/canary-weight"] == "0"

    ended = mirror(real, "sentiment", "--off", "--expect-mirror", "100")
    assert reported(ended) is None
    assert MIRROR_TARGET not in real.get(INGRESSES, "sentiment")["metadata"].get("annotations", {})


def test_a_rollout_mirrors_first_then_its_first_weighted_step_ends_the_mirror(
    real: Real, prometheus: Prometheus, tmp_path: Path
) -> None:
    """The shadow step's analysis runs against the real Prometheus, and the mirror ends in the
    same routing update that first gives the canary a weight: the watch shows no update with
    both."""
    name = "shadow-real"
    prometheus.metrics.set(name, "v2", requests=20, errors=0)
    prometheus.wait_for(f'rate(http_requests_total{{service="{name}", version="v2"}}[5s])')
    error_rate = (
        'sum(rate(http_requests_total{service="{{name}}", version="{{canary}}", code=~"5.."}[5s]))'
        '\n/ sum(rate(http_requests_total{service="{{name}}", version="{{canary}}"}[5s]))'
    )
    spec = real.spec("istio.yaml")
    text = re.sub(r"(?m)^name: \S+", f"name: {name}", spec.read_text())
    text = re.sub(r"(?m)^  weight: 10\b.*$", "  weight: 0", text)
    text += (
        "rollout:\n"
        "  steps:\n"
        "    - {mirror: 100, pause: 3s}\n"
        "    - {weight: 50, pause: 3s}\n"
        "  analysis:\n"
        f"    prometheus: {{address: '{prometheus.url}'}}\n"
        "    interval: 1s\n"
        "    failureLimit: 1\n"
        f"    metrics: [{{name: error-rate, max: 0.05, query: {json.dumps(error_rate)}}}]\n"
    )
    spec.write_text(text)
    deployed = real.mlserve("deploy", str(spec), "--yes")
    assert deployed.returncode == 0, deployed.stderr

    real.extra_env.update(AUTH)
    watch = Watch(real, VS)
    result = real.mlserve("rollout", str(spec), "--yes", "--json")
    events = watch.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "completed"
    assert {m["step"] for m in report["measurements"]} == {1, 2}

    seen = []
    for e in events:
        if e.type == "MODIFIED":
            weighted = e.obj["spec"]["http"][-1]
            split = {r["destination"]["subset"]: r.get("weight", 100) for r in weighted["route"]}
            copy = istio_mirror(e.obj)
            if not seen or seen[-1] != (split, copy):
                seen.append((split, copy))
    assert seen == [
        ({"v1": 100, "v2": 0}, ("v2", 100)),  # step 1: the shadow
        ({"v1": 50, "v2": 50}, None),  # step 2: weighted, the mirror ended with it
        ({"v2": 100}, None),  # completed: v2 the stable (v1 kept deployed, for a rollback)
    ]
