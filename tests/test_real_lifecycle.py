"""The lifecycle against the REAL stack (tests/realstack.py), on istio, gateway-api, ingress-nginx
and service: plan, deploy, promote --weight, status, status --refresh after an edit made with
kubectl, promote --complete, rollback, rollback --to, history and destroy, each as a fresh
`mlserve` process, as a user runs it.

After every step the objects are read from the API server with kubectl, not through mlserve:
they carry the weights, pins and selectors the command reported, and what `mlserve render`
prints for the traffic state the command reported (render.render, in this process, as `render
-o json` prints it: every key it prints is in the object with that value; the API server adds
defaults, status and managed fields), and mlserve's objects in the namespace are exactly the
ones render prints. The steps share one deploy per gateway.

What the gateway controllers and a cloud would write (a route's Accepted, an Ingress's or a
LoadBalancer's address) tests/real_controllers.py writes, as they would. The provider is
pulumi-kubernetes at its v4.25.0 commit (scripts/realstack): what it waits for is that commit's.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlserve.render import RenderedResource
from mlserve.spec import Spec, load_spec
from mlserve.traffic import TrafficState
from tests import render_memo
from tests.real_controllers import controllers
from tests.realstack import Real, missing_from

# `waits`: each takes one to three minutes, mostly waiting on the provider (tests/conftest.py).
pytestmark = [pytest.mark.real, pytest.mark.waits]

KINDS = {  # Pulumi type token -> kubectl resource name
    "kubernetes:apps/v1:Deployment": "deployments.apps",
    "kubernetes:core/v1:Service": "services",
    "kubernetes:networking.k8s.io/v1:Ingress": "ingresses.networking.k8s.io",
    "kubernetes:networking.istio.io/v1:VirtualService": "virtualservices.networking.istio.io",
    "kubernetes:networking.istio.io/v1:DestinationRule": "destinationrules.networking.istio.io",
    "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute": "httproutes.gateway.networking.k8s.io",
}
VS, DR, ROUTES, INGRESSES = (KINDS[f"kubernetes:{k}"] for k in (
    "networking.istio.io/v1:VirtualService", "networking.istio.io/v1:DestinationRule",
    "gateway.networking.k8s.io/v1:HTTPRoute", "networking.k8s.io/v1:Ingress",
))  # fmt: skip
# Everything mlserve makes, and what the cluster makes from it (ReplicaSets, pods, endpoints).
EVERYTHING = ",".join([*KINDS.values(), "replicasets.apps", "pods", "endpointslices"])
MANAGED = "app.kubernetes.io/managed-by=mlserve"


# --- reading the API server --------------------------------------------------------------------


def managed(real: Real) -> dict[tuple[str, str], dict[str, Any]]:
    """mlserve's objects in the namespace, by (kind, name), as the API server has them."""
    out = real.stack.kubectl(
        "get", ",".join(KINDS.values()), "-n", real.namespace, "-l", MANAGED, "-o", "json"
    ).stdout
    return {(o["kind"], o["metadata"]["name"]): o for o in json.loads(out)["items"]}


def kind_of(r: RenderedResource) -> str:
    return r.type.rsplit(":", 1)[-1]


def assert_matches_render(real: Real, spec: Spec, state: TrafficState) -> None:
    """mlserve's objects in the namespace are exactly those render declares for `state`, and
    each carries every key and value render prints for it."""
    rendered = [r for r in render_memo.render(spec, state) if r.type in KINDS]
    live = managed(real)
    assert set(live) == {(kind_of(r), r.name) for r in rendered}
    for r in rendered:
        obj = live[(kind_of(r), r.name)]
        for key in ("spec", "metadata"):
            assert missing_from(obj[key], r.inputs[key], key) == [], (r.type, r.name)


@dataclass(frozen=True)
class Split:
    """Where the routing objects in the API server send traffic: each version's share of
    unpinned requests, each pinned header value's version, and the public path matched."""

    weights: dict[str, int]
    pins: dict[str, str]


