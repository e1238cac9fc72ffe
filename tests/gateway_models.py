"""How each gateway routes a request, modelled from its upstream source or documentation (named
beside each rule), to check that what mlserve renders sends the traffic the spec says.

A model reads only rendered resources, the way the gateway reads its configuration; it never calls
mlserve. It answers, for one request, which model version serves what share of such requests and
which path the model sees, and which version gets a copy of what share of them (a mirror: its
answers are dropped) with the path the copy carries. Versions are found the way a request finds
them: a Kubernetes Service selects pods, and the pods run an image; a url backend is its address.
The test says which image or address is which version (`Backends`), from the spec it rendered.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any
from urllib.parse import urlsplit

from mlserve.render import RenderedResource


@dataclass(frozen=True)
class Request:
    path: str
    host: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    scheme: str = "https"
    via: str | None = None  # istio: the Istio Gateway the request enters through; None: the mesh


@dataclass(frozen=True)
class Routed:
    shares: Mapping[str, Fraction]  # version -> share of such requests; empty: nobody serves it
    path: str | None = None  # the path the model sees
    mirrored: Mapping[str, Fraction] = field(default_factory=dict)  # version -> share copied
    mirror_path: str | None = None  # the path the copies carry


NOT_ROUTED = Routed({})


@dataclass(frozen=True)
class Backends:
    """What the test knows from the spec: which image and which url is which version."""

    images: Mapping[str, str]  # image -> version
    urls: Mapping[str, str] = field(default_factory=dict)  # url -> version

    def of_url(self, url: str) -> tuple[str, str]:
        """The version whose url `url` starts with, and the path appended to it."""
        for base, version in self.urls.items():
            base = base.rstrip("/")
            if url.rstrip("/") == base or url.startswith(base + "/"):
                return version, url[len(base) :].rstrip("/")
        raise AssertionError(f"no version serves {url}")

    def of_address(self, host: str, port: int) -> str | None:
        for url, version in self.urls.items():
            parts = urlsplit(url)
            default = 443 if parts.scheme == "https" else 80
            if (parts.hostname, parts.port or default) == (host, port):
                return version
        return None


def kind(r: RenderedResource) -> str:
    return r.type.rsplit(":", 1)[-1]


def of_kind(resources: list[RenderedResource], k: str) -> list[RenderedResource]:
    """The Kubernetes objects of one kind."""
    return [r for r in resources if r.type.startswith("kubernetes:") and kind(r) == k]


def service_version(resources: list[RenderedResource], name: str, backends: Backends) -> str:
    """The version a Kubernetes Service named `name` reaches: the Deployments whose pod labels
    include the Service's selector (core/v1 ServiceSpec.selector), by their image."""
    [service] = [
        r for r in of_kind(resources, "Service") if r.inputs["metadata"]["name"] == name
    ] or [None]
    assert service is not None, f"no Service {name}"
    selector = service.inputs["spec"]["selector"]
    images = {
        c["image"]
        for d in of_kind(resources, "Deployment")
        if selector.items() <= d.inputs["spec"]["template"]["metadata"]["labels"].items()
        for c in d.inputs["spec"]["template"]["spec"]["containers"]
    }
    versions = {backends.images[i] for i in images}
    assert len(versions) == 1, f"Service {name} selects pods of {sorted(versions) or 'nothing'}"
    return versions.pop()


def split(weights: list[tuple[str, int]]) -> dict[str, Fraction]:
    """weight/(sum of weights) per version, weight 0 getting none (Istio virtual_service.proto
    HTTPRouteDestination.weight; Gateway API shared_types.go BackendRef.Weight)."""
    total = sum(w for _, w in weights)
    out: dict[str, Fraction] = {}
    for version, w in weights:
        if w > 0:
            out[version] = out.get(version, Fraction(0)) + Fraction(w, total)
    return out


def segment_prefix(prefix: str, path: str) -> bool:
    """A path prefix matched element by element, a trailing '/' ignored (Gateway API
    httproute_types.go PathMatchPathPrefix; Kubernetes Ingress pathType Prefix)."""
    prefix = prefix.rstrip("/")
    return prefix == "" or path == prefix or path.startswith(prefix + "/")


