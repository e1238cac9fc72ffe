"""What a stack recorded, and the routing-only update that promote, rollback and rollout make.

Every mlserve update records the traffic it applied and the spec (`mlserve:traffic`,
`mlserve:spec`) in the stack's config, so each history entry says what was live after it
(DESIGN.md section 4). This module reads that record back (`read_live`) and makes a routing-only
update from it (`routing_update`); ops.py and ops_rollout.py both build on it. Logic only.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from mlserve import capacity, failures
from mlserve.backends.base import CAPABILITIES
from mlserve.capacity import Change
from mlserve.engine import (
    PLUGIN_PACKAGES,
    WORKLOAD_TYPES,
    Engine,
    Event,
    HistoryEntry,
    Mark,
    StackState,
    Tally,
    kind_name,
    sdk_version,
    urn_name,
    weight_changes,
    weights_of,
)
from mlserve.errors import OperationFailedError, PreconditionError
from mlserve.program import build_program
from mlserve.spec import Spec, recorded_spec_problems
from mlserve.traffic import Mirror, TrafficState

if TYPE_CHECKING:
    from mlserve.render import RenderedResource

TRAFFIC_KEY = "mlserve:traffic"
SPEC_KEY = "mlserve:spec"
T = TypeVar("T")


def plugins_for(spec: Spec) -> list[str]:
    """The provider plugins a spec's program uses: its gateway's, and Kubernetes' for images."""
    names = ["kubernetes"] if any(v.image for v in spec.versions) else []
    gateway = CAPABILITIES[spec.gateway.type].plugin
    return names if gateway in names else [*names, gateway]


@dataclass(frozen=True)
class Record:
    """What an mlserve update recorded in its config: the traffic it applied and the spec."""

    revision: int
    message: str  # the command that made the update, e.g. "mlserve rollback"
    traffic: TrafficState
    spec: Spec
    config: Mapping[str, str]  # every non-secret config value the update recorded

    @property
    def versions(self) -> tuple[str, ...]:
        return self.spec.version_names


def _live_entry(entries: list[HistoryEntry]) -> HistoryEntry | None:
    """The newest successful update that recorded mlserve's state; None if a successful destroy
    came after it. Failed updates are skipped: their config and outputs are not what is live."""
    for e in entries:
        if e.result != "succeeded":
            continue
        if e.kind == "destroy":
            return None
        if e.kind == "update" and TRAFFIC_KEY in e.config:
            return e
    return None


