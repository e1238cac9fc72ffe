"""The gateway-api gateway: one HTTPRoute to the per-version Services."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlserve.backends.base import Declared

if TYPE_CHECKING:
    from mlserve.backends.base import Workload
    from mlserve.spec import Spec
    from mlserve.traffic import TrafficState

API_VERSION = "gateway.networking.k8s.io/v1"


def check(spec: Spec) -> list[tuple[str, str]]:
    """The HTTPRoute CRD's CEL rule on parentRefs, which the spec's schema cannot express (the
    schema already requires a parentRef and a plain path)."""
    seen: dict[tuple[str, str], list[str | None]] = {}
    for ref in spec.gateway.gateway_api.parent_refs:
        # A parentRef without a namespace means the route's own namespace.
        key = (ref.namespace or spec.namespace, ref.name)
        seen.setdefault(key, []).append(ref.section_name)
    problems = []
    for (namespace, name), sections in seen.items():
        if len(sections) > 1 and (None in sections or len(set(sections)) < len(sections)):
            problems.append(
                (
                    "gateway.gatewayApi.parentRefs",
                    f"parent {namespace}/{name} is listed {len(sections)} times: "
                    "each needs its own, distinct sectionName",
                )
            )
    return problems


def parent_refs(spec: Spec) -> list[dict[str, str]]:
    out = []
    for ref in spec.gateway.gateway_api.parent_refs:
        d = {"name": ref.name}
        if ref.namespace is not None:
            d["namespace"] = ref.namespace
        if ref.section_name is not None:
            d["sectionName"] = ref.section_name
        out.append(d)
    return out


def rules(
    spec: Spec, traffic: TrafficState, workloads: Mapping[str, Workload]
) -> list[dict[str, Any]]:
    """A header-match rule per deployed version first, then the weighted rule."""
    path = {"type": "PathPrefix", "value": spec.gateway.path}

    def ref(version: str, weight: int) -> dict[str, Any]:
        w = workloads[version]
        return {"name": w.service_name, "port": w.port, "weight": weight}

    out: list[dict[str, Any]] = []
    header = spec.gateway.version_header
    if header is not None:
        for v in workloads:
            out.append(
                {
                    "matches": [
                        {"path": path, "headers": [{"type": "Exact", "name": header, "value": v}]}
                    ],
                    "backendRefs": [ref(v, 1)],
                }
            )
    # A canary at 0% stays listed, so a weight change edits one number.
    out.append(
        {
            "matches": [{"path": path}],
            "backendRefs": [ref(v, w) for v, w in traffic.weights().items()],
        }
    )
    return out


def declare(spec: Spec, traffic: TrafficState, workloads: Mapping[str, Workload]) -> Declared:
    import pulumi
    import pulumi_kubernetes as k8s

    from mlserve.backends import workloads as wl

    wl.require_routed(traffic, workloads)
    assert spec.gateway.host is not None  # requires_host: the loader rejects a spec without it
    route = k8s.apiextensions.CustomResource(
        spec.name,
        api_version=API_VERSION,
        kind="HTTPRoute",
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=spec.name, namespace=spec.namespace, labels=wl.labels(spec)
        ),
        spec={
            "parentRefs": parent_refs(spec),
            "hostnames": [spec.gateway.host],
            "rules": rules(spec, traffic, workloads),
        },
        opts=pulumi.ResourceOptions(
            depends_on=[r for w in workloads.values() for r in w.resources]
        ),
    )
    return Declared(routing=[route], endpoint=wl.endpoint(spec))
