"""The Kubernetes workloads every image-running gateway shares: a Deployment and a Service per
image version, named `<name>-<version>` with the version made DNS-safe (`fraud-1-10` for `1.10`),
labelled with the version as written (DESIGN.md section 3).

Only call `declare` inside a running Pulumi program; importing this module never imports Pulumi.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from mlserve.backends.base import Workload
from mlserve.readiness import (
    PULUMI_WAIT_SECONDS,
    create_wait,
    probe_timings,
    progress_deadline,
    update_wait,
)
from mlserve.spec import PROBE_KINDS, overcommit_allowed, thawed

if TYPE_CHECKING:
    from mlserve.spec import ProbeKind, Spec, Version
    from mlserve.traffic import TrafficState

NAME_LABEL = "app.kubernetes.io/name"
VERSION_LABEL = "app.kubernetes.io/version"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"

# Every Service listens on 80 and forwards to the container port by its name, so Services that
# span versions with different container ports (istio's `<name>` host) still reach each pod.
SERVICE_PORT = 80
PORT_NAME = "http"
CONTAINER_NAME = "model"


def labels(spec: Spec, version: str | None = None) -> dict[str, str]:
    """The spec's labels plus the standard ones, which win over a spec label of the same key."""
    out = dict(spec.labels)
    out[NAME_LABEL] = spec.name
    if version is not None:
        out[VERSION_LABEL] = version
    out[MANAGED_BY_LABEL] = "mlserve"
    return out


def selector(spec: Spec, version: str) -> dict[str, str]:
    return {NAME_LABEL: spec.name, VERSION_LABEL: version}


def dns_name(spec: Spec, service: str) -> str:
    return f"{service}.{spec.namespace}.svc.cluster.local"


def endpoint(spec: Spec) -> str:
    """The public URL of a host-based gateway. Plain http: TLS is the gateway's own setting."""
    return f"http://{spec.gateway.host}{spec.gateway.path}"


def prefix(spec: Spec) -> str:
    """The public path as a segment prefix: `/fraud/` and `/fraud` both give `/fraud` (Gateway
    API and Kubernetes Ingress ignore a trailing `/` of a prefix too)."""
    return spec.gateway.path.rstrip("/") or "/"


def strips(spec: Spec) -> bool:
    """Whether the gateway must remove the public prefix before the model sees the path."""
    return spec.gateway.strip_path and prefix(spec) != "/"


def require_routed(traffic: TrafficState, workloads: Mapping[str, Workload]) -> None:
    """A routing resource must never name a version that has no workload."""
    missing = [v for v in traffic.versions() if v not in workloads]
    if missing:
        raise ValueError(f"traffic names versions without a workload: {', '.join(missing)}")


def declare(spec: Spec) -> dict[str, Workload]:
    """A Deployment and a Service for every version with an image, keyed by version name."""
    return {v.name: _workload(spec, v) for v in spec.versions if v.image is not None}


# --- the Deployment and the Service ---------------------------------------------------------


def custom_timeouts(create: int, update: int) -> Any:
    """How long pulumi-kubernetes waits for a resource to become ready (see readiness.py); None
    where that is its own default."""
    import pulumi

    if create == update == PULUMI_WAIT_SECONDS:
        return None
    return pulumi.CustomTimeouts(create=f"{create}s", update=f"{update}s")


def _workload(spec: Spec, version: Version) -> Workload:
    import pulumi
    import pulumi_kubernetes as k8s

    name = spec.object_name(version.name)
    metadata = k8s.meta.v1.ObjectMetaArgs(
        name=name, namespace=spec.namespace, labels=labels(spec, version.name)
    )
    timeouts = custom_timeouts(create_wait(version), update_wait(version))
    deployment = k8s.apps.v1.Deployment(
        name,
        metadata=metadata,
        spec=deployment_spec(spec, version),
        opts=pulumi.ResourceOptions(custom_timeouts=timeouts),
    )
    # The Service waits for a ready endpoint: as long as the pods' first start.
    service = k8s.core.v1.Service(
        name,
        metadata=metadata,
        spec=k8s.core.v1.ServiceSpecArgs(
            selector=selector(spec, version.name),
            ports=[service_port()],
        ),
        opts=pulumi.ResourceOptions(
            custom_timeouts=custom_timeouts(create_wait(version), create_wait(version))
        ),
    )
    return Workload(
        version=version.name,
        service_name=name,
        port=SERVICE_PORT,
        dns_name=dns_name(spec, name),
        resources=(deployment, service),
    )


