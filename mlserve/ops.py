"""plan, deploy, status, history, destroy, doctor and setup over the engine.

Logic only: these functions never print and never exit. Progress goes to a `Sink`, questions to a
`confirm` callback, and each returns a report that output.py renders.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlserve import engine, traffic
from mlserve.backends.base import CAPABILITIES, require_supported
from mlserve.backends.base import notes as gateway_notes
from mlserve.engine import Deployed, Engine, Event, HistoryEntry, Sink, Target
from mlserve.errors import MlserveError, PreconditionError, UsageError
from mlserve.program import build_program
from mlserve.spec import Spec
from mlserve.traffic import TrafficState, reconcile

if TYPE_CHECKING:
    from mlserve.ops_rollout import RolloutStatus

parse_duration = engine.parse_duration
TRAFFIC_KEY = "mlserve:traffic"
SPEC_KEY = "mlserve:spec"


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


def plugins_for(spec: Spec) -> list[str]:
    """The provider plugins a spec's program uses: its gateway's, and Kubernetes' for images."""
    names = ["kubernetes"] if any(v.image for v in spec.versions) else []
    gateway = CAPABILITIES[spec.gateway.type].plugin
    return names if gateway in names else [*names, gateway]


def _live_traffic(deployed: Deployed | None) -> TrafficState | None:
    if deployed is None:
        return None
    try:
        return TrafficState.from_dict(deployed.traffic)
    except (KeyError, TypeError, ValueError) as e:
        raise PreconditionError(
            f"the stack's recorded traffic ({TRAFFIC_KEY}) is not valid: {e}; "
            "deploy with --reset-traffic to replace it"
        ) from None


def _undoes_rollback(
    deployed: Deployed | None, live: TrafficState | None, new: TrafficState
) -> list[str]:
    """A deploy right after a rollback that routes traffic back to a version: say so plainly.

    The spec still names what was rolled back until someone edits it, so a routine deploy from
    CI would quietly undo the rollback.
    """
    if deployed is None or live is None or not deployed.message.startswith("mlserve rollback"):
        return []
    before = live.weights()
    raised = [
        f"{v} {before.get(v, 0)}% -> {w}%" for v, w in new.weights().items() if w > before.get(v, 0)
    ]
    if not raised:
        return []
    return [
        f"the last update (revision {deployed.version}, `{deployed.message}`) was a rollback; "
        f"this deploy sends traffic back: {', '.join(raised)}. If that is not intended, update "
        "the spec's traffic first"
    ]


def effective_spec(
    spec: Spec, new: TrafficState, live: TrafficState | None, deployed: Deployed | None
) -> tuple[Spec, list[str]]:
    """The spec plus the versions it dropped that must stay deployed (DESIGN.md section 4).

    `previous` and the live stable and canary stay; their definitions come from the spec the
    stack recorded at its last update.
    """
    roles: dict[str, str] = {}
    for name, role in (
        (new.stable, "stable"),
        (new.canary, "canary"),
        (new.previous, "the previous stable, kept at 0% for an instant rollback"),
        (live.stable if live else None, "the live stable"),
        (live.canary if live else None, "the live canary"),
    ):
        if name is not None and name not in spec.version_names:
            roles.setdefault(name, role)
    if not roles:
        return spec, []
    stored = Spec.from_dict(deployed.spec) if deployed and deployed.spec else None
    extra, notes = [], []
    for name, role in roles.items():
        if stored is not None and name in stored.version_names:
            extra.append(stored.version(name))
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
            "traffic": {
                "live": self.live.to_dict() if self.live else None,
                "new": self.traffic.to_dict(),
                "liveWeights": self.live.weights() if self.live else {},
                "newWeights": self.traffic.weights(),
            },
            "versions": list(self.versions),
            "steps": [
                {
                    "op": s.op,
                    "type": s.type,
                    "name": s.name,
                    "urn": s.urn,
                    "weights": [{"path": p, "old": o, "new": n} for p, o, n in s.weights],
                }
                for s in self.steps
            ],
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

    def to_json(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "revision": self.revision,
            "changes": {k: v for k, v in self.changes.items() if k != "same"},
            "outputs": dict(self.outputs),
            "plan": self.plan.to_json(),
            "warnings": self.warnings,
        }


