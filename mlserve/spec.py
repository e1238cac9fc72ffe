"""The spec: a frozen, typed model of an mlserve/v1 file, and `load_spec` that builds it safely.

The JSON Schema (schemas/mlserve.schema.json) is the single source of truth for the shape; the
model below is built from a document that already passed it, so `Spec.from_dict` trusts its input.
`Spec.to_dict` gives the normalized spec (defaults filled in), which is what the stack config
records as `mlserve:spec` and what `Spec.from_dict` reads back.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, cast

import yaml

from mlserve.errors import Problem, SpecError
from mlserve.traffic import Mirror

if TYPE_CHECKING:
    from jsonschema import ValidationError

API_VERSION = "mlserve/v1"

GatewayType = Literal["istio", "gateway-api", "ingress-nginx", "kong", "azure-apim", "service"]
GATEWAY_TYPES: tuple[GatewayType, ...] = (
    "istio",
    "gateway-api",
    "ingress-nginx",
    "kong",
    "azure-apim",
    "service",
)
ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer"]

STRIP_PATH = True  # gateway.stripPath's default, the same on every gateway (the schema says so)
# What a gateway did before gateway.stripPath existed: a stack's recorded spec without the key was
# deployed that way, and a promote or rollback from that record must not change the model's path.
_STRIP_PATH_BEFORE = {"kong": True, "azure-apim": True}


def dns_safe(version: str) -> str:
    """A version name (any Kubernetes label value) as a DNS-1123 label part: `1.10` -> `1-10`,
    `V2_beta` -> `v2-beta`. Resource names use it; labels, pins and output keep the name."""
    return version.lower().replace(".", "-").replace("_", "-")


def _frozen(m: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(m or {}))


def _deep_frozen(value: Any) -> Any:
    """A YAML-shaped value that cannot be changed: mappings read-only, lists as tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _deep_frozen(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_deep_frozen(v) for v in value)
    return value


def thawed(value: Any) -> Any:
    """A frozen YAML-shaped value as plain dicts and lists again (for output and Pulumi)."""
    if isinstance(value, Mapping):
        return {k: thawed(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thawed(v) for v in value]
    return value


ProbeKind = Literal["startup", "readiness", "liveness"]
PROBE_KINDS: tuple[ProbeKind, ...] = ("startup", "readiness", "liveness")
# The probe fields a spec may set, as the spec and Kubernetes name them.
PROBE_FIELDS = ("initialDelaySeconds", "periodSeconds", "failureThreshold", "timeoutSeconds")

# Pod-level fields a version passes to its pods' spec as written (Kubernetes PodSpec names).
POD_FIELDS = (
    "nodeSelector",
    "tolerations",
    "affinity",
    "topologySpreadConstraints",
    "priorityClassName",
    "runtimeClassName",
    "serviceAccountName",
    "imagePullSecrets",
)


@dataclass(frozen=True)
class Volume:
    """A volume of a version's pods and where the model container mounts it."""

    name: str
    mount_path: str
    source: str  # emptyDir | persistentVolumeClaim | configMap | secret
    details: Mapping[str, Any] = field(default_factory=lambda: _frozen(None))  # the source's fields
    read_only: bool | None = None
    sub_path: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Volume:
        [source] = [k for k in VOLUME_SOURCES if k in data]
        return cls(
            name=data["name"],
            mount_path=data["mountPath"],
            source=source,
            details=_deep_frozen(data[source]),
            read_only=data.get("readOnly"),
            sub_path=data.get("subPath"),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "mountPath": self.mount_path}
        if self.read_only is not None:
            out["readOnly"] = self.read_only
        if self.sub_path is not None:
            out["subPath"] = self.sub_path
        out[self.source] = thawed(self.details)
        return out


VOLUME_SOURCES = ("emptyDir", "persistentVolumeClaim", "configMap", "secret")

# An env value: a string, or a reference ({secretKeyRef: {name, key}}, ...) kept as written.
EnvValue = str | Mapping[str, Any]


@dataclass(frozen=True)
class Autoscale:
    """A HorizontalPodAutoscaler's bounds and targets (average utilization, in percent of the
    pods' requests)."""

    max: int
    min: int = 1
    cpu: int | None = None
    memory: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Autoscale:
        return cls(data["max"], data.get("min", 1), data.get("cpu"), data.get("memory"))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"min": self.min, "max": self.max}
        for key, value in (("cpu", self.cpu), ("memory", self.memory)):
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True)
class Version:
    name: str
    image: str | None = None
    url: str | None = None
    port: int = 8080
    replicas: int = 1
    requests: Mapping[str, str] = field(default_factory=lambda: _frozen(None))
    limits: Mapping[str, str] = field(default_factory=lambda: _frozen(None))
    env: Mapping[str, EnvValue] = field(default_factory=lambda: _frozen(None))
    health_path: str | None = None
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env_from: tuple[Mapping[str, Any], ...] = ()
    volumes: tuple[Volume, ...] = ()
    # kind -> the timings the spec sets ({"periodSeconds": 10, ...}); the rest are defaults
    probes: Mapping[str, Mapping[str, int]] = field(default_factory=lambda: _frozen(None))
    pod: Mapping[str, Any] = field(default_factory=lambda: _frozen(None))  # POD_FIELDS as written
    pod_annotations: Mapping[str, str] = field(default_factory=lambda: _frozen(None))
    autoscale: Autoscale | None = None  # instead of replicas: an HPA sets them

    @classmethod
    def from_dict(cls, v: Mapping[str, Any]) -> Version:
        return cls(
            name=v["name"],
            image=v.get("image"),
            url=v.get("url"),
            port=v.get("port", 8080),
            replicas=v.get("replicas", 1),
            requests=_frozen((v.get("resources") or {}).get("requests")),
            limits=_frozen((v.get("resources") or {}).get("limits")),
            env=_deep_frozen(v.get("env") or {}),
            health_path=v.get("healthPath"),
            command=tuple(v.get("command", ())),
            args=tuple(v.get("args", ())),
            env_from=_deep_frozen(v.get("envFrom", ())),
            volumes=tuple(Volume.from_dict(d) for d in v.get("volumes", ())),
            probes=_deep_frozen(v.get("probes") or {}),
            pod=_deep_frozen({k: v[k] for k in POD_FIELDS if k in v}),
            pod_annotations=_frozen(v.get("podAnnotations")),
            autoscale=Autoscale.from_dict(v["autoscale"]) if "autoscale" in v else None,
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name}
        if self.image is not None:
            d.update(image=self.image, port=self.port)
            if self.autoscale is None:
                d["replicas"] = self.replicas
            else:
                d["autoscale"] = self.autoscale.to_dict()
        if self.url is not None:
            d["url"] = self.url
        if self.command:
            d["command"] = list(self.command)
        if self.args:
            d["args"] = list(self.args)
        if self.requests or self.limits:
            d["resources"] = {
                k: dict(m) for k, m in (("requests", self.requests), ("limits", self.limits)) if m
            }
        if self.env:
            d["env"] = thawed(self.env)
        if self.env_from:
            d["envFrom"] = thawed(self.env_from)
        if self.volumes:
            d["volumes"] = [volume.to_dict() for volume in self.volumes]
        if self.health_path is not None:
            d["healthPath"] = self.health_path
        if self.probes:
            d["probes"] = thawed(self.probes)
        d.update(thawed(self.pod))
        if self.pod_annotations:
            d["podAnnotations"] = dict(self.pod_annotations)
        return d


@dataclass(frozen=True)
class Traffic:
    stable: str
    canary: str | None = None
    weight: int = 0
    mirror: Mirror | None = None
    canary_replicas: Literal["proportional"] | None = None  # None: the canary's own replicas
    previous_replicas: int | None = None  # None: the old stable keeps its own replicas


@dataclass(frozen=True)
class IstioOptions:
    gateways: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParentRef:
    name: str
    namespace: str | None = None
    section_name: str | None = None


FailureMode = Literal["FailOpen", "FailClose"]


@dataclass(frozen=True)
class EndpointPicker:
    """The endpoint picker Service each InferencePool calls; `{{pool}}` in the name stands for
    the pool's name."""

    name: str = "{{pool}}-epp"
    port: int = 9002
    failure_mode: FailureMode = "FailClose"


@dataclass(frozen=True)
class InferencePoolOptions:
    endpoint_picker: EndpointPicker | None = None


@dataclass(frozen=True)
class GatewayApiOptions:
    parent_refs: tuple[ParentRef, ...] = ()
    inference_pool: InferencePoolOptions | None = None  # None: backendRefs are the Services


@dataclass(frozen=True)
class IngressNginxOptions:
    class_name: str = "nginx"


@dataclass(frozen=True)
class KongOptions:
    admin_url: str | None = None
    protocols: tuple[str, ...] = ("http", "https")


@dataclass(frozen=True)
class ServiceOptions:
    type: ServiceType = "LoadBalancer"


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
    strip_path: bool = STRIP_PATH
    version_header: str | None = None
    timeout: str | None = None  # the request timeout at the gateway ("10m"); None: its default
    istio: IstioOptions = IstioOptions()
    gateway_api: GatewayApiOptions = GatewayApiOptions()
    ingress_nginx: IngressNginxOptions = IngressNginxOptions()
    kong: KongOptions = KongOptions()
    azure_apim: AzureApimOptions | None = None
    service: ServiceOptions = ServiceOptions()


# --- rollout: the steps `mlserve rollout` walks (DESIGN.md section 4) ------------------------


