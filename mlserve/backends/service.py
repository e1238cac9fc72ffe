"""The service gateway: no gateway at all, one Kubernetes Service `<name>` selecting the stable
version's pods. Every version keeps its Deployment warm; `promote --complete` points the selector
at the canary (blue-green) and `rollback` points it back at `previous`.

A Service sends every request to the pods its selector picks, and its selector is one version
here, so it cannot weight traffic, match a path or pin a request by header (Kubernetes Service,
core/v1 ServiceSpec.selector).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlserve.backends.base import Declared

if TYPE_CHECKING:
    from mlserve.backends.base import Workload
    from mlserve.spec import Spec
    from mlserve.traffic import TrafficState


def check(spec: Spec) -> list[tuple[str, str]]:
    problems = []
    t = spec.traffic
    if t.canary is not None and t.weight > 0:
        problems.append(
            (
                "traffic.weight",
                "gateway service cannot split traffic: a Service sends every request to the "
                "pods it selects; keep the canary at 0 and switch to it with "
                "`mlserve promote --complete` (blue-green)",
            )
        )
    if spec.gateway.path != "/":
        problems.append(
            (
                "gateway.path",
                "gateway service does not route by path: a Service forwards every path to the "
                "model; remove gateway.path",
            )
        )
    if spec.gateway.host is not None:
        problems.append(
            (
                "gateway.host",
                "gateway service does not route by host: clients reach the Service's address "
                "(the endpoint output); remove gateway.host",
            )
        )
    if spec.gateway.timeout is not None:
        problems.append(
            (
                "gateway.timeout",
                "gateway service has no request timeout: a Service forwards connections without "
                "reading requests; a client waits as long as it chooses",
            )
        )
    for i, step in enumerate(spec.rollout.steps if spec.rollout else ()):
        if step.weight is not None and step.weight < 100:
            problems.append(
                (
                    f"rollout.steps[{i}].weight",
                    f"gateway service cannot send {step.weight}% to the canary: a Service "
                    "selects one version; a rollout behind it can only pause (and measure) "
                    "before `complete` switches every request to the canary",
                )
            )
    return problems


def notes(spec: Spec, traffic: TrafficState) -> list[tuple[str, str]]:
    out = []
    if spec.gateway.service.type == "LoadBalancer":
        out.append(
            (
                "gateway.service.type",
                "deploy waits until the cluster's load-balancer controller gives the "
                "LoadBalancer Service an address, and fails after 10 minutes without one; kind, "
                "minikube (without `minikube tunnel`) and bare-metal clusters (without MetalLB "
                "or similar) have none: there, use type ClusterIP or NodePort",
            )
        )
    if traffic.canary is not None:
        out.append(
            (
                "traffic.canary",
                f"behind a Service the canary {traffic.canary} gets no traffic until "
                "`mlserve promote --complete` switches every request to it",
            )
        )
    return out


def endpoint(spec: Spec, service: Any) -> Any:
    """The load balancer's address once it has one (LoadBalancer), else the cluster address."""
    from mlserve.backends import workloads as wl

    inside = f"http://{wl.dns_name(spec, spec.name)}"
    if spec.gateway.service.type != "LoadBalancer":
        return inside
    return service.status.apply(lambda status: address(status) or inside)


def unaddressed(spec: Spec, outputs: Mapping[str, Any] | None) -> str | None:
    """Why the Service's wait failed, if it is a LoadBalancer that got no address: what to do.

    pulumi-kubernetes waits until a LoadBalancer Service has status.loadBalancer.ingress, 10
    minutes by default, then fails with "Service was not allocated an IP address; does your
    cloud provider support this?" (provider/pkg/await/service.go)."""
    if spec.gateway.service.type != "LoadBalancer":
        return None
    ingress = ((outputs or {}).get("status") or {}).get("loadBalancer") or {}
    if ingress.get("ingress"):
        return None
    return f"the LoadBalancer Service {spec.name} got no address within 10 minutes: {NO_ADDRESS}"


# What to do when no load balancer answers (validate's note says the same before a deploy).
NO_ADDRESS = (
    "a LoadBalancer Service gets its address from the cluster's load-balancer controller, which "
    "kind, minikube (without `minikube tunnel`) and bare-metal clusters (without MetalLB or "
    "similar) lack. Set gateway.service.type to ClusterIP (in-cluster clients) or NodePort, or "
    "install one, then deploy again"
)


def address(status: Any) -> str | None:
    """`http://<ip or hostname>` of a Service's status.loadBalancer.ingress[0], if any."""
    balancer = getattr(status, "load_balancer", None)
    for ingress in getattr(balancer, "ingress", None) or []:
        host = ingress.ip or ingress.hostname
        if host:
            return f"http://{host}"
    return None


def declare(spec: Spec, traffic: TrafficState, workloads: Mapping[str, Workload]) -> Declared:
    import pulumi
    import pulumi_kubernetes as k8s

    from mlserve.backends import workloads as wl

    wl.require_routed(traffic, workloads)
    stable = workloads[traffic.stable]
    service = k8s.core.v1.Service(
        spec.name,
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=spec.name, namespace=spec.namespace, labels=wl.labels(spec)
        ),
        spec=k8s.core.v1.ServiceSpecArgs(
            type=spec.gateway.service.type,
            selector=wl.selector(spec, traffic.stable),
            ports=[wl.service_port()],
        ),
        # The stable's pods must be Ready before the selector points at them.
        opts=pulumi.ResourceOptions(depends_on=list(stable.resources)),
    )
    return Declared(routing=[service], endpoint=endpoint(spec, service))
