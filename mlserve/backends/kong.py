"""The kong gateway: an Upstream with a weighted Target per version that gets unpinned traffic, a
Service whose host is the upstream's name, and a Route on the gateway path; with `versionHeader`,
a Service and a Route per version matched on the header.

The rules checked here are Kong 3.9's (see shared/reference/kong.md); `check` never imports Pulumi.

Two rules of the Pulumi provider (a bridge of kevholditch/terraform-provider-kong) shape the
Targets; see `target_weights`:
- resource_reader.go readIntPtrFromResource reads `weight` with GetOk, so 0 is never sent and
  Kong applies its default of 100 (kong/db/schema/entities/targets.lua). A version at 0% gets no
  Target at all; its pinned Route (a Service straight to its backend) still reaches it.
- resource_kong_target.go has no Update: every field is ForceNew, so a weight change deletes the
  Target and creates it again (Kong refuses two Targets with one address in an upstream, hence
  delete_before_replace). The stable's Target therefore keeps one weight while the canary moves,
  and only the canary's Target is replaced: the upstream never loses the live stable.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import pulumi

    from mlserve.backends.base import Declared, Workload
    from mlserve.spec import Spec, Version
    from mlserve.traffic import TrafficState

DEFAULT_PORTS = {"http": 80, "https": 443}
# Routes here match paths and headers, which Kong allows on http/https routes only.
ROUTE_PROTOCOLS = ("http", "https")
_HOST_CHARS = re.compile(r"^[0-9A-Za-z._-]+$")  # kong/tools/ip.lua check_hostname
_HEADER_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")  # kong/tools/http.lua validate_header_name
# RFC 3986 unreserved, sub-delims, ":", "@", "%" and "/" (Kong's path typedef)
_PATH_CHARS = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*$")
_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


@dataclass(frozen=True)
class Backend:
    """Where one version is served: what a Kong Target or Service points at."""

    scheme: str  # http | https
    host: str  # a hostname or an IP address, never with a port
    port: int

    @property
    def address(self) -> str:
        """A Kong target, `host:port` (`[v6]:port` for IPv6)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


# --- check ---------------------------------------------------------------------------------


def notes(spec: Spec, traffic: TrafficState) -> list[tuple[str, str]]:
    return []


def check(spec: Spec) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    gw = spec.gateway
    problem = path_problem(gw.path)
    if problem:
        problems.append(("gateway.path", problem))
    if gw.version_header is not None:
        problem = header_problem(gw.version_header)
        if problem:
            problems.append(("gateway.versionHeader", problem))
    if gw.host is not None and not _valid_route_host(gw.host):
        problems.append(
            (
                "gateway.host",
                f"{gw.host!r} is not a hostname Kong can match (a '*' may only be "
                "the leftmost or rightmost label)",
            )
        )
    problems += _check_protocols(gw.kong.protocols)
    if gw.kong.admin_url is not None:
        problem = _admin_url_problem(gw.kong.admin_url)
        if problem:
            problems.append(("gateway.kong.adminUrl", problem))
    problems += _check_versions(spec.versions)
    return problems


def path_problem(path: str) -> str | None:
    """Why Kong would reject `path` as a Route prefix path, or None."""
    if not path.startswith("/"):
        return f"{path!r} must start with '/'"
    if "//" in path:
        return f"{path!r} must not contain '//' (Kong rejects empty path segments)"
    if not _PATH_CHARS.match(path):
        bad = sorted({c for c in path if not _PATH_CHARS.match(c)})
        return f"{path!r} has characters Kong does not allow in a path: {', '.join(map(repr, bad))}"
    if _PERCENT.search(path):
        return f"{path!r}: '%' must be followed by two hex digits"
    return None


def header_problem(name: str) -> str | None:
    """Why Kong would reject `name` as a Route header name, or None."""
    if not _HEADER_NAME.match(name):
        return f"{name!r} is not a header name Kong can match: use letters, digits, '-' and '_'"
    if name.lower() == "host":
        return "Kong does not match the Host header in a route's headers; use gateway.host"
    return None


def valid_hostname(host: str) -> bool:
    """Kong's hostname rule (kong/tools/ip.lua check_hostname), without a port."""
    if not host or not _HOST_CHARS.match(host):
        return False
    labels = host.split(".")
    if any(label == "" for label in labels[:-1]):
        return False  # only the last label may be empty: a trailing dot
    return not any(label.endswith("-") for label in labels)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _valid_target_host(host: str) -> bool:
    if _is_ip(host):
        return True
    # A name made only of digits and dots is taken for an IPv4 address, and rejected as one.
    return valid_hostname(host) and not re.fullmatch(r"[\d.]+", host)