@dataclass(frozen=True)
class RolloutStep:
    weight: int | None = None  # the canary's weight from this step on; None: unchanged
    pause: str | None = None  # "30s", "5m", "1h" or "manual"; None: go on at once
    mirror: int | None = None  # copy this percent of unpinned traffic to the canary (at 0%)


@dataclass(frozen=True)
class Metric:
    name: str
    query: str  # PromQL with {{name}}, {{namespace}}, {{stable}} and {{canary}}
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Analysis:
    address: str  # the Prometheus base URL; credentials come from the environment
    metrics: tuple[Metric, ...]
    interval: str = "1m"
    failure_limit: int = 1


@dataclass(frozen=True)
class Rollout:
    steps: tuple[RolloutStep, ...]
    complete: bool = True
    analysis: Analysis | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rollout:
        analysis = data.get("analysis")
        return cls(
            steps=tuple(
                RolloutStep(s.get("weight"), s.get("pause"), s.get("mirror")) for s in data["steps"]
            ),
            complete=data.get("complete", True),
            analysis=None
            if analysis is None
            else Analysis(
                address=analysis["prometheus"]["address"],
                interval=analysis.get("interval", "1m"),
                failure_limit=analysis.get("failureLimit", 1),
                metrics=tuple(
                    Metric(
                        name=m["name"],
                        query=m["query"],
                        min=_bound(m.get("min")),
                        max=_bound(m.get("max")),
                    )
                    for m in analysis["metrics"]
                ),
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "steps": [
                {
                    k: v
                    for k, v in (("mirror", s.mirror), ("weight", s.weight), ("pause", s.pause))
                    if v is not None
                }
                for s in self.steps
            ],
            "complete": self.complete,
        }
        a = self.analysis
        if a is not None:
            out["analysis"] = {
                "prometheus": {"address": a.address},
                "interval": a.interval,
                "failureLimit": a.failure_limit,
                "metrics": [
                    {
                        k: v
                        for k, v in (
                            ("name", m.name),
                            ("query", m.query),
                            ("min", m.min),
                            ("max", m.max),
                        )
                        if v is not None
                    }
                    for m in a.metrics
                ],
            }
        return out


@dataclass(frozen=True)
class Spec:
    name: str
    gateway: Gateway
    versions: tuple[Version, ...]
    traffic: Traffic
    namespace: str = "default"
    labels: Mapping[str, str] = field(default_factory=lambda: _frozen(None))
    rollout: Rollout | None = None
    source: str = "<spec>"  # the file it was loaded from, for messages
    # What `validate` prints without failing (deprecations, versions that get no traffic, what
    # the gateway cannot do): set by load_spec, not part of the spec's value.
    notes: tuple[Problem, ...] = field(default=(), compare=False)

    def version(self, name: str) -> Version:
        for v in self.versions:
            if v.name == name:
                return v
        raise KeyError(name)

    @property
    def version_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.versions)

    def object_name(self, version: str) -> str:
        """The Kubernetes (and gateway) object name of a version: `fraud-1-10` for `1.10`."""
        return f"{self.name}-{dns_safe(version)}"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<spec>") -> Spec:
        """Build the model from a schema-valid document (YAML shape, camelCase keys).

        Without `gateway.stripPath` (a spec recorded before it existed), each gateway keeps what
        it did then; load_spec fills in the one documented default for a spec file.
        """
        gw = data["gateway"]
        apim = gw.get("azureApim")
        sku = (apim or {}).get("sku") or {}
        versioning = (apim or {}).get("versioning") or {}
        kong = gw.get("kong") or {}
        strip_path = gw.get("stripPath", kong.get("stripPath"))
        gateway_api = gw.get("gatewayApi") or {}
        if strip_path is None:
            strip_path = _STRIP_PATH_BEFORE.get(gw["type"], False)
        return cls(
            name=data["name"],
            namespace=data.get("namespace", "default"),
            labels=_frozen(data.get("labels")),
            source=source,
            gateway=Gateway(
                type=gw["type"],
                host=gw.get("host"),
                path=gw.get("path", "/"),
                strip_path=strip_path,
                version_header=gw.get("versionHeader"),
                timeout=gw.get("timeout"),
                istio=IstioOptions(gateways=tuple((gw.get("istio") or {}).get("gateways", ()))),
                gateway_api=GatewayApiOptions(
                    parent_refs=tuple(
                        ParentRef(
                            name=r["name"],
                            namespace=r.get("namespace"),
                            section_name=r.get("sectionName"),
                        )
                        for r in gateway_api.get("parentRefs", ())
                    ),
                    inference_pool=_inference_pool(gateway_api.get("inferencePool")),
                ),
                ingress_nginx=IngressNginxOptions(
                    class_name=(gw.get("ingressNginx") or {}).get("className", "nginx")
                ),
                kong=KongOptions(
                    admin_url=kong.get("adminUrl"),
                    protocols=tuple(kong.get("protocols", ("http", "https"))),
                ),
                service=ServiceOptions(type=(gw.get("service") or {}).get("type", "LoadBalancer")),
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
            versions=tuple(Version.from_dict(v) for v in data["versions"]),
            traffic=Traffic(
                stable=data["traffic"]["stable"],
                canary=data["traffic"].get("canary"),
                weight=data["traffic"].get("weight", 0),
                mirror=Mirror.from_dict(data["traffic"]["mirror"])
                if "mirror" in data["traffic"]
                else None,
                canary_replicas=data["traffic"].get("canaryReplicas"),
                previous_replicas=data["traffic"].get("previousReplicas"),
            ),
            rollout=Rollout.from_dict(data["rollout"]) if "rollout" in data else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """The normalized spec in YAML shape; `Spec.from_dict(s.to_dict()) == s` up to `source`."""
        gw = self.gateway
        gateway: dict[str, Any] = {"type": gw.type, "path": gw.path, "stripPath": gw.strip_path}
        if gw.host is not None:
            gateway["host"] = gw.host
        if gw.version_header is not None:
            gateway["versionHeader"] = gw.version_header
        if gw.timeout is not None:
            gateway["timeout"] = gw.timeout
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
            pool = gw.gateway_api.inference_pool
            if pool is not None:
                picker = pool.endpoint_picker
                gateway["gatewayApi"]["inferencePool"] = (
                    {}
                    if picker is None
                    else {
                        "endpointPicker": {
                            "name": picker.name,
                            "port": picker.port,
                            "failureMode": picker.failure_mode,
                        }
                    }
                )
        elif gw.type == "ingress-nginx":
            gateway["ingressNginx"] = {"className": gw.ingress_nginx.class_name}
        elif gw.type == "kong":
            kong: dict[str, Any] = {"protocols": list(gw.kong.protocols)}
            if gw.kong.admin_url is not None:
                kong["adminUrl"] = gw.kong.admin_url
            gateway["kong"] = kong
        elif gw.type == "service":
            gateway["service"] = {"type": gw.service.type}
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
        versions = [v.to_dict() for v in self.versions]
        traffic: dict[str, Any] = {"stable": self.traffic.stable, "weight": self.traffic.weight}
        if self.traffic.canary is not None:
            traffic["canary"] = self.traffic.canary
        if self.traffic.mirror is not None:
            traffic["mirror"] = self.traffic.mirror.to_dict()
        if self.traffic.canary_replicas is not None:
            traffic["canaryReplicas"] = self.traffic.canary_replicas
        if self.traffic.previous_replicas is not None:
            traffic["previousReplicas"] = self.traffic.previous_replicas
        out = {
            "apiVersion": API_VERSION,
            "name": self.name,
            "namespace": self.namespace,
            "labels": dict(self.labels),
            "gateway": gateway,
            "versions": versions,
            "traffic": traffic,
        }
        if self.rollout is not None:
            out["rollout"] = self.rollout.to_dict()
        return out


def _inference_pool(data: Mapping[str, Any] | None) -> InferencePoolOptions | None:
    if data is None:
        return None
    picker = data.get("endpointPicker")
    if picker is None:
        return InferencePoolOptions()
    default = EndpointPicker()
    return InferencePoolOptions(
        EndpointPicker(
            name=picker.get("name", default.name),
            port=picker.get("port", default.port),
            failure_mode=picker.get("failureMode", default.failure_mode),
        )
    )


# --- loading -------------------------------------------------------------------------------
# load_spec: bounded read -> YAML events composed by hand (hazards refused, positions kept) ->
# JSON Schema -> Spec.from_dict -> checks the schema cannot express (DESIGN.md sections 1, 3).
# Each stage reports every problem it finds; a later stage runs only on a clean earlier one.

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 10_000  # a real spec has a few hundred values; bounds time and memory per file
MAX_PROBLEMS = 100
_MAX_INT_DIGITS = 18
_SCHEMA_ERROR_BUDGET = 1000  # stop asking jsonschema for more on a hostile document

SpecPath = tuple[str | int, ...]
Position = tuple[int, int]  # 1-based line and column

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_PATH_TOKEN = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')
_YAML12_SAME = {
    "bool": re.compile(r"true|True|TRUE|false|False|FALSE"),
    "int": re.compile(r"[-+]?(0|[1-9][0-9]*)|0x[0-9a-fA-F]+"),
    "float": re.compile(r"[^_:]*"),
    "null": re.compile(r".*"),
}
# Numbers of the YAML 1.2 core schema (yaml.org/spec/1.2.2, 10.3.2) that YAML 1.1 (PyYAML)
# reads as strings: 1e3, 1e-3, 1.5e3 (1.1 wants a dot and a signed exponent), 0o17.
_YAML12_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_YAML12_OCTAL = re.compile(r"0o[0-7]+")
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_RESERVED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
)
_OPTION_KEYS = {
    "istio": "istio",
    "gatewayApi": "gateway-api",
    "ingressNginx": "ingress-nginx",
    "kong": "kong",
    "azureApim": "azure-apim",
    "service": "service",
}
_IMAGE_ONLY_KEYS = (
    "port",
    "replicas",
    "autoscale",
    "command",
    "args",
    "resources",
    "env",
    "envFrom",
    "volumes",
    "healthPath",
    "probes",
    *POD_FIELDS,
    "podAnnotations",
)


def format_path(path: SpecPath) -> str:
    """`("versions", 1, "replicas")` -> `versions[1].replicas`; odd keys as `labels["a.b/c"]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


def parse_path(text: str) -> SpecPath:
    """The inverse of `format_path`; what it cannot read it leaves off."""
    path: list[str | int] = []
    pos = 0
    for m in _PATH_TOKEN.finditer(text):
        if m.start() != pos:
            break
        pos = m.end()
        name, index, quoted = m.groups()
        path.append(
            name if name is not None else int(index) if index is not None else json.loads(quoted)
        )
    return tuple(path)


def schema_text() -> str:
    """The JSON Schema as shipped inside the package (works from an installed wheel)."""
    return (resources.files("mlserve") / "schemas" / "mlserve.schema.json").read_text(
        encoding="utf-8"
    )


@functools.cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_text())
    return loaded


def recorded_spec_problems(data: Any) -> list[str]:
    """Schema problems of a spec a stack recorded (`Spec.to_dict()` form), each `path: message`.

    As for a file, except two counts: deploy keeps `previous` and the live versions beside the
    spec's own, so a record may hold more versions than a file may list; and a stack deployed
    before labels were capped at 64 keeps its labels.
    """
    return [
        f"{format_path(tuple(e.absolute_path)) or '(top level)'}: {e.message}"
        for e in _validator().iter_errors(data)
        if (e.validator, list(e.absolute_path)) not in _RECORD_EXEMPT
    ]


_RECORD_EXEMPT = [("maxItems", ["versions"]), ("maxProperties", ["labels"])]


def load_spec(path: str | os.PathLike[str]) -> Spec:
    """Load and check a spec file (`-`: standard input, shown as `<stdin>`); raise SpecError
    listing every problem, sorted by position."""
    stdin = str(path) == "-"
    display = "<stdin>" if stdin else str(path)
    text = _read(Path("/dev/stdin") if stdin else Path(path), display)
    doc = _Composer(display).compose(text)
    problems = _schema_problems(doc)
    if problems:
        problems += [doc.problem(p, m, at_key=k) for p, m, k in _reference_issues(doc.data)]
        raise SpecError(_capped(problems))
    gateway = doc.data["gateway"]
    if "stripPath" not in gateway and "stripPath" not in (gateway.get("kong") or {}):
        # A spec file without it gets the one default; from_dict's fallback is for old records.
        doc.data = {**doc.data, "gateway": {**gateway, "stripPath": STRIP_PATH}}
    spec = Spec.from_dict(doc.data, source=display)
    problems = [doc.problem(p, m, at_key=k) for p, m, k in _semantic_issues(spec, doc.data)]
    if problems:
        raise SpecError(_capped(problems))
    notes = [doc.problem(p, m, at_key=k) for p, m, k in _notes(spec, doc.data)]
    return replace(spec, notes=tuple(sorted(notes)))


def _capped(problems: list[Problem]) -> list[Problem]:
    problems = sorted(set(problems))
    if len(problems) <= MAX_PROBLEMS:
        return problems
    nxt = problems[MAX_PROBLEMS]
    more = len(problems) - MAX_PROBLEMS
    note = Problem(nxt.file, nxt.line, nxt.column, "", f"{more} more problems not shown")
    return [*problems[:MAX_PROBLEMS], note]


# --- reading ---------------------------------------------------------------------------------


def _file_problem(display: str, message: str, line: int = 0, column: int = 0) -> SpecError:
    """A problem of the whole file; line 0: it has no position (Problem)."""
    return SpecError([Problem(display, line, column, "", message)])


def _read(path: Path, display: str) -> str:
    limit = "a spec must be at most 1 MiB"
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_BYTES:
                shown = f"{size / MAX_BYTES:.1f} MiB" if size > 1.1 * MAX_BYTES else f"{size} bytes"
                raise _file_problem(display, f"the file is {shown}; {limit}")
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise _file_problem(display, "no such file") from None
    except IsADirectoryError:
        folder = display.rstrip("/") + "/"  # Path("specs/") reads "specs": show it as typed
        raise _file_problem(
            folder, f"is a directory, not a spec file (its spec files: {folder}*.yaml)"
        ) from None
    except OSError as e:
        raise _file_problem(display, f"cannot read the file: {e.strerror or e}") from None
    if len(data) > MAX_BYTES:
        raise _file_problem(display, f"the file is larger than 1 MiB; {limit}")
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line, column = _offset_position(data, e.start)
        raise _file_problem(
            display,
            f"the file is not UTF-8 (byte 0x{data[e.start]:02x}); save it as UTF-8",
            line,
            column,
        ) from None


def _offset_position(data: bytes, offset: int) -> Position:
    start = data.rfind(b"\n", 0, offset) + 1
    column = len(data[start:offset].decode("utf-8", errors="replace")) + 1
    return data.count(b"\n", 0, offset) + 1, column


# --- composing: YAML events -> plain values with positions -----------------------------------


@dataclass(frozen=True)
class _Plain:
    """A plain (unquoted) scalar that YAML 1.1 resolved to something other than a string."""

    text: str
    value: Any
    kind: Literal["bool", "int", "float", "null"]


@dataclass
class _Doc:
    file: str
    data: Any = None
    pos: dict[SpecPath, Position] = field(default_factory=dict)  # value nodes
    keypos: dict[SpecPath, Position] = field(default_factory=dict)  # key nodes
    plain: dict[SpecPath, _Plain] = field(default_factory=dict)
    # strings that YAML 1.2 reads as numbers: path -> (text, the number)
    yaml12: dict[SpecPath, tuple[str, str]] = field(default_factory=dict)

    def position(self, path: SpecPath, at_key: bool = False) -> Position:
        """The node's position (its key's with at_key); for a missing node, where its parent
        is named: `gateway.host` missing points at `gateway:`."""
        if path not in self.pos:
            at_key = True
            while path not in self.pos and path:
                path = path[:-1]
        if at_key and path in self.keypos:
            return self.keypos[path]
        return self.pos.get(path, (1, 1))

    def problem(self, path: SpecPath, message: str, at_key: bool = False) -> Problem:
        line, column = self.position(path, at_key)
        return Problem(self.file, line, column, format_path(path), message)


_SKIP = object()  # the pending key of a mapping entry that is dropped (already reported)


@dataclass
class _Frame:
    container: dict[str, Any] | list[Any]
    path: SpecPath | None  # None: inside a key or a dropped entry; nothing is recorded
    expect_key: bool = True
    key: Any = None


def _tag_text(tag: str) -> str:
    prefix = "tag:yaml.org,2002:"
    return "!!" + tag[len(prefix) :] if tag.startswith(prefix) else tag


def _resolve_tag(resolver: yaml.resolver.Resolver, text: str) -> str:
    """The YAML 1.1 type of a plain scalar, as PyYAML's safe loader reads it: 'int', 'bool'..."""
    tag: str = resolver.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    return tag.rpartition(":")[2]


