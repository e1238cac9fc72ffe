"""What a failed update says about the spec's versions and gateway (mlserve/failures.py), through
the REAL pulumi.automation code and the stand-in's `unready` knob, which plays what the real
stack showed (tests/test_real_lifecycle.py): pulumi-kubernetes makes the object, its await times
out, and the engine keeps the object in the state with initErrors and fails the update with the
provider's "was successfully created, but ..." text (provider/pkg/provider/provider.go,
partialError)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlserve import ops
from mlserve.engine import Target
from mlserve.errors import OperationFailedError
from mlserve.spec import Spec
from tests.fake_pulumi import fixture
from tests.fake_pulumi.fixture import Fake
from tests.probe_servers import serve
from tests.test_ops_doctor import kubeconfig

fake = fixture.fake
TARGET = Target("fraud", "dev")
CREATED = (
    'resource "urn:pulumi:dev::fraud::{type}::{name}" was successfully created, but the '
    "Kubernetes API server reported that it failed to fully initialize or become live: {why}"
)


def spec(gateway: dict[str, Any], namespace: str = "ml") -> Spec:
    return Spec.from_dict({
        "apiVersion": "mlserve/v1", "name": "fraud", "namespace": namespace, "gateway": gateway,
        "versions": [{"name": v, "image": f"ghcr.io/acme/fraud:{v}"} for v in ("v1", "v2")],
        "traffic": {"stable": "v1", "canary": "v2", "weight": 10},
    })  # fmt: skip


ISTIO = {"type": "istio", "host": "m.example.com", "istio": {"gateways": ["istio-system/public"]}}


def test_a_version_whose_pods_never_become_ready_is_named_with_its_ready_count(fake: Fake) -> None:
    reason = CREATED.format(
        type="kubernetes:apps/v1:Deployment", name="fraud-v2",
        why="'fraud-v2' timed out waiting to be Ready",
    )  # fmt: skip
    status = {"replicas": 2, "readyReplicas": 1}
    fake.set(unready={"up": {"Deployment::fraud-v2": {"reason": reason, "status": status}}})
    with pytest.raises(OperationFailedError) as e:
        ops.deploy(spec(ISTIO), TARGET)
    first, second = str(e.value).split("\n")
    assert first == (
        "the update failed: fraud-v2: created, but 'fraud-v2' timed out waiting to be Ready "
        "(run with --debug for the engine's full output)"
    )
    assert second == (
        "  v2 (the canary) did not become Ready within 10m00s (1 of 1 pods Ready); the routing "
        "waits for its pods, so no traffic was moved to them. See why with `kubectl describe pods "
        "-n ml -l app.kubernetes.io/name=fraud,app.kubernetes.io/version=v2` (scheduling, image "
        "pull, probes)"
    )
    assert e.value.exit_code == 5


def test_a_step_that_failed_before_the_object_was_made_gets_the_engines_reason_only(
    fake: Fake,
) -> None:
    fake.set(fail={"up": {"Deployment::fraud-v2": "admission webhook denied the request"}})
    with pytest.raises(OperationFailedError) as e:
        ops.deploy(spec(ISTIO), TARGET)
    assert "\n" not in str(e.value)


def test_a_refused_route_names_each_parent_and_its_reason(fake: Fake) -> None:
    gateway = {
        "type": "gateway-api", "host": "m.example.com",
        "gatewayApi": {"parentRefs": [
            {"name": "public", "namespace": "infra", "sectionName": "https"},
            {"name": "internal", "namespace": "infra"},
            {"name": "edge", "namespace": "infra"},
        ]},
    }  # fmt: skip
    refused = {
        "type": "Accepted",
        "status": "False",
        "reason": "NotAllowedByListeners",
        "message": "no listener allows routes from namespace ml",
        "observedGeneration": 1,
    }
    accepted = {"type": "Accepted", "status": "True", "reason": "Accepted", "observedGeneration": 1}
    stale = {**accepted, "observedGeneration": 0}  # for an earlier generation: no answer
    parents = [
        {"parentRef": {"name": "public", "namespace": "infra", "sectionName": "https"},
         "conditions": [refused]},
        {"parentRef": {"name": "internal", "namespace": "infra"}, "conditions": [accepted]},
        {"parentRef": {"name": "edge", "namespace": "infra"}, "conditions": [stale]},
    ]  # fmt: skip
    reason = CREATED.format(
        type="kubernetes:gateway.networking.k8s.io/v1:HTTPRoute", name="fraud",
        why="timed out waiting for the condition",
    )  # fmt: skip
    route = {"reason": reason, "status": {"parents": parents}, "metadata": {"generation": 1}}
    fake.set(unready={"up": {"HTTPRoute::fraud": route}})
    with pytest.raises(OperationFailedError) as e:
        ops.deploy(spec(gateway), TARGET)
    lines = str(e.value).split("\n")
    assert lines[0] == (
        "the update failed: fraud: created, but timed out waiting for the condition "
        "(run with --debug for the engine's full output)"
    )
    assert lines[1:] == [
        "  the HTTPRoute fraud was not accepted within 2 minutes: Gateway infra/public (listener "
        "https) refused it: NotAllowedByListeners (no listener allows routes from namespace ml); "
        "Gateway infra/edge did not answer (no Accepted condition from its controller): check "
        "that it exists (`kubectl get gateway -n infra edge`) and that its controller runs"
    ]


# --- the namespace preflight (ops.namespace_problem over probes.namespace) ----------------------
# The missing namespace is checked against the real API server (tests/test_real_lifecycle.py);
# these are the answers the real stack cannot be made to give at will. A namespace being deleted
# answers 200 with status.phase Terminating (core/v1 NamespaceStatus); one the deployer may not
# read answers 403 Forbidden, and the preflight then lets the engine go on.


def _namespaces(answers: dict[str, tuple[int, Any]]) -> Any:
    def answer(path: str, headers: dict[str, str], tls: Any) -> tuple[int, Any]:
        return answers.get(path, (404, {"kind": "Status", "code": 404}))

    return answer


def test_a_namespace_being_deleted_is_refused_and_one_that_cannot_be_read_is_let_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbidden = {"kind": "Status", "code": 403, "reason": "Forbidden"}
    answers = {
        "/api/v1/namespaces/ml": (200, {"kind": "Namespace", "status": {"phase": "Terminating"}}),
        "/api/v1/namespaces/theirs": (403, forbidden),
    }
    with serve(_namespaces(answers)) as api:
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "k", api, {"token": "t"})))
        problem = ops.namespace_problem(spec(ISTIO))
        other = ops.namespace_problem(spec(ISTIO, namespace="theirs"))
    assert problem == (
        f"namespace ml is being deleted in the cluster (context 'test': {api}), and Kubernetes "
        "refuses new objects in it: wait until it is gone (`kubectl get namespace ml` answers "
        "NotFound), then `kubectl create namespace ml`"
    )
    assert other is None
