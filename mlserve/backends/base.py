"""The backend protocol, the capability table and the registry.

Each gateway is one module (istio.py, gateway_api.py, ...) exposing `check` and `declare`. Backend
modules never import Pulumi or a provider SDK at module level: `validate` imports them to run
`check`, and must stay free of Pulumi (DESIGN.md section 6).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from mlserve.errors import EngineUnavailableError, PreconditionError

if TYPE_CHECKING:
    import pulumi

    from mlserve.spec import GatewayType, Spec
    from mlserve.traffic import TrafficState


@dataclass(frozen=True)
class Capabilities:
    """What a gateway can do; checked by `validate` before anything runs."""

    image_versions: bool
    url_versions: bool
    header_pinning: bool
    requires_host: bool
    max_versions: int | None = None  # None: as many as the spec allows
    weighted: bool = True  # False: the canary stays at 0% until promote --complete (blue-green)
    sdk_module: str = "pulumi_kubernetes"
    sdk_extra: str | None = None  # the pip extra that installs sdk_module
    plugin: str = "kubernetes"  # the Pulumi provider plugin the routing resources need
    # Shadow traffic (../shared/reference/traffic.md): "percent" mirrors any share of requests,
    # "all" every request only, None nothing (`no_mirror` says why).
    mirror: Literal["percent", "all"] | None = None
    no_mirror: str = ""
    # False: the mirror gets the request's original path, not the one stripPath gives the model.
    mirror_strips: bool = True


CAPABILITIES: Mapping[str, Capabilities] = {
    "istio": Capabilities(
        image_versions=True,
        url_versions=False,
        header_pinning=True,
        requires_host=True,
        mirror="percent",  # mirror + mirrorPercentage (istio/api virtual_service.proto)
    ),
    "gateway-api": Capabilities(
        image_versions=True,
        url_versions=False,
        header_pinning=True,
        requires_host=True,
        mirror="percent",  # RequestMirror filter with percent, Standard since v1.3 (GEP-3171)
    ),
    "ingress-nginx": Capabilities(
        image_versions=True,
        url_versions=False,
        header_pinning=True,  # canary-by-header: the canary only (ingress_nginx.notes says so)
        requires_host=True,
        max_versions=2,
        # mirror-target: every request of the Ingress, to `<url>$request_uri`, the original URI
        # (annotations.md, Mirror; internal/ingress/annotations/mirror/main.go)
        mirror="all",
        mirror_strips=False,
    ),
    "kong": Capabilities(
        image_versions=True,
        url_versions=True,
        header_pinning=True,
        requires_host=False,
        sdk_module="pulumi_kong",
        sdk_extra="kong",
        plugin="kong",
        no_mirror="Kong has no request mirroring (its ingress controller refuses the Gateway "
        "API RequestMirror filter; Kong/kubernetes-ingress-controller#4165)",
    ),
    "azure-apim": Capabilities(
        image_versions=False,
        url_versions=True,
        header_pinning=True,  # through the version set's scheme
        requires_host=False,
        sdk_module="pulumi_azure_native",
        sdk_extra="azure",
        plugin="azure-native",
        no_mirror="API Management has no request mirroring (a send-one-way-request policy "
        "fires a copy and forgets it, with no share and no routing to a version)",
    ),
    "service": Capabilities(
        image_versions=True,
        url_versions=False,
        header_pinning=False,
        requires_host=False,
        weighted=False,
        no_mirror="a Kubernetes Service only selects pods; it cannot copy requests",
    ),
}

MODULES: Mapping[str, str] = {
    "istio": "mlserve.backends.istio",
    "gateway-api": "mlserve.backends.gateway_api",
    "ingress-nginx": "mlserve.backends.ingress_nginx",
    "kong": "mlserve.backends.kong",
    "azure-apim": "mlserve.backends.azure_apim",
    "service": "mlserve.backends.service",
}


@dataclass(frozen=True)
class Workload:
    """What routing needs to know about one deployed image version."""

    version: str
    service_name: str  # the Kubernetes Service `<name>-<version>`
    port: int  # the Service port
    dns_name: str  # `<service>.<namespace>.svc.cluster.local`
    resources: Sequence[pulumi.Resource] = ()  # Deployment and Service: routing depends on them


@dataclass
class Declared:
    """What a backend's `declare` created."""

    routing: list[pulumi.Resource]  # the resources promote and rollback target
    endpoint: pulumi.Input[str]
    extra: dict[str, Any] = field(default_factory=dict)  # more stack outputs, if any


