"""plan, deploy, status, history, destroy, doctor and setup over the engine.

Logic only: these functions never print and never exit. Progress goes to a `Sink`, questions to a
`confirm` callback, and each returns a report that output.py renders.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlserve import capacity, engine, failures, readiness, traffic
from mlserve.backends import inference_pool
from mlserve.backends.base import (
    CAPABILITIES,
    Served,
    mirror_problem,
    require_supported,
    served,
)
from mlserve.backends.base import notes as gateway_notes
from mlserve.capacity import Change, Scale
from mlserve.engine import (
    PLUGIN_PACKAGES,
    Engine,
    Event,
    HistoryEntry,
    Mark,
    Sink,
    StackState,
    Tally,
    Target,
)
from mlserve.errors import OperationFailedError, PreconditionError, UsageError
from mlserve.live import (
    SPEC_KEY,
    TRAFFIC_KEY,
    DamagedRecord,
    Drift,
    Live,
    Record,
    TrafficReport,
    live_record,
    plugins_for,
    read_live,
    read_record,
    recorded_config,
    routing_drift,
    routing_update,
    unrecorded,
)
from mlserve.program import build_program
from mlserve.rollout import RolloutStatus, rollout_status
from mlserve.spec import Spec
from mlserve.traffic import TrafficState, reconcile

parse_duration = engine.parse_duration


def target_for(spec: Spec | None, project: str | None, stack: str, backend: str | None) -> Target:
    """Project from the spec's name when a spec is given, else from --project."""
    if spec is not None:
        if project and project != spec.name:
            raise UsageError(
                f"--project {project!r} does not match the spec's name {spec.name!r} "
                "(the project is taken from the spec)"
            )
        project = spec.name
    if not project:
        raise UsageError("--project is needed without a spec file (or set MLSERVE_PROJECT)")
    check_project_name(project)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+){0,2}", stack):
        raise UsageError(f"--stack {stack!r}: use letters, digits, '-', '_' and '.'")
    return Target(project, stack, backend)


def check_project_name(project: str) -> None:
    """Pulumi's rule for project names, and not `.` or `..`, which name directories.

    Pulumi: sdk/go/common/tokens/project.go (ValidateProjectName) with IsName from
    sdk/go/common/tokens/names.go: a letter, '_' or '.', then letters, digits, '-', '_' or '.',
    at most 100 characters. The workspace is MLSERVE_HOME/workspaces/<project>.
    """
    rule = (
        "a project name starts with a letter, '_' or '.', goes on with letters, digits, '-', "
        "'_' and '.', and has at most 100 characters"
    )
    if project in (".", ".."):
        raise UsageError(f"--project {project!r} names a directory, not a project: {rule}")
    if len(project) > 100 or not re.fullmatch(r"[A-Za-z_.][A-Za-z0-9_.-]*", project):
        raise UsageError(f"--project {project!r}: {rule}")


# --- what the stack recorded -----------------------------------------------------------------


def _undoes_rollback(live: Record | None, new: TrafficState) -> list[str]:
    """A deploy right after a rollback that routes traffic back to a version: say so plainly.

    The spec still names what was rolled back until someone edits it, so a routine deploy from
    CI would quietly undo the rollback.
    """
    if live is None or not live.message.startswith("mlserve rollback"):
        return []
    before = live.traffic.weights()
    raised = [
        f"{v} {before.get(v, 0)}% -> {w}%" for v, w in new.weights().items() if w > before.get(v, 0)
    ]
    if new.mirror is not None and new.mirror != live.traffic.mirror:
        raised.append(f"a mirror of {new.mirror.describe()}")
    if not raised:
        return []
    return [
        f"the last update (revision {live.revision}, `{live.message}`) was a rollback; "
        f"this deploy sends traffic back: {', '.join(raised)}. If that is not intended, update "
        "the spec's traffic first"
    ]


def effective_spec(spec: Spec, new: TrafficState, live: Record | None) -> tuple[Spec, list[str]]:
    """The spec plus the versions it dropped that must stay deployed (DESIGN.md section 4).

    `previous` and the live stable and canary stay; their definitions come from the spec the
    stack recorded at its last update.
    """
    roles: dict[str, str] = {}
    for name, role in (
        (new.stable, "stable"),
        (new.canary, "canary"),
        (new.previous, "the previous stable, kept at 0% for an instant rollback"),
        (live.traffic.stable if live else None, "the live stable"),
        (live.traffic.canary if live else None, "the live canary"),
        (new.mirror.version if new.mirror else None, "mirrored"),
    ):
        if name is not None and name not in spec.version_names:
            roles.setdefault(name, role)
    if not roles:
        return spec, []
    extra, notes = [], []
    for name, role in roles.items():
        if live is not None and name in live.versions:
            extra.append(live.spec.version(name))
            notes.append(f"{name} is not in the spec but stays deployed: it is {role}")
        elif name in new.versions():
            raise PreconditionError(
                f"version {name} carries traffic ({role}) but neither the spec nor the stack's "
                "record defines it: add it to the spec's versions"
            )
    return replace(spec, versions=spec.versions + tuple(extra)), notes


