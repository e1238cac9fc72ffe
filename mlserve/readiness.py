"""How long a version's pods may take to become Ready by their probes, and so how long a deploy
waits for them. Pure code over the spec's values: `validate`, `plan` and the program share it.

pulumi-kubernetes waits for a Deployment until its new ReplicaSet is available and for a Service
until it has a ready endpoint, 10 minutes by default (pulumi/pulumi-kubernetes provider/pkg/await
deployment.go DefaultDeploymentTimeoutMins, service.go DefaultServiceTimeoutMins). A resource's
`customTimeouts` replace that default (provider/pkg/metadata/overrides.go TimeoutDuration, which
prefers them to the `pulumi.com/timeoutSeconds` annotation; the engine passes the create or
update timeout to the provider's Create or Update). A model that its probes allow 20 minutes to
load would fail the deploy at 10, so the wait comes from the probes: the default 10 minutes for
scheduling and pulling the image, plus the time the probes allow a pod to become Ready, once per
pod that an update starts one after another (maxSurge 1, maxUnavailable 0: a new pod must be
Ready before the next old one goes). customTimeouts are options, not inputs: changing them
changes no resource.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from mlserve.output import format_seconds

if TYPE_CHECKING:
    from mlserve.spec import Spec, Version

PULUMI_WAIT_SECONDS = 600
# Kubernetes marks a Deployment failed (Progressing=False, ProgressDeadlineExceeded) after this
# long without progress (apps/v1 DeploymentSpec.progressDeadlineSeconds, default 600).
PROGRESS_DEADLINE_SECONDS = 600

# The probes on healthPath: period, failures and per-probe timeout, unless the spec sets them.
# The startup probe allows 5 minutes for loading the model before liveness starts counting, so
# a slow load is not killed in a restart loop.
PROBE_DEFAULTS: Mapping[str, Mapping[str, int]] = {
    "startup": {"periodSeconds": 5, "failureThreshold": 60, "timeoutSeconds": 2},
    "readiness": {"periodSeconds": 5, "failureThreshold": 3, "timeoutSeconds": 2},
    "liveness": {"periodSeconds": 10, "failureThreshold": 3, "timeoutSeconds": 2},
}


def probe_timings(version: Version, kind: str) -> dict[str, int]:
    """A probe's timings: what the spec sets, else the defaults; initialDelaySeconds 0."""
    return {"initialDelaySeconds": 0, **PROBE_DEFAULTS[kind], **version.probes.get(kind, {})}


def _start(startup: Mapping[str, int], readiness: Mapping[str, int]) -> int:
    # The kubelet runs a probe every period, or at once when the previous one took its whole
    # timeout (pkg/kubelet/prober/worker.go: one ticker, probes run in turn).
    allowed = startup["initialDelaySeconds"] + startup["failureThreshold"] * max(
        startup["periodSeconds"], startup["timeoutSeconds"]
    )
    return max(allowed, readiness["initialDelaySeconds"]) + max(
        readiness["periodSeconds"], readiness["timeoutSeconds"]
    )


# With healthPath alone: 60 startup probes 5 s apart, then one readiness period.
DEFAULT_START_SECONDS = _start(
    {"initialDelaySeconds": 0, **PROBE_DEFAULTS["startup"]},
    {"initialDelaySeconds": 0, **PROBE_DEFAULTS["readiness"]},
)


def start_seconds(version: Version) -> int:
    """The longest a pod of `version` may take from its container's start to Ready by its
    probes: the startup probe's delay and every failure it allows, then one readiness period.
    0 without probes: the pod is Ready as soon as its container runs."""
    if version.health_path is None:
        return 0
    return _start(probe_timings(version, "startup"), probe_timings(version, "readiness"))


def create_wait(version: Version) -> int:
    """Seconds a deploy waits for a new version's pods (all start at once) to become Ready."""
    return PULUMI_WAIT_SECONDS + start_seconds(version)


def update_wait(version: Version) -> int:
    """Seconds a deploy waits for an update of a version: its pods are replaced one at a time."""
    return PULUMI_WAIT_SECONDS + max(1, version.replicas) * start_seconds(version)


def progress_deadline(version: Version) -> int | None:
    """The Deployment's progressDeadlineSeconds: raised when the probes allow a pod longer to
    start than Kubernetes' default deadline, which would otherwise mark a slow but allowed load
    as failed; None (the default) otherwise, so that other Deployments stay as they were."""
    start = start_seconds(version)
    return PULUMI_WAIT_SECONDS + start if start > PROGRESS_DEADLINE_SECONDS else None


def notes(spec: Spec) -> list[tuple[str, str]]:
    """How long a deploy waits for each version whose probes allow a pod longer to start than
    healthPath's defaults: (spec path, message). `validate` prints them; `plan` warns."""
    out = []
    for i, v in enumerate(spec.versions):
        start = start_seconds(v)
        if v.image is None or start <= DEFAULT_START_SECONDS:
            continue
        update = (
            f", and up to {format_seconds(update_wait(v))} for an update, which replaces its "
            f"{v.replicas} pods one at a time"
            if v.replicas > 1
            else ""
        )
        out.append(
            (
                f"versions[{i}].probes",
                f"the probes allow a pod of {v.name} {format_seconds(start)} to start: deploy "
                f"waits up to {format_seconds(create_wait(v))} for it to become Ready{update}",
            )
        )
    return out