def version_of(spec: Spec, object_name: str) -> str:
    return next(v.name for v in spec.versions if spec.object_name(v.name) == object_name)


def live_split(real: Real, spec: Spec) -> Split:
    gateway = spec.gateway.type
    header = spec.gateway.version_header
    if gateway == "istio":
        subsets = {s["name"]: s["labels"]["app.kubernetes.io/version"]
                   for s in real.get(DR, spec.name)["spec"]["subsets"]}  # fmt: skip
        weights, pins = {}, {}
        for route in real.get(VS, spec.name)["spec"]["http"]:
            [*pinned] = {m["headers"][header]["exact"] for m in route["match"] if "headers" in m}
            targets = [(subsets[d["destination"]["subset"]], d.get("weight", 100))
                       for d in route["route"]]  # fmt: skip
            if pinned:
                [(version, _)] = targets
                pins.update({p: version for p in pinned})
            else:
                weights = dict(targets)
        return Split(weights, pins)
    if gateway == "gateway-api":
        weights, pins = {}, {}
        for rule in real.get(ROUTES, spec.name)["spec"]["rules"]:
            refs = [(version_of(spec, b["name"]), b.get("weight", 1)) for b in rule["backendRefs"]]
            headers = [h["value"] for m in rule["matches"] for h in m.get("headers", [])]
            if headers:
                [(version, _)] = refs
                pins.update({h: version for h in headers})
            else:
                weights = dict(refs)
        return Split(weights, pins)
    if gateway == "ingress-nginx":
        main = real.get(INGRESSES, spec.name)
        stable = version_of(spec, _backend(main))
        canary_name = f"{spec.name}-canary"
        if not real.stack.exists(INGRESSES, canary_name, real.namespace):
            return Split({stable: 100}, {})
        canary = real.get(INGRESSES, canary_name)
        notes = canary["metadata"]["annotations"]
        assert notes["nginx.ingress.kubernetes.io/canary"] == "true"
        version = version_of(spec, _backend(canary))
        weight = int(notes["nginx.ingress.kubernetes.io/canary-weight"])
        pins = {}
        if header is not None:
            assert notes["nginx.ingress.kubernetes.io/canary-by-header"] == header
            pins[notes["nginx.ingress.kubernetes.io/canary-by-header-value"]] = version
        return Split({stable: 100 - weight, version: weight}, pins)
    selector = real.get("services", spec.name)["spec"]["selector"]
    return Split({selector["app.kubernetes.io/version"]: 100}, {})


def _backend(ingress: dict[str, Any]) -> str:
    [rule] = ingress["spec"]["rules"]
    [path] = rule["http"]["paths"]
    return str(path["backend"]["service"]["name"])


# --- the steps -----------------------------------------------------------------------------------


@dataclass
class Run:
    real: Real
    path: Path
    spec: Spec

    def ok(self, *args: str) -> dict[str, Any]:
        """`mlserve ARGS --json` succeeds; its document."""
        result = self.real.mlserve(*args, "--json")
        print("$ mlserve", *args, "--json", f"(exit {result.returncode})")  # shown on a failure
        print(result.stdout, result.stderr)
        assert result.returncode == 0, result.stdout + result.stderr
        doc: dict[str, Any] = json.loads(result.stdout)
        return doc

    def project(self, *args: str) -> dict[str, Any]:
        return self.ok(*args, "--project", self.spec.name)

    def check(self, state: TrafficState, reported: dict[str, int]) -> None:
        """The API server holds what the command reported and what render prints for it."""
        assert reported == state.weights()
        split = live_split(self.real, self.spec)
        expected = state.weights()
        if self.spec.gateway.type == "service":  # the Service selects the stable's pods only
            expected = {v: w for v, w in expected.items() if w}
        assert split.weights == expected, self.real.stack.kubectl(
            "get", ",".join(KINDS.values()), "-n", self.real.namespace, "-o", "yaml"
        ).stdout
        header = self.spec.gateway.version_header
        if self.spec.gateway.type in ("istio", "gateway-api") and header:
            assert split.pins == {v: v for v in self.spec.version_names}  # every deployed one
        elif self.spec.gateway.type == "ingress-nginx" and header and state.canary:
            assert split.pins == {state.canary: state.canary}  # the canary only
        else:
            assert split.pins == {}
        assert_matches_render(self.real, self.spec, state)


