"""Smoke tests against the REAL stack (tests/realstack.py): the Pulumi CLI, the Kubernetes
provider plugin and an API server with the Istio, Gateway API and Inference Extension CRDs.

Each runs `mlserve deploy` of an example spec as a fresh process, then reads the objects back
with kubectl, not through mlserve, and checks that they carry what `mlserve render` prints for
the same spec (beyond what the API server adds: defaults, status, managed fields). mlserve does
not create the spec's namespace: the `real` fixture creates each test's own.

The provider plugin is the v4.25.0 release commit of pulumi-kubernetes installed under the
version the Python SDK asks for (scripts/realstack): what it waits for is v4.25.0's await logic.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.realstack import Real, missing_from

# `waits`: each takes 10-40 s, mostly waiting on the provider's awaits (tests/conftest.py).
pytestmark = [pytest.mark.real, pytest.mark.waits]

# Gateway API HTTPRoute status as a Gateway controller writes it for an accepted route
# (apis/v1/httproute_types.go RouteParentStatus; shared_types.go RouteConditionAccepted).
ACCEPTED = {"type": "Accepted", "status": "True", "reason": "Accepted",
            "message": "Accepted by the test, as a Gateway controller would",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}  # fmt: skip
# An address, as ingress-nginx or a cloud's load balancer controller would publish it.
ADDRESS = {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}

KINDS = {  # Pulumi type token -> kubectl resource name
    "kubernetes:apps/v1:Deployment": "deployments.apps",
    "kubernetes:core/v1:Service": "services",
    "kubernetes:networking.k8s.io/v1:Ingress": "ingresses.networking.k8s.io",
    "kubernetes:networking.istio.io/v1:VirtualService": "virtualservices.networking.istio.io",
    "kubernetes:networking.istio.io/v1:DestinationRule": "destinationrules.networking.istio.io",
    "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute": "httproutes.gateway.networking.k8s.io",
}


def rendered(real: Real, spec: str) -> list[dict[str, Any]]:
    result = real.mlserve("render", spec, "-o", "json")
    assert result.returncode == 0, result.stderr
    resources: list[dict[str, Any]] = json.loads(result.stdout)["resources"]
    return resources


def assert_live_matches_render(real: Real, spec: str) -> list[dict[str, Any]]:
    """Every Kubernetes object `render` prints is in the API server, carrying what it printed."""
    lives = []
    for r in rendered(real, spec):
        manifest = r["inputs"]
        meta = manifest["metadata"]
        assert meta["namespace"] == real.namespace
        live = real.get(KINDS[r["type"]], meta["name"])
        for key in ("spec", "metadata"):
            assert missing_from(live[key], manifest[key], key) == [], (r["type"], meta["name"])
        lives.append(live)
    return lives


def weights(route: list[dict[str, Any]]) -> dict[str, int]:
    return {d["destination"]["subset"]: d.get("weight", 0) for d in route}


def test_istio_deploy_creates_what_render_prints(real: Real) -> None:
    spec = str(real.spec("istio.yaml"))
    result = real.mlserve("deploy", spec, "--yes")
    assert result.returncode == 0, result.stderr
    assert_live_matches_render(real, spec)
    vs = real.get("virtualservices.networking.istio.io", "fraud-detector")
    weighted = vs["spec"]["http"][-1]["route"]
    assert weights(weighted) == {"v1": 90, "v2": 10}
    # The provider waited for the Deployments (kwok makes their pods Ready).
    v1 = real.get("deployments.apps", "fraud-detector-v1")
    assert v1["status"]["readyReplicas"] == 3


def test_service_deploy_waits_for_the_load_balancer_address(real: Real) -> None:
    """The provider waits until a LoadBalancer Service has an address: here the test sets it, as
    a cloud's controller would."""
    spec = str(real.spec("service.yaml"))
    real.set_status("services", "forecast", ADDRESS)
    result = real.mlserve("deploy", spec, "--yes")
    assert result.returncode == 0, result.stderr
    assert_live_matches_render(real, spec)
    selector = real.get("services", "forecast")["spec"]["selector"]
    assert selector["app.kubernetes.io/version"] == "2024-11"


def test_ingress_nginx_deploy_waits_for_the_ingress_address(real: Real) -> None:
    """The provider waits until each Ingress has an address (ingress-nginx publishes it): here
    the test sets it."""
    spec = str(real.spec("ingress-nginx.yaml"))
    for name in ("sentiment", "sentiment-canary"):
        real.set_status("ingresses.networking.k8s.io", name, ADDRESS)
    result = real.mlserve("deploy", spec, "--yes")
    assert result.returncode == 0, result.stderr
    assert_live_matches_render(real, spec)
    canary = real.get("ingresses.networking.k8s.io", "sentiment-canary")
    assert canary["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"] == "20"


def test_gateway_api_deploy_waits_until_the_parent_accepts_the_route(real: Real) -> None:
    """mlserve asks the provider (pulumi.com/waitFor) to wait for the parent Gateway's
    Accepted condition on the HTTPRoute; the test writes it as the Gateway's controller would."""
    spec = str(real.spec("gateway-api.yaml"))
    parent = {"name": "public", "namespace": "infra", "sectionName": "https"}
    real.set_status("httproutes.gateway.networking.k8s.io", "recommender", {"parents": [{
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", **parent},
        "controllerName": "example.com/test-controller",
        "conditions": [ACCEPTED],
    }]})  # fmt: skip
    result = real.mlserve("deploy", spec, "--yes")
    assert result.returncode == 0, result.stderr
    assert_live_matches_render(real, spec)
    route = real.get("httproutes.gateway.networking.k8s.io", "recommender")
    backends = {b["name"]: b["weight"] for b in route["spec"]["rules"][-1]["backendRefs"]}
    assert backends == {"recommender-7-2": 95, "recommender-8-0": 5}