# --- plan and deploy ------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanReport:
    project: str
    stack: str
    backend: str
    live: TrafficState | None
    traffic: TrafficState
    versions: tuple[str, ...]  # every version the update deploys
    changes: Mapping[str, int]
    steps: list[Event]
    warnings: list[str]
    tally: Tally | None = None
    served: Served | None = None  # what the gateway really sends, where not the spec's split
    capacity: tuple[Change, ...] = ()  # the versions whose replicas the update changes

    @property
    def pending(self) -> bool:
        return any(op != "same" and n for op, n in self.changes.items())

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "stack": self.stack,
            "backend": self.backend,
            "pendingChanges": self.pending,
            "changes": {k: v for k, v in self.changes.items() if k != "same"},
            "unchanged": self.changes.get("same", 0),
            "pulumiChanges": dict(self.tally.engine) if self.tally else None,
            "traffic": {
                "live": self.live.to_dict() if self.live else None,
                "new": self.traffic.to_dict(),
                "liveWeights": self.live.weights() if self.live else {},
                "newWeights": self.traffic.weights(),
                "served": self.served.to_json() if self.served else None,
            },
            "versions": list(self.versions),
            "capacity": [c.to_json() for c in self.capacity],
            "steps": [s.step_json() for s in self.steps],
            "warnings": self.warnings,
        }


@dataclass(frozen=True)
class DeployReport:
    plan: PlanReport
    applied: bool
    changes: Mapping[str, int] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)
    revision: int | None = None
    warnings: list[str] = field(default_factory=list)
    tally: Tally | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "revision": self.revision,
            "changes": {k: v for k, v in self.changes.items() if k != "same"},
            "pulumiChanges": dict(self.tally.engine) if self.tally else None,
            "outputs": dict(self.outputs),
            "plan": self.plan.to_json(),
            "warnings": self.warnings,
        }


@dataclass(frozen=True)
class _Prepared:
    spec: Spec  # with the versions it keeps deployed (effective_spec)
    program: Callable[[], None]
    config: dict[str, str]
    mark: Mark  # the history the plan was computed from
    report: PlanReport


def _prepare(spec: Spec, eng: Engine, reset_traffic: bool) -> _Prepared:
    """Select the stack, install plugins, read the live record and reconcile the traffic."""
    eng.stack(create=True)
    eng.ensure_plugins(plugins_for(spec))
    entries = eng.history()
    ignored: list[str] = []
    try:
        live = live_record(entries)
    except DamagedRecord as e:
        if not reset_traffic:
            raise
        # The way out of a damaged record: start from the spec alone.
        live = None
        ignored = [f"{e.damage}; --reset-traffic replaces it with the spec's traffic"]
    new, warnings = reconcile(spec, live.traffic if live else None, reset=reset_traffic)
    kept = new.mirror if live is not None and new.mirror == live.traffic.mirror else None
    problem = mirror_problem(spec, kept.percent) if kept is not None else None
    if kept is not None and problem is not None:  # the spec changed the gateway under it
        raise PreconditionError(
            f"{problem}. The live mirror ({kept.describe()}) would stay: end it first with "
            "`mlserve mirror --off`, or deploy with --reset-traffic; nothing was changed"
        )
    gateway = spec.gateway.type
    if new.canary is not None and new.weight > 0 and not CAPABILITIES[gateway].weighted:
        # The spec moved to a gateway that sends every request to one version (`service`): a
        # kept live weight would be recorded but not carried (issue 20 item 5). Refused, as a
        # kept mirror is above: the way back to one version is the user's to choose.
        raise PreconditionError(
            f"gateway {gateway} cannot split traffic, and the live canary {new.canary} is at "
            f"{new.weight}%: run `mlserve rollback` first to send it to 0%, or deploy with "
            "--reset-traffic to apply the spec's traffic; nothing was changed"
        )
    warnings += _undoes_rollback(live, new)
    warnings += [message for _, message in gateway_notes(spec, new)]
    warnings += [message for _, message in readiness.notes(spec)]
    effective, notes = effective_spec(spec, new, live)
    before = capacity.plan(live.spec, live.traffic) if live else None
    after = capacity.settle(capacity.plan(effective, new), before)
    warnings += _capacity_notes(effective, new, after)
    report = PlanReport(
        project=eng.target.project,
        stack=eng.target.stack,
        backend=eng.backend,
        live=live.traffic if live else None,
        traffic=new,
        versions=effective.version_names,
        changes={},
        steps=[],
        warnings=ignored + warnings + notes,
        served=served(effective, new),
        capacity=tuple(capacity.changes(before, after)),
    )
    return _Prepared(
        effective,
        build_program(effective, new, before),
        recorded_config(new, effective),
        Mark.of(entries),
        report,
    )


def namespace_problem(spec: Spec) -> str | None:
    """Why the spec's namespace cannot take its objects, if the cluster says so (probes.namespace).

    mlserve does not create the namespace: a Namespace in the stack would make `destroy` delete
    everything else in it, and one that already exists could not be created (the provider
    refuses an object that exists). Without this check the provider retries the first object's
    create for about a minute and fails with `namespaces "NAME" not found`."""
    if not any(v.image for v in spec.versions):
        return None  # nothing of the spec goes into a namespace
    from mlserve import probes

    found = probes.namespace(spec.namespace)
    create = f"kubectl create namespace {spec.namespace}"
    if found.state == "missing":
        return (
            f"namespace {spec.namespace} does not exist in the cluster ({found.where}): create "
            f"it (`{create}`), or set the spec's namespace to one that exists. mlserve does not "
            "create namespaces, so that `mlserve destroy` never deletes one other workloads share"
        )
    if found.state == "terminating":
        return (
            f"namespace {spec.namespace} is being deleted in the cluster ({found.where}), and "
            f"Kubernetes refuses new objects in it: wait until it is gone (`kubectl get namespace "
            f"{spec.namespace}` answers NotFound), then `{create}`"
        )
    return None


