"""InferencePools for the gateway-api gateway (`gatewayApi.inferencePool`): each image version is
served through a Gateway API Inference Extension (GIE) InferencePool named as its Service, and the
HTTPRoute's backendRefs name the pools instead of the Services (DESIGN.md section 3).

The rules followed are kubernetes-sigs/gateway-api-inference-extension v1.6.0
api/v1/inferencepool_types.go and its CRD (config/crd/bases/inference.networking.k8s.io_
inferencepools.yaml): `selector.matchLabels` picks pods in the pool's namespace, `targetPorts` says
where they listen, `endpointPickerRef` is optional from v1.6 (its port required for a Service, a
CEL rule). A backendRef names a pool by group and kind, without a port: the pool's targetPorts say
where (conformance/tests/inferencepool_httproute_port_validation.yaml, "Port Unspecified").

mlserve does not deploy endpoint pickers. "An EPP can only be associated with a single
InferencePool" (site-src/api-types/inferencepool.md), and each version has a pool of its own, so
the picker's name is a pattern in which `{{pool}}` stands for the pool's name.

Importing this module never imports Pulumi; call `declare` inside a running program only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlserve.backends import workloads as wl

if TYPE_CHECKING:
    import pulumi

    from mlserve.backends.base import Workload
    from mlserve.spec import Spec
    from mlserve.traffic import TrafficState

GROUP = "inference.networking.k8s.io"
API_VERSION = f"{GROUP}/v1"
KIND = "InferencePool"
POOL = "{{pool}}"
# A Service's name is a DNS-1035 label (Kubernetes ValidateServiceName).
_SERVICE_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_AT = "gateway.gatewayApi.inferencePool"


def enabled(spec: Spec) -> bool:
    return (
        spec.gateway.type == "gateway-api" and spec.gateway.gateway_api.inference_pool is not None
    )


def _pools(spec: Spec) -> list[str]:
    """The pool names, one per image version: the version's Service name."""
    return [spec.object_name(v.name) for v in spec.versions if v.image is not None]


def picker_name(spec: Spec, pool: str) -> str | None:
    """The endpoint picker Service that `pool` calls; None without `endpointPicker`."""
    options = spec.gateway.gateway_api.inference_pool
    if options is None or options.endpoint_picker is None:
        return None
    return options.endpoint_picker.name.replace(POOL, pool)


def check(spec: Spec) -> list[tuple[str, str]]:
    """The picker's name must give each pool a Service of its own, with a valid name."""
    options = spec.gateway.gateway_api.inference_pool
    if not enabled(spec) or options is None or options.endpoint_picker is None:
        return []
    at = f"{_AT}.endpointPicker.name"
    name = options.endpoint_picker.name
    if POOL not in name:
        return [
            (
                at,
                f"'{name}' would be one endpoint picker for every version's pool, and an "
                "endpoint picker serves one InferencePool: put {{pool}} in the name (the "
                "default is {{pool}}-epp)",
            )
        ]
    for pool in _pools(spec):
        service = name.replace(POOL, pool)
        if len(service) > 63 or not _SERVICE_NAME.fullmatch(service):
            why = "longer than 63 characters" if len(service) > 63 else "not a valid Service name"
            return [(at, f"for the pool {pool} it gives '{service}', which is {why}")]
    return []


def notes(spec: Spec, traffic: TrafficState) -> list[tuple[str, str]]:
    """What the pools need that mlserve does not do, and a canary at 0% that may start cold."""
    options = spec.gateway.gateway_api.inference_pool
    if not enabled(spec) or options is None:
        return []
    out = []
    picker = options.endpoint_picker
    if picker is None:
        out.append(
            (
                _AT,
                "the InferencePools get no endpointPickerRef (no endpointPicker given): a gateway "
                "that needs one, as most do, may leave them Accepted=False with reason "
                "EndpointPickerRefMissing and route nothing to them",
            )
        )
    else:
        services = [picker_name(spec, p) for p in _pools(spec)]
        *rest, last = services
        listed = f"{', '.join(str(s) for s in rest)} and {last}" if rest else str(last)
        out.append(
            (
                f"{_AT}.endpointPicker",
                "each version's InferencePool calls an endpoint picker of its own, which mlserve "
                f"does not deploy: deploy one per pool, watching that pool (the Service"
                f"{'s' if rest else ''} {listed}, port {picker.port})",
            )
        )
    if traffic.canary is not None and traffic.weight == 0 and spec.gateway.version_header is None:
        # Istio leaves a backendRef at weight 0 out of the route it programs (pilot/pkg/config/
        # kube/gateway/conversion.go buildHTTPDestination), so the pool's first requests arrive
        # together with the configuration change that adds it. KServe's canary guide for
        # LLMInferenceService (kserve/website docs/model-serving/generative-inference/llmisvc/
        # canary-rollout.md, "Starting dark vs starting live") advises weight 1 over 0 for that
        # reason. A pin rule names every pool, whatever the weights.
        out.append(
            (
                "traffic.weight",
                f"{traffic.canary} is at 0%: a gateway may leave a pool at weight 0 out of its "
                "configuration (Istio does) and add it only when the weight rises; KServe "
                "advises starting an LLM version at weight 1. Start at weight: 1, or set "
                "gateway.versionHeader, whose pin rules keep every pool configured",
            )
        )
    return out


def backend_ref(spec: Spec, version: str) -> dict[str, Any]:
    """An HTTPRoute backendRef to the version's pool (same namespace, no port)."""
    return {"group": GROUP, "kind": KIND, "name": spec.object_name(version)}


def pool_spec(spec: Spec, version: str) -> dict[str, Any]:
    """The pool selects the version's pods as its Deployment and Service do, on its container
    port; `endpointPickerRef` names a Service (the CRD's default kind), so its port is given."""
    out: dict[str, Any] = {
        "selector": {"matchLabels": wl.selector(spec, version)},
        "targetPorts": [{"number": spec.version(version).port}],
    }
    options = spec.gateway.gateway_api.inference_pool
    picker = options.endpoint_picker if options is not None else None
    if picker is not None:
        out["endpointPickerRef"] = {
            "name": picker.name.replace(POOL, spec.object_name(version)),
            "port": {"number": picker.port},
            "failureMode": picker.failure_mode,
        }
    return out


def declare(spec: Spec, workloads: Mapping[str, Workload]) -> dict[str, pulumi.Resource]:
    """A pool per workload, after its Deployment and Service (capacity before weight: the route
    depends on the pools); none without `gatewayApi.inferencePool`.

    No readiness wait: a pool's status is written by the gateway only once a route names it
    (inferencepool_types.go InferencePoolStatus.Parents), and the route is created after the
    pools; the route's own wait covers them (gateway_api.wait_for_accepted)."""
    if not enabled(spec):
        return {}
    import pulumi
    import pulumi_kubernetes as k8s

    out: dict[str, pulumi.Resource] = {}
    for version, w in workloads.items():
        out[version] = k8s.apiextensions.CustomResource(
            w.service_name,
            api_version=API_VERSION,
            kind=KIND,
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=w.service_name, namespace=spec.namespace, labels=wl.labels(spec, version)
            ),
            spec=pool_spec(spec, version),
            opts=pulumi.ResourceOptions(depends_on=list(w.resources)),
        )
    return out