def _prepare(spec: Spec, eng: Engine, reset_traffic: bool) -> tuple[Callable[[], None], PlanReport]:
    """Select the stack, install plugins, reconcile traffic and record it in the stack config."""
    eng.stack(create=True)
    eng.ensure_plugins(plugins_for(spec))
    deployed = eng.deployed()
    live = _live_traffic(deployed)
    new, warnings = reconcile(spec, live, reset=reset_traffic)
    warnings += _undoes_rollback(deployed, live, new)
    warnings += [message for _, message in gateway_notes(spec, new)]
    effective, notes = effective_spec(spec, new, live, deployed)
    # Recorded before the update, so every history entry holds what was live after it.
    eng.set_config(
        {
            TRAFFIC_KEY: json.dumps(new.to_dict(), sort_keys=True),
            SPEC_KEY: json.dumps(effective.to_dict(), sort_keys=True),
        }
    )
    report = PlanReport(
        project=eng.target.project,
        stack=eng.target.stack,
        backend=eng.backend,
        live=live,
        traffic=new,
        versions=effective.version_names,
        changes={},
        steps=[],
        warnings=warnings + notes,
    )
    return build_program(effective, new), report


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
    program, report = _prepare(spec, eng, reset_traffic)
    preview = eng.preview(program)
    return replace(
        report,
        changes=preview.changes,
        steps=preview.steps,
        warnings=report.warnings + preview.warnings,
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
    """Preview, show (on_plan), confirm (None: --yes), then update."""
    eng = Engine(target, sink=sink, lock_timeout=lock_timeout, debug=debug)
    program, report = _prepare(spec, eng, reset_traffic)
    preview = eng.preview(program)
    report = replace(
        report,
        changes=preview.changes,
        steps=preview.steps,
        warnings=report.warnings + preview.warnings,
    )
    if on_plan is not None:
        on_plan(report)
    if confirm is not None and report.pending and not confirm(report):
        return DeployReport(plan=report, applied=False)
    message = "mlserve deploy --reset-traffic" if reset_traffic else "mlserve deploy"
    up = eng.up(program, message=message)
    return DeployReport(
        plan=report,
        applied=True,
        changes=up.changes,
        outputs=up.outputs,
        revision=up.version,
        warnings=[w for w in up.warnings if w not in report.warnings],
    )


# --- promote and rollback ------------------------------------------------------------------


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
            "targets": list(self.targets) if self.targets is not None else None,
            "warnings": self.warnings,
        }


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


@dataclass(frozen=True)
class _Live:
    """What a routing-only change starts from: the live state and spec, read from the stack."""

    state: TrafficState
    spec: Spec
    newest: int | None  # the newest finished update: the stack must not move past it
    routing: tuple[str, ...]
    config: Mapping[str, str] = field(default_factory=dict)  # what the live update recorded


def _finished(entries: list[HistoryEntry]) -> int | None:
    """The newest update that has finished (a service backend also lists the running one)."""
    return next((e.version for e in entries if e.result in ("succeeded", "failed")), None)


def _read_live(eng: Engine) -> _Live:
    eng.stack()
    entries = eng.history(page_size=10)
    deployed = eng.deployed(entries)
    live = _live_traffic(deployed)
    if deployed is None or live is None:
        raise PreconditionError(f"nothing is deployed in {eng.describe()}: run `mlserve deploy`")
    try:
        spec = Spec.from_dict(deployed.spec or {})
    except (KeyError, TypeError, ValueError) as e:
        raise PreconditionError(
            f"the stack's recorded spec ({SPEC_KEY}) is not usable: {e}; redeploy with "
            "`mlserve deploy`"
        ) from None
    routing = eng.outputs().get("routing")
    if not isinstance(routing, list) or not routing:
        raise PreconditionError(
            f"{eng.describe()} records no routing resources (output `routing`): redeploy "
            "with `mlserve deploy` first"
        )
    return _Live(live, spec, _finished(entries), tuple(str(u) for u in routing), deployed.config)


def _unchanged_since(eng: Engine, newest: int | None) -> Callable[[Callable[[], None]], None]:
    """Run the program only if no update finished since the live state was read.

    The program runs while the update holds the stack's lock: after waiting on another job's
    lock (--lock-timeout), the state this command computed from may be stale. Refusing then is
    what makes --expect-weight a guard between racing CI jobs, not only a check before the wait.
    """

    def run(program: Callable[[], None]) -> None:
        entries = eng.history(page_size=5)
        now = _finished(entries)
        if now != newest:
            entry = next((e for e in entries if e.version == now), None)
            what = f" ({entry.message or entry.kind}, {entry.result})" if entry else ""
            raise PreconditionError(
                f"{eng.describe()} changed while this command waited for its lock: revision "
                f"{now}{what}. Nothing was changed: check `mlserve status` and run the "
                "command again"
            )
        program()

    return run