# --- Istio: istio/api networking/v1 virtual_service.proto --------------------------------------


def istio(resources: list[RenderedResource], request: Request, backends: Backends) -> Routed:
    [vs] = of_kind(resources, "VirtualService")
    [dr] = of_kind(resources, "DestinationRule")
    spec = vs.inputs["spec"]
    # `gateways`: omitted means the mesh only; named gateways replace that unless "mesh" is named.
    bound = spec.get("gateways", ["mesh"])
    if (request.via or "mesh") not in bound or request.host not in spec["hosts"]:
        return NOT_ROUTED
    subsets = {s["name"]: s["labels"] for s in dr.inputs["spec"]["subsets"]}
    # HTTP/2 header names are lowercase on the wire; Envoy compares them so, hence Istio's rule
    # that match keys must be lowercase.
    headers = {k.lower(): v for k, v in request.headers.items()}
    # "The first rule matching an incoming request is used."
    for route in spec["http"]:
        for match in route.get("match") or [{}]:
            matched = _istio_uri(match.get("uri"), request.path)
            if matched is None:
                continue
            if any(headers.get(k) != v["exact"] for k, v in match.get("headers", {}).items()):
                continue
            path = request.path
            if "rewrite" in route:
                # "the value provided in this field will replace the corresponding matched prefix"
                path = route["rewrite"]["uri"] + request.path[len(matched) :]
            destinations = route["route"]
            if len(destinations) == 1:  # "it will receive all traffic"
                destinations = [{**destinations[0], "weight": 1}]
            weights = [
                (
                    _istio_subset(resources, subsets[d["destination"]["subset"]], backends),
                    d["weight"],
                )
                for d in destinations
            ]
            mirrored: dict[str, Fraction] = {}
            assert "mirrorPercent" not in route and "mirrors" not in route, "not modelled"
            if "mirror" in route:
                # `mirror` (field 9) with `mirrorPercentage` (19): "If this field is absent, all
                # the traffic (100%) will be mirrored." Envoy copies the headers after the
                # route's rewrite (envoy source/common/router/router.cc decodeHeaders), so the
                # copy carries the rewritten path.
                version = _istio_subset(resources, subsets[route["mirror"]["subset"]], backends)
                value = route.get("mirrorPercentage", {}).get("value", 100.0)
                mirrored[version] = Fraction(value) / 100
            return Routed(split(weights), path, mirrored, path if mirrored else None)
    return NOT_ROUTED


def _istio_uri(uri: dict[str, str] | None, path: str) -> str | None:
    """The matched part of the path, or None. `prefix` is a plain string prefix."""
    if uri is None:
        return ""
    if "exact" in uri:
        return path if path == uri["exact"] else None
    return uri["prefix"] if path.startswith(uri["prefix"]) else None


def _istio_subset(
    resources: list[RenderedResource], labels: Mapping[str, str], backends: Backends
) -> str:
    images = {
        c["image"]
        for d in of_kind(resources, "Deployment")
        if labels.items() <= d.inputs["spec"]["template"]["metadata"]["labels"].items()
        for c in d.inputs["spec"]["template"]["spec"]["containers"]
    }
    [image] = images
    return backends.images[image]


# --- Gateway API: kubernetes-sigs/gateway-api apis/v1/httproute_types.go ------------------------


