"""The ingress-nginx gateway: a main Ingress to the stable version and a canary Ingress.

ingress-nginx merges a canary Ingress into the main one only when both declare the same host and
path, and allows one canary per rule: so at most stable + canary are routed. Any other deployed
version (`previous` after a completed promotion) keeps its workload and gets no Ingress.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlserve.backends.base import Declared

if TYPE_CHECKING:
    from mlserve.backends.base import Workload
    from mlserve.spec import Spec
    from mlserve.traffic import TrafficState

ANNOTATION = "nginx.ingress.kubernetes.io/"


def check(spec: Spec) -> list[tuple[str, str]]:
    return []


def canary_name(spec: Spec) -> str:
    # name <= 40 chars, so `<name>-canary` <= 47: within the 63-char limit.
    return f"{spec.name}-canary"


def canary_annotations(spec: Spec, traffic: TrafficState) -> dict[str, str]:
    """All string values, as ingress-nginx requires."""
    assert traffic.canary is not None
    out = {f"{ANNOTATION}canary": "true", f"{ANNOTATION}canary-weight": str(traffic.weight)}
    header = spec.gateway.version_header
    if header is not None:
        # With the value set, `<header>: <canary version>` selects the canary, as the other
        # gateways do; without it, ingress-nginx would expect the words "always"/"never".
        out[f"{ANNOTATION}canary-by-header"] = header
        out[f"{ANNOTATION}canary-by-header-value"] = traffic.canary
    return out


def ingress_spec(spec: Spec, workload: Workload) -> Any:
    import pulumi_kubernetes as k8s

    return k8s.networking.v1.IngressSpecArgs(
        ingress_class_name=spec.gateway.ingress_nginx.class_name,
        rules=[
            k8s.networking.v1.IngressRuleArgs(
                host=spec.gateway.host,
                http=k8s.networking.v1.HTTPIngressRuleValueArgs(
                    paths=[
                        k8s.networking.v1.HTTPIngressPathArgs(
                            path=spec.gateway.path,
                            path_type="Prefix",
                            backend=k8s.networking.v1.IngressBackendArgs(
                                service=k8s.networking.v1.IngressServiceBackendArgs(
                                    name=workload.service_name,
                                    port=k8s.networking.v1.ServiceBackendPortArgs(
                                        number=workload.port
                                    ),
                                )
                            ),
                        )
                    ]
                ),
            )
        ],
    )


def declare(spec: Spec, traffic: TrafficState, workloads: Mapping[str, Workload]) -> Declared:
    import pulumi
    import pulumi_kubernetes as k8s

    from mlserve.backends import workloads as wl

    wl.require_routed(traffic, workloads)
    stable = workloads[traffic.stable]
    main = k8s.networking.v1.Ingress(
        spec.name,
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=spec.name, namespace=spec.namespace, labels=wl.labels(spec)
        ),
        spec=ingress_spec(spec, stable),
        opts=pulumi.ResourceOptions(depends_on=list(stable.resources)),
    )
    routing: list[pulumi.Resource] = [main]
    if traffic.canary is not None:
        canary = workloads[traffic.canary]
        routing.append(
            k8s.networking.v1.Ingress(
                canary_name(spec),
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=canary_name(spec),
                    namespace=spec.namespace,
                    labels=wl.labels(spec),
                    annotations=canary_annotations(spec, traffic),
                ),
                spec=ingress_spec(spec, canary),
                # The controller drops a canary whose main Ingress is missing.
                opts=pulumi.ResourceOptions(depends_on=[main, *canary.resources]),
            )
        )
    return Declared(routing=routing, endpoint=wl.endpoint(spec))