def _previewed(eng: Engine, prepared: _Prepared) -> PlanReport:
    preview = eng.preview(prepared.program, prepared.config)
    return replace(
        prepared.report,
        changes=preview.changes,
        steps=preview.steps,
        tally=preview.tally,
        warnings=prepared.report.warnings + preview.warnings,
    )


def plan(
    spec: Spec,
    target: Target,
    *,
    sink: Sink | None = None,
    lock_timeout: float = 0.0,
    reset_traffic: bool = False,
    debug: bool = False,
) -> PlanReport:
    eng = Engine(target, sink=sink, lock_timeout=lock_timeout, debug=debug)
    problem = namespace_problem(spec)
    report = _previewed(eng, _prepare(spec, eng, reset_traffic))
    if problem is None:
        return report
    return replace(
        report, warnings=[f"{problem}; deploy refuses until it exists", *report.warnings]
    )


def deploy(
    spec: Spec,
    target: Target,
    *,
    sink: Sink | None = None,
    confirm: Callable[[PlanReport], bool] | None = None,
    lock_timeout: float = 0.0,
    reset_traffic: bool = False,
    debug: bool = False,
    on_plan: Callable[[PlanReport], None] | None = None,
) -> DeployReport:
    """Preview, show (on_plan), confirm (None: --yes), then update.

    The file backends do not lock a preview (pkg/backend/diy/backend.go `Preview`): the update
    runs only if the stack's history is still where the preview read it, so what is applied is
    what was shown.
    """
    problem = namespace_problem(spec)
    if problem is not None:  # before the stack is created or anything else is done
        raise PreconditionError(f"{problem}; nothing was changed")
    eng = Engine(target, sink=sink, lock_timeout=lock_timeout, debug=debug)
    prepared = _prepare(spec, eng, reset_traffic)
    report = _previewed(eng, prepared)
    if on_plan is not None:
        on_plan(report)
    if confirm is not None and report.pending and not confirm(report):
        return DeployReport(plan=report, applied=False)
    try:
        up = eng.up(
            prepared.program,
            message="mlserve deploy --reset-traffic" if reset_traffic else "mlserve deploy",
            config=prepared.config,
            expect=prepared.mark,
            since="the preview",
        )
    except OperationFailedError as e:
        raise failures.explained(eng, prepared.spec, report.traffic, e) from None
    return DeployReport(
        plan=report,
        applied=True,
        changes=up.changes,
        outputs=eng.state().outputs,
        revision=up.revision,
        warnings=[w for w in up.warnings if w not in report.warnings],
        tally=up.tally,
    )


# --- promote and rollback ------------------------------------------------------------------


def promote_weight(weight: int | None, complete: bool) -> int:
    """The weight `promote` moves the canary to, from --weight/--complete; 100 completes."""
    if weight is not None and complete:
        raise UsageError("give either --weight or --complete, not both")
    if weight is None and not complete:
        raise UsageError("give --weight N (1..99, or 100 to complete) or --complete")
    if weight is None:
        return 100
    if not 0 < weight <= 100:
        raise UsageError(f"--weight must be between 1 and 100, not {weight}")
    return weight


def check_expect_weight(expect_weight: int | None) -> None:
    if expect_weight is not None and not 0 <= expect_weight <= 100:
        raise UsageError(f"--expect-weight must be between 0 and 100, not {expect_weight}")


def promote(
    target: Target,
    *,
    weight: int | None = None,
    complete: bool = False,
    expect_weight: int | None = None,
    sink: Sink | None = None,
    lock_timeout: float = 0.0,
    debug: bool = False,
    dry_run: bool = False,
) -> TrafficReport:
    """Move the live canary to `weight` percent, or complete the promotion (weight 100).

    With `expect_weight`, refuse unless the live canary weight is that; a stack with no canary
    counts as weight 0. With `dry_run`, preview the update and change nothing.
    """
    percent = promote_weight(weight, complete)
    check_expect_weight(expect_weight)
    eng = Engine(target, sink=sink, lock_timeout=lock_timeout, debug=debug)
    live = read_live(eng)
    if expect_weight is not None and live.state.weight != expect_weight:
        where = (
            f"the live canary {live.state.canary} is at {live.state.weight}%"
            if live.state.canary
            else f"no canary is live ({live.state.stable} takes 100%), which counts as 0%"
        )
        raise PreconditionError(f"--expect-weight {expect_weight}: {where}; nothing was changed")
    if (
        expect_weight is not None
        and (stale := unrecorded(live, target.project, eng.stack_name)) is not None
    ):
        raise PreconditionError(
            f"--expect-weight {expect_weight}: {stale}, so the live weight may not be the "
            f"{expect_weight}% it records. Nothing was changed: `mlserve status --refresh` shows "
            f"what the stack holds; `mlserve rollback --to {live.record.revision}` or `mlserve "
            "deploy` applies a known state again"
        )
    if live.state.canary is None:
        raise PreconditionError(_nothing_to_promote(live.state, live.spec))
    new = traffic.promote(live.state, percent)
    require_supported(live.spec, new)
    words = ["mlserve promote", "--complete" if complete else f"--weight {percent}"]
    if expect_weight is not None:
        words.append(f"--expect-weight {expect_weight}")
    ended = _mirror_ended(live.state, new, f"{live.state.canary} now serves traffic itself")
    return routing_update(eng, " ".join(words), live, new, ended, dry_run=dry_run)


