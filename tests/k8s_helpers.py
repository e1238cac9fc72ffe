"""Helpers for the Kubernetes-gateway tests: spec builders, upstream-schema validation, and a
render that also records what the engine would receive (dependencies, stack outputs)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any
from unittest import mock

import pulumi
import pytest
from pulumi.runtime.mocks import MockMonitor

from mlserve import render as render_module
from mlserve.render import RenderedResource
from mlserve.spec import Spec
from mlserve.traffic import TrafficState

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = REPO.parent / "shared" / "schemas"
K8S_GATEWAYS = ("istio", "gateway-api", "ingress-nginx")
CORE_KINDS = {"Deployment", "Service", "Ingress", "HorizontalPodAutoscaler"}
CRD_SCHEMAS = {
    "VirtualService": "istio-virtualservice.strict.json",
    "DestinationRule": "istio-destinationrule.strict.json",
    "HTTPRoute": "gateway-httproute.strict.json",
    "InferencePool": "gie-inferencepool.strict.json",
}


def spec_dict(
    gateway: str,
    versions: int = 2,
    canary: bool = True,
    weight: int = 10,
    header: str | None = "x-model-version",
    rich: bool = False,
    name: str = "fraud-detector",
    version_prefix: str = "v",
    istio_gateways: tuple[str, ...] = ("istio-system/public",),
    strip_path: bool | None = None,
    service_type: str = "LoadBalancer",
    inference_pool: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A schema-shaped spec document; `rich` adds labels, resources, env and a health path.
    Without `strip_path` the document has no gateway.stripPath, like a spec recorded before it
    existed: the Kubernetes gateways then pass the path through. `inference_pool` is the
    gateway-api gateway's `gatewayApi.inferencePool`."""
    vs: list[dict[str, Any]] = []
    for i in range(1, versions + 1):
        v: dict[str, Any] = {"name": f"{version_prefix}{i}", "image": f"ghcr.io/acme/fraud:1.{i}.0"}
        if rich:
            v.update(
                port=9000 + i,
                replicas=3,
                resources={
                    "requests": {"cpu": "500m", "memory": "1Gi"},
                    "limits": {"memory": "2Gi", "nvidia.com/gpu": "1"},
                },
                env={"MODEL_URI": f"s3://models/fraud/1.{i}.0", "LOG_LEVEL": "info"},
                healthPath="/healthz",
            )
        vs.append(v)
    gw: dict[str, Any] = {"type": gateway, "host": "models.example.com", "path": "/fraud"}
    if gateway == "service":  # a Service routes by neither host nor path
        gw = {"type": gateway, "service": {"type": service_type}}
    if strip_path is not None:
        gw["stripPath"] = strip_path
    if header is not None:
        gw["versionHeader"] = header
    if gateway == "istio" and istio_gateways:
        gw["istio"] = {"gateways": list(istio_gateways)}
    if gateway == "gateway-api":
        gw["gatewayApi"] = {
            "parentRefs": [{"name": "public", "namespace": "infra", "sectionName": "https"}]
        }
        if inference_pool is not None:
            gw["gatewayApi"]["inferencePool"] = inference_pool
    if gateway == "ingress-nginx":
        gw["ingressNginx"] = {"className": "nginx-public"}
    traffic: dict[str, Any] = {"stable": vs[0]["name"]}
    if canary and versions > 1:
        traffic.update(canary=vs[-1]["name"], weight=weight)
    doc: dict[str, Any] = {
        "apiVersion": "mlserve/v1",
        "name": name,
        "namespace": "ml",
        "gateway": gw,
        "versions": vs,
        "traffic": traffic,
    }
    if rich:
        doc["labels"] = {"team": "risk", "cost-center": "ml-42"}
    return doc


def make_spec(gateway: str, **kw: Any) -> Spec:
    return Spec.from_dict(spec_dict(gateway, **kw))


def kind(r: RenderedResource) -> str:
    return r.type.rsplit(":", 1)[-1]


def of_kind(resources: list[RenderedResource], k: str) -> list[RenderedResource]:
    return [r for r in resources if kind(r) == k]


@cache
def _crd_validator(kind_: str) -> Any:
    from jsonschema import Draft202012Validator

    schema = json.loads((SCHEMAS / CRD_SCHEMAS[kind_]).read_text())
    return Draft202012Validator(schema)


@cache
def _kubernetes_validate() -> Any:
    """kubernetes_validate.validate, its schema files read once per process.

    It reads and parses the kind's schema and the version's _definitions.json on every call
    (kubernetes_validate/utils.py validate, schema_contents): some 10 ms of CPU a manifest, and
    the tests validate hundreds. The parsed schemas are only read (referencing's
    Resource.from_contents, jsonschema's validator), so one copy serves every call."""
    import kubernetes_validate
    from kubernetes_validate import utils

    utils.schema_contents = cache(utils.schema_contents)
    return kubernetes_validate.validate


def validate_manifest(doc: dict[str, Any]) -> None:
    """Fail the test unless `doc` passes its upstream schema (strict)."""
    k = doc["kind"]
    if k in CORE_KINDS:
        _kubernetes_validate()(doc, "1.30", strict=True)
    elif k in CRD_SCHEMAS:
        if not SCHEMAS.is_dir():
            pytest.skip(f"upstream schemas not found at {SCHEMAS} (shared/ beside the repo)")
        errors = sorted(_crd_validator(k).iter_errors(doc), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    else:
        raise AssertionError(f"no upstream schema for kind {k}")


def urn_key(urn: str) -> tuple[str, str]:
    """(type, name) from `urn:pulumi:stack::project::type::name`."""
    parts = urn.split("::")
    return parts[2].split("$")[-1], parts[3]


class RecordingMonitor(MockMonitor):  # type: ignore[misc]
    """The mock monitor, also keeping what the Python SDK sends that MockResourceArgs drops."""

    def __init__(self, mocks: Any) -> None:
        super().__init__(mocks)
        self.dependencies: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self.outputs: dict[str, Any] = {}  # the stack outputs, as the program exported them
        # (type, name) -> (create, update): the customTimeouts option as the engine receives it
        self.timeouts: dict[tuple[str, str], tuple[str, str]] = {}

    def RegisterResource(self, request: Any) -> Any:
        self.dependencies[(request.type, request.name)] = {urn_key(u) for u in request.dependencies}
        timeouts = request.customTimeouts
        self.timeouts[(request.type, request.name)] = (timeouts.create, timeouts.update)
        return super().RegisterResource(request)


def render_recorded(
    spec: Spec, traffic: TrafficState | None = None
) -> tuple[list[RenderedResource], RecordingMonitor]:
    """mlserve.render.render, with the monitor it creates swapped for a RecordingMonitor."""
    monitors: list[RecordingMonitor] = []

    def factory(mocks: Any) -> RecordingMonitor:
        monitors.append(RecordingMonitor(mocks))
        return monitors[-1]

    exported: dict[str, Any] = {}

    def export(name: str, value: Any) -> None:
        # Under mocks the root stack registers its outputs before the program runs, so exports
        # never reach the monitor: record their resolved values here instead.
        pulumi.Output.from_input(value).apply(lambda v: exported.__setitem__(name, v))

    with (
        mock.patch.object(render_module, "MockMonitor", factory),
        mock.patch.object(pulumi, "export", export),
    ):
        resources = render_module.render(spec, traffic)
    assert len(monitors) == 1
    monitors[0].outputs = exported
    return resources, monitors[0]