def deployment_spec(spec: Spec, version: Version) -> Any:
    import pulumi_kubernetes as k8s

    return k8s.apps.v1.DeploymentSpecArgs(
        replicas=version.replicas,
        selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector(spec, version.name)),
        progress_deadline_seconds=progress_deadline(version),
        # maxUnavailable 0 keeps full serving capacity during a rollout; maxSurge 1 (not 25%)
        # because model pods often hold scarce GPUs: at most one extra pod's worth at a time.
        strategy=k8s.apps.v1.DeploymentStrategyArgs(
            type="RollingUpdate",
            rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_unavailable=0, max_surge=1),
        ),
        template=k8s.core.v1.PodTemplateSpecArgs(
            metadata=k8s.meta.v1.ObjectMetaArgs(
                labels=labels(spec, version.name),
                annotations=dict(version.pod_annotations) or None,
            ),
            spec=cast(Any, pod_spec(version)),  # camelCase, as Kubernetes names the fields
        ),
    )


def pod_spec(version: Version) -> dict[str, Any]:
    """The pod spec, camelCase as Kubernetes names it: the model container, the volumes, and
    the pod fields the spec passes through as written (scheduling, identity)."""
    out: dict[str, Any] = {"containers": [_container(version)]}
    if version.volumes:
        out["volumes"] = [{"name": v.name, v.source: thawed(v.details)} for v in version.volumes]
    out.update(thawed(version.pod))
    return out


def service_port() -> Any:
    import pulumi_kubernetes as k8s

    return k8s.core.v1.ServicePortArgs(
        name=PORT_NAME, port=SERVICE_PORT, target_port=PORT_NAME, protocol="TCP"
    )


def limits(version: Version) -> dict[str, str]:
    """The spec's limits, plus a limit equal to the request for a resource that cannot be
    overcommitted (nvidia.com/gpu): the API server refuses such a request without a limit
    ("Limit must be set for non overcommitable resources", Kubernetes ValidateResourceRequirements).
    """
    out = dict(version.limits)
    for resource, quantity in version.requests.items():
        if not overcommit_allowed(resource):
            out.setdefault(resource, quantity)
    return out


def env(version: Version) -> list[dict[str, Any]] | None:
    """Plain values and references ({secretKeyRef: ...} as valueFrom), sorted by name: a
    Secret's value never passes through mlserve, only its name and key."""
    out = []
    for name, value in sorted(version.env.items()):
        if isinstance(value, str):
            out.append({"name": name, "value": value})
        else:
            out.append({"name": name, "valueFrom": thawed(value)})
    return out or None


def probe(version: Version, kind: ProbeKind) -> dict[str, Any]:
    timings = probe_timings(version, kind)
    out: dict[str, Any] = {
        "httpGet": {"path": version.health_path, "port": PORT_NAME},
        "periodSeconds": timings["periodSeconds"],
        "failureThreshold": timings["failureThreshold"],
        "timeoutSeconds": timings["timeoutSeconds"],
    }
    if timings["initialDelaySeconds"]:
        out["initialDelaySeconds"] = timings["initialDelaySeconds"]
    return out


def _container(version: Version) -> dict[str, Any]:
    out: dict[str, Any] = {"name": CONTAINER_NAME, "image": version.image}
    if version.command:
        out["command"] = list(version.command)
    if version.args:
        out["args"] = list(version.args)
    out["ports"] = [{"name": PORT_NAME, "containerPort": version.port, "protocol": "TCP"}]
    variables = env(version)
    if variables:
        out["env"] = variables
    if version.env_from:
        out["envFrom"] = thawed(version.env_from)
    if version.requests or version.limits:
        out["resources"] = {
            k: m
            for k, m in (("requests", dict(version.requests)), ("limits", limits(version)))
            if m
        }
    if version.volumes:
        out["volumeMounts"] = [
            {
                k: v
                for k, v in (
                    ("name", m.name),
                    ("mountPath", m.mount_path),
                    ("readOnly", m.read_only),
                    ("subPath", m.sub_path),
                )
                if v is not None
            }
            for m in version.volumes
        ]
    if version.health_path is not None:
        for kind in PROBE_KINDS:
            out[f"{kind}Probe"] = probe(version, kind)
    return out