def _capacity_notes(spec: Spec, new: TrafficState, scales: Mapping[str, Scale]) -> list[str]:
    """What plan says about a previous stable kept at fewer pods: a rollback to it waits."""
    previous = new.previous
    if previous is None or previous not in scales or scales[previous].why != "previous":
        return []
    runs = scales[previous]
    pods = "no pods" if runs.floor == 0 else f"{runs.describe()} pods"
    return [
        f"{previous}, the previous stable, keeps {pods} (traffic.previousReplicas): "
        f"`mlserve rollback` to it scales it back and moves traffic only once its pods are "
        f"Ready, so it is not instant: {capacity.ROLLBACK_WAIT}"
    ]


def _mirror_ended(before: TrafficState, after: TrafficState, why: str) -> list[str]:
    """Say so when a promote or rollback ends the live mirror (traffic.py's rules)."""
    if before.mirror is None or after.mirror is not None:
        return []
    return [f"the mirror ({before.mirror.describe()}) ended: {why}"]


def _nothing_to_promote(state: TrafficState, spec: Spec) -> str:
    """No canary is live: say what is still deployed at 0% and how it goes out again."""
    text = f"nothing to promote: no canary is live ({state.stable} takes 100%)"
    idle = [v for v in spec.version_names if v not in (state.stable, state.previous)]
    if state.previous is not None:
        text += (
            f"; {state.previous}, the previous stable, is kept at 0%: `mlserve rollback` "
            "brings it back"
        )
    if idle:
        name = idle[-1]
        text += (
            f"; {', '.join(idle)} {'is' if len(idle) == 1 else 'are'} still deployed, at 0%. "
            f"To send {name} out again, deploy a spec whose traffic names it as the canary "
            f"(traffic: {{stable: {state.stable}, canary: {name}, weight: 10}}) with "
            "`mlserve deploy SPEC`, then promote it"
        )
    return text


def rollback(
    target: Target,
    *,
    to: int | None = None,
    sink: Sink | None = None,
    lock_timeout: float = 0.0,
    debug: bool = False,
    dry_run: bool = False,
) -> TrafficReport:
    """Send traffic back to the last known-good stable (routing only), or with `to`, re-apply
    the spec and traffic an earlier revision recorded (a full update). With `dry_run`, preview
    the update and change nothing."""
    eng = Engine(target, sink=sink, lock_timeout=lock_timeout, debug=debug)
    if to is not None:
        return _reapply(eng, to, dry_run)
    live = read_live(eng)
    new = traffic.rollback(live.state)
    ended = _mirror_ended(live.state, new, "a rollback leaves load on the stable version only")
    return routing_update(eng, "mlserve rollback", live, new, ended, dry_run=dry_run)


def check_mirror_args(
    version: str | None, percent: int | None, off: bool, expect_mirror: int | None
) -> None:
    """`mirror`'s usage errors (exit 2), before any engine work."""
    if off and (version is not None or percent is not None):
        raise UsageError("give either --off or --version (and --percent), not both")
    if not off and version is None:
        raise UsageError(
            "give --version V (and --percent P, default 100) to mirror, or --off to end it"
        )
    if percent is not None and not 1 <= percent <= 100:
        raise UsageError(f"--percent must be between 1 and 100, not {percent}")
    if expect_mirror is not None and not 0 <= expect_mirror <= 100:
        raise UsageError(f"--expect-mirror must be between 0 and 100, not {expect_mirror}")


def mirror(
    target: Target,
    *,
    version: str | None = None,
    percent: int | None = None,
    off: bool = False,
    expect_mirror: int | None = None,
    sink: Sink | None = None,
    lock_timeout: float = 0.0,
    debug: bool = False,
    dry_run: bool = False,
) -> TrafficReport:
    """Copy `percent`% of unpinned traffic to `version` (answers dropped), or with `off` end the
    mirror: a routing-only update, as promote makes it. With `expect_mirror`, refuse unless the
    live mirror copies that percent (no mirror counts as 0). With `dry_run`, preview the update
    and change nothing."""
    check_mirror_args(version, percent, off, expect_mirror)
    eng = Engine(target, sink=sink, lock_timeout=lock_timeout, debug=debug)
    live = read_live(eng)
    now = live.state.mirror
    if expect_mirror is not None and (now.percent if now else 0) != expect_mirror:
        where = (
            f"the live mirror copies {now.percent}% to {now.version}"
            if now
            else "no mirror is live, which counts as 0%"
        )
        raise PreconditionError(f"--expect-mirror {expect_mirror}: {where}; nothing was changed")
    words = ["mlserve mirror"]
    if off:
        new = traffic.end_mirror(live.state)
        words.append("--off")
    else:
        assert version is not None
        share = 100 if percent is None else percent
        _check_mirrorable(eng, live.spec, version, share)
        new = traffic.set_mirror(live.state, version, share)
        words += [f"--version {version}", f"--percent {share}"]
    require_supported(live.spec, new)
    if expect_mirror is not None:
        words.append(f"--expect-mirror {expect_mirror}")
    return routing_update(eng, " ".join(words), live, new, [], dry_run=dry_run)