def gateway_api(resources: list[RenderedResource], request: Request, backends: Backends) -> Routed:
    [route] = of_kind(resources, "HTTPRoute")
    spec = route.inputs["spec"]
    if request.host not in spec["hostnames"]:
        return NOT_ROUTED
    headers = {k.lower(): v for k, v in request.headers.items()}  # HTTPHeaderName: case-insensitive
    candidates = []
    for order, rule in enumerate(spec["rules"]):
        for match in rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]:
            path = match.get("path", {"type": "PathPrefix", "value": "/"})
            if path["type"] == "Exact":
                ok = request.path == path["value"]
            else:
                ok = segment_prefix(path["value"], request.path)
            wanted = match.get("headers", [])
            if ok and all(headers.get(h["name"].lower()) == h["value"] for h in wanted):
                # Precedence: an Exact path, then the longest prefix, then the most header
                # matches; on a tie the first rule in list order.
                key = (path["type"] == "Exact", len(path["value"]), len(wanted), -order)
                candidates.append((key, rule, path["value"]))
    if not candidates:
        return NOT_ROUTED
    _, rule, prefix = max(candidates, key=lambda c: c[0])
    namespace = route.inputs["metadata"]["namespace"]
    weights = [
        (_backend_version(resources, ref, namespace, backends), ref.get("weight", 1))
        for ref in rule["backendRefs"]
    ]
    served = _gateway_api_rewrite(rule.get("filters", []), prefix, request.path)
    mirrored: dict[str, Fraction] = {}
    mirror_paths = set()
    for i, f in enumerate(rule.get("filters", [])):
        if f["type"] != "RequestMirror":
            continue
        # HTTPRequestMirrorFilter: `percent` (0-100) or `fraction` (numerator over denominator,
        # default 100), one of the two; "If neither field is specified, 100% of requests will
        # be mirrored." Filters apply "in the order they are specified" (HTTPRouteRule.Filters):
        # the copy carries the path as the filters before it left it.
        m = f["requestMirror"]
        if "fraction" in m:
            share = Fraction(m["fraction"]["numerator"], m["fraction"].get("denominator", 100))
        else:
            share = Fraction(m.get("percent", 100), 100)
        version = service_version(resources, m["backendRef"]["name"], backends)
        mirrored[version] = mirrored.get(version, Fraction(0)) + share
        mirror_paths.add(_gateway_api_rewrite(rule["filters"][:i], prefix, request.path))
    assert len(mirror_paths) <= 1
    return Routed(split(weights), served, mirrored, mirror_paths.pop() if mirror_paths else None)


def _backend_version(
    resources: list[RenderedResource], ref: dict[str, Any], namespace: str, backends: Backends
) -> str:
    """A backendRef's version: a Service (the default group "" and kind Service, its port
    required, shared_types.go BackendObjectReference) or an InferencePool."""
    assert ref.get("namespace", namespace) == namespace, "no ReferenceGrant: same namespace only"
    group, kind_ = ref.get("group", ""), ref.get("kind", "Service")
    if (group, kind_) == ("", "Service"):
        assert "port" in ref, "a Service backendRef needs its port (the CRD's CEL rule)"
        return service_version(resources, ref["name"], backends)
    assert (group, kind_) == (GIE_GROUP, "InferencePool"), f"unknown backend {group}/{kind_}"
    return pool_version(resources, ref["name"], namespace, backends)


# --- Gateway API Inference Extension: kubernetes-sigs/gateway-api-inference-extension v1.6.0 ------

GIE_GROUP = "inference.networking.k8s.io"


def pool_version(
    resources: list[RenderedResource], name: str, namespace: str, backends: Backends
) -> str:
    """The version an InferencePool serves. A request routed to the pool goes to a pod its endpoint
    picker chooses among the pool's members: the pods in the pool's namespace whose labels hold
    every `selector.matchLabels` entry, each reached on every `targetPorts` number (api/v1/
    inferencepool_types.go Selector, TargetPorts: "addressable as a 'podIP:portNumber'"). Which pod
    it picks is the picker's business; that every member runs one version is checked here, and
    that the members listen on the target ports. A backendRef's port is ignored for a pool
    (conformance/tests/inferencepool_httproute_port_validation.go, scenario 3)."""
    [pool] = [
        r
        for r in of_kind(resources, "InferencePool")
        if (r.inputs["metadata"]["name"], r.inputs["metadata"]["namespace"]) == (name, namespace)
    ] or [None]
    assert pool is not None, f"no InferencePool {namespace}/{name}: the backendRef is unresolved"
    selector = pool.inputs["spec"]["selector"]["matchLabels"]
    ports = {p["number"] for p in pool.inputs["spec"]["targetPorts"]}
    images = set()
    for d in of_kind(resources, "Deployment"):
        template = d.inputs["spec"]["template"]
        if d.inputs["metadata"]["namespace"] != namespace:
            continue
        if selector.items() <= template["metadata"]["labels"].items():
            for c in template["spec"]["containers"]:
                listening = {p["containerPort"] for p in c.get("ports", [])}
                assert ports <= listening, (
                    f"pool {name} targets {ports}, pods listen on {listening}"
                )
                images.add(c["image"])
    versions = {backends.images[i] for i in images}
    assert len(versions) == 1, f"pool {name} selects pods of {sorted(versions) or 'nothing'}"
    return versions.pop()