def _routing_update(
    eng: Engine,
    command: str,
    live: _Live,
    new: TrafficState,
    warnings: list[str],
    extra_config: Mapping[str, str] | None = None,
) -> TrafficReport:
    """Record the new state and update only the routing resources (DESIGN.md section 4).

    `extra_config` is recorded by the same update (the rollout's progress)."""
    eng.ensure_plugins(plugins_for(live.spec))
    # A fresh CI workspace has no local config: set both, so this update's history entry
    # records the whole live state like a deploy's does.
    eng.set_config(
        {
            TRAFFIC_KEY: json.dumps(new.to_dict(), sort_keys=True),
            SPEC_KEY: json.dumps(live.spec.to_dict(), sort_keys=True),
            **(extra_config or {}),
        }
    )
    program = build_program(live.spec, new)
    guard = _unchanged_since(eng, live.newest)
    up = eng.up(lambda: guard(program), message=command, target=list(live.routing))
    return TrafficReport(
        command=command,
        project=eng.target.project,
        stack=eng.target.stack,
        backend=eng.backend,
        before=live.state,
        after=new,
        revision=up.version,
        changes=up.changes,
        targets=live.routing,
        warnings=warnings + up.warnings,
    )


def promote(
    target: Target,
    *,
    weight: int | None = None,
    complete: bool = False,
    expect_weight: int | None = None,
    sink: Sink | None = None,
    lock_timeout: float = 0.0,
    debug: bool = False,
) -> TrafficReport:
    """Move the live canary to `weight` percent, or complete the promotion (weight 100).

    With `expect_weight`, refuse unless the live canary weight is that; a stack with no canary
    counts as weight 0.
    """
    percent = promote_weight(weight, complete)
    check_expect_weight(expect_weight)
    eng = Engine(target, sink=sink, lock_timeout=lock_timeout, debug=debug)
    live = _read_live(eng)
    if expect_weight is not None and live.state.weight != expect_weight:
        where = (
            f"the live canary {live.state.canary} is at {live.state.weight}%"
            if live.state.canary
            else f"no canary is live ({live.state.stable} takes 100%), which counts as 0%"
        )
        raise PreconditionError(f"--expect-weight {expect_weight}: {where}; nothing was changed")
    new = traffic.promote(live.state, percent)
    require_supported(live.spec, new)
    words = ["mlserve promote", "--complete" if complete else f"--weight {percent}"]
    if expect_weight is not None:
        words.append(f"--expect-weight {expect_weight}")
    return _routing_update(eng, " ".join(words), live, new, [])


def rollback(
    target: Target,
    *,
    to: int | None = None,
    sink: Sink | None = None,
    lock_timeout: float = 0.0,
    debug: bool = False,
) -> TrafficReport:
    """Send traffic back to the last known-good stable (routing only), or with `to`, re-apply
    the spec and traffic an earlier revision recorded (a full update)."""
    eng = Engine(target, sink=sink, lock_timeout=lock_timeout, debug=debug)
    if to is not None:
        return _reapply(eng, to)
    live = _read_live(eng)
    new = traffic.rollback(live.state)
    return _routing_update(eng, "mlserve rollback", live, new, [])


def _reapply(eng: Engine, revision: int) -> TrafficReport:
    eng.stack()
    entries = eng.history()
    entry = next((e for e in entries if e.version == revision), None)
    if entry is None:
        known = sorted(e.version for e in entries if e.version is not None)
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
    raw_traffic, raw_spec = entry.config.get(TRAFFIC_KEY), entry.config.get(SPEC_KEY)
    if not raw_traffic or not raw_spec:
        raise PreconditionError(
            f"revision {revision} recorded no mlserve traffic and spec ({TRAFFIC_KEY}, "
            f"{SPEC_KEY}): it was not made by mlserve deploy, promote or rollback"
        )
    try:
        state = TrafficState.from_dict(json.loads(raw_traffic))
        spec = Spec.from_dict(json.loads(raw_spec))
    except (KeyError, TypeError, ValueError) as e:
        raise PreconditionError(
            f"revision {revision}'s recorded state is not usable: {e}"
        ) from None
    before = _live_traffic(eng.deployed(entries))
    eng.ensure_plugins(plugins_for(spec))
    eng.set_config({TRAFFIC_KEY: raw_traffic, SPEC_KEY: raw_spec})
    command = f"mlserve rollback --to {revision}"
    guard = _unchanged_since(eng, _finished(entries))
    program = build_program(spec, state)
    up = eng.up(lambda: guard(program), message=command)
    return TrafficReport(
        command=command,
        project=eng.target.project,
        stack=eng.target.stack,
        backend=eng.backend,
        before=before,
        after=state,
        revision=up.version,
        changes=up.changes,
        targets=None,
        reapplied=revision,
        warnings=up.warnings,
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
        revision=entry.version,
        time=entry.start,
        kind=entry.kind,
        result=entry.result,
        command=entry.message,
        traffic=state,
        changes=entry.changes,
    )


