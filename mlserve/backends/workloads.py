"""The Kubernetes workloads every image-running gateway shares: a Deployment and a Service per
image version, named `<name>-<version>` with the version made DNS-safe (`fraud-1-10` for `1.10`),
labelled with the version as written (DESIGN.md section 3).

Only call `declare` inside a running Pulumi program; importing this module never imports Pulumi.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
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
    from mlserve.capacity import Scale
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


def declare(
    spec: Spec, scales: Mapping[str, Scale], late: Collection[str] = ()
) -> dict[str, Workload]:
    """A Deployment (with its autoscaler, if any) and a Service for every version with an image,
    keyed by version name, each run as `scales` says (capacity.py). A version in `late`, whose
    capacity falls, gets only its Service here, and the routing does not wait on its pods:
    `declare_late` adds its Deployment and autoscaler once the routing is declared."""
    return {
        v.name: _workload(spec, v, scales[v.name], v.name in late)
        for v in spec.versions
        if v.image is not None
    }


def declare_late(
    spec: Spec, scales: Mapping[str, Scale], late: Collection[str], routing: Sequence[Any]
) -> None:
    """The Deployments and autoscalers of the versions in `late`, depending on the routing
    resources: scaled down only after the traffic moved off them (capacity.py)."""
    for v in spec.versions:
        if v.image is not None and v.name in late:
            _scaled(spec, v, scales[v.name], after=routing)


# --- the Deployment and the Service ---------------------------------------------------------


def custom_timeouts(create: int, update: int) -> Any:
    """How long pulumi-kubernetes waits for a resource to become ready (see readiness.py); None
    where that is its own default."""
    import pulumi

    if create == update == PULUMI_WAIT_SECONDS:
        return None
    return pulumi.CustomTimeouts(create=f"{create}s", update=f"{update}s")


def _workload(spec: Spec, version: Version, scale: Scale, late: bool = False) -> Workload:
    import pulumi
    import pulumi_kubernetes as k8s

    name = spec.object_name(version.name)
    metadata = k8s.meta.v1.ObjectMetaArgs(
        name=name, namespace=spec.namespace, labels=labels(spec, version.name)
    )
    scaled = () if late else _scaled(spec, version, scale)
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
        resources=(*scaled, service),
    )


def _scaled(
    spec: Spec, version: Version, scale: Scale, after: Sequence[Any] = ()
) -> tuple[Any, ...]:
    """The version's Deployment, and its HorizontalPodAutoscaler if `scale` has one."""
    import pulumi
    import pulumi_kubernetes as k8s

    name = spec.object_name(version.name)
    hpa = autoscaler(spec, version, scale, after) if scale.hpa is not None else None
    # An autoscaled Deployment waits for its autoscaler to be updated first (the floor it waits
    # for is the autoscaler's to reach).
    needs = [*after, *([hpa] if hpa is not None and scale.autoscaled else [])]
    deployment = k8s.apps.v1.Deployment(
        name,
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=name,
            namespace=spec.namespace,
            labels=labels(spec, version.name),
            annotations=deployment_annotations(scale),
        ),
        spec=deployment_spec(spec, version, scale.replicas),
        opts=pulumi.ResourceOptions(
            custom_timeouts=custom_timeouts(create_wait(version), update_wait(version)),
            depends_on=needs or None,
            # Left to the autoscaler: see deployment_annotations.
            ignore_changes=["spec.replicas"] if scale.replicas is None else None,
        ),
    )
    return (deployment, hpa) if hpa is not None else (deployment,)