def conformance_tolerance(expected: float, requests: int) -> float:
    """How far a conformant gateway's observed share of `requests` may be from a backendRef's
    weight/(sum of weights): GIE's GatewayWeightedAcrossTwoInferencePools (conformance/tests/
    gateway_weighted_two_pools.go) sends 200 requests at 70/30 and accepts max(0.10, 4.5 sigma)."""
    sigma = math.sqrt(expected * (1.0 - expected) / requests)
    return max(0.10, 4.5 * sigma)


def _gateway_api_rewrite(filters: list[dict[str, Any]], prefix: str, path: str) -> str:
    for f in filters:
        if f["type"] == "URLRewrite" and f["urlRewrite"]["path"]["type"] == "ReplacePrefixMatch":
            # The table under HTTPPathModifier.ReplacePrefixMatch: /foo/bar, prefix /foo,
            # replacement "/" gives /bar; /foo and /foo/ give /.
            replacement = f["urlRewrite"]["path"]["replacePrefixMatch"]
            rest = path[len(prefix.rstrip("/")) :]
            if replacement.endswith("/") and rest.startswith("/"):
                rest = rest[1:]
            return (replacement + rest) or "/"
    return path


# --- ingress-nginx: docs/user-guide/nginx-configuration/annotations.md, rootfs/etc/nginx/lua/
# balancer.lua route_to_alternative_balancer, docs/user-guide/ingress-path-matching.md ----------

NGINX = "nginx.ingress.kubernetes.io/"


def ingress_nginx(
    resources: list[RenderedResource], request: Request, backends: Backends
) -> Routed:
    ingresses = [i.inputs for i in of_kind(resources, "Ingress")]
    annotations = [i["metadata"].get("annotations") or {} for i in ingresses]
    mains = [
        i for i, a in zip(ingresses, annotations, strict=True) if a.get(NGINX + "canary") != "true"
    ]
    canaries = [
        (i, a)
        for i, a in zip(ingresses, annotations, strict=True)
        if a.get(NGINX + "canary") == "true"
    ]
    [main] = mains
    main_ann = main["metadata"].get("annotations") or {}
    [rule] = main["spec"]["rules"]
    [path] = rule["http"]["paths"]
    if rule["host"] != request.host:
        return NOT_ROUTED
    regex = main_ann.get(NGINX + "use-regex") == "true" or NGINX + "rewrite-target" in main_ann
    m = None
    if regex:
        # `location ~* "^<path>"`: a case-insensitive regex from the start of the path.
        m = re.match(path["path"], request.path, re.IGNORECASE)
        if m is None:
            return NOT_ROUTED
    elif not segment_prefix(path["path"], request.path):
        return NOT_ROUTED
    target = main_ann.get(NGINX + "rewrite-target")
    seen = request.path
    if target is not None and m is not None:
        seen = re.sub(r"\$(\d)", lambda g: m.group(int(g.group(1))) or "", target)
    stable = service_version(resources, path["backend"]["service"]["name"], backends)
    copy = _nginx_mirror(resources, main_ann, request, backends)
    # The canary merges into the main Ingress only with the same host and path; one per rule.
    merged = [
        (c, a)
        for c, a in canaries
        if c["spec"]["rules"][0]["host"] == rule["host"]
        and c["spec"]["rules"][0]["http"]["paths"][0]["path"] == path["path"]
    ]
    assert len(merged) <= 1, "ingress-nginx applies at most one canary per Ingress rule"
    if not merged:
        return Routed({stable: Fraction(1)}, seen, *copy)
    canary_ingress, ann = merged[0]
    canary = service_version(
        resources,
        canary_ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
        backends,
    )
    # ngx.var["http_" .. header with '-' as '_']: nginx's $http_ variables are the request
    # header names in lowercase with '-' as '_'.
    header = ann.get(NGINX + "canary-by-header")
    if header is not None:
        sent = {k.lower().replace("-", "_"): v for k, v in request.headers.items()}
        value = sent.get(header.replace("-", "_"))
        if value is not None:
            wanted = ann.get(NGINX + "canary-by-header-value")
            if wanted:
                if value == wanted:
                    return Routed({canary: Fraction(1)}, seen, *copy)
            elif value == "always":
                return Routed({canary: Fraction(1)}, seen, *copy)
            elif value == "never":
                return Routed({stable: Fraction(1)}, seen, *copy)
    # `math.random(weightTotal) <= weight`: weight/weightTotal of the requests (total 100).
    total = int(ann.get(NGINX + "canary-weight-total", "100"))
    weight = int(ann.get(NGINX + "canary-weight", "0"))
    return Routed(split([(stable, total - weight), (canary, weight)]), seen, *copy)