def state_of(doc: dict[str, Any]) -> TrafficState:
    return TrafficState.from_dict(doc)


EDITS = {  # how a person edits the routing with kubectl: (kind, name suffix, patch type, patch)
    "istio": (VS, "", "json", [
        {"op": "replace", "path": "/spec/http/2/route/0/weight", "value": 30},
        {"op": "replace", "path": "/spec/http/2/route/1/weight", "value": 70},
    ]),
    "gateway-api": (ROUTES, "", "json", [
        {"op": "replace", "path": "/spec/rules/2/backendRefs/0/weight", "value": 30},
        {"op": "replace", "path": "/spec/rules/2/backendRefs/1/weight", "value": 70},
    ]),
    "ingress-nginx": (INGRESSES, "-canary", "merge", {
        "metadata": {"annotations": {"nginx.ingress.kubernetes.io/canary-weight": "70"}},
    }),
    "service": ("services", "", "merge", {
        "spec": {"selector": {"app.kubernetes.io/version": "2024-11"}},
    }),
}  # fmt: skip
EDITED_WEIGHTS = {"istio": [30, 70], "gateway-api": [30, 70], "ingress-nginx": ["70"]}


@pytest.mark.parametrize(
    "example", ["istio.yaml", "gateway-api.yaml", "ingress-nginx.yaml", "service.yaml"]
)
def test_the_lifecycle_leaves_in_the_api_server_what_each_command_reported(
    real: Real, example: str
) -> None:
    path = real.spec(example)
    spec = load_spec(path)
    run = Run(real, path, spec)
    gateway = spec.gateway.type
    weighted = gateway != "service"
    first, second = spec.version_names
    with controllers(real):
        # plan: a preview, nothing in the cluster yet.
        plan = run.ok("plan", str(path))
        assert plan["pendingChanges"] is True
        assert plan["changes"] == {"create": len(render_memo.render(spec))}
        assert managed(real) == {}

        deployed = run.ok("deploy", str(path), "--yes")
        assert deployed["revision"] == 1
        state = state_of(deployed["plan"]["traffic"]["new"])
        run.check(state, deployed["plan"]["traffic"]["newWeights"])

        if weighted:
            promoted = run.project(
                "promote", "--weight", "50", "--expect-weight", str(state.weight)
            )
            state = state_of(promoted["after"])
            assert (state.stable, state.canary, state.weight) == (first, second, 50)
            run.check(state, promoted["after"]["weights"])
        else:
            refused = real.mlserve("promote", "--weight", "50", "--project", spec.name)
            assert refused.returncode == 6, refused.stderr
            assert refused.stderr.startswith(
                f"error: gateway service cannot split traffic ({second} at 50%)"
            )
            promoted = run.project("promote", "--complete")
            state = state_of(promoted["after"])
            assert (state.stable, state.previous) == (second, first)
            run.check(state, promoted["after"]["weights"])
        promoted_revision = promoted["revision"]
        assert promoted_revision == 2

        status = run.project("status")
        assert state_of(status["traffic"]) == state
        assert status["weights"] == state.weights() == live_split(real, spec).weights
        assert status["drift"] is None

        # Someone edits the routing with kubectl: the refresh reports it, and so does the next.
        kind, suffix, patch_type, patch = EDITS[gateway]
        real.stack.kubectl(
            "patch", kind, spec.name + suffix, "-n", real.namespace, f"--type={patch_type}",
            "-p", json.dumps(patch),
        )  # fmt: skip
        edited = live_split(real, spec)
        refreshed = run.project("status", "--refresh")
        assert refreshed["drift"] == {"update": 1}
        [drift] = refreshed["routingDrift"]
        assert (drift["kind"], drift["name"]) == (
            {VS: "VirtualService", ROUTES: "HTTPRoute", INGRESSES: "Ingress"}.get(kind, "Service"),
            spec.name + suffix,
        )
        if weighted:
            assert [d["cluster"] for d in drift["differences"]] == EDITED_WEIGHTS[gateway]
        else:
            assert drift["differences"] == [{
                "path": "spec.selector.app.kubernetes.io/version",
                "cluster": first, "declared": second,
            }]  # fmt: skip
        assert state_of(refreshed["traffic"]) == state  # what mlserve applied, not the edit
        again = real.mlserve("status", "--refresh", "--project", spec.name)
        assert again.returncode == 0, again.stderr
        assert "drift        none since the last refresh\n" in again.stdout
        assert "\nwarning: " in again.stdout and "differs from what mlserve applied" in again.stdout
        assert live_split(real, spec) == edited  # a refresh changes nothing in the cluster

        if weighted:
            completed = run.project("promote", "--complete")
            state = state_of(completed["after"])
            assert (state.stable, state.canary, state.previous) == (second, None, first)
            run.check(state, completed["after"]["weights"])  # the edit is gone

        rolled = run.project("rollback")
        state = state_of(rolled["after"])
        assert (state.stable, state.canary, state.previous) == (first, None, None)
        run.check(state, rolled["after"]["weights"])

        reapplied = run.project("rollback", "--to", str(promoted_revision))
        assert reapplied["reappliedRevision"] == promoted_revision
        state = state_of(reapplied["after"])
        assert state == state_of(promoted["after"])
        run.check(state, reapplied["after"]["weights"])

        history = real.mlserve("history", "--project", spec.name, "--json")
        assert history.returncode == 0, history.stderr
        rows = [(r["revision"], r["kind"], r["result"], r["command"], r["stable"], r["canary"],
                 r["weight"]) for r in json.loads(history.stdout)]  # fmt: skip
        canary, weight = (second, 50) if weighted else (None, 0)
        expected = [
            (1, "update", "succeeded", "mlserve deploy", first, second, spec.traffic.weight),
            (
                2,
                "update",
                "succeeded",
                promoted["command"],
                *((first, second, 50) if weighted else (second, None, 0)),
            ),
            (3, "refresh", "succeeded", "mlserve status --refresh", None, None, None),
            (4, "refresh", "succeeded", "mlserve status --refresh", None, None, None),
        ]
        if weighted:
            expected.append((5, "update", "succeeded", "mlserve promote --complete", second,
                             None, 0))  # fmt: skip
        expected += [
            (len(expected) + 1, "update", "succeeded", "mlserve rollback", first, None, 0),
            (len(expected) + 2, "update", "succeeded",
             f"mlserve rollback --to {promoted_revision}", *(
                (first, canary, weight) if weighted else (second, None, 0))),
        ]  # fmt: skip
        assert rows == expected[::-1]

        destroyed = real.mlserve("destroy", "--project", spec.name, "--yes", "--json")
        assert destroyed.returncode == 0, destroyed.stderr
        assert json.loads(destroyed.stdout)["deleted"] == len(render_memo.render(spec))
    left = real.stack.kubectl("get", EVERYTHING, "-n", real.namespace, "-o", "name").stdout
    assert left == ""
    real.stack.kubectl("get", "namespace", real.namespace)  # mlserve never deletes it


