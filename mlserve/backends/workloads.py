"""The Kubernetes workloads every image-running gateway shares: a Deployment and a Service per
image version, named `<name>-<version>` with the version made DNS-safe (`fraud-1-10` for `1.10`),
labelled with the version as written (DESIGN.md section 3).

Only call `declare` inside a running Pulumi program; importing this module never imports Pulumi.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlserve.backends.base import Workload
from mlserve.spec import overcommit_allowed

if TYPE_CHECKING:
    from mlserve.spec import Spec, Version
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


def _workload(spec: Spec, version: Version) -> Workload:
    import pulumi_kubernetes as k8s

    name = spec.object_name(version.name)
    metadata = k8s.meta.v1.ObjectMetaArgs(
        name=name, namespace=spec.namespace, labels=labels(spec, version.name)
    )
    deployment = k8s.apps.v1.Deployment(
        name,
        metadata=metadata,
        spec=k8s.apps.v1.DeploymentSpecArgs(
            replicas=version.replicas,
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector(spec, version.name)),
            # maxUnavailable 0 keeps full serving capacity during a rollout; maxSurge 1 (not 25%)
            # because model pods often hold scarce GPUs: at most one extra pod's worth at a time.
            strategy=k8s.apps.v1.DeploymentStrategyArgs(
                type="RollingUpdate",
                rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(
                    max_unavailable=0, max_surge=1
                ),
            ),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels(spec, version.name)),
                spec=k8s.core.v1.PodSpecArgs(containers=[_container(version)]),
            ),
        ),
    )
    service = k8s.core.v1.Service(
        name,
        metadata=metadata,
        spec=k8s.core.v1.ServiceSpecArgs(
            selector=selector(spec, version.name),
            ports=[service_port()],
        ),
    )
    return Workload(
        version=version.name,
        service_name=name,
        port=SERVICE_PORT,
        dns_name=dns_name(spec, name),
        resources=(deployment, service),
    )


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


def _container(version: Version) -> Any:
    import pulumi_kubernetes as k8s

    resources = None
    if version.requests or version.limits:
        resources = k8s.core.v1.ResourceRequirementsArgs(
            requests=dict(version.requests) or None, limits=limits(version) or None
        )
    startup = readiness = liveness = None
    if version.health_path is not None:

        def probe(period: int, failures: int) -> Any:
            return k8s.core.v1.ProbeArgs(
                http_get=k8s.core.v1.HTTPGetActionArgs(path=version.health_path, port=PORT_NAME),
                period_seconds=period,
                failure_threshold=failures,
                timeout_seconds=2,
            )

        # Loading a model can take minutes: the startup probe allows 5 minutes before liveness
        # starts counting, so a slow load is not killed in a restart loop.
        startup = probe(period=5, failures=60)
        readiness = probe(period=5, failures=3)
        liveness = probe(period=10, failures=3)
    return k8s.core.v1.ContainerArgs(
        name=CONTAINER_NAME,
        image=version.image,
        ports=[
            k8s.core.v1.ContainerPortArgs(
                name=PORT_NAME, container_port=version.port, protocol="TCP"
            )
        ],
        env=[k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in sorted(version.env.items())]
        or None,
        resources=resources,
        startup_probe=startup,
        readiness_probe=readiness,
        liveness_probe=liveness,
    )