def _valid_route_host(host: str) -> bool:
    if host.startswith("*."):
        host = host[2:]
    elif host.endswith(".*"):
        host = host[:-2]
    return "*" not in host and _valid_target_host(host)


def _check_protocols(protocols: Sequence[str]) -> list[tuple[str, str]]:
    problems = []
    if not protocols:
        problems.append(("gateway.kong.protocols", "needs at least one of http, https"))
    for i, p in enumerate(protocols):
        if p not in ROUTE_PROTOCOLS:
            problems.append(
                (
                    f"gateway.kong.protocols[{i}]",
                    f"{p!r}: mlserve's Kong routes match a path and headers, so they take "
                    "http and https only",
                )
            )
        elif p in protocols[:i]:
            problems.append((f"gateway.kong.protocols[{i}]", f"{p!r} is listed twice"))
    return problems


def _admin_url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        return f"{url!r} is not a valid URL: {e}"
    if parts.scheme not in DEFAULT_PORTS:
        return f"{url!r}: the Kong Admin API is reached over http or https"
    if not parts.hostname:
        return f"{url!r} has no host"
    if parts.username is not None or parts.password is not None:
        return (
            "must not carry credentials: spec files hold no secrets; set KONG_ADMIN_TOKEN "
            "or the stack secret mlserve:kongAdminToken"
        )
    return None


def parse_url(url: str) -> tuple[Backend | None, str | None]:
    """A version url as a Kong backend, or why Kong cannot route to it."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        return None, f"{url!r} is not a valid URL: {e}"
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        return None, f"{url!r}: Kong routes to http or https backends, not {parts.scheme!r}"
    if parts.username is not None or parts.password is not None:
        return None, f"{url!r} must not carry credentials: spec files hold no secrets"
    host = parts.hostname
    if not host:
        return None, f"{url!r} has no host"
    if not _valid_target_host(host):
        return None, f"{url!r}: {host!r} is not a valid hostname or IP address for Kong"
    if parts.path not in ("", "/"):
        return None, (
            f"{url!r} has a path ({parts.path!r}): a Kong upstream target is host:port only, "
            "and every version is served under gateway.path"
        )
    if parts.query or parts.fragment:
        return None, f"{url!r} must not have a query or a fragment"
    if port == 0:
        return None, f"{url!r}: port 0 is not a port Kong can connect to"
    return Backend(scheme, host, port if port is not None else DEFAULT_PORTS[scheme]), None


def _check_versions(versions: Sequence[Version]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    first_scheme: tuple[int, str] | None = None
    seen: dict[str, int] = {}
    for i, v in enumerate(versions):
        if v.url is None:
            scheme = "http"  # the version's own Kubernetes Service
        else:
            backend, problem = parse_url(v.url)
            if backend is None:
                problems.append((f"versions[{i}].url", str(problem)))
                continue
            scheme = backend.scheme
            if backend.address in seen:
                j = seen[backend.address]
                problems.append(
                    (
                        f"versions[{i}].url",
                        f"{backend.address} is also versions[{j}]'s address; Kong keeps one "
                        "target per address in an upstream",
                    )
                )
            seen.setdefault(backend.address, i)
        if first_scheme is None:
            first_scheme = (i, scheme)
        elif scheme != first_scheme[1]:
            j, other = first_scheme
            what = "an image version, served over http" if versions[j].url is None else other
            problems.append(
                (
                    f"versions[{i}].{'url' if v.url is not None else 'image'}",
                    f"is served over {scheme} but versions[{j}] is {what}: the versions behind "
                    "one Kong upstream share one protocol",
                )
            )
    return problems


# --- declare -------------------------------------------------------------------------------


def upstream_name(spec: Spec) -> str:
    # A virtual hostname: name and namespace are DNS labels, and the ".mlserve" suffix keeps it
    # from being all digits (Kong would read that as an IPv4 address) or a real DNS name.
    return f"{spec.name}.{spec.namespace}.mlserve"


def entity_name(spec: Spec, version: str | None = None) -> str:
    """A Kong Service or Route name, unique across namespaces on one Kong: namespace and name
    are DNS labels without dots, so `ml.fraud` and `ml.fraud.1.10` cannot collide (Kong names
    allow letters, digits, '.', '-', '_' and '~': typedefs.lua utf8_name)."""
    base = f"{spec.namespace}.{spec.name}"
    return base if version is None else f"{base}.{version}"


# The stable's Target weight. The canary's share is c/(STABLE_WEIGHT + c) (Kong's round-robin
# wheel gives each address weight/gcd slots: kong/runloop/balancer/round_robin.lua), so the canary
# weight for w% is STABLE_WEIGHT * w / (100 - w), rounded: every share within 0.41 percentage
# points of the spec's (0% and 100% exact). A larger weight would be closer (624: 0.05), but 100
# is what a lone stable's Target had before: a stack deployed then does not get its stable's
# Target replaced, which would leave the upstream empty for a moment, on its first update.
STABLE_WEIGHT = 100


def target_weights(traffic: TrafficState) -> dict[str, int]:
    """The Kong Target weight of each version that gets unpinned traffic; none is 0.

    The stable's weight does not depend on the canary's share, so a promote or rollback between
    canary weights replaces the canary's Target only. A lone Target takes every request whatever
    its weight, so at 0% and 100% the one routed version also has STABLE_WEIGHT.
    """
    shares = {v: s for v, s in traffic.weights().items() if s > 0}
    if traffic.canary not in shares or traffic.stable not in shares:
        return dict.fromkeys(shares, STABLE_WEIGHT)
    share = shares[traffic.canary]
    canary = (2 * STABLE_WEIGHT * share + (100 - share)) // (2 * (100 - share))  # rounded
    return {traffic.stable: STABLE_WEIGHT, traffic.canary: canary}


def served_shares(traffic: TrafficState) -> tuple[dict[str, Fraction], str]:
    """The share of unpinned requests Kong sends each routed version, and why it differs from
    the spec's: each Target gets weight/(sum of weights) of the round-robin wheel (one address
    per Target, round_robin.lua), and a weight is an integer (targets.lua: 0..65535), the
    stable's fixed at STABLE_WEIGHT (see target_weights): 5% is 5/105, 4.76%."""
    weights = target_weights(traffic)
    total = sum(weights.values())
    shares = {v: Fraction(weights.get(v, 0), total) for v in traffic.weights()}
    why = "Target weights are integers: " + ", ".join(f"{v} {w}" for v, w in weights.items())
    return shares, why


