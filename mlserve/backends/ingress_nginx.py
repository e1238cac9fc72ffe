"""The ingress-nginx gateway: a main Ingress to the stable version and a canary Ingress.

ingress-nginx merges a canary Ingress into the main one only when both declare the same host and
path, and allows one canary per rule: so at most stable + canary are routed. Any other deployed
version (`previous` after a completed promotion) keeps its workload and gets no Ingress.

The rules followed are ingress-nginx's: docs/user-guide/nginx-configuration/annotations.md
(Canary, Rewrite, use-regex) and rootfs/etc/nginx/lua/balancer.lua route_to_alternative_balancer:
`canary-by-header-value` sends a request to the canary when the header equals it, and any other
value falls through to `canary-weight`, so only the canary can be pinned.

A mirror is the `mirror-target` annotation on the main Ingress (annotations.md, Mirror): nginx's
mirror module copies every request of the Ingress's location to `location = /_mirror-<uid>`, which
proxies to the target (internal/ingress/annotations/mirror/main.go, template.go
buildMirrorLocations). The target is `http://<service DNS name>:<port>$request_uri`: proxy_pass
with variables sends the URI as written, and `$request_uri` is the original request URI with its
query (the subrequest shares `unparsed_uri` with its parent, nginx ngx_http_subrequest), not the
one rewrite-target made: hence no mirror with stripPath (base.mirror_problem), and no percentage.
The canary Ingress takes no mirror annotation: ingress-nginx ignores a canary's other annotations
(annotations.md, Canary), and the canary's requests (weighted or pinned by header) pass through the
main Ingress's location, so they are copied too. mirror-target's risk is High, which the default
`annotations-risk-level` (High) allows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlserve.backends.base import Declared
from mlserve.backends.workloads import prefix, strips
from mlserve.spec import duration_seconds

if TYPE_CHECKING:
    from mlserve.backends.base import Workload
    from mlserve.spec import Spec
    from mlserve.traffic import TrafficState

ANNOTATION = "nginx.ingress.kubernetes.io/"
# The admission webhook (internal/ingress/controller/controller.go CheckIngress) refuses an
# Ingress whose path of pathType Prefix or Exact (any but ImplementationSpecific) does not match
# internal/ingress/inspector/rules.go validPathType (inspector.go ValidatePathType), when the
# configmap's strict-validate-path-type is on: its default since controller 1.12.0 (config.go;
# changelog/controller-1.12.0.md). The rule as documented (docs/user-guide/nginx-configuration/
# configmap.md, strict-validate-path-type) and as 1.12.0-1.12.5 and 1.13.0-1.13.1 enforce it:
# letters, digits, '_', '-' and '/'. 1.12.6, 1.13.2 and 1.14.0 let '.' through too (#13798);
# a spec should deploy behind any of them.
_STRICT_PATH = re.compile(r"^/[A-Za-z0-9_/-]*$")
# rules.go invalidEtcDir, invalidSecretsDir, invalidByLuaDirective: with --deep-inspect (on by
# default) the webhook refuses an Ingress any of whose paths, of any type, contains one of these
# (inspector/ingress.go inspectIngressRule). The alias and root patterns need a ';', which no
# spec path holds.
_DEEP_INSPECT = re.compile(
    r"/etc/(passwd|shadow|group|nginx|ingress-controller)|/var/run/secrets|_by_lua"
)
# internal/ingress/annotations/parser/validators.go BasicCharsRegex, which canary-by-header and
# canary-by-header-value must match (internal/ingress/annotations/canary/main.go).
_BASIC_CHARS = re.compile(r"^[A-Za-z0-9._~:/-]+$")


def check(spec: Spec) -> list[tuple[str, str]]:
    problems = []
    written = spec.gateway.path
    path, path_type = path_rule(spec)
    if path_type != "ImplementationSpecific" and not _STRICT_PATH.match(path):
        bad = sorted({c for c in path if not _STRICT_PATH.match("/" + c)})
        dot = (
            " (controllers 1.12.6, 1.13.2 and 1.14 on also take '.'; earlier 1.12 and 1.13 "
            "ones refuse it)"
            if "." in bad
            else ""
        )
        problems.append(
            (
                "gateway.path",
                f"'{written}' has characters ingress-nginx refuses in a Prefix path "
                f"({', '.join(repr(c) for c in bad)}): with stripPath: false mlserve renders "
                "pathType Prefix, and with its default strict-validate-path-type (controller "
                "1.12 and later) ingress-nginx allows only letters, digits, '_', '-' and '/' "
                f"there{dot}; rename the path, or set stripPath: true (the model then sees paths "
                "without the prefix), which renders an ImplementationSpecific regex path that "
                "the rule leaves alone",
            )
        )
    refused = _DEEP_INSPECT.search(path)
    if refused:
        problems.append(
            (
                "gateway.path",
                f"'{written}' holds '{refused.group()}', which ingress-nginx's deep inspection "
                "(--deep-inspect, on by default) refuses in any Ingress path: choose another path",
            )
        )
    header = spec.gateway.version_header
    if header is not None and not _BASIC_CHARS.match(header):
        problems.append(
            (
                "gateway.versionHeader",
                f"'{header}' is not a header name ingress-nginx accepts in canary-by-header: use "
                "letters, digits, '-', '_' and '.'",
            )
        )
    return problems


def notes(spec: Spec, traffic: TrafficState) -> list[tuple[str, str]]:
    out = []
    header = spec.gateway.version_header
    if header is not None:
        canary = f"`{header}: {traffic.canary}`" if traffic.canary else "the canary's name"
        out.append(
            (
                "gateway.versionHeader",
                f"ingress-nginx can pin only the canary: {canary} reaches it, and a request "
                f"naming any other version follows the weights (canary-by-header-value)",
            )
        )
    if traffic.mirror is not None:
        out.append(
            (
                "traffic.mirror",
                f"ingress-nginx copies every request to {traffic.mirror.version}, pinned ones "
                "too, and a slow mirror slows the answers users get (annotations.md, Mirror)",
            )
        )
    if strips(spec):
        out.append(
            (
                "gateway.stripPath",
                "stripPath on ingress-nginx uses a regex path with rewrite-target, and "
                f"ingress-nginx then matches every path of host {spec.gateway.host} as a "
                "case-insensitive regex, in every Ingress (annotations.md, use-regex)",
            )
        )
    return out


def path_rule(spec: Spec) -> tuple[str, str]:
    """(path, pathType). Prefix matches by path element (Kubernetes Ingress); to strip the
    prefix, a regex captures the rest for rewrite-target (annotations.md, Rewrite)."""
    if strips(spec):
        return re.escape(prefix(spec)) + "(/|$)(.*)", "ImplementationSpecific"
    return prefix(spec), "Prefix"


def main_annotations(
    spec: Spec, traffic: TrafficState, workloads: Mapping[str, Workload]
) -> dict[str, str] | None:
    out = {}
    if strips(spec):
        out = {f"{ANNOTATION}use-regex": "true", f"{ANNOTATION}rewrite-target": "/$2"}
    if traffic.mirror is not None:
        out[f"{ANNOTATION}mirror-target"] = mirror_target(workloads[traffic.mirror.version])
    if spec.gateway.timeout is not None:
        # Seconds between two reads from the model (internal/ingress/annotations/proxy/main.go,
        # an integer). Only on the main Ingress: a canary Ingress takes the main one's
        # annotations but the canary, affinity and load-balance ones (annotations.md, Canary).
        out[f"{ANNOTATION}proxy-read-timeout"] = str(duration_seconds(spec.gateway.timeout))
    return out or None


def mirror_target(workload: Workload) -> str:
    """Where nginx sends the copy: the version's Service, the request's original URI."""
    return f"http://{workload.dns_name}:{workload.port}$request_uri"


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
        # nginx reads the header as $http_<name>, in lowercase (balancer.lua).
        out[f"{ANNOTATION}canary-by-header"] = header.lower()
        out[f"{ANNOTATION}canary-by-header-value"] = traffic.canary
    return out


def ingress_spec(spec: Spec, workload: Workload) -> Any:
    import pulumi_kubernetes as k8s

    path, path_type = path_rule(spec)
    return k8s.networking.v1.IngressSpecArgs(
        ingress_class_name=spec.gateway.ingress_nginx.class_name,
        rules=[
            k8s.networking.v1.IngressRuleArgs(
                host=spec.gateway.host,
                http=k8s.networking.v1.HTTPIngressRuleValueArgs(
                    paths=[
                        k8s.networking.v1.HTTPIngressPathArgs(
                            path=path,
                            path_type=path_type,
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
    mirrored = [workloads[traffic.mirror.version]] if traffic.mirror else []
    main = k8s.networking.v1.Ingress(
        spec.name,
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=spec.name,
            namespace=spec.namespace,
            labels=wl.labels(spec),
            annotations=main_annotations(spec, traffic, workloads),
        ),
        spec=ingress_spec(spec, stable),
        opts=pulumi.ResourceOptions(
            depends_on=[r for w in (stable, *mirrored) for r in w.resources]
        ),
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