def _check_mirrorable(eng: Engine, spec: Spec, version: str, percent: int) -> None:
    """The gateway can mirror that share, and the version runs in the stack to take it."""
    problem = mirror_problem(spec, percent)
    if problem is not None:
        raise PreconditionError(f"{problem}; nothing was changed")
    if version not in spec.version_names:
        raise PreconditionError(
            f"version {version} is not deployed in {eng.describe()} (its versions: "
            f"{', '.join(spec.version_names)}): add it to the spec and deploy first"
        )
    v = spec.version(version)
    if v.image is not None and v.replicas == 0:
        raise PreconditionError(
            f"version {version} runs 0 replicas, so nothing would take the copies: give it "
            "replicas in the spec and deploy first"
        )


def _reapply(eng: Engine, revision: int, dry_run: bool = False) -> TrafficReport:
    eng.stack()
    entries = eng.history()
    entry = next((e for e in entries if e.revision == revision), None)
    if entry is None:
        known = sorted(e.revision for e in entries)
        span = f"revisions {known[0]}..{known[-1]}" if known else "no revisions yet"
        raise PreconditionError(
            f"revision {revision} is not in the history of {eng.describe()} ({span}): "
            "see `mlserve history`"
        )
    if entry.kind != "update" or entry.result != "succeeded":
        raise PreconditionError(
            f"revision {revision} was a {entry.kind} that {entry.result}: only a successful "
            "update can be re-applied"
        )
    if TRAFFIC_KEY not in entry.config:
        raise PreconditionError(
            f"revision {revision} recorded no mlserve traffic and spec ({TRAFFIC_KEY}, "
            f"{SPEC_KEY}): it was not made by mlserve deploy, promote or rollback"
        )
    chosen = read_record(
        entry, "Nothing was changed: re-apply another revision (`mlserve history`)"
    )
    warnings = []
    try:
        before = live_record(entries)
    except DamagedRecord as e:  # re-applying a good revision is a way out of a damaged one
        before = None
        warnings.append(f"{e.damage}; this update replaces it")
    eng.ensure_plugins(plugins_for(chosen.spec))
    command = f"mlserve rollback --to {revision}"
    scales = capacity.plan(before.spec, before.traffic) if before else None
    program = build_program(chosen.spec, chosen.traffic, scales)
    config = recorded_config(chosen.traffic, chosen.spec)
    if dry_run:
        preview = eng.preview(program, config)
        return TrafficReport(
            command=command,
            project=eng.target.project,
            stack=eng.target.stack,
            backend=eng.backend,
            before=before.traffic if before else None,
            after=chosen.traffic,
            revision=None,
            changes=preview.changes,
            targets=None,
            reapplied=revision,
            warnings=warnings + preview.warnings,
            tally=preview.tally,
            dry_run=True,
            steps=preview.steps,
        )
    try:
        up = eng.up(
            program,
            message=command,
            config=config,
            expect=Mark.of(entries),
            since="this command read its history",
        )
    except OperationFailedError as e:
        raise failures.explained(eng, chosen.spec, chosen.traffic, e) from None
    return TrafficReport(
        command=command,
        project=eng.target.project,
        stack=eng.target.stack,
        backend=eng.backend,
        before=before.traffic if before else None,
        after=chosen.traffic,
        revision=up.revision,
        changes=up.changes,
        targets=None,
        reapplied=revision,
        warnings=warnings + up.warnings,
        tally=up.tally,
    )


# --- status, history, destroy ---------------------------------------------------------------


@dataclass(frozen=True)
class HistoryRow:
    revision: int | None
    time: datetime
    kind: str
    result: str
    command: str
    traffic: TrafficState | None
    changes: Mapping[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "time": self.time.isoformat() + "Z",
            "kind": self.kind,
            "result": self.result,
            "command": self.command,
            "stable": self.traffic.stable if self.traffic else None,
            "canary": self.traffic.canary if self.traffic else None,
            "weight": self.traffic.weight if self.traffic else None,
            "previous": self.traffic.previous if self.traffic else None,
            "mirror": self.traffic.mirror.to_dict()
            if self.traffic and self.traffic.mirror
            else None,
            "changes": dict(self.changes),
        }


def _row(entry: HistoryEntry) -> HistoryRow:
    """One history row. Only an update sets traffic: a refresh or destroy entry records
    whatever config was on disk then (a failed deploy's weight, say), not what was live."""
    state = None
    raw = entry.config.get(TRAFFIC_KEY) if entry.kind == "update" else None
    if raw:
        try:
            state = TrafficState.from_dict(json.loads(raw))
        except (ValueError, KeyError, TypeError):
            state = None
    return HistoryRow(
        revision=entry.revision,
        time=entry.start,
        kind=entry.kind,
        result=entry.result,
        command=entry.message,
        traffic=state,
        changes=entry.changes,
    )