def route_paths(spec: Spec) -> list[str]:
    """The gateway path by segment. A plain Kong path is a string prefix (`http.path ^=` in
    kong/router/transform.lua), so `/fraud` would also take `/fraudulent`; the regex
    `~/fraud(/|$)` does not, and with strip_path Kong strips what it matched
    (kong/router/atc.lua select: request_postfix after the matched path)."""
    from mlserve.backends.workloads import prefix

    path = prefix(spec)
    if path == "/":
        return ["/"]
    return ["~" + re.escape(path) + "(/|$)"]


def backend_of(spec: Spec, workloads: Mapping[str, Workload], version: str) -> Backend:
    """Where `version` is served: its cluster Service for an image version, else its url."""
    if version in workloads:
        w = workloads[version]
        return Backend("http", w.dns_name, w.port)
    url = next((v.url for v in spec.versions if v.name == version), None)
    if url is None:
        raise ValueError(f"version {version!r} has neither a workload nor a url")
    backend, problem = parse_url(url)
    if backend is None:
        raise ValueError(f"version {version!r}: {problem}")
    return backend


def read_timeout(spec: Spec) -> int | None:
    """gateway.timeout as a Kong Service's read_timeout: milliseconds between two reads from
    the model, 1 to 2^31-2, default 60000 (kong/db/schema/entities/services.lua); None: unset."""
    from mlserve.spec import duration_seconds

    if spec.gateway.timeout is None:
        return None
    return duration_seconds(spec.gateway.timeout) * 1000


def target_options(
    provider: pulumi.ProviderResource, depends_on: Sequence[pulumi.Resource]
) -> pulumi.ResourceOptions:
    import pulumi

    # Every kong_target field is ForceNew (terraform-provider-kong resource_kong_target.go), so a
    # weight change is a replace, and Kong keys targets by (upstream, target) (targets.lua): the
    # default create-before-delete would POST a second target with the same address and fail.
    # Only the canary's Target is ever replaced (target_weights); for that moment the canary's
    # share goes to the stable.
    return pulumi.ResourceOptions(
        provider=provider, depends_on=list(depends_on), delete_before_replace=True
    )


