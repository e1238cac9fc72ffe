"""The istio gateway: a DestinationRule with a subset per version and a VirtualService.

Istio subsets select pods behind one host, and each version's own Service `<name>-<version>` only
selects that version's pods. So this gateway adds a Service `<name>` that spans every version
(selector on the name label only): it is the DestinationRule's host, its subsets pick pods by the
version label, and the VirtualService routes to those subsets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlserve.backends.base import Declared

if TYPE_CHECKING:
    from mlserve.backends.base import Workload
    from mlserve.spec import Spec
    from mlserve.traffic import TrafficState

API_VERSION = "networking.istio.io/v1"


def check(spec: Spec) -> list[tuple[str, str]]:
    return []


def hosts(spec: Spec) -> list[str]:
    """The public host and the in-mesh name of the `<name>` Service."""
    from mlserve.backends import workloads

    assert spec.gateway.host is not None  # requires_host: the loader rejects a spec without it
    return [spec.gateway.host, workloads.dns_name(spec, spec.name)]


def gateways(spec: Spec) -> list[str] | None:
    """The VirtualService's gateways: None leaves Istio's default, the mesh only.

    Naming gateways replaces that default, so "mesh" is added back: in-mesh clients calling the
    `<name>` Service then get the same weights and pinning as requests through the gateways.
    """
    if not spec.gateway.istio.gateways:
        return None
    return [*spec.gateway.istio.gateways, "mesh"]


def http_routes(spec: Spec, traffic: TrafficState, versions: list[str]) -> list[dict[str, Any]]:
    """Header-match routes first (one per deployed version), then the weighted route."""
    from mlserve.backends import workloads

    host = workloads.dns_name(spec, spec.name)
    prefix = {"prefix": spec.gateway.path}
    routes: list[dict[str, Any]] = []
    header = spec.gateway.version_header
    if header is not None:
        header = header.lower()  # Istio matches header keys in lowercase only
        for v in versions:
            routes.append(
                {
                    "name": f"pin-{v}",
                    "match": [{"uri": prefix, "headers": {header: {"exact": v}}}],
                    "route": [{"destination": {"host": host, "subset": v}}],
                }
            )
    routes.append(
        {
            "name": "weighted",
            "match": [{"uri": prefix}],
            "route": [
                {"destination": {"host": host, "subset": v}, "weight": w}
                for v, w in traffic.weights().items()
            ],
        }
    )
    return routes


def declare(spec: Spec, traffic: TrafficState, workloads: Mapping[str, Workload]) -> Declared:
    import pulumi
    import pulumi_kubernetes as k8s

    from mlserve.backends import workloads as wl

    wl.require_routed(traffic, workloads)
    versions = list(workloads)
    targets = [r for w in workloads.values() for r in w.resources]
    metadata = k8s.meta.v1.ObjectMetaArgs(
        name=spec.name, namespace=spec.namespace, labels=wl.labels(spec)
    )
    service = k8s.core.v1.Service(
        spec.name,
        metadata=metadata,
        spec=k8s.core.v1.ServiceSpecArgs(
            selector={wl.NAME_LABEL: spec.name}, ports=[wl.service_port()]
        ),
    )
    destination_rule = k8s.apiextensions.CustomResource(
        spec.name,
        api_version=API_VERSION,
        kind="DestinationRule",
        metadata=metadata,
        spec={
            "host": wl.dns_name(spec, spec.name),
            "subsets": [{"name": v, "labels": {wl.VERSION_LABEL: v}} for v in versions],
        },
        opts=pulumi.ResourceOptions(depends_on=[service, *targets]),
    )
    vs_spec: dict[str, Any] = {"hosts": hosts(spec)}
    gws = gateways(spec)
    if gws is not None:
        vs_spec["gateways"] = gws
    vs_spec["http"] = http_routes(spec, traffic, versions)
    # The subsets must exist before a route names them, or Envoy answers 503 in between.
    virtual_service = k8s.apiextensions.CustomResource(
        spec.name,
        api_version=API_VERSION,
        kind="VirtualService",
        metadata=metadata,
        spec=vs_spec,
        opts=pulumi.ResourceOptions(depends_on=[destination_rule, service, *targets]),
    )
    return Declared(
        routing=[destination_rule, virtual_service],
        endpoint=wl.endpoint(spec),
    )
