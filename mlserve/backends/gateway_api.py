"""The gateway-api gateway: one HTTPRoute to the per-version Services.

The rules followed are kubernetes-sigs/gateway-api apis/v1/httproute_types.go and shared_types.go:
a PathPrefix match goes by path element (`/fraud` never matches `/fraudulent`); among matching
rules the one with more header matches wins (so pins win over the weighted rule); a backendRef
gets weight/(sum of weights) of its rule's requests and none at weight 0; a `ReplacePrefixMatch`
URLRewrite of "/" strips the prefix. The deploy waits for the route's `Accepted` condition
(pulumi-kubernetes `pulumi.com/waitFor`), so a route its Gateway refuses fails the deploy. With
`gatewayApi.inferencePool` the backendRefs name InferencePools (inference_pool.py).

A mirror is a `RequestMirror` filter on the weighted rule only (so a pinned request is not
copied), after the URLRewrite: filters apply in the order listed, "wherever possible"
(httproute_types.go HTTPRouteRule.Filters), so the copy gets the path the served version gets.
HTTPRequestMirrorFilter's `percent` (0-100) is Standard since v1.3.0 (GEP-3171, feature
HTTPRouteRequestPercentageMirror); absent means every request, so it is written only below 100,
which a Gateway without that feature also accepts. Its backendRef must have a port (the CRD's CEL
rule "Must have port for Service reference").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlserve.backends import inference_pool
from mlserve.backends.base import Declared
from mlserve.backends.workloads import prefix, strips
from mlserve.spec import duration_seconds

if TYPE_CHECKING:
    from mlserve.backends.base import Workload
    from mlserve.spec import Spec
    from mlserve.traffic import TrafficState

API_VERSION = "gateway.networking.k8s.io/v1"


def check(spec: Spec) -> list[tuple[str, str]]:
    """The HTTPRoute CRD's CEL rule on parentRefs, which the spec's schema cannot express (the
    schema already requires a parentRef and a plain path)."""
    seen: dict[tuple[str, str], list[str | None]] = {}
    for ref in spec.gateway.gateway_api.parent_refs:
        # A parentRef without a namespace means the route's own namespace.
        key = (ref.namespace or spec.namespace, ref.name)
        seen.setdefault(key, []).append(ref.section_name)
    problems = []
    for (namespace, name), sections in seen.items():
        if len(sections) > 1 and (None in sections or len(set(sections)) < len(sections)):
            problems.append(
                (
                    "gateway.gatewayApi.parentRefs",
                    f"parent {namespace}/{name} is listed {len(sections)} times: "
                    "each needs its own, distinct sectionName",
                )
            )
    return problems + inference_pool.check(spec)


def notes(spec: Spec, traffic: TrafficState) -> list[tuple[str, str]]:
    out = inference_pool.notes(spec, traffic)
    if traffic.mirror is None:
        return out
    feature = "HTTPRouteRequestMirror" + (
        " and HTTPRouteRequestPercentageMirror" if traffic.mirror.percent < 100 else ""
    )
    return [
        *out,
        (
            "traffic.mirror",
            f"the mirror needs a Gateway that supports {feature} (Extended conformance); one "
            "that does not may refuse the route (the deploy then fails with its reason) or "
            "leave the filter out",
        ),
    ]


# How long a deploy waits for each Gateway to accept the route. Accepting is a controller's
# reconcile, seconds; a refused route never becomes accepted, so fail soon with the reason.
ACCEPT_TIMEOUT_SECONDS = 120


# A condition written for the route as it is now: its observedGeneration is the route's
# generation, or absent (a controller that does not set it; metav1.Condition has it optional).
# The provider checks only a top-level status.observedGeneration (provider/pkg/await/condition/
# jsonpath.go), which an HTTPRoute has not, so without this an update of a route the Gateway had
# accepted (a new weight, a mirror) passed the wait at once on the last generation's Accepted,
# before the Gateway had looked at it: seen on the real stack (tests/test_real_mirror.py). The
# absolute `$.metadata.generation` inside a filter is RFC 9535, which the provider's parser
# (theory/jsonpath v0.9.0) follows. No `!=` anywhere: the provider splits the expression from
# its value at a lone `=` (provider/pkg/jsonpath Parse keeps only `==`).
CURRENT = "(@.observedGeneration==$.metadata.generation||!@.observedGeneration)"


def wait_for_accepted(spec: Spec) -> dict[str, str]:
    """Annotations that make pulumi-kubernetes wait until every parent accepted the route.

    pulumi-kubernetes (provider/pkg/metadata/annotations.go ReadyCondition) reads
    `pulumi.com/waitFor` as a JSON list of `jsonpath={...}=value` expressions and waits for all;
    a JSONPath that selects several values is compared by its first (provider/pkg/jsonpath), so
    each parent gets its own expression, filtered on the parentRef it echoes in
    `status.parents[]`. The expected value is the reason "Accepted", the only reason the Gateway
    API defines for Accepted=True (shared_types.go RouteConditionAccepted). A refusal does not end
    the wait: on the real stack (provider v4.25.0) the provider's progress line shows what the
    Gateway said (`(found "NotAllowedByListeners")`, seen with --debug), and the update fails
    only at the time-out, with "timed out waiting for the condition"; mlserve then reads each
    parent's answer from the route the provider recorded (unaccepted, failures.py) and names it.
    """
    conditions = ["Accepted"]
    if inference_pool.enabled(spec):
        # A Gateway that does not implement InferencePool backends still accepts the route but
        # reports ResolvedRefs=False (reason InvalidKind or BackendNotFound, shared_types.go), and
        # the requests meant for a pool get a 500 (httproute_types.go BackendRefs): wait for
        # ResolvedRefs too, whose reason when True is its name.
        conditions.append("ResolvedRefs")
    expressions = []
    for ref in parent_refs(spec):
        # No blanks around `&&`: the JSONPath parser of pulumi-kubernetes (theory/jsonpath
        # v0.9.0, still pinned in its provider/go.mod in July 2026) refuses a second `&&` after a
        # blank ("expected ')' but found '&'"), theory/jsonpath#24, fixed there in v0.10.2.
        tests = "&&".join(f'@.parentRef.{k}=="{v}"' for k, v in ref.items())
        expressions += [
            f"jsonpath={{.status.parents[?({tests})].conditions"
            f'[?(@.type=="{condition}"&&{CURRENT})].reason}}={condition}'
            for condition in conditions
        ]
    return {
        "pulumi.com/waitFor": json.dumps(expressions),
        "pulumi.com/timeoutSeconds": str(ACCEPT_TIMEOUT_SECONDS),
    }


def _describe_parent(spec: Spec, ref: Mapping[str, str]) -> str:
    listener = f" (listener {ref['sectionName']})" if "sectionName" in ref else ""
    return f"Gateway {ref.get('namespace', spec.namespace)}/{ref['name']}{listener}"


def _echoes(spec: Spec, ref: Mapping[str, str], status_ref: Any) -> bool:
    """Whether a status.parents[].parentRef is the spec's parentRef `ref` (a parentRef without
    a namespace is the route's own, RouteParentStatus echoes the reference it answers)."""
    if not isinstance(status_ref, Mapping):
        return False
    return (
        status_ref.get("name") == ref["name"]
        and status_ref.get("namespace", spec.namespace) == ref.get("namespace", spec.namespace)
        and status_ref.get("sectionName") == ref.get("sectionName")
    )


