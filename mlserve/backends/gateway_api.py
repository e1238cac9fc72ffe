"""The gateway-api gateway: one HTTPRoute to the per-version Services."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlserve.backends.base import Declared

if TYPE_CHECKING:
    from mlserve.backends.base import Workload
    from mlserve.spec import Spec
    from mlserve.traffic import TrafficState

API_VERSION = "gateway.networking.k8s.io/v1"

# The HTTPRoute CRD's CEL rules for a PathPrefix value, which its OpenAPI schema cannot enforce.
_PATH_CHARS = re.compile(r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+$")
_PATH_FORBIDDEN = ("//", "/./", "/../", "%2f", "%2F", "#")


def check(spec: Spec) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    refs = spec.gateway.gateway_api.parent_refs
    if not refs:
        problems.append(
            (
                "gateway.gatewayApi.parentRefs",
                "the gateway-api gateway needs at least one parentRef",
            )
        )
    seen: dict[tuple[str, str | None], list[str | None]] = {}
    for ref in refs:
        seen.setdefault((ref.name, ref.namespace), []).append(ref.section_name)
    for (name, namespace), sections in seen.items():
        if len(sections) > 1 and (None in sections or len(set(sections)) < len(sections)):
            where = f"{namespace}/{name}" if namespace else name
            problems.append(
                (
                    "gateway.gatewayApi.parentRefs",
                    f"parent {where} is listed {len(sections)} times: "
                    "each needs its own, distinct sectionName",
                )
            )
    path = spec.gateway.path
    bad = [s for s in _PATH_FORBIDDEN if s in path]
    if bad or path.endswith(("/.", "/..")) or not _PATH_CHARS.match(path):
        problems.append(
            ("gateway.path", f"{path!r} is not a valid HTTPRoute path prefix (RFC 3986 characters)")
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
