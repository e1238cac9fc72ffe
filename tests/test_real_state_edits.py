"""What changes a stack's state without a history entry, on the REAL stack (tests/realstack.py):
`pulumi stack import` of an edited state (as `pulumi state ...` does: pkg/cmd/pulumi/state/io.go
`TotalStateEdit`; pkg/backend/diy/backend.go `ImportDeployment` writes no history entry). The
record mlserve reads (the newest history entry) is then stale, so `--expect-weight` could pass on a
weight the stack no longer holds (issue 21 §3, the guard's blind spots). mlserve compares the
routing its record declares with what the state holds (live.unrecorded).
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.realstack import Real

pytestmark = [pytest.mark.real, pytest.mark.waits]

VS = "virtualservices.networking.istio.io"
STACK = "organization/fraud-detector/dev"


def pulumi(real: Real, *args: str, input: str | None = None) -> str:
    """The real CLI on the test's backend, as a user at a shell that sourced env.sh runs it."""
    env = {**real.env, "PULUMI_BACKEND_URL": real.env["MLSERVE_BACKEND_URL"]}
    result = subprocess.run(
        ["pulumi", "--non-interactive", *args, "--stack", STACK], cwd=real.tmp, env=env,
        input=input, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def split(real: Real) -> dict[str, int]:
    route = real.get(VS, "fraud-detector")["spec"]["http"][-1]["route"]
    return {d["destination"]["subset"]: d.get("weight", 0) for d in route}


def set_weights(state: dict[str, Any], stable: int, canary: int) -> None:
    """The VirtualService's unpinned route in the state's inputs, as a hand edit would set it."""
    (vs,) = [
        r
        for r in state["deployment"]["resources"]
        if r["type"] == "kubernetes:networking.istio.io/v1:VirtualService"
    ]
    route = vs["inputs"]["spec"]["http"][-1]["route"]
    for destination, weight in zip(route, (stable, canary), strict=True):
        destination["weight"] = weight


def test_a_state_imported_outside_mlserve_is_named_and_stops_expect_weight(real: Real) -> None:
    spec = real.spec("istio.yaml")
    deployed = real.mlserve("deploy", str(spec), "--yes")
    assert deployed.returncode == 0, deployed.stderr
    status = real.mlserve("status", "--project", "fraud-detector")
    assert status.returncode == 0 and "does not hold" not in status.stdout + status.stderr

    state = json.loads(pulumi(real, "stack", "export"))
    set_weights(state, 50, 50)
    pulumi(real, "stack", "import", "--file", "/dev/stdin", input=json.dumps(state))
    history = json.loads(real.mlserve("history", "--project", "fraud-detector", "--json").stdout)
    assert len(history) == 1  # the import wrote no entry: the record still says 90/10

    found = (
        "the stack's state does not hold the routing that revision 1 records (VirtualService "
        "fraud-detector holds weights 50/50, the record 90/10): an update was stopped, failed "
        "part-way or is running now, or the state was changed outside mlserve (`pulumi stack "
        "import`, `pulumi state ...`)"
    )
    status = real.mlserve("status", "--project", "fraud-detector")
    assert status.returncode == 0, status.stderr
    assert (
        f"note: {found}. The traffic shown is what revision 1 recorded: `mlserve rollback --to 1` "
        "or `mlserve deploy` applies a known state again"
    ) in status.stdout, status.stdout

    guarded = real.mlserve(
        "promote", "--project", "fraud-detector", "--weight", "30", "--expect-weight", "10"
    )
    assert guarded.returncode == 6, guarded.stdout + guarded.stderr
    assert guarded.stderr.splitlines()[-1] == (
        f"error: --expect-weight 10: {found}, so the live weight may not be the 10% it records. "
        "Nothing was changed: `mlserve status --refresh` shows what the stack holds; `mlserve "
        "rollback --to 1` or `mlserve deploy` applies a known state again"
    )
    assert split(real) == {"v1": 90, "v2": 10}

    # Without the guard the promote applies its routing anew, saying why, and all agree again.
    promoted = real.mlserve("promote", "--project", "fraud-detector", "--weight", "30")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert f"{found}; this update applies the routing anew" in promoted.stdout
    assert split(real) == {"v1": 70, "v2": 30}
    status = real.mlserve("status", "--project", "fraud-detector")
    assert "does not hold" not in status.stdout + status.stderr


def test_a_refresh_that_read_back_a_kubectl_edit_is_named_as_such(real: Real) -> None:
    """The real Kubernetes provider's refresh reads an object's inputs back as well as its
    outputs, so after `status --refresh` has read a weight edited with kubectl, the state holds
    that weight and the record does not: later commands name the refresh, and `--expect-weight`
    with the recorded weight is refused, since the cluster no longer holds it."""
    spec = real.spec("istio.yaml")
    assert real.mlserve("deploy", str(spec), "--yes").returncode == 0
    last = len(real.get(VS, "fraud-detector")["spec"]["http"]) - 1
    patch = [
        {"op": "replace", "path": f"/spec/http/{last}/route/{i}/weight", "value": w}
        for i, w in enumerate((60, 40))
    ]
    real.stack.kubectl(
        "patch", VS, "fraud-detector", "-n", real.namespace, "--type=json", "-p",
        json.dumps(patch),
    )  # fmt: skip
    refreshed = real.mlserve("status", "--refresh", "--project", "fraud-detector")
    assert refreshed.returncode == 0, refreshed.stderr
    after = real.mlserve("status", "--project", "fraud-detector")
    assert after.returncode == 0, after.stderr
    assert (
        "note: the stack's state does not hold the routing that revision 1 records "
        "(VirtualService fraud-detector holds weights 60/40, the record 90/10): the refresh of "
        "revision 2 read it back from where it was changed outside mlserve. The traffic shown is "
        "what revision 1 recorded"
    ) in after.stdout, after.stdout
    guarded = real.mlserve(
        "promote", "--project", "fraud-detector", "--weight", "30", "--expect-weight", "10"
    )
    assert guarded.returncode == 6, guarded.stdout + guarded.stderr
    assert split(real) == {"v1": 60, "v2": 40}


ACCEPTED = {"type": "Accepted", "status": "True", "reason": "Accepted",
            "message": "Accepted by the test, as a Gateway controller would",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}  # fmt: skip
ADDRESS = {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}


@pytest.mark.parametrize("gateway", ["ingress-nginx", "gateway-api"])
def test_what_the_provider_stores_of_each_gateways_weights_is_what_the_record_declares(
    real: Real, gateway: str
) -> None:
    """The comparison reads the weights in each routing resource's inputs as the real provider
    stored them (an nginx canary-weight annotation as a string, HTTPRoute backendRef weights):
    after a deploy and a promote, status finds nothing to name."""
    spec = str(real.spec(f"{gateway}.yaml"))
    if gateway == "ingress-nginx":
        project, weight = "sentiment", 20
        for name in ("sentiment", "sentiment-canary"):
            real.set_status("ingresses.networking.k8s.io", name, ADDRESS)
    else:
        project, weight = "recommender", 5
        parent = {"name": "public", "namespace": "infra", "sectionName": "https"}
        real.set_status("httproutes.gateway.networking.k8s.io", "recommender", {"parents": [{
            "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", **parent},
            "controllerName": "example.com/test-controller",
            "conditions": [ACCEPTED],
        }]})  # fmt: skip
    deployed = real.mlserve("deploy", spec, "--yes")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    status = real.mlserve("status", "--project", project)
    assert status.returncode == 0, status.stderr
    assert "does not hold" not in status.stdout + status.stderr, status.stdout
    promoted = real.mlserve(
        "promote", "--project", project, "--weight", "40", "--expect-weight", str(weight)
    )
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert "does not hold" not in promoted.stdout + promoted.stderr, promoted.stdout
    status = real.mlserve("status", "--project", project)
    assert "does not hold" not in status.stdout + status.stderr, status.stdout
