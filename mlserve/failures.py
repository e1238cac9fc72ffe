"""What a failed update means for the spec's versions and gateway, in the user's words.

The engine reports a failed step in the provider's terms ("'fraud-v3' timed out waiting to be
Ready", "timed out waiting for the condition"). Each step that failed after the provider had made
its object (a time-out of pulumi-kubernetes' await) leaves that object in the stack's state, as the
provider last saw it (its `initErrors`, pkg/resource/deploy/step.go): a route's status, a
Deployment's Ready count, a Service's load-balancer address. From those, and the spec being
applied, each failure gets a line that names the version or the Gateway and says what to do.
Logic only: ops.py and live.py add the lines to the error they raise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlserve import readiness
from mlserve.backends import gateway_api, service
from mlserve.backends.workloads import selector
from mlserve.errors import OperationFailedError
from mlserve.output import format_seconds

if TYPE_CHECKING:
    from mlserve.engine import Engine, FailedStep, StackState
    from mlserve.spec import Spec
    from mlserve.traffic import TrafficState

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
HTTPROUTE = f"kubernetes:{gateway_api.API_VERSION}:HTTPRoute"


def roles(traffic: TrafficState) -> dict[str, str]:
    """Each version the state names, by its role."""
    found = {traffic.stable: "the stable"}
    if traffic.canary is not None:
        found[traffic.canary] = "the canary"
    if traffic.previous is not None:
        found[traffic.previous] = "the previous stable"
    if traffic.mirror is not None:
        found.setdefault(traffic.mirror.version, "mirrored")
    return found


def _deployment(
    spec: Spec, traffic: TrafficState, step: FailedStep, outputs: Mapping[str, Any]
) -> str | None:
    version = next(
        (v for v in spec.versions if v.image and spec.object_name(v.name) == step.name), None
    )
    if version is None:
        return None
    role = roles(traffic).get(version.name)
    who = f"{version.name} ({role})" if role else version.name
    wait = readiness.update_wait(version) if step.op == "update" else readiness.create_wait(version)
    counts = ""
    desired = (outputs.get("spec") or {}).get("replicas")
    ready = (outputs.get("status") or {}).get("readyReplicas") or 0
    if isinstance(desired, int | float):
        counts = f" ({int(ready)} of {int(desired)} pods Ready)"
    labels = ",".join(f"{k}={v}" for k, v in selector(spec, version.name).items())
    return (
        f"{who} did not become Ready within {format_seconds(wait)}{counts}; the routing waits "
        f"for its pods, so no traffic was moved to them. See why with `kubectl describe pods "
        f"-n {spec.namespace} -l {labels}` (scheduling, image pull, probes)"
    )


def _ingress(spec: Spec, step: FailedStep) -> str | None:
    if spec.gateway.type != "ingress-nginx":
        return None
    return (
        f"the Ingress {step.name} got no address within "
        f"{format_seconds(readiness.PULUMI_WAIT_SECONDS)}: ingress-nginx publishes one once it "
        "serves the Ingress. Check that its controller runs and that its class is "
        f"{spec.gateway.ingress_nginx.class_name} (`kubectl get ingressclass`)"
    )


def explain(
    spec: Spec,
    traffic: TrafficState,
    failed: Sequence[FailedStep],
    held: StackState | None,
) -> list[str]:
    """A line for each failed step mlserve can say more about than the engine did."""
    lines = []
    for step in failed:
        outputs = held.unready.get((step.type, step.name)) if held is not None else None
        if outputs is None:
            # The provider did not make the object, or its step failed for another reason than
            # its await (a refused manifest, a webhook, a conflict): the engine's reason says it.
            continue
        line: str | None = None
        if step.type == DEPLOYMENT:
            line = _deployment(spec, traffic, step, outputs)
        elif step.type == HTTPROUTE and step.name == spec.name:
            line = gateway_api.unaccepted(spec, outputs)
        elif step.type == SERVICE and step.name == spec.name and spec.gateway.type == "service":
            line = service.unaddressed(spec, outputs)
        elif step.type == INGRESS:
            line = _ingress(spec, step)
        if line:
            lines.append(line)
    return lines


def explained(
    eng: Engine, spec: Spec, traffic: TrafficState, error: OperationFailedError
) -> OperationFailedError:
    """`error` with a line for each failed step it can explain, read from the stack's state
    (one `stack export`, only after a failure); `error` itself when there is none."""
    if not error.failed:
        return error
    try:
        held: StackState | None = eng.state()
    except Exception:  # the explanation is a help: the failure is what the user must see
        held = None
    lines = explain(spec, traffic, error.failed, held)
    if not lines:
        return error
    first, _, rest = str(error).partition("\n")
    text = "\n".join([first, *(f"  {line}" for line in lines), *([rest] if rest else [])])
    better = OperationFailedError(eng.scrub(text))
    better.failed = error.failed
    return better