class Backend(Protocol):
    def check(self, spec: Spec) -> list[tuple[str, str]]:
        """Gateway-specific semantic checks: (spec path such as `gateway.host`, message)."""
        ...

    def notes(self, spec: Spec, traffic: TrafficState) -> list[tuple[str, str]]:
        """What this gateway does with a valid spec and traffic state that a user may not
        expect: (spec path, message). `validate` prints them; `plan` carries them as warnings."""
        ...

    def declare(
        self,
        spec: Spec,
        traffic: TrafficState,
        workloads: Mapping[str, Workload],
    ) -> Declared:
        """Declare the routing resources inside a running Pulumi program."""
        ...


def load(gateway: GatewayType | str) -> Backend:
    """Import a backend module; a missing provider SDK names the extra to install."""
    caps = CAPABILITIES[gateway]
    try:
        importlib.import_module(caps.sdk_module)
    except ImportError as e:
        extra = f"mlserve[{caps.sdk_extra}]" if caps.sdk_extra else "mlserve"
        raise EngineUnavailableError(
            f"the {gateway} gateway needs the Python package {caps.sdk_module}: "
            f"pip install '{extra}'"
        ) from e
    return cast(Backend, module(gateway))


def notes(spec: Spec, traffic: TrafficState) -> list[tuple[str, str]]:
    """The gateway's notes on a spec and a traffic state (see Backend.notes)."""
    return cast(Backend, module(spec.gateway.type)).notes(spec, traffic)


@dataclass(frozen=True)
class Served:
    """What a gateway really sends each version, where that differs from the spec's percent."""

    gateway: str  # who sends it, as a person names it ("Kong")
    shares: Mapping[str, float]  # version -> percent of unpinned requests, to 2 decimals
    why: str

    def to_json(self) -> dict[str, Any]:
        return {"gateway": self.gateway, "weights": dict(self.shares), "why": self.why}


_GATEWAY_NAMES = {"kong": "Kong"}


def served(spec: Spec, traffic: TrafficState) -> Served | None:
    """The gateway's real split of `traffic` (a backend's `served_shares`), or None when it is
    the spec's exactly (every gateway but Kong, and Kong at 0% and 100%)."""
    compute = getattr(module(spec.gateway.type), "served_shares", None)
    if compute is None:
        return None
    shares, why = compute(traffic)
    if all(shares.get(v, 0) * 100 == w for v, w in traffic.weights().items()):
        return None
    percent = {v: round(float(s * 100), 2) for v, s in shares.items()}
    return Served(_GATEWAY_NAMES.get(spec.gateway.type, spec.gateway.type), percent, why)


def require_supported(spec: Spec, traffic: TrafficState) -> None:
    """Refuse a traffic state the gateway cannot carry, before anything changes."""
    gateway = spec.gateway.type
    if traffic.canary is not None and traffic.weight > 0 and not CAPABILITIES[gateway].weighted:
        raise PreconditionError(
            f"gateway {gateway} cannot split traffic ({traffic.canary} at {traffic.weight}%): "
            "it sends every request to one version; use `mlserve promote --complete` to switch "
            f"to {traffic.canary}, and `mlserve rollback` to switch back"
        )
    if traffic.mirror is not None:
        problem = mirror_problem(spec, traffic.mirror.percent)
        if problem is not None:
            raise PreconditionError(f"{problem}; nothing was changed")


def mirror_problem(spec: Spec, percent: int) -> str | None:
    """Why the spec's gateway cannot mirror `percent`% of requests; None when it can."""
    gateway = spec.gateway.type
    caps = CAPABILITIES[gateway]
    if caps.mirror is None:
        return f"gateway {gateway} cannot mirror traffic: {caps.no_mirror}"
    if caps.mirror == "all" and percent != 100:
        return (
            f"gateway {gateway} mirrors every request or none ({percent}% asked): use percent "
            "100, or a gateway that mirrors a share (istio, gateway-api)"
        )
    where = spec.gateway.path.rstrip("/")  # workloads.strips, which imports this module
    if not caps.mirror_strips and spec.gateway.strip_path and where:
        return (
            f"gateway {gateway} sends the mirror the request's original URI, so with stripPath "
            f"the mirrored version would get {where}/predict where the served one gets /predict: "
            f"set gateway.stripPath: false (the model then serves under {where}), or use istio "
            "or gateway-api"
        )
    return None


def module(gateway: GatewayType | str) -> ModuleType:
    """The backend module, for its `check`; importing it never imports Pulumi."""
    return importlib.import_module(MODULES[gateway])