class _Composer:
    """Walks the YAML event stream (never PyYAML's recursive composer) and builds plain values.

    Anchors and aliases are refused as events, before anything could be expanded, and nesting is
    counted as it opens, so a billion-laughs or 100000-deep file costs a few events, not memory.
    """

    def __init__(self, file: str) -> None:
        self.doc = _Doc(file)
        self.problems: list[Problem] = []
        self.stack: list[_Frame] = []
        self.root: Any = _SKIP
        self.anchor_lines: set[int] = set()
        self.resolver = yaml.resolver.Resolver()
        self.constructor = yaml.constructor.SafeConstructor()

    def report(self, pos: Position, path: SpecPath | None, message: str) -> None:
        self.problems.append(Problem(self.doc.file, *pos, format_path(path or ()), message))

    def compose(self, text: str) -> _Doc:
        return self.compose_with(
            yaml.CBaseLoader if yaml.__with_libyaml__ else yaml.BaseLoader, text
        )

    def compose_with(self, parser: type[yaml.BaseLoader | yaml.CBaseLoader], text: str) -> _Doc:
        loader: yaml.BaseLoader | yaml.CBaseLoader | None = None
        try:
            loader = parser(text)
            self._walk(loader)
        except yaml.MarkedYAMLError as e:
            if isinstance(loader, yaml.CBaseLoader) and "nesting depth" in str(e.problem):
                # The libyaml bundled with PyYAML 6.0.4 stops flow nesting itself ("exceeded
                # maximum nesting depth" near level 1000), and its scanner reads a run of '[' or
                # '{' ahead of the events it hands out, so that limit fires before ours. The
                # pure-Python parser has no such limit and reads at most 1024 characters ahead
                # (a simple key's bound, yaml/scanner.py stale_possible_simple_keys), so it
                # reaches ours at the 65th level, with the message every PyYAML 6.x gives.
                return _Composer(self.doc.file).compose_with(yaml.BaseLoader, text)
            self._syntax_error(e)
        except yaml.reader.ReaderError as e:
            data = text.encode()
            # libyaml counts bytes of the UTF-8 input, PyYAML's reader counts characters
            offset = e.position if yaml.__with_libyaml__ else len(text[: e.position].encode())
            reason = f"character U+{e.character:04X} is not allowed in YAML ({e.reason})"
            self.report(_offset_position(data, offset), None, reason)
        finally:
            if loader is not None:
                loader.dispose()
        if not self.problems:
            self._check_root()
        if self.problems:
            raise SpecError(_capped(self.problems))
        self.doc.data = self.root
        return self.doc

    def _syntax_error(self, e: yaml.MarkedYAMLError) -> None:
        mark = e.problem_mark or e.context_mark
        pos = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"invalid YAML: {e.problem or e.context}"
        if e.problem and e.context:
            where = f" on line {e.context_mark.line + 1}" if e.context_mark else ""
            message += f" ({e.context}{where})"
        self.report(pos, None, message)

    def _check_root(self) -> None:
        expected = "a mapping that starts with apiVersion: mlserve/v1"
        if self.root is _SKIP or self.root is None:
            self.report(
                self.doc.pos.get((), (1, 1)), None, f"the spec is empty; expected {expected}"
            )
        elif not isinstance(self.root, dict):
            found = "a list" if isinstance(self.root, list) else "a single value"
            self.report(self.doc.pos[()], None, f"the top level is {found}; expected {expected}")

    def _walk(self, loader: yaml.BaseLoader | yaml.CBaseLoader) -> None:
        documents = nodes = 0
        while True:
            ev = loader.get_event()
            if ev is None or isinstance(ev, yaml.StreamEndEvent):
                return
            pos = (ev.start_mark.line + 1, ev.start_mark.column + 1) if ev.start_mark else (1, 1)
            if isinstance(ev, yaml.NodeEvent):
                nodes += 1
                if nodes > MAX_NODES:
                    self.report(pos, None, f"more than {MAX_NODES} values; a spec is much smaller")
                    return
            if isinstance(ev, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    self.report(pos, None, "a second YAML document; a spec file holds one document")
                    return
            elif isinstance(ev, yaml.AliasEvent):
                self._refuse_anchor(pos, f"alias '*{ev.anchor}'")
                self._value(None)
            elif isinstance(ev, yaml.ScalarEvent | yaml.CollectionStartEvent):
                if ev.anchor is not None:
                    self._refuse_anchor(pos, f"anchor '&{ev.anchor}'")
                if ev.tag is not None:
                    fix = "quote the value" if isinstance(ev, yaml.ScalarEvent) else "remove it"
                    where = self._next_path() or (self.stack[-1].path if self.stack else None)
                    self.report(pos, where, f"tag '{_tag_text(ev.tag)}' is not allowed; {fix}")
                if isinstance(ev, yaml.ScalarEvent):
                    self._scalar(ev.value, plain=ev.implicit[0] and ev.tag is None, pos=pos)
                elif not self._open(isinstance(ev, yaml.MappingStartEvent), pos):
                    return
            elif isinstance(ev, yaml.CollectionEndEvent):
                frame = self.stack.pop()
                self._value(frame.container)

    def _refuse_anchor(self, pos: Position, what: str) -> None:
        if pos[0] not in self.anchor_lines:  # one per line: a billion-laughs line has dozens
            self.anchor_lines.add(pos[0])
            self.report(
                pos, None, f"{what}: YAML anchors and aliases are not allowed; write the value out"
            )

    def _next_path(self) -> SpecPath | None:
        """The spec path of the node that starts now, or None for a key or a dropped entry."""
        if not self.stack:
            return ()
        top = self.stack[-1]
        if top.path is None:
            return None
        if isinstance(top.container, list):
            return (*top.path, len(top.container))
        if top.expect_key or top.key is _SKIP:
            return None
        return (*top.path, top.key)

    def _open(self, mapping: bool, pos: Position) -> bool:
        if len(self.stack) >= MAX_DEPTH:
            self.report(pos, None, f"nesting deeper than {MAX_DEPTH} levels")
            return False
        if self.stack and self.stack[-1].expect_key and isinstance(self.stack[-1].container, dict):
            self.report(pos, self.stack[-1].path, "a key must be a string, not a collection")
        path = self._next_path()
        if path is not None:
            self.doc.pos[path] = pos
        self.stack.append(_Frame({} if mapping else [], path))
        return True

    def _scalar(self, text: str, plain: bool, pos: Position) -> None:
        top = self.stack[-1] if self.stack else None
        if top is not None and isinstance(top.container, dict) and top.expect_key:
            self._key(top, text, plain, pos)
            return
        path = self._next_path()
        value: Any = text
        if plain:
            value = self._resolve(text, pos, path)
        if path is not None:
            self.doc.pos[path] = pos
        self._value(value)

    def _resolve(self, text: str, pos: Position, path: SpecPath | None) -> Any:
        tag = _resolve_tag(self.resolver, text)
        if tag in ("int", "float") and _is_quantity(path):
            # Kubernetes reads `cpu: 1` and `cpu: "1"` alike; keep the text as written, so
            # `1.10` stays 1.10 rather than becoming 1.1.
            return text
        node = yaml.ScalarNode(f"tag:yaml.org,2002:{tag}", text)
        if tag == "timestamp":
            self.report(pos, path, f'{text} is a date; quote it ("{text}")')
            return text
        if tag == "int":
            digits = sum(c.isdigit() for c in text)
            number = (
                self.constructor.construct_yaml_int(node) if digits <= 4 * _MAX_INT_DIGITS else None
            )
            if number is None or abs(number) >= 10**_MAX_INT_DIGITS:
                shown = text if len(text) <= 40 else text[:37] + "..."
                self.report(
                    pos,
                    path,
                    f"{shown} is too large (integers have at most {_MAX_INT_DIGITS} digits)",
                )
                return text
            value: Any = number
            kind: Literal["bool", "int", "float", "null"] = "int"
        elif tag == "float":
            value, kind = self.constructor.construct_yaml_float(node), "float"
        elif tag == "bool":
            value, kind = self.constructor.construct_yaml_bool(node), "bool"
        elif tag == "null":
            value, kind = None, "null"
        else:
            yaml12 = _yaml12_number(text)
            if yaml12 is not None and path is not None:
                self.doc.yaml12[path] = (text, yaml12)
            return text
        if path is not None:
            self.doc.plain[path] = _Plain(text, value, kind)
        return value

    def _key(self, top: _Frame, text: str, plain: bool, pos: Position) -> None:
        assert isinstance(top.container, dict)
        top.expect_key = False
        top.key = _SKIP
        parent = top.path
        if plain and text == "<<":
            self.report(pos, parent, "merge keys ('<<') are not allowed; write the keys out")
            return
        if plain:
            tag = _resolve_tag(self.resolver, text)
            if text == "":
                self.report(pos, parent, "empty key")
                return
            if tag in ("bool", "int", "float", "null", "timestamp"):
                kind = {"bool": "boolean", "null": "null", "timestamp": "date"}.get(tag, "number")
                self.report(pos, parent, f'key {text} is a {kind}; quote it ("{text}")')
                return
            if _yaml12_number(text) is not None:
                self.report(pos, parent, f'key {text} is a number in YAML 1.2; quote it ("{text}")')
                return
        if text in top.container:
            first = self.doc.keypos.get((*parent, text)) if parent is not None else None
            where = f" (first on line {first[0]})" if first else ""
            self.report(
                pos,
                (*parent, text) if parent is not None else None,
                f"duplicate key '{text}'{where}",
            )
            return
        top.key = text
        top.container[text] = None  # reserve the key so a duplicate is seen
        if parent is not None:
            self.doc.keypos[(*parent, text)] = pos

    def _value(self, value: Any) -> None:
        if not self.stack:
            self.root = value
            return
        top = self.stack[-1]
        if isinstance(top.container, list):
            top.container.append(value)
        elif top.expect_key:  # a collection or an alias used as a key: already reported
            top.expect_key = False
            top.key = _SKIP
        else:
            if top.key is not _SKIP:
                top.container[top.key] = value
            top.expect_key = True
            top.key = None


# --- schema: jsonschema errors -> one readable line each -------------------------------------


@functools.cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator, ValidationError, validators

    # JSON Schema counts 3.0 as an integer; a replica count of 3.0 is a typo, not a number.
    checker = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, i: isinstance(i, int) and not isinstance(i, bool)
    )

    def pattern(
        validator: Any, regex: str, instance: Any, subschema: dict[str, Any]
    ) -> Iterator[ValidationError]:
        # Every pattern has a maxLength beside it (tested); a regex never sees a longer string,
        # so no pattern can backtrack for long on a hostile value. maxLength reports it instead.
        if not isinstance(instance, str) or len(instance) > subschema.get("maxLength", 0):
            return
        if not _ecma_pattern(regex).search(instance):
            yield ValidationError(f"{instance!r} does not match {regex!r}")

    cls = validators.extend(  # type: ignore[no-untyped-call]
        Draft202012Validator, validators={"pattern": pattern}, type_checker=checker
    )
    return cls(schema())