def _traffic_from(data: Any) -> TrafficState:
    if not isinstance(data, dict):
        raise ValueError(f"is JSON {json.dumps(data)[:60]}, not an object")
    for key in ("canary", "previous"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ValueError(f"has {key} {json.dumps(data[key])[:60]}, not a version name")
    stable = data.get("stable")
    if not isinstance(stable, str) or not stable:
        raise ValueError("has no stable version name")
    weight = data.get("weight", 0)
    if isinstance(weight, bool) or not isinstance(weight, int):
        raise ValueError(f"has weight {json.dumps(weight)[:60]}, not an integer")
    mirror = data.get("mirror")  # a record made before mirrors existed has none
    if mirror is not None and (
        not isinstance(mirror, dict)
        or not isinstance(mirror.get("version"), str)
        or isinstance(mirror.get("percent"), bool)
        or not isinstance(mirror.get("percent"), int)
    ):
        raise ValueError(f"has mirror {json.dumps(mirror)[:60]}, not {{version, percent}}")
    try:
        return TrafficState(
            stable,
            data.get("canary"),
            weight,
            data.get("previous"),
            Mirror(mirror["version"], mirror["percent"]) if mirror is not None else None,
        )
    except ValueError as e:
        raise ValueError(f"is not a valid traffic state: {e}") from None


def _spec_from(data: Any) -> Spec:
    problems = recorded_spec_problems(data)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ValueError(f"is not a valid spec: {problems[0]}{more}")
    return Spec.from_dict(data, source=SPEC_KEY)


class DamagedRecord(PreconditionError):
    """A revision's `mlserve:traffic` or `mlserve:spec` cannot be read (a hand edit, another
    tool, an older mlserve): exit 6 naming the revision, the key and the way out."""

    def __init__(self, damage: str, way_out: str) -> None:
        self.damage = damage
        super().__init__(f"{damage}. {way_out}")


def read_record(entry: HistoryEntry, way_out: str) -> Record:
    def read(key: str, parse: Callable[[Any], T]) -> T:
        raw = entry.config.get(key)
        try:
            if raw is None:
                raise ValueError("is missing")
            try:
                data = json.loads(raw)
            except ValueError:
                raise ValueError(f"is not JSON: {raw[:60]!r}") from None
            return parse(data)
        except (ValueError, KeyError, TypeError) as e:
            damage = f"revision {entry.revision} recorded a damaged `{key}`: it {e}"
            raise DamagedRecord(damage, way_out) from None

    spec = read(SPEC_KEY, _spec_from)
    state = read(TRAFFIC_KEY, _traffic_from)
    unknown = [v for v in state.versions() if v not in spec.version_names]
    if unknown:
        raise DamagedRecord(
            f"revision {entry.revision} recorded a damaged `{TRAFFIC_KEY}`: it names "
            f"{', '.join(unknown)}, which its `{SPEC_KEY}` does not define",
            way_out,
        )
    return Record(entry.revision, entry.message, state, spec, entry.config)


def live_record(entries: list[HistoryEntry]) -> Record | None:
    """The live record; damaged, exit 6 with the way out."""
    entry = _live_entry(entries)
    if entry is None:
        return None
    return read_record(
        entry,
        "Nothing was changed. To recover, `mlserve deploy SPEC --reset-traffic` replaces the "
        "record with the spec's traffic; `mlserve history` lists every revision",
    )


def recorded_config(state: TrafficState, spec: Spec) -> dict[str, str]:
    """The config an update records: every history entry holds what was live after it."""
    return {
        TRAFFIC_KEY: json.dumps(state.to_dict(), sort_keys=True),
        SPEC_KEY: json.dumps(spec.to_dict(), sort_keys=True),
    }


@dataclass(frozen=True)
class TrafficReport:
    """What promote or rollback changed: the split before and after, and the update that did it."""

    command: str  # the update message, e.g. "mlserve promote --weight 50"
    project: str
    stack: str
    backend: str
    before: TrafficState | None  # None: nothing was live (rollback --to after a destroy)
    after: TrafficState
    revision: int | None
    changes: Mapping[str, int]
    targets: tuple[str, ...] | None  # the routing URNs updated; None: a full update
    reapplied: int | None = None  # rollback --to: the revision re-applied
    warnings: list[str] = field(default_factory=list)
    tally: Tally | None = None
    dry_run: bool = False  # a preview of the update: nothing was changed
    steps: list[Event] = field(default_factory=list)  # dry run: what would change
    capacity: tuple[Change, ...] = ()  # the versions whose replicas the update changes

    def to_json(self) -> dict[str, Any]:
        def state(s: TrafficState | None) -> dict[str, Any] | None:
            return {**s.to_dict(), "weights": s.weights()} if s is not None else None

        return {
            "command": self.command,
            "project": self.project,
            "stack": self.stack,
            "backend": self.backend,
            "before": state(self.before),
            "after": state(self.after),
            "revision": self.revision,
            "reappliedRevision": self.reapplied,
            "changes": {k: v for k, v in self.changes.items() if k != "same"},
            "targetedChanges": (
                self.tally.among(self.targets)
                if self.tally is not None and self.targets is not None
                else None
            ),
            "pulumiChanges": dict(self.tally.engine) if self.tally else None,
            "targets": list(self.targets) if self.targets is not None else None,
            "dryRun": self.dry_run,
            "steps": [s.step_json() for s in self.steps],
            "capacity": [c.to_json() for c in self.capacity],
            "warnings": self.warnings,
        }


@dataclass(frozen=True)
class Live:
    """What a routing-only change starts from: the live record and the stack's state."""

    record: Record
    mark: Mark  # the history it was read from: the update's guard compares
    held: StackState  # what `pulumi stack export` showed
    _routing: dict[tuple[str, str], dict[str, dict[str, Any]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def routing(self, project: str, stack: str) -> dict[str, dict[str, Any]]:
        """The routing the record declares (urn -> its weights), rendered once."""
        if (project, stack) not in self._routing:
            self._routing[project, stack] = _declared_routing(self.spec, self.state, project, stack)
        return self._routing[project, stack]

    @property
    def state(self) -> TrafficState:
        return self.record.traffic

    @property
    def spec(self) -> Spec:
        return self.record.spec

    @property
    def config(self) -> Mapping[str, str]:
        """The config the newest successful update recorded."""
        return self.record.config


# What the mocks render of the routing (_declared_routing) and then the program import: the
# Pulumi SDK's mocks and the Kubernetes SDK's modules the backends use (they import them lazily).
# pulumi_kubernetes loads each API group's resources on first use, 0.4 s idle and 1.5 s on a
# loaded 2-core machine for these (bench/routing_latency.py --phases).
PROGRAM_MODULES = (
    "mlserve.render",
    "mlserve.program",
    "pulumi_kubernetes.apps.v1",
    "pulumi_kubernetes.core.v1",
    "pulumi_kubernetes.meta.v1",
    "pulumi_kubernetes.apiextensions",
    "pulumi_kubernetes.networking.v1",
    "pulumi_kubernetes.autoscaling.v2",
)


def _import_program_modules() -> None:
    for name in PROGRAM_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # a gateway's own SDK missing is said where it is needed, when the
            return  # program imports it again on the main thread


def unrecorded(live: Live, project: str, stack: str) -> str | None:
    """Where the stack's routing differs from what its live record says, or None.

    What changes a stack's state without a history entry, so that the record mlserve reads is
    stale: a Pulumi CLI killed in the middle of an update (pkg/backend/diy/backend.go `apply`
    writes the entry only when the operation returns), `pulumi stack import`, `pulumi state ...`
    (pkg/cmd/pulumi/state/io.go `TotalStateEdit` imports the edited state); and an update that
    failed part-way, whose entry mlserve does not read as live. Every weight the record's
    routing declares is compared with the same resource's inputs in the state.
    """
    differ = []
    for urn, want in sorted(live.routing(project, stack).items()):
        if urn not in live.held.urns:
            differ.append(f"{kind_name(urn)} is not in it")
        elif (have := dict(live.held.weights.get(urn, {}))) != want:
            differ.append(
                f"{kind_name(urn)} holds weights {_split(have)}, the record {_split(want)}"
            )
    if not differ:
        return None
    more = f" and {len(differ) - 2} more" if len(differ) > 2 else ""
    newest = live.mark.newest
    if newest is not None and newest.kind == "refresh" and newest.revision > live.record.revision:
        # The Kubernetes provider's refresh reads an object's inputs back too (seen on the real
        # provider, v4.34), so a weight edited with kubectl is in the state after a refresh.
        why = (
            f"the refresh of revision {newest.revision} read it back from where it was changed "
            "outside mlserve"
        )
    else:
        why = (
            "an update was stopped, failed part-way or is running now, or the state was changed "
            "outside mlserve (`pulumi stack import`, `pulumi state ...`)"
        )
    return (
        f"the stack's state does not hold the routing that revision {live.record.revision} "
        f"records ({'; '.join(differ[:2])}{more}): {why}"
    )


def _split(weights: Mapping[str, Any]) -> str:
    return "/".join(str(v) for v in weights.values()) or "none"


def read_live(eng: Engine) -> Live:
    """The live record, the history it came from and the stack's state, for a routing update.

    Two things overlap here, for a quick rollback: `stack export` runs beside `stack history`
    (both read without the stack's lock, so neither waits for the other), and the modules the
    routing update will import load on a thread of their own while the Pulumi CLI runs (the
    first import of the Kubernetes SDK costs as much as two of its processes). That thread is
    joined before this returns: pulumi_kubernetes loads its API groups lazily, and a program
    reading `core.v1.PodTemplateSpecArgs` while another thread still runs that module's body
    fails with "partially initialized module" (the import lock guards only `import`
    statements, not attribute reads). Whatever a read raises is raised in the order the reads
    had when they ran one after the other.
    """
    importing = threading.Thread(target=_import_program_modules, name="mlserve-imports")
    importing.daemon = True
    importing.start()
    try:
        eng.stack(select=False)  # `stack history` says if there is none
        with ThreadPoolExecutor(max_workers=1) as pool:
            exported = pool.submit(eng.state)
            entries = eng.history()
            record = live_record(entries)
            if record is None:
                raise PreconditionError(
                    f"nothing is deployed in {eng.describe()}: run `mlserve deploy`"
                )
            held = exported.result()
    finally:
        importing.join()
    return Live(record, Mark.of(entries), held)


def _declared(
    spec: Spec, state: TrafficState, project: str, stack: str
) -> tuple[list[RenderedResource], set[str]]:
    """The resources the program declares for `state`, and the URNs of its routing resources,
    from a run under Pulumi's mocks (render.py), on a thread of its own so the mocks' runtime
    settings (context variables) never meet the real program's.

    The mocks qualify a child of the stack with the stack's type; the engine does not
    (pkg/resource/deploy/deployment.go `generateURN` skips the root stack type), so
    `urn:pulumi:S::P::pulumi:pulumi:Stack$T::N` becomes `urn:pulumi:S::P::T::N`.
    """

    def run() -> tuple[list[RenderedResource], set[str]]:
        import pulumi
        from pulumi.runtime.settings import get_root_resource

        from mlserve.render import render_program

        found: set[str] = set()
        program = build_program(spec, state)

        def capture() -> Any:
            program()
            root = get_root_resource()
            assert root is not None
            routing = root.outputs.get("routing", [])  # type: ignore[attr-defined]
            return pulumi.Output.from_input(routing).apply(
                lambda urns: found.update(
                    u.replace("::pulumi:pulumi:Stack$", "::", 1) for u in urns
                )
            )

        loop = asyncio.new_event_loop()  # a thread's own; the SDK runs the program on it
        asyncio.set_event_loop(loop)
        try:
            resources = render_program(capture, project, stack)
        finally:
            loop.close()
        return resources, found

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def _declared_routing(
    spec: Spec, state: TrafficState, project: str, stack: str
) -> dict[str, dict[str, Any]]:
    """The URNs of the routing resources the program declares for `state` (_declared), each with
    the weights in its inputs (engine.weights_of)."""
    resources, found = _declared(spec, state, project, stack)
    inputs = {(r.type, r.name): r.inputs for r in resources}
    return {urn: weights_of(inputs.get(urn_name(urn))) for urn in found}


@dataclass(frozen=True)
class Drift:
    """A routing resource whose inputs in the stack's state (as a refresh read them from the
    cluster) differ from what the live record's spec and traffic declare."""

    kind: str  # VirtualService, HTTPRoute, Ingress, Service
    name: str
    differences: tuple[tuple[str, Any, Any], ...]  # (input path, in the cluster, declared)
    weights: tuple[tuple[str, Any, Any], ...]  # engine.weight_changes(declared, cluster)
    missing: bool = False  # the object is gone from the cluster

    def describe(self, applied: str) -> str:
        """`applied`: what set the declared values, e.g. "revision 3"."""
        what = f"{self.kind} {self.name}"
        if self.missing:
            return f"{what} is not in the cluster (deleted outside mlserve?)"
        if self.weights:
            declared = "/".join(str(old) for _, old, _ in self.weights)
            cluster = "/".join(str(new) for _, _, new in self.weights)
            changed = f"weights {cluster} in the cluster, {declared} as {applied} set them"
        else:
            shown = [
                f"{path} {_short(have)} ({applied}: {_short(want)})"
                for path, have, want in self.differences[:3]
            ]
            more = len(self.differences) - len(shown)
            changed = ", ".join(shown) + (f" and {more} more" if more > 0 else "")
        return f"{what} differs from what mlserve applied: {changed}"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "missing": self.missing,
            "differences": [
                {"path": p, "cluster": have, "declared": want} for p, have, want in self.differences
            ],
        }


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def _differences(have: Any, want: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """Where `want` (declared) is not in `have` (the state): every key of a declared mapping
    must be there with the same value; lists must match item by item. Keys only the state has
    (what the API server defaults) are not differences."""
    if isinstance(want, Mapping):
        if not isinstance(have, Mapping):
            return [(path, have, want)]
        return [
            d
            for key, value in want.items()
            for d in _differences(have.get(key), value, f"{path}.{key}" if path else str(key))
        ]
    if isinstance(want, list):
        if not isinstance(have, list) or len(have) != len(want):
            return [(path, have, want)]
        return [d for i, (h, w) in enumerate(zip(have, want, strict=True))
                for d in _differences(h, w, f"{path}[{i}]")]  # fmt: skip
    return [] if have == want else [(path, have, want)]


def routing_drift(record: Record, project: str, stack: str, held: StackState) -> list[Drift]:
    """The routing resources whose state (after a refresh, what the cluster holds) differs from
    what the live record declares: an edit made outside mlserve, which a refresh takes into the
    state. Compared with the record, not with the state before the refresh, so it shows until
    an update puts the declared routing back, however many refreshes ran since the edit."""
    resources, routing = _declared(record.spec, record.traffic, project, stack)
    urns = {tuple(u.split("::")[-2:]) for u in routing}
    drifts = []
    for r in resources:
        # Kubernetes objects only: what the Kubernetes provider's refresh reads was compared
        # with what it applied on the real stack; Kong's and Azure's providers may write back
        # values in their own normal form, which would show here as drift that is none.
        if (r.type, r.name) not in urns or not r.type.startswith("kubernetes:"):
            continue
        kind = r.type.rsplit(":", 1)[-1]
        have = held.inputs.get((r.type, r.name))
        if have is None:
            drifts.append(Drift(kind, r.name, (), (), missing=True))
            continue
        declared = {k: v for k, v in r.inputs.items() if k in ("spec", "metadata")}
        found = _differences(have, declared)
        if found:
            drifts.append(Drift(kind, r.name, tuple(found), weight_changes(declared, have)))
    return drifts


def _check_providers(eng: Engine, live: Live) -> None:
    """A targeted update fails if a default provider's version changed ("provider ... has not
    been registered yet ... mixed with --target", step_generator.go; pulumi/pulumi#15732)."""
    for name in plugins_for(live.spec):
        held, installed = live.held.providers.get(name), sdk_version(name)
        if held is not None and installed is not None and held != installed:
            raise PreconditionError(
                f"{eng.describe()} was deployed with the {name} provider v{held}, and "
                f"v{installed} is installed: a routing-only update cannot change provider "
                "versions. Nothing was changed: run `mlserve deploy` first (or install "
                f"{PLUGIN_PACKAGES[name]}=={held})"
            )


def _routing_targets(eng: Engine, live: Live, new: TrafficState) -> list[str]:
    """Every routing resource the new program declares, and every one the stack holds.

    A --target URN must be in the stack or registered by the program, or the update fails after
    applying the rest (deployment_executor.go `checkTargets`). What the stack holds comes from
    its last update's `routing` output (a failed update may have set it) and from what the live
    record declares, each kept only if the state has it.
    """
    # A URN holds the stack's own name, not `org/project/stack` (deployment.go `generateURN`).
    project, stack = eng.target.project, eng.stack_name
    exported = live.held.outputs.get("routing")
    if not isinstance(exported, list) or not exported:
        raise PreconditionError(
            f"{eng.describe()} records no routing resources (output `routing`): redeploy "
            "with `mlserve deploy` first"
        )
    held = {str(u) for u in exported} | set(live.routing(project, stack))
    declared = set(_declared_routing(live.spec, new, project, stack))
    return sorted(declared | (held & live.held.urns))


def _urn(eng: Engine, type_: str, name: str) -> str:
    """A child of the stack's URN (deployment.go `generateURN`: the stack's own name)."""
    return (
        f"urn:pulumi:{eng.target.stack.rsplit('/', 1)[-1]}::{eng.target.project}::{type_}::{name}"
    )


def capacity_targets(
    eng: Engine, live: Live, routing: list[str], changed: frozenset[str], late: frozenset[str]
) -> list[str]:
    """What a routing update must also update, beyond the routing: the Deployments and
    autoscalers of the versions whose replicas change (`changed`), and every resource whose
    recorded dependencies would otherwise make the update fail.

    An untargeted resource keeps its recorded dependencies, and the engine steps each of them
    that has no step yet before it, so the program registering one later is a duplicate URN
    (pkg/resource/deploy/step_generator.go, the untargeted SameStep's `getDependencySteps`, and
    `generateURN`). That happens to a Deployment the last update made wait on the routing (a
    version scaled down after the traffic moved), whose routing now registers after it; and to
    a resource that waited on a Deployment that this update declares after the routing (`late`,
    capacity.falling), such as an InferencePool. Targeted, each is registered with the
    dependencies the program gives it now. (The Pulumi CLI 3.277 of the real stack fails such an
    update so: tests/test_real_capacity.py.)
    """
    deployment, autoscaler = WORKLOAD_TYPES
    wanted, late_urns = set(), set()
    for v in live.spec.versions:
        if v.image is None:
            continue
        name = live.spec.object_name(v.name)
        urns = [_urn(eng, deployment, name)]
        if v.autoscale is not None:
            urns.append(_urn(eng, autoscaler, name))
        if v.name in late:
            late_urns.update(urns)
        for urn in urns:
            if v.name in changed or live.held.dependencies.get(urn, frozenset()) & set(routing):
                wanted.add(urn)
    wanted |= {
        urn
        for urn, deps in live.held.dependencies.items()
        if deps & late_urns and urn not in routing
    }
    return sorted(wanted)


def routing_update(
    eng: Engine,
    command: str,
    live: Live,
    new: TrafficState,
    warnings: list[str],
    extra_config: Mapping[str, str] | None = None,
    *,
    dry_run: bool = False,
) -> TrafficReport:
    """Update only the routing resources (DESIGN.md section 4), and the Deployments and
    autoscalers of the versions whose replicas follow the traffic (capacity.py), recording the
    new state, the spec and `extra_config`; refused (exit 6, nothing changed) if the stack moved
    past `live`.

    With `dry_run`, a Pulumi preview of that same update (same program, config and targets)
    instead: the report says what would change, and nothing is changed. A routing-only command
    gets its --dry-run by passing it here.
    """
    eng.ensure_plugins(plugins_for(live.spec))
    _check_providers(eng, live)
    routing = _routing_targets(eng, live, new)
    before = capacity.plan(live.spec, live.state)
    after = capacity.settle(capacity.plan(live.spec, new), before)
    targets = routing + capacity_targets(
        eng, live, routing, capacity.changed(before, after), capacity.falling(before, after)
    )
    scaled = tuple(capacity.changes(before, after))
    config = {**(extra_config or {}), **recorded_config(new, live.spec)}
    stale = unrecorded(live, eng.target.project, eng.stack_name)
    if stale is not None:
        warnings = [*warnings, f"{stale}; this update applies the routing anew"]
    if dry_run:
        preview = eng.preview(build_program(live.spec, new, before), config, target=targets)
        return TrafficReport(
            command=command,
            project=eng.target.project,
            stack=eng.target.stack,
            backend=eng.backend,
            before=live.state,
            after=new,
            revision=None,
            changes=preview.changes,
            targets=tuple(targets),
            warnings=warnings + preview.warnings,
            tally=preview.tally,
            dry_run=True,
            steps=preview.steps,
            capacity=scaled,
        )
    try:
        up = eng.up(
            build_program(live.spec, new, before),
            message=command,
            config=config,
            expect=live.mark,
            since=f"this command read it at revision {live.record.revision}",
            target=targets,
        )
    except OperationFailedError as e:
        raise failures.explained(eng, live.spec, new, e) from None
    return TrafficReport(
        command=command,
        project=eng.target.project,
        stack=eng.target.stack,
        backend=eng.backend,
        before=live.state,
        after=new,
        revision=up.revision,
        changes=up.changes,
        targets=tuple(targets),
        warnings=warnings + up.warnings,
        tally=up.tally,
        capacity=scaled,
    )