def _nginx_mirror(
    resources: list[RenderedResource],
    annotations: Mapping[str, str],
    request: Request,
    backends: Backends,
) -> tuple[dict[str, Fraction], str | None]:
    """The main Ingress's `mirror-target` (annotations.md, Mirror): nginx's mirror module copies
    every request of the location, whichever backend (stable, canary, pinned) then serves it;
    a canary Ingress's own annotations are ignored (annotations.md, Canary). The copy goes to
    `proxy_pass <target>`, where `$request_uri` is the original request URI with its query: the
    subrequest keeps its parent's `unparsed_uri` (nginx ngx_http_subrequest), not the URI
    rewrite-target made."""
    target = annotations.get(NGINX + "mirror-target")
    if target is None:
        return {}, None
    base, sep, variables = target.partition("$")
    assert sep and variables == "request_uri", f"not modelled: {target}"
    parts = urlsplit(base)
    assert parts.path == "" and parts.hostname is not None, target
    # A Service's cluster DNS name: <service>.<namespace>.svc.cluster.local
    version = service_version(resources, parts.hostname.split(".")[0], backends)
    query = "?" + "&".join(f"{k}={v}" for k, v in request.query.items()) if request.query else ""
    return {version: Fraction(1)}, request.path + query


# --- ingress-nginx's admission webhook, as a controller with its default configuration runs it
# (--deep-inspect on; strict-validate-path-type on since 1.12.0): internal/ingress/controller/
# controller.go CheckIngress, internal/ingress/inspector/{inspector.go ValidatePathType, ingress.go
# InspectIngress, rules.go} ---------------------------------------------------------------------

# validPathType as 1.12.0-1.12.5 and 1.13.0-1.13.1 have it and configmap.md documents it: `(?i)^/
# [[:alnum:]\_\-/]*$` (Go's [[:alnum:]] is ASCII). Later releases also take '.' (#13798).
_VALID_PATH_TYPE = re.compile(r"^/[A-Za-z0-9_\-/]*$")
# rules.go invalidRegex; Go's MatchString finds a match anywhere.
_INVALID_VALUES = [
    re.compile(r"\s*alias\s*.*;", re.S),
    re.compile(r"\s*root\s*.*;", re.S),
    re.compile(r"/etc/(passwd|shadow|group|nginx|ingress-controller)"),
    re.compile(r"/var/run/secrets"),
    re.compile(r".*_by_lua.*"),
]