# --- what fails, and how fast ------------------------------------------------------------------


CLUSTER_IP = """\
apiVersion: mlserve/v1
name: {name}
namespace: {namespace}
gateway: {{type: service, service: {{type: ClusterIP}}}}
versions:
  - {{name: v1, image: "ghcr.io/acme/model:1"}}
  - {{name: v2, image: "ghcr.io/acme/model:2"}}
traffic: {{stable: v1, canary: v2}}
"""


def test_a_missing_namespace_is_named_before_anything_runs_and_destroy_leaves_the_namespace(
    real: Real,
) -> None:
    """mlserve does not create the spec's namespace (a Namespace in the stack would make destroy
    delete everything else in it): plan warns, deploy refuses at once, before it makes a stack,
    instead of the provider retrying the first create for a minute."""
    namespace = f"{real.namespace}-absent"
    path = real.tmp / "absent.yaml"
    path.write_text(CLUSTER_IP.format(name="absent-model", namespace=namespace))
    server = json.loads(real.stack.kubectl("config", "view", "-o", "json", "--minify").stdout)
    where = f"context 'realstack': {server['clusters'][0]['cluster']['server']}"
    problem = (
        f"namespace {namespace} does not exist in the cluster ({where}): create it (`kubectl "
        f"create namespace {namespace}`), or set the spec's namespace to one that exists. "
        "mlserve does not create namespaces, so that `mlserve destroy` never deletes one other "
        "workloads share"
    )
    plan = real.mlserve("plan", str(path))
    assert plan.returncode == 0, plan.stderr
    assert f"warning: {problem}; deploy refuses until it exists\n" in plan.stdout

    deploy = real.mlserve("deploy", str(path), "--yes")
    assert (deploy.returncode, deploy.stderr) == (6, f"error: {problem}; nothing was changed\n")
    history = real.mlserve("history", "--project", "absent-model")  # the plan made the stack
    assert (history.returncode, history.stdout) == (0, "no updates yet\n"), history.stderr

    # Created by someone else, with something of theirs in it: deploy, then destroy, which
    # removes mlserve's objects and leaves the namespace and theirs.
    real.create_namespace(namespace)
    try:
        real.stack.kubectl("create", "configmap", "theirs", "-n", namespace)
        deployed = real.mlserve("deploy", str(path), "--yes")
        assert deployed.returncode == 0, deployed.stderr
        assert real.stack.exists("services", "absent-model", namespace)
        destroyed = real.mlserve("destroy", "--project", "absent-model", "--yes")
        assert destroyed.returncode == 0, destroyed.stderr
        left = real.stack.kubectl("get", EVERYTHING, "-n", namespace, "-o", "name").stdout
        assert left == ""
        assert real.stack.exists("configmaps", "theirs", namespace)
    finally:
        real.stack.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.mark.minutes  # the provider's time-outs: first of all under xdist