@dataclass(frozen=True)
class StatusReport:
    project: str
    stack: str
    backend: str
    endpoint: str | None
    traffic: TrafficState | None
    weights: Mapping[str, int]
    versions: tuple[str, ...]
    last: HistoryRow | None
    drift: Mapping[str, int] | None  # with --refresh: what the refresh changed
    outputs: Mapping[str, Any]
    rollout: RolloutStatus | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "stack": self.stack,
            "backend": self.backend,
            "endpoint": self.endpoint,
            "traffic": self.traffic.to_dict() if self.traffic else None,
            "weights": dict(self.weights),
            "versions": list(self.versions),
            "lastUpdate": self.last.to_json() if self.last else None,
            "drift": dict(self.drift) if self.drift is not None else None,
            "rollout": self.rollout.to_json() if self.rollout else None,
        }


def status(
    target: Target, *, refresh: bool = False, sink: Sink | None = None, debug: bool = False
) -> StatusReport:
    eng = Engine(target, sink=sink, debug=debug)
    eng.stack()
    drift = None
    if refresh:
        changes = eng.refresh()
        drift = {op: n for op, n in changes.items() if op != "same" and n}
    outputs = eng.outputs()
    entries = eng.history(page_size=10)
    deployed = eng.deployed(entries)
    live = _live_traffic(deployed)
    traffic_out = outputs.get("traffic")
    if isinstance(traffic_out, Mapping):
        live = TrafficState.from_dict(dict(traffic_out))
    weights = outputs.get("weights")
    versions: tuple[str, ...] = ()
    if deployed is not None and deployed.spec:
        versions = tuple(v["name"] for v in deployed.spec.get("versions", []))
    endpoint = outputs.get("endpoint")
    from mlserve.ops_rollout import rollout_status

    return StatusReport(
        project=target.project,
        stack=target.stack,
        backend=eng.backend,
        endpoint=str(endpoint) if endpoint is not None else None,
        traffic=live,
        weights=dict(weights) if isinstance(weights, Mapping) else (live.weights() if live else {}),
        versions=versions,
        last=_row(entries[0]) if entries else None,
        drift=drift,
        outputs=outputs,
        rollout=rollout_status(deployed.config, deployed.spec, live) if deployed else None,
    )


def history(target: Target, *, debug: bool = False) -> list[HistoryRow]:
    eng = Engine(target, debug=debug)
    return [_row(e) for e in eng.history()]


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
    eng = Engine(target, sink=sink, lock_timeout=lock_timeout, debug=debug)
    eng.stack()
    deployed = eng.deployed()
    if deployed is not None and deployed.spec:
        eng.ensure_plugins(plugins_for(Spec.from_dict(deployed.spec)))
    if confirm is not None and not confirm(eng.describe()):
        return DestroyReport(target.project, target.stack, applied=False)
    changes = eng.destroy(message="mlserve destroy")
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
    except MlserveError as e:
        checks.append(Check("pulumi CLI", False, str(e).split(":")[0], engine.INSTALL_HINT))

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
        present = engine.plugin_dir(name, version).is_dir()
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
                "" if present else "run `mlserve setup` (needs network once)",
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
        checks.append(Check("kubernetes context", *probes.kubernetes()))
    if spec.gateway.type == "kong":
        checks.append(Check("kong admin API", *probes.kong_admin(spec.gateway.kong.admin_url)))
    if spec.gateway.type == "azure-apim":
        checks.append(Check("azure credentials", *probes.azure()))
    return checks


@dataclass(frozen=True)
class SetupReport:
    cli: str
    version: str
    plugins_installed: list[str]
    plugins: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "cli": self.cli,
            "version": self.version,
            "pluginsInstalled": self.plugins_installed,
            "plugins": self.plugins,
        }


def setup(spec: Spec | None, *, sink: Sink | None = None) -> SetupReport:
    """Install the pinned CLI under MLSERVE_HOME/pulumi, then the plugins the spec needs."""
    home = engine.mlserve_home()
    command = engine.install_cli(home)
    if spec is not None:
        names = plugins_for(spec)
    else:
        names = [n for n in engine.PLUGIN_PACKAGES if engine.sdk_version(n) is not None]
    ws = engine.plugin_workspace(home, command)
    installed = engine.ensure_plugins(ws, names, sink or engine.NullSink())
    return SetupReport(
        cli=command.command,
        version=str(command.version),
        plugins_installed=installed,
        plugins=[f"{n} v{engine.sdk_version(n)}" for n in names],
    )