def ingress_nginx_admission(ingress: Mapping[str, Any]) -> list[str]:
    """The webhook's objections to an Ingress (its manifest); none: admitted."""
    errors = []
    for rule in ingress["spec"].get("rules", []):
        host = rule.get("host", "")
        if host and any(p.search(host) for p in _INVALID_VALUES):
            errors.append(f"invalid host: invalid value found: {host}")
        for path in (rule.get("http") or {}).get("paths", []):
            value, path_type = path.get("path", ""), path.get("pathType")
            if any(p.search(value) for p in _INVALID_VALUES):
                errors.append(f"invalid http path: invalid value found: {value}")
            if (
                value
                and path_type != "ImplementationSpecific"
                and not _VALID_PATH_TYPE.match(value)
            ):
                errors.append(f"path {value} cannot be used with pathType {path_type or '<nil>'}")
    return errors


# --- Kong: kong/router/transform.lua (traditional_compatible), kong/router/atc.lua select,
# kong/router/utils.lua get_upstream_uri_v0, kong/runloop/balancer/round_robin.lua; the Pulumi
# provider: terraform-provider-kong resource_kong_target.go + resource_reader.go ---------------


def ids(resources: list[RenderedResource], token: str) -> dict[str, dict[str, Any]]:
    """The inputs of each resource of one type by its id (the mocks return `<name>-id`)."""
    return {f"{r.name}-id": r.inputs for r in resources if r.type == token}


def kong(resources: list[RenderedResource], request: Request, backends: Backends) -> Routed:
    headers = {k.lower(): v.lower() for k, v in request.headers.items()}
    candidates = []
    for route in (r.inputs for r in resources if r.type == "kong:index/route:Route"):
        if request.scheme not in route["protocols"]:
            continue
        if route.get("hosts") and request.host not in route["hosts"]:
            continue
        matched = None
        for p in route["paths"]:
            if p.startswith("~"):  # regex: anchored at the start ("^" .. p:sub(2))
                m = re.match(p[1:], request.path)
                matched = m.group(0) if m else None
            elif request.path.startswith(p):  # http.path ^= p: a string prefix
                matched = p
            if matched is not None:
                break
        if matched is None:
            continue
        # any(lower(http.headers.<name>)) == value:lower()
        route_headers = route.get("headers", [])
        if not all(
            headers.get(h["name"].lower()) in [v.lower() for v in h["values"]]
            for h in route_headers
        ):
            continue
        # get_priority, most significant first: the count of matching attributes, hosts without
        # a wildcard, the header count, a regex path, then a plain path's length.
        attributes = sum(1 for k in ("hosts", "headers", "paths") if route.get(k))
        plain_hosts = bool(route.get("hosts")) and not any("*" in h for h in route["hosts"])
        regex = route["paths"][0].startswith("~")
        length = 0 if regex else len(route["paths"][0])
        key = (attributes, plain_hosts, len(route_headers), regex, length)
        candidates.append((key, route, matched))
    if not candidates:
        return NOT_ROUTED
    candidates.sort(key=lambda c: c[0], reverse=True)
    assert len(candidates) == 1 or candidates[0][0] != candidates[1][0], "two routes tie"
    _, route, matched = candidates[0]
    service = ids(resources, "kong:index/service:Service")[route["serviceId"]]
    upstreams = ids(resources, "kong:index/upstream:Upstream")
    upstream = next((u for u in upstreams.values() if u["name"] == service["host"]), None)
    if upstream is None:  # the Service's host is the backend itself
        shares = {_kong_version(resources, service["host"], service["port"], backends): Fraction(1)}
    else:
        weights = []
        for t in resources:
            if t.type != "kong:index/target:Target":
                continue
            if upstreams[t.inputs["upstreamId"]] is not upstream:
                continue
            host, port = t.inputs["target"].rsplit(":", 1)
            # The provider reads weight with GetOk: 0 is "unset" and Kong stores its default
            # 100 (targets.lua). Each address gets weight/gcd slots of the round-robin wheel, so
            # a target's share is weight/(sum of weights) (one address per target).
            weight = t.inputs["weight"] or 100
            weights.append((_kong_version(resources, host, int(port), backends), weight))
        shares = split(weights)
    return Routed(shares, _kong_upstream_uri(route, matched, request.path))


def _kong_version(
    resources: list[RenderedResource], host: str, port: int, backends: Backends
) -> str:
    version = backends.of_address(host, port)
    if version is not None:
        return version
    assert host.endswith(".svc.cluster.local"), f"nothing serves {host}:{port}"
    return service_version(resources, host.split(".")[0], backends)