def test_a_gateway_that_refuses_the_route_is_named_with_its_reason_and_a_retry_recovers(
    real: Real,
) -> None:
    """Two parents: `internal` accepts the route, `public` refuses it, as a Gateway whose
    listeners do not allow routes from this namespace answers. pulumi-kubernetes' wait for the
    route's Accepted condition (mlserve's pulumi.com/waitFor) cannot end on a refusal: its
    awaiter ends on the condition, a time-out or a cancel only (provider/pkg/await/internal/
    awaiter.go), so the deploy fails after the 2 minutes mlserve allows, and mlserve reads the
    refusal from the route the provider recorded (gateway_api.unaccepted). Once the Gateway
    accepts the route, running the same deploy again finishes it."""
    text = real.spec("gateway-api.yaml").read_text()
    path = real.tmp / "two-parents.yaml"
    path.write_text(text.replace(
        "        sectionName: https         # optional: one listener of that Gateway\n",
        "        sectionName: https         # optional: one listener of that Gateway\n"
        "      - {name: internal, namespace: infra}\n",
    ))  # fmt: skip
    refusal = (
        "NotAllowedByListeners",
        f"no listener allows routes from namespace {real.namespace}",
    )
    with controllers(real, refuse={"public": refusal}):
        started = time.monotonic()
        failed = real.mlserve("deploy", str(path), "--yes")
        waited = time.monotonic() - started
    assert failed.returncode == 5, failed.stderr
    first, *rest = failed.stderr.rstrip("\n").split("\n")[-2:]
    assert first == (
        "error: the update failed: recommender: created, but timed out waiting for the condition "
        "(run with --debug for the engine's full output)"
    )
    assert rest == [
        "  the HTTPRoute recommender was not accepted within 2 minutes: Gateway infra/public "
        f"(listener https) refused it: NotAllowedByListeners (no listener allows routes from "
        f"namespace {real.namespace})"
    ]
    assert waited >= 120
    route = real.get(ROUTES, "recommender")
    answers = {
        p["parentRef"]["name"]: p["conditions"][0]["status"] for p in route["status"]["parents"]
    }
    assert answers == {"public": "False", "internal": "True"}

    # The Gateway's owner lets the namespace in: its controller accepts the route. The deploy
    # again steps the route the last one left unready, and its wait ends at once.
    with controllers(real):
        retried = real.mlserve("deploy", str(path), "--yes")
    assert retried.returncode == 0, retried.stderr
    history = json.loads(real.mlserve("history", "--project", "recommender", "--json").stdout)
    assert [(r["revision"], r["result"]) for r in history] == [(2, "succeeded"), (1, "failed")]


