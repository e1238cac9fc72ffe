"""specs/vllm-gpu.yaml (issue 22) against the REAL stack (tests/realstack.py): the Pulumi CLI, the
Kubernetes provider plugin and an API server, with kwok in place of kubelets.

What a GPU cluster has and the test makes: a Node labelled as the spec's nodeSelector asks
(`nvidia.com/gpu.present`, set by NVIDIA's GPU feature discovery), with the NoSchedule taint GPU
node pools carry and allocatable `nvidia.com/gpu` (as NVIDIA's device plugin reports it), the
`hf-token` Secret the spec names, and the Gateway's `Accepted` on the HTTPRoute. No GPU, vLLM or
model runs: kwok makes the scheduled pods Ready, so the startup probe's 20 minutes never pass.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.realstack import Real, missing_from
from tests.test_real_smoke import rendered

# `waits`: 20-40 s, mostly the provider waiting on Deployments (tests/conftest.py).
pytestmark = [pytest.mark.real, pytest.mark.waits]

HTTPROUTES = "httproutes.gateway.networking.k8s.io"
GPU_LABEL = "nvidia.com/gpu.present"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
TOKEN = "hf_TESTtokenNEVERtoBEprinted0123456789"
# The HTTPRoute's status as a Gateway controller writes it once it accepts the route
# (gateway-api apis/v1/httproute_types.go RouteParentStatus, shared_types.go).
ACCEPTED = {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "by the test",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}  # fmt: skip
KINDS = {
    "kubernetes:apps/v1:Deployment": "deployments.apps",
    "kubernetes:core/v1:Service": "services",
    "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute": HTTPROUTES,
}


def accept_route(real: Real, name: str, parent: dict[str, str]) -> None:
    real.set_status(HTTPROUTES, name, {"parents": [{
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", **parent},
        "controllerName": "example.com/test-controller",
        "conditions": [ACCEPTED],
    }]})  # fmt: skip


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    [c] = deployment["spec"]["template"]["spec"]["containers"]
    return c


def test_the_vllm_gpu_example_deploys_onto_a_tainted_gpu_node_and_its_pods_become_ready(
    real: Real,
) -> None:
    gpu_node = real.node(
        labels={GPU_LABEL: "true"}, taints=[GPU_TAINT], allocatable={"nvidia.com/gpu": "4"}
    )
    real.stack.kubectl("create", "secret", "generic", "hf-token", "-n", real.namespace,
                       f"--from-literal=token={TOKEN}")  # fmt: skip
    spec = str(real.spec("vllm-gpu.yaml"))
    accept_route(real, "llm-chat", {"name": "public", "namespace": "infra"})
    result = real.mlserve("deploy", spec, "--yes")
    assert result.returncode == 0, result.stdout + result.stderr

    # The API server has what render prints (its defaults aside), and every pod is Ready on
    # the GPU node: the provider waited for them (kwok readies what the scheduler placed).
    for r in rendered(real, spec):
        manifest = r["inputs"]
        live = real.get(KINDS[r["type"]], manifest["metadata"]["name"])
        for key in ("spec", "metadata"):
            assert missing_from(live[key], manifest[key], key) == [], (r["type"], key)
    for name, replicas in (("llm-chat-v0-8-5", 2), ("llm-chat-v0-9-2", 1)):
        deployment = real.get("deployments.apps", name)
        assert deployment["status"]["readyReplicas"] == replicas
        c = container(deployment)
        assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
        env = {e["name"]: e for e in c["env"]}
        assert env["HF_TOKEN"] == {
            "name": "HF_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}},
        }
        assert c["startupProbe"]["failureThreshold"] == 120
        shm = next(v for v in deployment["spec"]["template"]["spec"]["volumes"]
                   if v["name"] == "shm")  # fmt: skip
        assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    pods = real.items("pods", "app.kubernetes.io/name=llm-chat")
    assert len(pods) == 3
    for pod in pods:
        assert pod["spec"]["nodeName"] == gpu_node
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert ready["Ready"] == "True"
    route = real.get(HTTPROUTES, "llm-chat")
    weighted = route["spec"]["rules"][-1]
    assert {b["name"]: b["weight"] for b in weighted["backendRefs"]} == {
        "llm-chat-v0-8-5": 90,
        "llm-chat-v0-9-2": 10,
    }
    assert weighted["timeouts"] == {"request": "600s"}

    # The token is in the Secret only: never in mlserve's output or the stack's state.
    status = real.mlserve("status", "--project", "llm-chat", "--json")
    assert status.returncode == 0, status.stderr
    state = "".join(p.read_text(errors="replace") for p in (real.tmp / "state").rglob("*")
                    if p.is_file())  # fmt: skip
    for text in (result.stdout, result.stderr, status.stdout, state):
        assert TOKEN not in text