def deployment_spec(spec: Spec, version: Version, replicas: int | None) -> Any:
    """`replicas` None: the Deployment leaves the count to an autoscaler."""
    import pulumi_kubernetes as k8s

    return k8s.apps.v1.DeploymentSpecArgs(
        replicas=replicas,
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


# --- capacity: replicas, the autoscaler, and what the provider waits for ----------------------
#
# pulumi-kubernetes updates an object by server-side apply, sending the declared object whole as
# its applied configuration under its own field manager (provider/pkg/await/await.go `ssaUpdate`:
# an ApplyPatchType patch of the inputs). A field the configuration leaves out is removed if that
# manager alone owned it, and the API server defaults it again: spec.replicas back to 1 (the
# Kubernetes docs' server-side apply page, "Transferring ownership"; seen on the real stack). A
# field another manager owns is left as it is. So an autoscaled Deployment leaves `replicas`
# out: created that way, the provider never owns the count, and a later deploy leaves the
# autoscaler's count alone.
#
# A Deployment that had a fixed count is the provider's to drop, though: `ignore_changes` on
# spec.replicas makes the provider send the live count instead while no other manager owns the
# field, and leave it out once one does (await.go `handleSSAIgnoreFields`), so turning a version
# autoscaled never drops it to 1 pod. The same code also claims a count nobody owns (the
# autoscaler controller's writes through the scale subresource record no owner of a field that
# had none, as seen on the real stack), always with the live value, until the autoscaler next
# changes it and so becomes its owner. An apply that sets a count the autoscaler controller owns
# is a conflict unless forced, and the provider's read of the live count can precede an
# autoscaler's write by milliseconds: every Deployment beside an autoscaler is applied forced
# (pulumi.com/patchForce; capacity.Scale.take), so that race costs at worst one autoscaler sync
# period (15 s) of a stale count, never a failed update.

WAIT_FOR = "pulumi.com/waitFor"
PATCH_FORCE = "pulumi.com/patchForce"


def ready_condition(floor: int) -> str:
    """`pulumi.com/waitFor` for an autoscaled Deployment: the rollout is complete (Progressing,
    reason NewReplicaSetAvailable, what the provider's own Deployment await checks:
    provider/pkg/await/deployment.go) and at least `floor` pods are Ready. The annotation replaces
    the provider's await (provider/pkg/metadata/overrides.go `ReadyCondition`; await.go `Update`),
    which would count only the replicas the Deployment has when the update lands, before the
    autoscaler raised them to its new min (it acts within its sync period, 15 s by default).

    JSONPath as RFC 9535 (the provider parses it with github.com/theory/jsonpath, after
    splitting `path=value` on a single `=`, so the count is compared with `>`, not `>=`); the
    provider also waits until status.observedGeneration is current (condition/jsonpath.go)."""
    return json.dumps(
        [
            "jsonpath={.status.conditions[?@.type=='Progressing'].reason}=NewReplicaSetAvailable",
            f"jsonpath={{$[?@.readyReplicas > {floor - 1}]}}",
        ]
    )


def deployment_annotations(scale: Scale) -> dict[str, str] | None:
    """The Deployment's own annotations (not its pods'): what the provider waits for when an
    autoscaler sets the count, and a forced apply beside an autoscaler (pulumi.com/patchForce,
    await.go `patchForce`; capacity.Scale.take)."""
    out = {}
    if scale.autoscaled and scale.floor > 0:
        out[WAIT_FOR] = ready_condition(scale.floor)
    if scale.take:
        out[PATCH_FORCE] = "true"
    return out or None


def autoscaler(spec: Spec, version: Version, scale: Scale, after: Sequence[Any] = ()) -> Any:
    """The version's HorizontalPodAutoscaler (autoscaling/v2), scaling its Deployment between
    the bounds `scale` gives, on the average utilization of the pods' requests."""
    import pulumi
    import pulumi_kubernetes as k8s

    assert scale.hpa is not None and version.autoscale is not None
    name = spec.object_name(version.name)
    low, high = scale.hpa
    metrics = [
        k8s.autoscaling.v2.MetricSpecArgs(
            type="Resource",
            resource=k8s.autoscaling.v2.ResourceMetricSourceArgs(
                name=resource,
                target=k8s.autoscaling.v2.MetricTargetArgs(
                    type="Utilization", average_utilization=percent
                ),
            ),
        )
        for resource, percent in (
            ("cpu", version.autoscale.cpu),
            ("memory", version.autoscale.memory),
        )
        if percent is not None
    ]
    return k8s.autoscaling.v2.HorizontalPodAutoscaler(
        name,
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=name, namespace=spec.namespace, labels=labels(spec, version.name)
        ),
        spec=k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs(
            scale_target_ref=k8s.autoscaling.v2.CrossVersionObjectReferenceArgs(
                api_version="apps/v1", kind="Deployment", name=name
            ),
            min_replicas=low,
            max_replicas=high,
            metrics=metrics,
        ),
        opts=pulumi.ResourceOptions(depends_on=list(after) or None),
    )