def unaccepted(spec: Spec, route: Any) -> str:
    """Why the route's wait (wait_for_accepted) ended without every parent accepting it, from
    the route as the provider last saw it: each parent that refused it, with the Gateway's
    reason and message, and each that never answered. As in the wait (CURRENT), a condition
    written for an earlier generation of the route is no answer."""
    route = route if isinstance(route, Mapping) else {}
    status = route.get("status")
    generation = (route.get("metadata") or {}).get("generation")
    parents = status.get("parents") if isinstance(status, Mapping) else None
    said = []
    for ref in parent_refs(spec):
        answer = next(
            (
                p
                for p in parents or []
                if isinstance(p, Mapping) and _echoes(spec, ref, p.get("parentRef"))
            ),
            None,
        )
        conditions = {
            c.get("type"): c
            for c in (answer or {}).get("conditions") or []
            if isinstance(c, Mapping) and c.get("observedGeneration") in (None, generation)
        }
        who = _describe_parent(spec, ref)
        unresolved = [
            c
            for t, c in conditions.items()
            if t == "ResolvedRefs" and inference_pool.enabled(spec) and c.get("status") == "False"
        ]
        accepted = conditions.get("Accepted")
        if accepted is not None and accepted.get("status") == "False":
            said.append(
                f"{who} refused it: {accepted.get('reason')}"
                + (f" ({accepted.get('message')})" if accepted.get("message") else "")
            )
        elif accepted is None or accepted.get("status") != "True":
            namespace = ref.get("namespace", spec.namespace)
            said.append(
                f"{who} did not answer (no Accepted condition from its controller): check that "
                f"it exists (`kubectl get gateway -n {namespace} {ref['name']}`) and that its "
                "controller runs"
            )
        for c in unresolved:
            said.append(
                f"{who} could not resolve its backends: {c.get('reason')}"
                + (f" ({c.get('message')})" if c.get("message") else "")
            )
    if not said:
        return ""
    return (
        f"the HTTPRoute {spec.name} was not accepted within "
        f"{ACCEPT_TIMEOUT_SECONDS // 60} minutes: " + "; ".join(said)
    )


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
    path = {"type": "PathPrefix", "value": prefix(spec)}
    # One PathPrefix match per rule: the CRD's CEL rule for ReplacePrefixMatch wants exactly one.
    rewrite: dict[str, Any] = {}
    if strips(spec):
        rewrite["filters"] = [
            {
                "type": "URLRewrite",
                "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
            }
        ]

    if spec.gateway.timeout is not None:
        # HTTPRouteRule.timeouts.request (GEP-1742, standard since v1.2): the whole request.
        rewrite["timeouts"] = {"request": f"{duration_seconds(spec.gateway.timeout)}s"}

    def ref(version: str, weight: int) -> dict[str, Any]:
        if inference_pool.enabled(spec):
            return {**inference_pool.backend_ref(spec, version), "weight": weight}
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
                    **rewrite,
                    "backendRefs": [ref(v, 1)],
                }
            )
    # A canary at 0% stays listed, so a weight change edits one number. It is weight 0, for a
    # pool too: the Gateway API forwards nothing to it (shared_types.go BackendRef.Weight), which
    # is what 0% and a rollback promise. KServe advises weight 1 for a new LLM version
    # (kserve/website llmisvc/canary-rollout.md), as a gateway may leave a backend at weight 0
    # unprogrammed until its weight rises; but mlserve sends no traffic the state does not ask
    # for, least of all to a canary just rolled back. validate notes the advice instead
    # (inference_pool.notes), and a pin rule keeps every pool in the gateway's configuration.
    weighted: dict[str, Any] = {"matches": [{"path": path}], **rewrite}
    if traffic.mirror is not None:
        # The copy goes to the version's Service, with pools too: GIE defines no mirror to a
        # pool, and a copy whose answer is dropped needs no endpoint picker.
        copy = workloads[traffic.mirror.version]
        mirror: dict[str, Any] = {"backendRef": {"name": copy.service_name, "port": copy.port}}
        if traffic.mirror.percent < 100:
            mirror["percent"] = traffic.mirror.percent
        weighted["filters"] = [
            *weighted.get("filters", []),
            {"type": "RequestMirror", "requestMirror": mirror},
        ]
    weighted["backendRefs"] = [ref(v, w) for v, w in traffic.weights().items()]
    out.append(weighted)
    return out


def declare(spec: Spec, traffic: TrafficState, workloads: Mapping[str, Workload]) -> Declared:
    import pulumi
    import pulumi_kubernetes as k8s

    from mlserve.backends import workloads as wl

    wl.require_routed(traffic, workloads)
    assert spec.gateway.host is not None  # requires_host: the loader rejects a spec without it
    pools = inference_pool.declare(spec, workloads)
    route = k8s.apiextensions.CustomResource(
        spec.name,
        api_version=API_VERSION,
        kind="HTTPRoute",
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=spec.name,
            namespace=spec.namespace,
            labels=wl.labels(spec),
            annotations=wait_for_accepted(spec),
        ),
        spec={
            "parentRefs": parent_refs(spec),
            "hostnames": [spec.gateway.host],
            "rules": rules(spec, traffic, workloads),
        },
        opts=pulumi.ResourceOptions(
            depends_on=[r for w in workloads.values() for r in w.resources] + list(pools.values())
        ),
    )
    return Declared(routing=[route], endpoint=wl.endpoint(spec))