@dataclass(frozen=True)
class Running:
    """What one image version runs, as the stack's state shows its Deployment and autoscaler:
    as the last update left them (the provider records the object it awaited), or as the
    cluster has them now after `status --refresh`."""

    version: str
    role: str  # stable, canary, previous, mirrored, or "" for an idle version
    weight: int | None  # its share of unpinned traffic; None: not routed
    desired: int | None  # the Deployment's spec.replicas; None: not in the state
    ready: int | None  # its status.readyReplicas; None: the state holds no status
    autoscaler: tuple[int, int] | None  # the HorizontalPodAutoscaler's min and max, if any
    planned: Scale  # what mlserve declared for it (capacity.py)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "role": self.role or None,
            "weight": self.weight,
            "replicas": self.desired,
            "ready": self.ready,
            "autoscaler": {"min": self.autoscaler[0], "max": self.autoscaler[1]}
            if self.autoscaler
            else None,
            "planned": self.planned.to_json(),
        }


def _int(value: Any) -> int | None:
    """A count from a checkpoint: JSON numbers may come back as floats."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def running(record: Record, held: StackState) -> list[Running]:
    """Each image version of the live record with its replicas, desired and Ready, from the
    stack's state (StackState.workloads)."""
    spec, state = record.spec, record.traffic
    planned = capacity.plan(spec, state)
    roles = {state.stable: "stable"}
    if state.canary:
        roles[state.canary] = "canary"
    if state.previous:
        roles[state.previous] = "previous"
    if state.mirror:
        roles.setdefault(state.mirror.version, "mirrored")
    weights = state.weights()
    deployment, autoscaler = engine.WORKLOAD_TYPES
    out = []
    for name, scale in planned.items():
        obj = spec.object_name(name)
        dep = held.workloads.get((deployment, obj))
        hpa = held.workloads.get((autoscaler, obj))
        desired = ready = None
        if dep is not None:
            desired = _int((dep.get("spec") or {}).get("replicas"))
            status = dep.get("status")
            if isinstance(status, Mapping):  # Kubernetes leaves out a count of 0
                ready = _int(status.get("readyReplicas")) or 0
                # Above the desired count: pods that were still stopping when the provider
                # recorded the object (its await of a scale-down does not wait for them:
                # provider/pkg/await/deployment.go, Ready >= desired), or a rolling update's
                # surge pod. What serves is at most the desired count.
                if desired is not None:
                    ready = min(ready, desired)
        bounds = None
        if hpa is not None:
            hpa_spec = hpa.get("spec") or {}
            low, high = _int(hpa_spec.get("minReplicas")), _int(hpa_spec.get("maxReplicas"))
            bounds = (low or 1, high) if high is not None else None
        out.append(
            Running(name, roles.get(name, ""), weights.get(name), desired, ready, bounds, scale)
        )
    return out


@dataclass(frozen=True)
class StatusReport:
    project: str
    stack: str
    backend: str
    endpoint: str | None
    traffic: TrafficState | None  # what the newest successful update applied
    weights: Mapping[str, int]
    versions: tuple[str, ...]
    last: HistoryRow | None
    drift: Mapping[str, int] | None  # with --refresh: what the refresh changed
    outputs: Mapping[str, Any]
    notes: list[str] = field(default_factory=list)
    rollout: RolloutStatus | None = None
    served: Served | None = None  # what the gateway really sends, where not the spec's split
    replicas: list[Running] = field(default_factory=list)
    # with --refresh: the routing that differs from what the live record declares
    drifted: list[Drift] = field(default_factory=list)
    applied: int | None = None  # the revision of the live record (what `traffic` is)

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "stack": self.stack,
            "backend": self.backend,
            "endpoint": self.endpoint,
            "traffic": self.traffic.to_dict() if self.traffic else None,
            "weights": dict(self.weights),
            "versions": list(self.versions),
            "replicas": [r.to_json() for r in self.replicas],
            "lastUpdate": self.last.to_json() if self.last else None,
            "drift": dict(self.drift) if self.drift is not None else None,
            "routingDrift": [d.to_json() for d in self.drifted] if self.drift is not None else None,
            "notes": self.notes,
            "rollout": self.rollout.to_json() if self.rollout else None,
            "served": self.served.to_json() if self.served else None,
        }


def _failed_since(entries: list[HistoryEntry], live: Record | None) -> list[str]:
    """A failed operation after the live record may have changed part of the routing, and keeps
    the outputs its program registered (pulumi/pulumi#14621): the traffic shown is the record's."""
    for e in entries:
        if live is not None and e.revision == live.revision:
            return []
        if e.counts and e.result == "failed":
            known = (
                f"the traffic shown is what revision {live.revision} applied"
                if live
                else "no update has succeeded since"
            )
            return [
                f"{e.describe()} failed after changing resources: {known}, and part of the "
                "stack may differ. `mlserve status --refresh` compares it with the real world; "
                + (
                    f"`mlserve rollback --to {live.revision}` or `mlserve deploy` applies a "
                    "known state again"
                    if live
                    else "`mlserve deploy` applies the spec again"
                )
            ]
    return []


def _cleared(held: StackState) -> list[str]:
    """What `refresh --clear-pending-creates` leaves behind (pulumi/pulumi#10394): it drops
    the pending creates from the state without reading them."""
    if not held.pending_creates:
        return []
    names = ", ".join(f"{t} {n}" for t, n in held.pending_creates)
    return [
        f"the refresh dropped {len(held.pending_creates)} create(s) an interrupted update left "
        f"pending: {names}. Their objects may exist without the stack managing them: look for "
        "each in the cluster or gateway and delete any that exist, then run `mlserve deploy` "
        "to create them under the stack's management"
    ]