@functools.cache
def _ecma_pattern(regex: str) -> re.Pattern[str]:
    """A JSON Schema pattern as ECMA-262 reads it (JSON Schema 2020-12, section 6.4): without
    the m flag its `$` matches only at the very end, where Python's also matches before a final
    newline (`"fraud\\n"` would pass `^[a-z]+$`). So every `$` outside a character class is
    Python's `\\Z`."""
    out: list[str] = []
    i, in_class = 0, False
    while i < len(regex):
        c = regex[i]
        if c == "\\":
            out.append(regex[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "$":
            c = r"\Z"
        out.append(c)
        i += 1
    return re.compile("".join(out))


@functools.cache
def _qualifiers() -> dict[int, str]:
    """id(subschema) -> 'for gateway type istio' for every subschema under an if/then."""
    found: dict[int, str] = {}

    def mark(node: Any, qualifier: str) -> None:
        if isinstance(node, dict):
            found[id(node)] = qualifier
            for child in node.values():
                mark(child, qualifier)
        elif isinstance(node, list):
            for child in node:
                mark(child, qualifier)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "if" in node and "then" in node:
                ((key, cond),) = node["if"]["properties"].items()
                value = cond["const"]
                mark(
                    node["then"],
                    f"for gateway type {value}"
                    if key == "type"
                    else f"when {key} is {value if isinstance(value, str) else _show(value)}",
                )
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(schema())
    return found


def _show(value: Any) -> str:
    """A value as a user would write it in a message: 'text', 3, true, null."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        value = _URL_USERINFO.sub("***@", value)  # a password in a URL is never echoed
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


def _schema_problems(doc: _Doc) -> list[Problem]:
    problems: list[Problem] = []
    for n, error in enumerate(_validator().iter_errors(doc.data)):
        if n >= _SCHEMA_ERROR_BUDGET:
            break
        found = _explain(doc, error)
        if _holds_secrets(tuple(error.absolute_path)):
            found = (replace(p, message=_redacted(p.message, error.instance)) for p in found)
        problems.extend(found)
    problems.extend(_ambiguous_scalars(doc, {p.path for p in problems}))
    return problems


def _holds_secrets(path: SpecPath) -> bool:
    """An env value may be a credential written where a reference belongs: never echo it."""
    return len(path) > 2 and path[0] == "versions" and path[2] in ("env", "envFrom")


def _redacted(message: str, instance: Any) -> str:
    for leaf in _strings(instance):
        message = message.replace(_show(leaf), "a value (not shown)")
    return message


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _explain(doc: _Doc, error: ValidationError) -> Iterator[Problem]:
    path: SpecPath = tuple(error.absolute_path)
    sub: Any = error.schema if isinstance(error.schema, dict) else {}
    kind: Any = error.validator
    value: Any = error.validator_value
    instance: Any = error.instance
    qualifier = _qualifiers().get(id(sub), "")
    when = f" {qualifier}" if qualifier else ""

    if "propertyNames" in error.absolute_schema_path:
        title = sub.get("title", "a valid key")
        yield doc.problem((*path, instance), f"key {_show(instance)} is not {title}", at_key=True)
    elif kind == "additionalProperties" and isinstance(instance, dict):
        known = list(sub.get("properties", {}))
        for key in instance:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                if not close and known:
                    hint = f"; allowed here: {', '.join(known)}"
                if key == "weight" and len(path) == 2 and path[0] == "versions":
                    hint = (
                        ": a version has no weight of its own; the split is set under traffic "
                        "(stable, canary, and weight: the canary's percent)"
                    )
                yield _at_key(doc, path, key, f"unknown key '{key}'{hint}")
    elif kind == "required":
        for name in value:
            if isinstance(instance, dict) and name not in instance:
                yield doc.problem(path, f"'{name}' is required{when}", at_key=True)
    elif kind == "type":
        yield doc.problem(path, _type_message(doc, path, value, instance))
    elif kind in ("oneOf", "anyOf") and not all(set(s) == {"required"} for s in value):
        yield from _explain_by_type(doc, error)
    elif kind == "oneOf" and all(set(s) == {"required"} for s in value):
        names = [s["required"][0] for s in value]
        given = [n for n in names if isinstance(instance, dict) and n in instance]
        if len(given) > 1:
            yield doc.problem(path, f"give {' or '.join(names)}, not both")
        else:
            yield doc.problem(path, f"exactly one of {' or '.join(names)} is required")
    elif kind == "enum":
        options = ", ".join(str(v) for v in value)
        close = (
            difflib.get_close_matches(instance, [str(v) for v in value], n=1)
            if isinstance(instance, str)
            else []
        )
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        yield doc.problem(path, f"{_show(instance)} is not one of {options}{hint}")
    elif kind == "const":
        yield doc.problem(path, f"must be {_show(value)}{when}, not {_show(instance)}")
    elif kind in ("pattern", "maxLength", "minLength") and "title" in sub:
        yield doc.problem(path, f"{_show(instance)} is not {sub['title']}")
    elif kind == "minLength":
        yield doc.problem(path, "must not be empty")
    elif kind == "maxLength":
        yield doc.problem(path, f"is too long (at most {value} characters)")
    elif kind == "minItems":
        yield doc.problem(path, f"needs at least {value} {'entry' if value == 1 else 'entries'}")
    elif kind in ("minProperties", "maxProperties") and "title" in sub:
        yield doc.problem(path, f"give {'only ' if kind == 'maxProperties' else ''}{sub['title']}")
    elif kind in ("maxItems", "maxProperties"):
        why = _LIMIT_REASONS.get(path, "")
        yield doc.problem(path, f"has {len(instance)} entries; at most {value} are allowed{why}")
    elif kind == "uniqueItems":
        seen: list[Any] = []
        for i, item in enumerate(instance):
            if item in seen:
                yield doc.problem((*path, i), f"duplicate entry {_show(item)}")
            seen.append(item)
    elif kind in ("minimum", "maximum"):
        side = "less than the minimum" if kind == "minimum" else "greater than the maximum"
        yield doc.problem(path, f"{_show(instance)} is {side} of {value}{when}")
    else:
        yield doc.problem(path, error.message[:200] + when)


def _explain_by_type(doc: _Doc, error: ValidationError) -> Iterator[Problem]:
    """A oneOf whose branches take different types (a string or a mapping): the problems of
    the branch that takes the value's type, or what types it could have been."""
    path: SpecPath = tuple(error.absolute_path)
    instance = error.instance
    branches = [_branch_types(b) for b in cast(list[Mapping[str, Any]], error.validator_value)]
    fits = [i for i, types in enumerate(branches) if _json_type(instance) & types]
    if len(fits) == 1:
        subs = [e for e in error.context or () if e.relative_schema_path[0] == fits[0]]
        if subs:
            for sub in subs:
                yield from _explain(doc, sub)
            return
    if not fits:
        wanted = sorted({t for types in branches for t in types}, key=list(_TYPE_NAMES).index)
        yield doc.problem(path, _type_message(doc, path, wanted, instance))
        return
    yield doc.problem(path, error.message[:200])


def _branch_types(branch: Mapping[str, Any]) -> set[str]:
    while "type" not in branch and isinstance(branch.get("$ref"), str):
        branch = schema()["$defs"][branch["$ref"].rsplit("/", 1)[-1]]
    types = branch.get("type", list(_TYPE_NAMES))
    return {types} if isinstance(types, str) else set(types)


def _json_type(value: Any) -> set[str]:
    if isinstance(value, bool):
        return {"boolean"}
    if isinstance(value, int):
        return {"integer", "number"}
    if isinstance(value, float):
        return {"number"}
    if isinstance(value, str):
        return {"string"}
    if isinstance(value, dict):
        return {"object"}
    if isinstance(value, list):
        return {"array"}
    return {"null"}


# Why a count is capped, where a user would not guess it.
_LIMIT_REASONS: dict[SpecPath, str] = {
    ("labels",): (
        ": every object mlserve creates carries all of them (a Deployment twice, on itself and "
        "on its pods)"
    ),
}


def _is_quantity(path: SpecPath | None) -> bool:
    return (
        path is not None
        and len(path) == 5
        and path[0] == "versions"
        and path[2] == "resources"
        and path[3] in ("requests", "limits")
    )


def _at_key(doc: _Doc, path: SpecPath, key: str, message: str) -> Problem:
    line, column = doc.position((*path, key), at_key=True)
    return Problem(doc.file, line, column, format_path(path), message)


def _type_message(doc: _Doc, path: SpecPath, expected: Any, instance: Any) -> str:
    types = [expected] if isinstance(expected, str) else list(expected)
    wanted = " or ".join(_TYPE_NAMES.get(t, t) for t in types)
    plain = doc.plain.get(path)
    if path in doc.yaml12 and "string" not in types:
        text, number = doc.yaml12[path]
        return (
            f"{text} is a number only to YAML 1.2 readers (PyYAML reads a string); write {number}"
        )
    if plain is not None and plain.kind == "null" and plain.text == "":
        return f"missing value (expected {wanted})"
    if plain is not None and "string" in types:
        if plain.kind == "null":
            return f'{plain.text} is null; quote it ("{plain.text}")'
        what = "a boolean" if plain.kind == "bool" else "a number"
        return f'{_show(plain.value)} is {what}; quote it ("{plain.text}")'
    if isinstance(instance, dict | list):
        return f"expected {wanted}, not {_show(instance)}"
    return f"{_show(instance)} is not of type {', '.join(repr(t) for t in types)}"


def _yaml12_number(text: str) -> str | None:
    """What YAML 1.2 reads a YAML 1.1 string as, if it reads a number: `1e3` -> `1000.0`."""
    if _YAML12_OCTAL.fullmatch(text):
        return str(int(text[2:], 8))
    if _YAML12_FLOAT.fullmatch(text) and len(text) <= 40:
        return str(float(text))
    return None


def _ambiguous_scalars(doc: _Doc, reported: set[str]) -> Iterator[Problem]:
    """YAML 1.1 (PyYAML) and 1.2 (editors, most other tools) read these differently."""
    for path, plain in doc.plain.items():
        if not _YAML12_SAME[plain.kind].fullmatch(plain.text) and format_path(path) not in reported:
            shown = _show(plain.value)
            yield doc.problem(
                path, f"{plain.text} is ambiguous (YAML 1.1 reads {shown}); write {shown}"
            )
    for path, (text, number) in doc.yaml12.items():
        if format_path(path) not in reported and not _is_quantity(path):
            yield doc.problem(
                path,
                f'{text} is ambiguous (YAML 1.2 reads the number {number}); quote it ("{text}")',
            )


# --- semantic checks: what the schema cannot express -----------------------------------------


def _reference_issues(data: Any) -> list[tuple[SpecPath, str, bool]]:
    """traffic.stable and traffic.canary must name versions. Read from the raw document, so a
    wrong name is reported together with any schema problems, not only after they are fixed."""
    versions = data.get("versions") if isinstance(data, dict) else None
    traffic = data.get("traffic") if isinstance(data, dict) else None
    if not isinstance(versions, list) or not isinstance(traffic, dict):
        return []
    if not versions or not all(
        isinstance(v, dict) and isinstance(v.get("name"), str) for v in versions
    ):
        return []  # the schema reports the missing or mistyped names; a list of names would mislead
    names = list(dict.fromkeys(v["name"] for v in versions))
    issues: list[tuple[SpecPath, str, bool]] = []
    mirror = traffic.get("mirror")
    for path, wanted in (
        (("traffic", "stable"), traffic.get("stable")),
        (("traffic", "canary"), traffic.get("canary")),
        (
            ("traffic", "mirror", "version"),
            mirror.get("version") if isinstance(mirror, dict) else None,
        ),
    ):
        if isinstance(wanted, str) and wanted not in names:
            close = difflib.get_close_matches(wanted, names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            issues.append(
                (path, f"'{wanted}' is not one of the versions ({', '.join(names)}){hint}", False)
            )
    return issues


def _semantic_issues(spec: Spec, data: Mapping[str, Any]) -> list[tuple[SpecPath, str, bool]]:
    """(spec path, message, points at the key) for each problem beyond the schema."""
    from mlserve.backends import base

    issues: list[tuple[SpecPath, str, bool]] = []

    def add(path: SpecPath, message: str, at_key: bool = False) -> None:
        issues.append((path, message, at_key))

    gw = spec.gateway
    raw_gateway: Mapping[str, Any] = data["gateway"]
    raw_versions: list[Mapping[str, Any]] = data["versions"]
    caps = base.CAPABILITIES[gw.type]

    index: dict[str, int] = {}
    derived: dict[str, int] = {}
    for i, v in enumerate(spec.versions):
        if v.name in index:
            add(
                ("versions", i, "name"),
                f"duplicate version name '{v.name}' (also versions[{index[v.name]}])",
            )
        else:
            index[v.name] = i
            j = derived.setdefault(dns_safe(v.name), i)
            if j != i:
                add(
                    ("versions", i, "name"),
                    f"'{v.name}' and versions[{j}].name '{spec.versions[j].name}' both give the "
                    f"resource name '{spec.object_name(v.name)}'; rename one",
                )
        if v.image is not None and not caps.image_versions:
            add(
                ("versions", i, "image"),
                f"gateway {gw.type} only routes to existing backends: give a url, not an image",
            )
        if v.url is not None and not caps.url_versions:
            add(
                ("versions", i, "url"),
                f"gateway {gw.type} deploys images: give an image, not a url",
            )
        if v.url is not None:
            for key in _IMAGE_ONLY_KEYS:
                if key in raw_versions[i]:
                    add(
                        ("versions", i, key), f"{key} applies only to a version with an image", True
                    )
        issues.extend(_resource_issues(i, v))
        if v.image is not None:
            issues.extend(_container_issues(i, v))
        if v.image is not None:
            name = spec.object_name(v.name)
            if len(name) > 63:
                add(
                    ("versions", i, "name"),
                    f"the Kubernetes name '{name}' is longer than 63 "
                    "characters; shorten the name or the version name",
                )

    issues.extend(_reference_issues(data))
    t = spec.traffic
    if t.canary is not None and t.canary == t.stable:
        add(("traffic", "canary"), f"the canary must differ from the stable version '{t.stable}'")
    if t.canary is None and t.weight > 0:
        add(
            ("traffic", "weight"),
            "a weight needs a canary: set traffic.canary or remove the weight",
        )
    routes = [(t.stable, 100 - (t.weight if t.canary else 0)), (t.canary, t.weight)]
    for routed, share in routes if t.canary != t.stable else routes[:1]:
        at = index.get(routed or "")
        if routed is not None and at is not None and share > 0:
            v = spec.versions[at]
            if v.image is not None and v.replicas == 0:
                add(
                    ("versions", at, "replicas"),
                    f"'{routed}' receives {share}% of the traffic and needs at least 1 replica",
                )
    issues.extend(_mirror_issues(spec, index))
    issues.extend(_capacity_issues(spec, raw_versions))

    if caps.max_versions is not None and len(spec.versions) > caps.max_versions:
        add(
            ("versions", caps.max_versions),
            f"gateway {gw.type} supports at most "
            f"{caps.max_versions} versions (a stable and a canary); found {len(spec.versions)}",
        )
    if gw.timeout is not None and duration_seconds(gw.timeout) > MAX_TIMEOUT_SECONDS:
        add(("gateway", "timeout"), f"{gw.timeout} is longer than the 24h mlserve allows")
    if gw.version_header is not None and not caps.header_pinning:
        add(
            ("gateway", "versionHeader"),
            f"gateway {gw.type} cannot pin a request to a version by header",
        )
    if caps.requires_host and gw.host is None:
        add(("gateway",), f"'host' is required for gateway type {gw.type}")
    if any(segment in (".", "..") for segment in gw.path.split("/")):
        add(
            ("gateway", "path"),
            f"'{gw.path}' has a '.' or '..' segment, which Kubernetes Ingress, Gateway API and "
            "Kong refuse; write the path without it",
        )
    for key, owner in _OPTION_KEYS.items():
        if key in raw_gateway and owner != gw.type:
            add(
                ("gateway", key),
                f"'{key}' holds options of gateway type {owner}, but type is {gw.type}",
                True,
            )
    if gw.azure_apim is not None and gw.type == "azure-apim":
        a = gw.azure_apim
        for key, scheme, given in (
            ("headerName", "Header", a.header_name),
            ("queryName", "Query", a.query_name),
        ):
            if given is not None and a.versioning_scheme != scheme:
                add(
                    ("gateway", "azureApim", "versioning", key),
                    f"{key} applies only to scheme {scheme}, not {a.versioning_scheme}",
                    True,
                )
    for key in _RESERVED_LABELS:
        if key in spec.labels:
            add(("labels", key), f"label '{key}' is set by mlserve; remove it", True)

    kong_strip = (raw_gateway.get("kong") or {}).get("stripPath")
    if kong_strip is not None and raw_gateway.get("stripPath", kong_strip) != kong_strip:
        add(
            ("gateway", "kong", "stripPath"),
            "contradicts gateway.stripPath; remove the deprecated kong.stripPath",
            True,
        )
    for where, message in base.module(gw.type).check(spec):
        add(parse_path(where), message)
    issues.extend(_rollout_issues(spec))
    return issues


def _mirror_issues(spec: Spec, index: Mapping[str, int]) -> list[tuple[SpecPath, str, bool]]:
    """traffic.mirror: a deployed version serving none of the traffic, on a gateway that can."""
    from mlserve.backends import base

    t, m = spec.traffic, spec.traffic.mirror
    if m is None:
        return []
    at: SpecPath = ("traffic", "mirror")
    issues: list[tuple[SpecPath, str, bool]] = []
    if m.version == t.stable:
        issues.append(
            (
                (*at, "version"),
                f"'{m.version}' is the stable version: a mirror copies traffic to a version that "
                "serves none of it (usually the canary at weight 0)",
                False,
            )
        )
    elif m.version == t.canary and t.weight > 0:
        issues.append(
            (
                (*at, "version"),
                f"the canary '{m.version}' serves {t.weight}% already: a mirror would send it "
                "copies of requests it answers; set traffic.weight: 0 for a shadow phase",
                False,
            )
        )
    i = index.get(m.version)
    if i is not None and spec.versions[i].image is not None and spec.versions[i].replicas == 0:
        issues.append(
            (
                ("versions", i, "replicas"),
                f"'{m.version}' gets a mirror of {m.percent}% and needs at least 1 replica",
                False,
            )
        )
    problem = base.mirror_problem(spec, m.percent)
    if problem is not None:
        issues.append((at, problem, True))
    return issues


def _bound(value: Any) -> float | None:
    """A metric bound as a float; an integer beyond a float's range is infinite (and then
    refused: a bound is a finite number)."""
    if value is None:
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _url_issues(at: SpecPath, url: str) -> list[tuple[SpecPath, str, bool]]:
    """What the schema's URL pattern lets through: a port past 65535, a host label longer than
    63 characters or empty (RFC 1035), a host longer than 253. (The gateways check the URLs they
    route to, backends/kong.py and azure_apim.py.)"""
    rest = url.split("://", 1)[-1]
    authority = rest.split("/", 1)[0]
    host, _, port = authority.partition(":")
    problems = []
    if port and not 1 <= int(port) <= 65535:
        problems.append(f"port {port} is not a TCP port (1 to 65535)")
    labels = host.split(".")
    if host.endswith(".") and len(labels) > 1:
        labels.pop()  # a fully qualified name's final dot
    if len(host) > 253:
        problems.append(f"the host name is {len(host)} characters long; at most 253")
    elif any(len(label) > 63 for label in labels):
        problems.append("a part of the host name between dots is longer than 63 characters")
    elif any(not label or label[0] == "-" or label[-1] == "-" for label in labels):
        problems.append(
            f"'{host}' is not a host name: each part between dots is 1 to 63 letters, digits "
            "and '-', not starting or ending with '-'"
        )
    return [(at, f"{url}: {p}", False) for p in problems]


def _capacity_issues(
    spec: Spec, raw_versions: list[Mapping[str, Any]]
) -> list[tuple[SpecPath, str, bool]]:
    """autoscale: instead of replicas, with bounds in order and a utilization target whose
    request the pods have (the autoscaler measures utilization as a share of the request:
    Kubernetes pkg/controller/podautoscaler/replica_calculator.go, "missing request for")."""
    issues: list[tuple[SpecPath, str, bool]] = []
    for i, v in enumerate(spec.versions):
        a = v.autoscale
        if a is None or v.image is None:
            continue
        at: SpecPath = ("versions", i, "autoscale")
        if "replicas" in raw_versions[i]:
            issues.append(
                (
                    ("versions", i, "replicas"),
                    "give replicas or autoscale, not both: the autoscaler sets the replicas",
                    True,
                )
            )
        if a.min > a.max:
            issues.append(((*at, "min"), f"min {a.min} is more than max {a.max}", False))
        if a.cpu is None and a.memory is None:
            issues.append(
                (at, "give cpu, memory or both: the utilization the autoscaler keeps", False)
            )
        for resource, target in (("cpu", a.cpu), ("memory", a.memory)):
            if target is not None and resource not in v.requests:
                issues.append(
                    (
                        (*at, resource),
                        f"needs resources.requests.{resource}: the autoscaler measures {resource} "
                        "utilization as a percent of the pods' request",
                        False,
                    )
                )
    return issues


def _rollout_issues(spec: Spec) -> list[tuple[SpecPath, str, bool]]:
    """The rollout section's rules beyond its shape (DESIGN.md section 4)."""
    from mlserve.prometheus import check_query

    r = spec.rollout
    if r is None:
        return []
    issues: list[tuple[SpecPath, str, bool]] = []
    last: tuple[int, int] | None = None  # (index, weight) of the last step that set one
    first: int | None = None  # the index of the first step that set a weight
    for i, step in enumerate(r.steps):
        at: SpecPath = ("rollout", "steps", i)
        if step.weight is None and step.pause is None and step.mirror is None:
            issues.append((at, "a step needs a weight, a mirror or a pause", False))
        if step.mirror is not None:
            issues.extend(_mirror_step_issues(spec, step.mirror, step.weight, at, first))
        if step.weight is not None and first is None:
            first = i
        if step.weight is None:
            continue
        if step.weight == 100 and i != len(r.steps) - 1:
            issues.append(
                (
                    (*at, "weight"),
                    "weight 100 completes the promotion: only the last step can set it",
                    False,
                )
            )
        if last is not None and step.weight <= last[1]:
            issues.append(
                (
                    (*at, "weight"),
                    f"weights must rise from step to step: {step.weight} follows "
                    f"{last[1]} (steps[{last[0]}])",
                    False,
                )
            )
        last = (i, step.weight)
    if not r.complete and last is not None and last[1] == 100:
        issues.append(
            (
                ("rollout", "complete"),
                "complete is false, but the last step sets weight 100, which completes the "
                "promotion",
                False,
            )
        )
    a = r.analysis
    if a is None:
        return issues
    if not any(s.pause not in (None, "manual") for s in r.steps):
        issues.append(
            (
                ("rollout", "analysis"),
                "no step pauses for a duration, so the metrics would never be measured",
                True,
            )
        )
    issues += _url_issues(("rollout", "analysis", "prometheus", "address"), a.address)
    seen: dict[str, int] = {}
    for i, m in enumerate(a.metrics):
        at = ("rollout", "analysis", "metrics", i)
        if m.name in seen:
            issues.append(
                (
                    (*at, "name"),
                    f"duplicate metric name '{m.name}' (also metrics[{seen[m.name]}])",
                    False,
                )
            )
        seen.setdefault(m.name, i)
        infinite = [
            (key, bound)
            for key, bound in (("min", m.min), ("max", m.max))
            if bound is not None and not math.isfinite(bound)
        ]
        for key, bound in infinite:
            what = "infinite (.inf, or beyond 1.8e308)"
            if math.isnan(bound):
                what = ".nan (not a number)"
            issues.append(
                (
                    (*at, key),
                    f"{key} is {what}: a bound is a finite number, and no bound is no {key} key",
                    False,
                )
            )
        if m.min is None and m.max is None:
            issues.append((at, "give min, max or both: the bounds a passing value keeps", False))
        elif infinite:
            pass
        elif m.min is not None and m.max is not None and m.min > m.max:
            issues.append(((*at, "min"), f"min {m.min:g} is greater than max {m.max:g}", False))
        issues.extend(((*at, "query"), p, False) for p in check_query(m.query))
    return issues


def _notes(spec: Spec, data: Mapping[str, Any]) -> list[tuple[SpecPath, str, bool]]:
    """What `validate` says about a valid spec: deprecations and traffic a user may not expect."""
    from mlserve import readiness
    from mlserve.backends import base
    from mlserve.traffic import initial

    notes: list[tuple[SpecPath, str, bool]] = []
    if "stripPath" in (data["gateway"].get("kong") or {}):
        notes.append(
            (
                ("gateway", "kong", "stripPath"),
                "warning: kong.stripPath is deprecated; use gateway.stripPath, which applies "
                "to every gateway",
                True,
            )
        )
    canary = spec.traffic.canary
    if (
        canary is not None
        and "weight" not in data["traffic"]
        and base.CAPABILITIES[spec.gateway.type].weighted
    ):
        notes.append(
            (
                ("traffic", "canary"),
                f"note: traffic.canary {canary} has no traffic.weight, so it starts at 0% (no "
                "unpinned traffic): set traffic.weight, or move it later with `mlserve promote "
                "--weight N` or `mlserve rollout`",
                False,
            )
        )
    if spec.gateway.type == "ingress-nginx":
        # kubernetes/ingress-nginx README, "Ingress NGINX Retirement"; its last commit released
        # controller 1.15.1, 1.14.5 and 1.13.9.
        notes.append(
            (
                ("gateway", "type"),
                "note: ingress-nginx is retired: its maintenance ended in March 2026 and "
                "1.15.1, 1.14.5 and 1.13.9 are its last releases, with no fixes to come, "
                "security fixes included; type gateway-api carries the same canary split (an "
                "HTTPRoute on your cluster's Gateway)",
                False,
            )
        )
    routed = (spec.traffic.stable, spec.traffic.canary)
    idle = [i for i, v in enumerate(spec.versions) if v.name not in routed]
    if idle:
        *rest, last = [spec.versions[i].name for i in idle]
        names = f"{', '.join(rest)} and {last}" if rest else last
        header = spec.gateway.version_header
        reach = f"; a request pinned with {header} still reaches them" if header else ""
        notes.append(
            (
                ("versions", idle[0], "name"),
                f"note: {names} {'is' if len(idle) == 1 else 'are'} neither traffic.stable nor "
                f"traffic.canary, so {'it gets' if len(idle) == 1 else 'they get'} no unpinned "
                f"traffic{reach}",
                False,
            )
        )
    for where, message in [*base.notes(spec, initial(spec)), *readiness.notes(spec)]:
        notes.append((parse_path(where), f"note: {message}", False))
    for i, v in enumerate(spec.versions):
        for name, value in v.env.items():
            if isinstance(value, str) and value and secret_like_env(name):
                notes.append(
                    (
                        ("versions", i, "env", name),
                        f"warning: {name} looks like a credential, and its value is written in "
                        "the spec (and so in the stack's config and in render's output); keep it "
                        f"in a Secret and write {name}: {{secretKeyRef: {{name: ..., key: ...}}}}",
                        True,
                    )
                )
    notes += _regex_notes(spec)
    notes += _capacity_notes(spec)
    return notes


def _capacity_notes(spec: Spec) -> list[tuple[SpecPath, str, bool]]:
    """What canaryReplicas and previousReplicas do with this spec (capacity.py)."""
    from mlserve import capacity
    from mlserve.traffic import initial

    t = spec.traffic
    notes: list[tuple[SpecPath, str, bool]] = []
    state = initial(spec)
    scales = capacity.plan(spec, state)
    if t.canary_replicas == "proportional" and t.canary in scales and t.stable in scales:
        runs = scales[t.canary]
        count = runs.floor
        what = f"{count} replica{'s' if count != 1 else ''}"
        if runs.autoscaled:
            what = f"an autoscaler min of {count}"
        notes.append(
            (
                ("traffic", "canaryReplicas"),
                f"note: the canary {t.canary} runs {what} at {capacity.canary_share(state)}% "
                f"(proportional to {t.stable}'s {scales[t.stable].floor}); a promote starts new "
                "replicas and waits until they are Ready before raising the weight, and stops "
                "them only after lowering it",
                False,
            )
        )
    n = t.previous_replicas
    if n is not None:
        pods = "no pods" if n == 0 else f"{n} pod{'s' if n != 1 else ''}"
        notes.append(
            (
                ("traffic", "previousReplicas"),
                f"note: after promote --complete the old stable keeps {pods}; a rollback to it "
                "first scales it back and moves traffic only once its pods are Ready, so it is "
                f"no longer instant: {capacity.ROLLBACK_WAIT}"
                + ("; it serves nothing until then" if n == 0 else ""),
                False,
            )
        )
    return notes


def _regex_notes(spec: Spec) -> list[tuple[SpecPath, str, bool]]:
    from mlserve.prometheus import regex_placeholders

    metrics = spec.rollout.analysis.metrics if spec.rollout and spec.rollout.analysis else ()
    notes: list[tuple[SpecPath, str, bool]] = []
    for i, m in enumerate(metrics):
        for found in regex_placeholders(m.query):
            name = found.strip("{} ")
            notes.append(
                (
                    ("rollout", "analysis", "metrics", i, "query"),
                    f"note: {found} stands in a regular expression (=~ or !~), where the '.' "
                    f"of a version name matches any character (1.10 matches 1-10 too); "
                    f"{{{{{name}_re}}}} is the name with its dots escaped",
                    False,
                )
            )
    return notes


def _mirror_step_issues(
    spec: Spec, percent: int, weight: int | None, at: SpecPath, first: int | None
) -> list[tuple[SpecPath, str, bool]]:
    """A shadow step copies traffic to the canary while it serves none (DESIGN.md section 4)."""
    from mlserve.backends import base

    issues: list[tuple[SpecPath, str, bool]] = []
    if weight is not None:
        issues.append(
            (
                at,
                "a step sets a mirror or a weight, not both: the canary is mirrored while it "
                "serves none of the traffic",
                False,
            )
        )
    elif first is not None:
        issues.append(
            (
                (*at, "mirror"),
                f"a mirror step comes before the first weight step (steps[{first}]): from "
                "there the canary serves traffic, and the first weight step ends the mirror",
                False,
            )
        )
    problem = base.mirror_problem(spec, percent)
    if problem is not None:
        issues.append(((*at, "mirror"), problem, False))
    return issues


# --- the model container and its pods: what the schema cannot express -----------------------

MAX_TIMEOUT_SECONDS = 24 * 3600
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}
_PORT_ARG = re.compile(r"--port(?:=(.*))?")
_TOLERATION_OPERATORS = ("Equal", "Exists")
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
# Names of environment variables that hold credentials by convention: a plain value there is
# most likely a secret written into the spec.
_SECRET_NAME = re.compile(
    r"(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|SECRET_KEY|PRIVATE_KEY|CREDENTIALS?)$"
)


def duration_seconds(text: str) -> int:
    """A spec duration (`30s`, `10m`, `1h`; the schema allows nothing else) in seconds."""
    return int(text[:-1]) * _DURATION_UNITS[text[-1]]


def secret_like_env(name: str) -> bool:
    """Whether an environment variable's name says it holds a credential (HF_TOKEN, API_KEY)."""
    return _SECRET_NAME.search(name.upper()) is not None


def _container_issues(i: int, v: Version) -> Iterator[tuple[SpecPath, str, bool]]:
    """Checks of an image version's container and pod fields that the API server or the
    kubelet would make later (Kubernetes pkg/apis/core/validation/validation.go), and conflicts
    with what mlserve sets itself."""
    at: SpecPath = ("versions", i)
    if v.probes and v.health_path is None:
        yield (
            (*at, "probes"),
            "sets the timings of the HTTP probes on healthPath, and there is none: set healthPath",
            True,
        )
    for key, words in (("command", v.command), ("args", v.args)):
        for j, word in enumerate(words):
            m = _PORT_ARG.fullmatch(word)
            if m is None:
                continue
            given = m.group(1) if m.group(1) is not None else (words[j + 1 : j + 2] or [""])[0]
            where = j if m.group(1) is not None else j + 1
            if given.isdigit() and int(given) != v.port:
                yield (
                    (*at, key, where),
                    f"the server is told to listen on port {given}, but versions[{i}].port is "
                    f"{v.port}: mlserve's Service and probes reach the container on port; "
                    f"set port: {given}",
                    False,
                )
    for kind, source in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
        for name, value in v.env.items():
            ref = value.get(kind) if isinstance(value, Mapping) else None
            if ref is not None and not ref.get("name"):
                yield (
                    (*at, "env", name, kind),
                    f"'name' is required: the {source} to read",
                    True,
                )
    for j, env_source in enumerate(v.env_from):
        for kind, what in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
            ref = env_source.get(kind)
            if ref is not None and not ref.get("name"):
                yield ((*at, "envFrom", j, kind), f"'name' is required: the {what} to read", True)
    yield from _volume_issues(i, v)
    for j, toleration in enumerate(v.pod.get("tolerations", ())):
        yield from _toleration_issues((*at, "tolerations", j), toleration)


def _volume_issues(i: int, v: Version) -> Iterator[tuple[SpecPath, str, bool]]:
    names: dict[str, int] = {}
    paths: dict[str, int] = {}
    for j, volume in enumerate(v.volumes):
        at: SpecPath = ("versions", i, "volumes", j)
        for key, value, seen in (
            ("name", volume.name, names),
            ("mountPath", volume.mount_path, paths),
        ):
            first = seen.setdefault(value.rstrip("/") or "/", j)
            if first != j:
                yield (*at, key), f"'{value}' is also volumes[{first}].{key}", False
        if volume.source == "emptyDir":
            medium = volume.details.get("medium", "")
            if medium not in ("", "Memory") and not medium.startswith("HugePages"):
                close = difflib.get_close_matches(medium, ["Memory", "HugePages"], n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                yield (
                    (*at, "emptyDir", "medium"),
                    f"{_show(medium)} is not a medium: Memory (RAM), HugePages, or leave it out "
                    f"for the node's disk{hint}",
                    False,
                )


def _toleration_issues(at: SpecPath, t: Mapping[str, Any]) -> Iterator[tuple[SpecPath, str, bool]]:
    """Kubernetes ValidateTolerations."""
    operator = t.get("operator", "Equal")
    if operator not in _TOLERATION_OPERATORS:
        close = difflib.get_close_matches(operator, _TOLERATION_OPERATORS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        yield (*at, "operator"), f"{_show(operator)} is not one of Equal, Exists{hint}", False
    elif not t.get("key") and operator != "Exists":
        yield (
            (*at, "operator"),
            "must be Exists when key is empty (a toleration of every taint)",
            not t.get("operator"),
        )
    elif operator == "Exists" and t.get("value"):
        yield (*at, "value"), "must be empty when operator is Exists", False
    effect = t.get("effect", "")
    if effect and effect not in _TAINT_EFFECTS:
        close = difflib.get_close_matches(effect, _TAINT_EFFECTS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        yield (
            (*at, "effect"),
            f"{_show(effect)} is not one of {', '.join(_TAINT_EFFECTS)}{hint}",
            False,
        )
    elif "tolerationSeconds" in t and effect != "NoExecute":
        yield (
            (*at, "tolerationSeconds"),
            "applies only to effect NoExecute (how long a pod stays on a node tainted after it)",
            True,
        )


# Kubernetes quantities (k8s.io/apimachinery resource.Quantity): a number, then a binary or
# decimal suffix or an exponent.
_QUANTITY = re.compile(
    r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?"
)
_SUFFIX = {
    **{s: Fraction(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{
        s: Fraction(10) ** e
        for s, e in zip("numkMGTPE", (-9, -6, -3, 3, 6, 9, 12, 15, 18), strict=True)
    },
}


def quantity(text: str) -> Fraction:
    """A Kubernetes quantity's value: `500m` -> 1/2, `1Gi` -> 2**30, `1e3` -> 1000."""
    m = _QUANTITY.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    number, suffix = Fraction(m.group(1)), m.group(2) or ""
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        return number * Fraction(10) ** int(suffix[1:])
    return number * _SUFFIX.get(suffix, Fraction(1))


def overcommit_allowed(resource: str) -> bool:
    """Whether a pod may request less of `resource` than its limit: native resources (cpu,
    memory, ephemeral-storage, `*kubernetes.io/*`) but not hugepages-* and not extended ones
    (nvidia.com/gpu), per Kubernetes pkg/apis/core/helper IsOvercommitAllowed."""
    native = "/" not in resource or "kubernetes.io/" in resource
    return native and not resource.startswith("hugepages-")


def _resource_issues(i: int, v: Version) -> Iterator[tuple[SpecPath, str, bool]]:
    """The API server's checks of a container's requests against its limits (Kubernetes
    pkg/apis/core/validation ValidateResourceRequirements). A request of a resource that cannot
    be overcommitted and has no limit is not a problem here: the rendered limit copies it."""
    for kind, quantities in (("requests", v.requests), ("limits", v.limits)):
        for resource, text in quantities.items():
            # Extended resources (a domain outside kubernetes.io) are whole units.
            extended = "/" in resource and "kubernetes.io/" not in resource
            if extended and quantity(text).denominator != 1:
                yield (
                    ("versions", i, "resources", kind, resource),
                    f"{text} is not a whole number; {resource} is counted in whole units",
                    False,
                )
    for resource, text in v.requests.items():
        limit = v.limits.get(resource)
        if limit is None:
            continue
        at = ("versions", i, "resources", "requests", resource)
        if not overcommit_allowed(resource) and quantity(text) != quantity(limit):
            yield (
                at,
                f"{text} must equal the {resource} limit ({limit}): {resource} cannot be "
                "overcommitted",
                False,
            )
        elif quantity(text) > quantity(limit):
            yield at, f"{text} is more than the {resource} limit ({limit})", False