def _kong_upstream_uri(route: dict[str, Any], matched: str, path: str) -> str:
    """get_upstream_uri_v0 with the Service's default path "/"."""
    if not route.get("stripPath", True):
        return path
    postfix = path[len(matched) :]
    if postfix == "":
        return "/"
    return postfix if postfix.startswith("/") else "/" + postfix


# --- Azure API Management: api-management/backends.md (load-balanced pool), api-management/
# api-management-versions.md (version sets; the original version answers without a version) --


def azure_apim(resources: list[RenderedResource], request: Request, backends: Backends) -> Routed:
    by_id = ids(resources, "azure-native:apimanagement:Backend")
    [version_set] = [r.inputs for r in resources if r.type.endswith(":ApiVersionSet")]
    apis = [r for r in resources if r.type == "azure-native:apimanagement:Api"]
    segments = request.path.lstrip("/").split("/")
    api_path = apis[0].inputs["path"]
    prefix = [s for s in api_path.split("/") if s]
    if segments[: len(prefix)] != prefix:
        return NOT_ROUTED
    rest = segments[len(prefix) :]
    scheme = version_set["versioningScheme"]
    named: str | None = None
    if scheme == "Segment" and rest and rest[0]:
        named, rest = rest[0], rest[1:]
    elif scheme == "Header":
        sent = {k.lower(): v for k, v in request.headers.items()}
        named = sent.get(version_set["versionHeaderName"].lower())
    elif scheme == "Query":
        named = request.query.get(version_set["versionQueryName"])
    remainder = "/" + "/".join(rest) if rest else ""
    chosen = (
        [a for a in apis if a.inputs.get("apiVersion") == named]
        if named
        else [a for a in apis if "apiVersion" not in a.inputs]
    )
    if not chosen:
        return NOT_ROUTED
    [api] = chosen
    policies = [
        r.inputs
        for r in resources
        if r.type.endswith(":ApiPolicy") and r.inputs["apiId"] == api.inputs["apiId"]
    ]
    if policies:
        [policy] = policies
        backend_id = re.search(r'set-backend-service backend-id="([^"]+)"', policy["value"])
        assert backend_id is not None
        [pool] = [
            r.inputs
            for r in resources
            if r.type.endswith(":Backend") and r.inputs["backendId"] == backend_id.group(1)
        ]
        items = pool["pool"]["services"]
        assert len({i.get("priority") for i in items}) == 1, "one priority group"
        # A weight of 0 has no documented meaning in a pool: refuse to guess what APIM does.
        assert all(i["weight"] > 0 for i in items), "a pool item at weight 0"
        targets = [(backends.of_url(by_id[i["id"]]["url"]), i["weight"]) for i in items]
    else:
        targets = [(backends.of_url(api.inputs["serviceUrl"]), 1)]
    # APIM appends what follows the API's path (and version) to the backend's URL; the model
    # sees that URL's path past its own url.
    paths = {appended + remainder or "/" for (_, appended), _ in targets}
    assert len(paths) == 1
    return Routed(split([(version, w) for (version, _), w in targets]), paths.pop())


# --- service: Kubernetes core/v1 Service (its selector picks the pods) -------------------------


def service(resources: list[RenderedResource], request: Request, backends: Backends) -> Routed:
    if request.headers:
        return NOT_ROUTED  # a Service cannot look at headers: say nothing about pinned requests
    names = {r.inputs["metadata"]["name"] for r in of_kind(resources, "Service")}
    deployments = {r.inputs["metadata"]["name"] for r in of_kind(resources, "Deployment")}
    [front] = names - deployments
    return Routed({service_version(resources, front, backends): Fraction(1)}, request.path)


MODELS: Mapping[str, Callable[[list[RenderedResource], Request, Backends], Routed]] = {
    "istio": istio,
    "gateway-api": gateway_api,
    "ingress-nginx": ingress_nginx,
    "kong": kong,
    "azure-apim": azure_apim,
    "service": service,
}