def status(
    target: Target, *, refresh: bool = False, sink: Sink | None = None, debug: bool = False
) -> StatusReport:
    eng = Engine(target, sink=sink, debug=debug)
    eng.stack()
    entries = eng.history()
    live = live_record(entries)
    held = eng.state()
    drift, notes = None, []
    drifted: list[Drift] = []
    read = held
    if refresh:
        changes = eng.refresh()
        drift = {op: n for op, n in changes.items() if op != "same" and n}
        notes += _cleared(held)
        if live is not None:
            read = eng.state()  # what the refresh read: replicas, Ready counts, routing
            drifted = routing_drift(live, target.project, eng.stack_name, read)
    failed = _failed_since(entries, live)
    notes += failed
    # A failed update's note says the same, and why; so do the warnings of routing drifted
    # outside mlserve, which a refresh read back (routing_drift), object by object.
    if live is not None and not failed and not drifted:
        stale = unrecorded(Live(live, Mark.of(entries), held), target.project, eng.stack_name)
        if stale is not None:
            notes.append(
                f"{stale}. The traffic shown is what revision {live.revision} recorded: `mlserve "
                f"rollback --to {live.revision}` or `mlserve deploy` applies a known state again"
            )
    if eng.reordered:
        notes.append(
            "the backend lists this stack's history in another order than mlserve's commands "
            "ran (a DIY backend names each entry from its writer's clock, and two writers' "
            "clocks differ): revisions are numbered, and the live traffic read, in the "
            "commands' order"
        )
    if held.pending and not refresh:
        notes.append(
            f"the stack's state holds {len(held.pending)} pending operation(s) "
            f"({', '.join(held.pending[:3])}): an update is running now, or one was stopped "
            f"before it finished them. If none is running, `mlserve status --refresh --stack "
            f"{target.stack}` reconciles them"
        )
    endpoint = held.outputs.get("endpoint")

    return StatusReport(
        project=target.project,
        stack=target.stack,
        backend=eng.backend,
        endpoint=str(endpoint) if endpoint is not None else None,
        traffic=live.traffic if live else None,
        weights=live.traffic.weights() if live else {},
        versions=live.versions if live else (),
        last=_row(entries[0]) if entries else None,
        drift=drift,
        drifted=drifted,
        applied=live.revision if live else None,
        outputs=held.outputs,
        notes=notes,
        rollout=(
            rollout_status(live.config, live.spec, live.traffic, datetime.now(UTC))
            if live
            else None
        ),
        served=served(live.spec, live.traffic) if live else None,
        replicas=running(live, read) if live else [],
    )


def history(target: Target, *, limit: int | None = None, debug: bool = False) -> list[HistoryRow]:
    """Every revision, newest first; with `limit`, the newest `limit`."""
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1, not {limit}")
    eng = Engine(target, debug=debug)
    return [_row(e) for e in eng.history()[:limit]]


@dataclass(frozen=True)
class DestroyReport:
    project: str
    stack: str
    applied: bool
    changes: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "stack": self.stack,
            "applied": self.applied,
            "deleted": self.changes.get("delete", 0),
        }


def destroy(
    target: Target,
    *,
    sink: Sink | None = None,
    confirm: Callable[[str], bool] | None = None,
    lock_timeout: float = 0.0,
    debug: bool = False,
) -> DestroyReport:
    """Delete what the stack holds; reads no record, so a damaged one does not stop it."""
    eng = Engine(target, sink=sink, lock_timeout=lock_timeout, debug=debug)
    eng.stack()
    eng.ensure_plugins(n for n in eng.state().plugins if n in PLUGIN_PACKAGES)
    if confirm is not None and not confirm(eng.describe()):
        return DestroyReport(target.project, target.stack, applied=False)
    changes = eng.destroy(message="mlserve destroy", sequence=Mark.of(eng.history()).sequence + 1)
    return DestroyReport(target.project, target.stack, applied=True, changes=changes)


# --- doctor and setup -----------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix}


def doctor(spec: Spec | None, backend: str | None = None) -> list[Check]:
    """Check what the engine needs, changing nothing (no passphrase file, no directories)."""
    home = engine.mlserve_home()
    checks: list[Check] = []
    command = None
    try:
        command = engine.load_command(home)
        checks.append(
            Check(
                "pulumi CLI",
                True,
                f"v{command.version} ({command.command}); needs >= {engine.MIN_CLI_VERSION}",
            )
        )
    except engine.NoCliError as e:
        checks.append(Check("pulumi CLI", False, "; ".join(e.problems), engine.INSTALL_HINT))

    names = plugins_for(spec) if spec is not None else ["kubernetes"]
    if spec is not None:
        caps = CAPABILITIES[spec.gateway.type]
        found = importlib.util.find_spec(caps.sdk_module) is not None
        checks.append(
            Check(
                f"Python SDK for {spec.gateway.type}",
                found,
                caps.sdk_module + (" installed" if found else " missing"),
                "" if found else f"pip install 'mlserve[{caps.sdk_extra}]'",
            )
        )
    listed: set[tuple[str, str]] | None = None
    for name in names:
        version = engine.sdk_version(name)
        if version is None:
            continue
        present = engine.plugin_installed(name, version)
        if not present and command is not None:
            if listed is None:
                try:
                    listed = engine.installed_plugins(engine.plugin_workspace(home, command))
                except Exception:
                    listed = set()
            present = (name, version) in listed
        checks.append(
            Check(
                f"plugin {name}",
                present,
                f"v{version} {'installed' if present else 'missing'}",
                "" if present else engine.plugin_fix(name, version),
            )
        )

    try:
        url, is_default = engine.resolve_backend(backend, home)
    except UsageError as e:
        checks.append(Check("backend", False, str(e), "pass --backend with one of those"))
    else:
        checks.append(_backend_check(url))
        checks.append(_passphrase_check(home, url, is_default))
    if spec is not None:
        checks.extend(_credential_checks(spec))
    return checks