NEVER_READY = """\
apiVersion: mlserve/v1
name: {name}
namespace: {namespace}
gateway: {{type: istio, host: {name}.example.com, istio: {{gateways: [istio-system/public]}}}}
versions:
{versions}
traffic: {{stable: v1, canary: {canary}, weight: 10{extra}}}
"""


def gpus(real: Real) -> int:
    """The nvidia.com/gpu the stack's one Node offers (scripts/realstack: "1k")."""
    node = json.loads(real.stack.kubectl("get", "nodes", "-o", "json").stdout)["items"][0]
    quantity = node["status"]["allocatable"]["nvidia.com/gpu"]
    return int(quantity[:-1]) * 1000 if quantity.endswith("k") else int(quantity)


def gpu_version(name: str, count: int, replicas: int = 1) -> str:
    return (
        f'  - {{name: {name}, image: "ghcr.io/acme/model:{name}", replicas: {replicas}, '
        f"resources: {{requests: {{nvidia.com/gpu: {count}}}, "
        f"limits: {{nvidia.com/gpu: {count}}}}}}}\n"
    )


def route_weights(real: Real, name: str, namespace: str) -> dict[str, int]:
    vs = real.stack.get(VS, name, namespace)
    return {d["destination"]["subset"]: d["weight"] for d in vs["spec"]["http"][-1]["route"]}


