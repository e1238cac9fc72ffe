"""The istio gateway: a DestinationRule with a subset per version and a VirtualService.

Istio subsets select pods behind one host, and each version's own Service `<name>-<version>` only
selects that version's pods. So this gateway adds a Service `<name>` that spans every version
(selector on the name label only): it is the DestinationRule's host, its subsets pick pods by the
version label, and the VirtualService routes to those subsets.

Istio's rules followed here are istio/api networking/v1 virtual_service.proto: the first HTTP route
whose match applies is used (so pins come first), a `prefix` match is a plain string prefix (so the
path is matched as `exact: /fraud` or `prefix: /fraud/`), header keys must be lowercase, and
`rewrite.uri` replaces the matched prefix, and `timeout` bounds a whole request (default: none).
Subset names must be DNS-1123 labels (istio
pkg/config/validation validateSubsetName), so they are the DNS-safe version names.

A mirror is `mirror` + `mirrorPercentage.value` (a double, 0-100; absent means 100) on the weighted
route only, so a pinned request is not copied (virtual_service.proto HTTPRoute fields 9 and 19).
Envoy copies the request's headers after the route's rewrite (envoyproxy/envoy
source/common/router/router.cc `Filter::decodeHeaders`: `shadow_headers_` is made after
`finalizeRequestHeaders`), so the mirrored version sees the path the served one sees (its Host
gets `-shadow` appended unless the route sets `disable_shadow_host_suffix_append`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlserve.backends.base import Declared
from mlserve.readiness import create_wait
from mlserve.spec import dns_safe, duration_seconds

if TYPE_CHECKING:
    from mlserve.backends.base import Workload
    from mlserve.spec import Spec
    from mlserve.traffic import TrafficState

API_VERSION = "networking.istio.io/v1"


def check(spec: Spec) -> list[tuple[str, str]]:
    return []


def notes(spec: Spec, traffic: TrafficState) -> list[tuple[str, str]]:
    if spec.gateway.istio.gateways:
        return []
    return [
        (
            "gateway.istio",
            "no istio.gateways: the VirtualService applies to traffic inside the mesh only, "
            f"and the endpoint is {endpoint(spec)}; name an Istio Gateway "
            "(istio.gateways: [istio-system/public]) to serve the public host",
        )
    ]


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


def endpoint(spec: Spec) -> str:
    """The public URL through a named Istio Gateway; the in-mesh URL without one."""
    from mlserve.backends import workloads

    if spec.gateway.istio.gateways:
        return workloads.endpoint(spec)
    return f"http://{workloads.dns_name(spec, spec.name)}{spec.gateway.path}"


def uri_matches(spec: Spec) -> list[dict[str, Any]]:
    """The path by segment: `/fraud` and `/fraud/...`, never `/fraudulent`."""
    from mlserve.backends import workloads

    prefix = workloads.prefix(spec)
    if prefix == "/":
        return [{"prefix": "/"}]
    return [{"exact": prefix}, {"prefix": prefix + "/"}]


def http_routes(spec: Spec, traffic: TrafficState, versions: list[str]) -> list[dict[str, Any]]:
    """Header-match routes first (one per deployed version), then the weighted route."""
    from mlserve.backends import workloads

    host = workloads.dns_name(spec, spec.name)
    uris = uri_matches(spec)
    extra: dict[str, Any] = {"rewrite": {"uri": "/"}} if workloads.strips(spec) else {}
    if spec.gateway.timeout is not None:
        # HTTPRoute.timeout, a protobuf Duration: JSON takes it in seconds ("600s").
        extra["timeout"] = f"{duration_seconds(spec.gateway.timeout)}s"
    routes: list[dict[str, Any]] = []
    header = spec.gateway.version_header
    if header is not None:
        header = header.lower()  # Istio matches header keys in lowercase only
        for v in versions:
            routes.append(
                {
                    "name": f"pin-{dns_safe(v)}",
                    "match": [{"uri": uri, "headers": {header: {"exact": v}}} for uri in uris],
                    **extra,
                    "route": [{"destination": {"host": host, "subset": dns_safe(v)}}],
                }
            )
    weighted: dict[str, Any] = {
        "name": "weighted",
        "match": [{"uri": uri} for uri in uris],
        **extra,
        "route": [
            {"destination": {"host": host, "subset": dns_safe(v)}, "weight": w}
            for v, w in traffic.weights().items()
        ],
    }
    if traffic.mirror is not None:
        weighted["mirror"] = {"host": host, "subset": dns_safe(traffic.mirror.version)}
        weighted["mirrorPercentage"] = {"value": float(traffic.mirror.percent)}
    routes.append(weighted)
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
    # It waits for a ready endpoint of any version, so as long as the slowest first start.
    wait = max(create_wait(spec.version(v)) for v in versions)
    service = k8s.core.v1.Service(
        spec.name,
        metadata=metadata,
        spec=k8s.core.v1.ServiceSpecArgs(
            selector={wl.NAME_LABEL: spec.name}, ports=[wl.service_port()]
        ),
        opts=pulumi.ResourceOptions(custom_timeouts=wl.custom_timeouts(wait, wait)),
    )
    destination_rule = k8s.apiextensions.CustomResource(
        spec.name,
        api_version=API_VERSION,
        kind="DestinationRule",
        metadata=metadata,
        spec={
            "host": wl.dns_name(spec, spec.name),
            "subsets": [{"name": dns_safe(v), "labels": {wl.VERSION_LABEL: v}} for v in versions],
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
    return Declared(routing=[destination_rule, virtual_service], endpoint=endpoint(spec))