def _backend_check(url: str) -> Check:
    directory = engine.file_backend_dir(url)
    if directory is not None:
        probe = directory
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        if not probe.is_dir():
            problem = f"{probe} is not a directory"
        elif not os.access(probe, os.W_OK):
            problem = "not writable"
        else:
            return Check("backend", True, f"{url} (writable)")
        return Check(
            "backend",
            False,
            f"{url} ({problem})",
            f"make {directory} a directory you can write, or pass --backend",
        )
    if engine.is_cloud_backend(url):
        token = (
            bool(os.environ.get("PULUMI_ACCESS_TOKEN"))
            or (Path.home() / ".pulumi" / "credentials.json").is_file()
        )
        return Check(
            "backend",
            token,
            f"{url} ({'credentials found' if token else 'no PULUMI_ACCESS_TOKEN'})",
            "" if token else "export PULUMI_ACCESS_TOKEN, or run `pulumi login`",
        )
    return Check("backend", True, f"{url} (not contacted; its cloud credentials are used)")


def _passphrase_check(home: Path, url: str, is_default: bool) -> Check:
    """What the engine would use, read the way it reads it, creating nothing."""
    try:
        found = engine.resolve_passphrase(home, url, is_default, create=False)
    except engine.SettingError as e:
        return Check("passphrase", False, e.problem, e.fix)
    given = os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    if "PULUMI_CONFIG_PASSPHRASE" in os.environ:
        detail = "PULUMI_CONFIG_PASSPHRASE is set"
    elif given:
        detail = f"PULUMI_CONFIG_PASSPHRASE_FILE={given}"
    elif found.secrets_provider is None:
        detail = "not needed: the Pulumi Cloud backend keeps secrets"
    elif found.secret is None:
        detail = f"{engine.passphrase_path(home)} is created on first use"
    else:
        detail = str(engine.passphrase_path(home))
    return Check("passphrase", True, detail)


def _credential_checks(spec: Spec) -> list[Check]:
    """Contact what the spec's program will: the cluster, Kong's Admin API, Azure."""
    from mlserve import probes

    checks = []
    if "kubernetes" in plugins_for(spec):
        context = Check("kubernetes context", *probes.kubernetes())
        checks.append(context)
        if inference_pool.enabled(spec):
            checks.append(_inference_pool_crd(context))
    if spec.gateway.type == "kong":
        checks.append(Check("kong admin API", *probes.kong_admin(spec.gateway.kong.admin_url)))
    if spec.gateway.type == "azure-apim":
        checks.append(Check("azure credentials", *probes.azure()))
    return checks


# GIE publishes its CRDs as one file per release (Makefile `artifacts/manifests.yaml`, applied with
# `kubectl apply -f` in hack/release-quickstart.sh); v1.6.0 is the version mlserve renders for.
GIE_MANIFESTS = (
    "https://github.com/kubernetes-sigs/gateway-api-inference-extension/releases/download/"
    "v1.6.0/manifests.yaml"
)


def _inference_pool_crd(context: Check) -> Check:
    from mlserve import probes

    name = "InferencePool CRD"
    if not context.ok:
        return Check(name, False, "not checked: the kubernetes context check failed")
    install = (
        f"install the Gateway API Inference Extension CRDs: kubectl apply -f {GIE_MANIFESTS} "
        "(InferencePool v1 is in GIE v1.0 and later)"
    )
    return Check(
        name, *probes.kubernetes_serves(inference_pool.API_VERSION, "inferencepools", install)
    )


@dataclass(frozen=True)
class SetupReport:
    cli: str
    version: str
    cli_installed: bool  # False: a suitable CLI was there already (PATH, an earlier setup)
    plugins_installed: list[str]
    plugins: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "cli": self.cli,
            "version": self.version,
            "cliInstalled": self.cli_installed,
            "pluginsInstalled": self.plugins_installed,
            "plugins": self.plugins,
        }


def setup(spec: Spec | None, *, sink: Sink | None = None) -> SetupReport:
    """Use the newest suitable Pulumi CLI (on PATH or from an earlier setup), else install the
    pinned one under MLSERVE_HOME/pulumi; then the plugins the spec needs."""
    home = engine.mlserve_home()
    try:
        command, installed = engine.load_command(home), False
    except engine.NoCliError as e:
        command, installed = engine.install_cli(home, why="; ".join(e.problems)), True
    if spec is not None:
        names = plugins_for(spec)
    else:
        names = [n for n in engine.PLUGIN_PACKAGES if engine.sdk_version(n) is not None]
    ws = engine.plugin_workspace(home, command)
    installed_plugins = engine.ensure_plugins(ws, names, sink or engine.NullSink())
    return SetupReport(
        cli=shutil.which(command.command) or command.command,
        version=str(command.version),
        cli_installed=installed,
        plugins_installed=installed_plugins,
        plugins=[f"{n} v{engine.sdk_version(n)}" for n in names],
    )