@pytest.mark.minutes  # the provider's time-outs: first of all under xdist
def test_pods_that_never_become_ready_fail_deploy_and_promote_and_the_routing_stays(
    real: Real,
) -> None:
    """Capacity before weight, for real: a canary whose pods never become Ready. The cluster
    has no room for them (they ask for more GPUs than the Node has free, the usual reason an ML
    canary never starts); the scheduler leaves them Pending, as it would.

    pulumi-kubernetes' Deployment await ends only when the pods are Ready, at the time-out or
    on a cancel (provider/pkg/await/deployment.go): 10 minutes for a version without probes
    (readiness.py). So the three failures that take that long run side by side, each in its own
    namespace and stack:
    - deploy: a new canary v3 whose one pod cannot be scheduled; the route keeps v1 90%, v2 10%;
    - promote 10% -> 50% with canaryReplicas proportional: the canary's second pod cannot be
      scheduled (each asks for more than half the GPUs); the route keeps 90/10;
    - a `service` gateway of type LoadBalancer that no controller gives an address.
    Each exits 5 with a line that names the version (or the Service) and says what to do."""
    free = gpus(real)
    spaces = {k: f"{real.namespace}-{k}" for k in ("deploy", "promote", "balancer")}
    for namespace in spaces.values():
        real.create_namespace(namespace)
    try:
        two = '  - {name: v1, image: "ghcr.io/acme/model:v1", replicas: 2}\n' \
              '  - {name: v2, image: "ghcr.io/acme/model:v2"}\n'  # fmt: skip
        specs = {
            "deploy": NEVER_READY.format(
                name="model-a", namespace=spaces["deploy"], versions=two, canary="v2", extra=""),
            "deploy-v3": NEVER_READY.format(
                name="model-a", namespace=spaces["deploy"], canary="v3", extra="",
                versions=two + gpu_version("v3", free + 1)),
            "promote": NEVER_READY.format(
                name="model-b", namespace=spaces["promote"], canary="v2",
                extra=", canaryReplicas: proportional",
                versions='  - {name: v1, image: "ghcr.io/acme/model:v1", replicas: 4}\n'
                + gpu_version("v2", free // 2 + 1, replicas=4)),
            "balancer": real.spec("service.yaml").read_text().replace(
                f"namespace: {real.namespace}", f"namespace: {spaces['balancer']}"),
        }  # fmt: skip
        paths = {}
        for key, text in specs.items():
            paths[key] = real.tmp / f"{key}.yaml"
            paths[key].write_text(text)

        # What works first: model-a with v1 and v2, model-b with its canary at 10% (1 pod).
        setup = [real.mlserve_background("deploy", str(paths[k]), "--yes")
                 for k in ("deploy", "promote")]  # fmt: skip
        for proc in setup:
            _, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err
        before = {
            "deploy": route_weights(real, "model-a", spaces["deploy"]),
            "promote": route_weights(real, "model-b", spaces["promote"]),
        }
        assert before == {"deploy": {"v1": 90, "v2": 10}, "promote": {"v1": 90, "v2": 10}}

        started = time.monotonic()
        running = {
            "deploy": real.mlserve_background("deploy", str(paths["deploy-v3"]), "--yes"),
            "promote": real.mlserve_background("promote", "--weight", "50", "--project", "model-b"),
            "balancer": real.mlserve_background("deploy", str(paths["balancer"]), "--yes"),
        }
        time.sleep(60)  # the commands wait: the routing has not moved
        assert route_weights(real, "model-a", spaces["deploy"]) == before["deploy"]
        assert route_weights(real, "model-b", spaces["promote"]) == before["promote"]
        pending = real.stack.items("pods", spaces["deploy"], "app.kubernetes.io/version=v3")
        [condition] = [c for c in pending[0]["status"]["conditions"] if c["type"] == "PodScheduled"]
        assert (condition["status"], condition["reason"]) == ("False", "Unschedulable")
        canary = real.stack.get("deployments.apps", "model-b-v2", spaces["promote"])
        assert (canary["spec"]["replicas"], canary["status"]["readyReplicas"]) == (2, 1)

        out = {}
        for key, proc in running.items():
            _, err = proc.communicate(timeout=900)
            out[key] = (proc.returncode, err.rstrip("\n").split("\n")[-1])
        took = time.monotonic() - started
        assert route_weights(real, "model-a", spaces["deploy"]) == before["deploy"]
        assert route_weights(real, "model-b", spaces["promote"]) == before["promote"]
    finally:
        for namespace in spaces.values():
            real.stack.kubectl("delete", "namespace", namespace, "--wait=false", check=False)

    def describe(version: str, namespace: str, name: str) -> str:
        return (
            f"See why with `kubectl describe pods -n {namespace} -l app.kubernetes.io/name={name},"
            f"app.kubernetes.io/version={version}` (scheduling, image pull, probes)"
        )

    assert out == {
        "deploy": (5, "  v3 (the canary) did not become Ready within 10m00s (0 of 1 pods Ready); "
                   "the routing waits for its pods, so no traffic was moved to them. "
                   + describe("v3", spaces["deploy"], "model-a")),
        "promote": (5, "  v2 (the canary) did not become Ready within 10m00s (1 of 2 pods Ready); "
                    "the routing waits for its pods, so no traffic was moved to them. "
                    + describe("v2", spaces["promote"], "model-b")),
        "balancer": (5, "  the LoadBalancer Service forecast got no address within 10 minutes: a "
                     "LoadBalancer Service gets its address from the cluster's load-balancer "
                     "controller, which kind, minikube (without `minikube tunnel`) and bare-metal "
                     "clusters (without MetalLB or similar) lack. Set gateway.service.type to "
                     "ClusterIP (in-cluster clients) or NodePort, or install one, then deploy "
                     "again"),
    }  # fmt: skip
    assert took >= 600
    print(f"the three failures took {took:.0f} s side by side")
