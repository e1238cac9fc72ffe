"""The spec: a frozen, typed model of an mlserve/v1 file, and `load_spec` that builds it safely.

The JSON Schema (schemas/mlserve.schema.json) is the single source of truth for the shape; the
model below is built from a document that already passed it, so `Spec.from_dict` trusts its input.
`Spec.to_dict` gives the normalized spec (defaults filled in), which is what the stack config
records as `mlserve:spec` and what `Spec.from_dict` reads back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

API_VERSION = "mlserve/v1"

GatewayType = Literal["istio", "gateway-api", "ingress-nginx", "kong", "azure-apim"]
GATEWAY_TYPES: tuple[GatewayType, ...] = (
    "istio",
    "gateway-api",
    "ingress-nginx",
    "kong",
    "azure-apim",
)


def _frozen(m: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(m or {}))


@dataclass(frozen=True)
class Version:
    name: str
    image: str | None = None
    url: str | None = None
    port: int = 8080
    replicas: int = 1
    requests: Mapping[str, str] = field(default_factory=lambda: _frozen(None))
    limits: Mapping[str, str] = field(default_factory=lambda: _frozen(None))
    env: Mapping[str, str] = field(default_factory=lambda: _frozen(None))
    health_path: str | None = None


@dataclass(frozen=True)
class Traffic:
    stable: str
    canary: str | None = None
    weight: int = 0


@dataclass(frozen=True)
class IstioOptions:
    gateways: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParentRef:
    name: str
    namespace: str | None = None
    section_name: str | None = None


@dataclass(frozen=True)
class GatewayApiOptions:
    parent_refs: tuple[ParentRef, ...] = ()


@dataclass(frozen=True)
class IngressNginxOptions:
    class_name: str = "nginx"


@dataclass(frozen=True)
class KongOptions:
    admin_url: str | None = None
    protocols: tuple[str, ...] = ("http", "https")
    strip_path: bool = True


@dataclass(frozen=True)
class AzureApimOptions:
    resource_group: str
    service_name: str
    create: bool = False
    location: str | None = None
    publisher_name: str | None = None
    publisher_email: str | None = None
    sku_name: str | None = None
    sku_capacity: int | None = None
    versioning_scheme: Literal["Segment", "Header", "Query"] = "Segment"
    header_name: str | None = None
    query_name: str | None = None
    subscription_required: bool = True


@dataclass(frozen=True)
class Gateway:
    type: GatewayType
    host: str | None = None
    path: str = "/"
    version_header: str | None = None
    istio: IstioOptions = IstioOptions()
    gateway_api: GatewayApiOptions = GatewayApiOptions()
    ingress_nginx: IngressNginxOptions = IngressNginxOptions()
    kong: KongOptions = KongOptions()
    azure_apim: AzureApimOptions | None = None


@dataclass(frozen=True)
class Spec:
    name: str
    gateway: Gateway
    versions: tuple[Version, ...]
    traffic: Traffic
    namespace: str = "default"
    labels: Mapping[str, str] = field(default_factory=lambda: _frozen(None))
    source: str = "<spec>"  # the file it was loaded from, for messages

    def version(self, name: str) -> Version:
        for v in self.versions:
            if v.name == name:
                return v
        raise KeyError(name)

    @property
    def version_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.versions)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<spec>") -> Spec:
        """Build the model from a schema-valid document (YAML shape, camelCase keys)."""
        gw = data["gateway"]
        apim = gw.get("azureApim")
        sku = (apim or {}).get("sku") or {}
        versioning = (apim or {}).get("versioning") or {}
        kong = gw.get("kong") or {}
        return cls(
            name=data["name"],
            namespace=data.get("namespace", "default"),
            labels=_frozen(data.get("labels")),
            source=source,
            gateway=Gateway(
                type=gw["type"],
                host=gw.get("host"),
                path=gw.get("path", "/"),
                version_header=gw.get("versionHeader"),
                istio=IstioOptions(gateways=tuple((gw.get("istio") or {}).get("gateways", ()))),
                gateway_api=GatewayApiOptions(
                    parent_refs=tuple(
                        ParentRef(
                            name=r["name"],
                            namespace=r.get("namespace"),
                            section_name=r.get("sectionName"),
                        )
                        for r in (gw.get("gatewayApi") or {}).get("parentRefs", ())
                    )
                ),
                ingress_nginx=IngressNginxOptions(
                    class_name=(gw.get("ingressNginx") or {}).get("className", "nginx")
                ),
                kong=KongOptions(
                    admin_url=kong.get("adminUrl"),
                    protocols=tuple(kong.get("protocols", ("http", "https"))),
                    strip_path=kong.get("stripPath", True),
                ),
                azure_apim=None
                if apim is None
                else AzureApimOptions(
                    resource_group=apim["resourceGroup"],
                    service_name=apim["serviceName"],
                    create=apim.get("create", False),
                    location=apim.get("location"),
                    publisher_name=apim.get("publisherName"),
                    publisher_email=apim.get("publisherEmail"),
                    sku_name=sku.get("name"),
                    sku_capacity=sku.get("capacity"),
                    versioning_scheme=versioning.get("scheme", "Segment"),
                    header_name=versioning.get("headerName"),
                    query_name=versioning.get("queryName"),
                    subscription_required=apim.get("subscriptionRequired", True),
                ),
            ),
            versions=tuple(
                Version(
                    name=v["name"],
                    image=v.get("image"),
                    url=v.get("url"),
                    port=v.get("port", 8080),
                    replicas=v.get("replicas", 1),
                    requests=_frozen((v.get("resources") or {}).get("requests")),
                    limits=_frozen((v.get("resources") or {}).get("limits")),
                    env=_frozen(v.get("env")),
                    health_path=v.get("healthPath"),
                )
                for v in data["versions"]
            ),
            traffic=Traffic(
                stable=data["traffic"]["stable"],
                canary=data["traffic"].get("canary"),
                weight=data["traffic"].get("weight", 0),
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        """The normalized spec in YAML shape; `Spec.from_dict(s.to_dict()) == s` up to `source`."""
        gw = self.gateway
        gateway: dict[str, Any] = {"type": gw.type, "path": gw.path}
        if gw.host is not None:
            gateway["host"] = gw.host
        if gw.version_header is not None:
            gateway["versionHeader"] = gw.version_header
        if gw.type == "istio":
            gateway["istio"] = {"gateways": list(gw.istio.gateways)}
        elif gw.type == "gateway-api":
            gateway["gatewayApi"] = {
                "parentRefs": [
                    {
                        k: v
                        for k, v in (
                            ("name", r.name),
                            ("namespace", r.namespace),
                            ("sectionName", r.section_name),
                        )
                        if v is not None
                    }
                    for r in gw.gateway_api.parent_refs
                ]
            }
        elif gw.type == "ingress-nginx":
            gateway["ingressNginx"] = {"className": gw.ingress_nginx.class_name}
        elif gw.type == "kong":
            kong: dict[str, Any] = {
                "protocols": list(gw.kong.protocols),
                "stripPath": gw.kong.strip_path,
            }
            if gw.kong.admin_url is not None:
                kong["adminUrl"] = gw.kong.admin_url
            gateway["kong"] = kong
        if gw.azure_apim is not None:
            a = gw.azure_apim
            apim: dict[str, Any] = {
                "resourceGroup": a.resource_group,
                "serviceName": a.service_name,
                "create": a.create,
                "subscriptionRequired": a.subscription_required,
                "versioning": {"scheme": a.versioning_scheme},
            }
            for key, value in (
                ("location", a.location),
                ("publisherName", a.publisher_name),
                ("publisherEmail", a.publisher_email),
            ):
                if value is not None:
                    apim[key] = value
            if a.sku_name is not None:
                apim["sku"] = {"name": a.sku_name, "capacity": a.sku_capacity}
            if a.header_name is not None:
                apim["versioning"]["headerName"] = a.header_name
            if a.query_name is not None:
                apim["versioning"]["queryName"] = a.query_name
            gateway["azureApim"] = apim
        versions = []
        for v in self.versions:
            d: dict[str, Any] = {"name": v.name}
            if v.image is not None:
                d.update(image=v.image, port=v.port, replicas=v.replicas)
            if v.url is not None:
                d["url"] = v.url
            if v.requests or v.limits:
                d["resources"] = {
                    k: dict(m) for k, m in (("requests", v.requests), ("limits", v.limits)) if m
                }
            if v.env:
                d["env"] = dict(v.env)
            if v.health_path is not None:
                d["healthPath"] = v.health_path
            versions.append(d)
        traffic: dict[str, Any] = {"stable": self.traffic.stable, "weight": self.traffic.weight}
        if self.traffic.canary is not None:
            traffic["canary"] = self.traffic.canary
        return {
            "apiVersion": API_VERSION,
            "name": self.name,
            "namespace": self.namespace,
            "labels": dict(self.labels),
            "gateway": gateway,
            "versions": versions,
            "traffic": traffic,
        }


# --- loading -------------------------------------------------------------------------------
# load_spec(path) -> Spec is implemented below (issue 2): safe YAML with positions, schema and
# semantic checks, raising SpecError with every problem.