def provider_inputs(spec: Spec) -> dict[str, Any]:
    """The explicit provider's inputs: the admin URL and, if any, the admin token as a secret."""
    import pulumi

    inputs: dict[str, Any] = {}
    # An explicit provider reads no `kong:` stack config by itself; without either, the provider
    # falls back to KONG_ADMIN_ADDR.
    admin_uri = spec.gateway.kong.admin_url or pulumi.Config("kong").get("kongAdminUri")
    if admin_uri:
        inputs["kong_admin_uri"] = admin_uri
    env_token = os.environ.get("KONG_ADMIN_TOKEN")
    token: pulumi.Output[str] | None
    if env_token:
        token = pulumi.Output.secret(env_token)
    else:
        token = pulumi.Config("mlserve").get_secret("kongAdminToken") or pulumi.Config(
            "kong"
        ).get_secret("kongAdminToken")
    if token is not None:
        inputs["kong_admin_token"] = token
    return inputs


def declare(spec: Spec, traffic: TrafficState, workloads: Mapping[str, Workload]) -> Declared:
    import pulumi
    import pulumi_kong as kong

    from mlserve.backends.base import Declared

    gw = spec.gateway
    provider = kong.Provider(f"{spec.name}-kong", **provider_inputs(spec))
    opts = pulumi.ResourceOptions(provider=provider)
    tags = ["mlserve", spec.name]
    hosts = [gw.host] if gw.host else None
    paths = route_paths(spec)

    def needs(version: str) -> list[pulumi.Resource]:
        return list(workloads[version].resources) if version in workloads else []

    timeout = read_timeout(spec)
    upstream = kong.Upstream(spec.name, name=upstream_name(spec), tags=tags, opts=opts)
    routing: list[pulumi.Resource] = [upstream]
    # A version at 0% has no Target: the provider would send weight 0 as "unset" and Kong
    # would give it its default of 100. Promote and rollback may create or delete Targets: each
    # is a routing resource, and a targeted update may name a URN the program newly registers.
    for version, weight in target_weights(traffic).items():
        backend = backend_of(spec, workloads, version)
        routing.append(
            kong.Target(
                spec.object_name(version),
                target=backend.address,
                weight=weight,
                upstream_id=upstream.id,
                tags=tags,
                opts=target_options(provider, needs(version)),
            )
        )
    scheme = backend_of(spec, workloads, traffic.stable).scheme
    service = kong.Service(
        spec.name,
        name=entity_name(spec),
        protocol=scheme,
        host=upstream.name,  # Kong balances over the upstream only when host == its name
        port=DEFAULT_PORTS[scheme],
        tags=tags,
        opts=opts,
        read_timeout=timeout,
    )
    route = kong.Route(
        spec.name,
        name=entity_name(spec),
        service_id=service.id,
        protocols=list(gw.kong.protocols),
        paths=paths,
        hosts=hosts,
        strip_path=gw.strip_path,
        tags=tags,
        opts=opts,
    )
    routing += [service, route]

    if gw.version_header:
        pinned = [v.name for v in spec.versions if v.name in workloads or v.url is not None]
        for version in pinned:
            backend = backend_of(spec, workloads, version)
            name = spec.object_name(version)
            vservice = kong.Service(
                name,
                name=entity_name(spec, version),
                protocol=backend.scheme,
                host=backend.host,
                port=backend.port,
                tags=tags,
                opts=pulumi.ResourceOptions(provider=provider, depends_on=needs(version)),
                read_timeout=timeout,
            )
            # The header is one more matching attribute than the unpinned route has, so Kong's
            # router (traditional_compatible, the 3.x default) tries this route first
            # (kong/router/transform.lua get_priority); it compares header values in lowercase.
            vroute = kong.Route(
                name,
                name=entity_name(spec, version),
                service_id=vservice.id,
                protocols=list(gw.kong.protocols),
                paths=paths,
                hosts=hosts,
                headers=[kong.RouteHeaderArgs(name=gw.version_header, values=[version])],
                strip_path=gw.strip_path,
                tags=tags,
                opts=opts,
            )
            routing += [vservice, vroute]

    scheme_out = "https" if "https" in gw.kong.protocols else "http"
    endpoint = f"{scheme_out}://{gw.host}{gw.path}" if gw.host else gw.path
    return Declared(routing=routing, endpoint=endpoint, extra={"kongUpstream": upstream.name})
