"""`mlserve rollout` over the engine: walk the spec's steps, measuring Prometheus in each pause.

Each step is one routing-only update, made as `promote` makes it (`live.read_live`,
`live.routing_update`), that also records the rollout's progress (`mlserve:rollout`), so the
stack's history says where a rollout is and a killed one resumes. The decisions are
`mlserve.rollout`'s; this module applies them, sleeps and measures. Logic only: it never prints;
a `Watcher` is told what happens.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from mlserve import ops, traffic
from mlserve import rollout as ro
from mlserve.capacity import Change
from mlserve.engine import Engine, Sink, Target
from mlserve.errors import Interrupted, PreconditionError, UsageError
from mlserve.live import Live, read_live, routing_update
from mlserve.prometheus import Client, PrometheusError, render_query
from mlserve.rollout import Measurement, Progress
from mlserve.spec import Analysis, Rollout, Spec
from mlserve.traffic import TrafficState


def _now() -> datetime:
    return datetime.now(UTC)


class Watcher(Protocol):
    """What a person watching a rollout is told; output.py draws it."""

    def deployed(self, report: ops.DeployReport) -> None: ...

    def stepped(self, progress: Progress, steps: int, update: Update) -> None: ...

    def measured(self, progress: Progress, round_: list[Measurement], limit: int) -> None: ...

    def sleep(self, until: datetime, progress: Progress, pause_end: datetime | None) -> None: ...


class _Unwatched:
    def deployed(self, report: ops.DeployReport) -> None:
        pass

    def stepped(self, progress: Progress, steps: int, update: Update) -> None:
        pass

    def measured(self, progress: Progress, round_: list[Measurement], limit: int) -> None:
        pass

    def sleep(self, until: datetime, progress: Progress, pause_end: datetime | None) -> None:
        time.sleep(max(0.0, (until - _now()).total_seconds()))


@dataclass(frozen=True)
class Update:
    """One routing update the rollout made."""

    command: str
    revision: int | None
    before: TrafficState
    after: TrafficState
    capacity: tuple[Change, ...] = ()  # the versions whose replicas the step changed

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "revision": self.revision,
            "before": self.before.weights(),
            "after": self.after.weights(),
            "capacity": [c.to_json() for c in self.capacity],
        }


@dataclass(frozen=True)
class RolloutReport:
    project: str
    stack: str
    status: str  # running, paused, completed, aborted, or "dry-run"
    stable: str
    canary: str
    steps: int
    step: int | None  # the current step's index
    traffic: TrafficState | None  # the live traffic at the end
    failure_limit: int
    progress: Progress | None = None
    updates: list[Update] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    queries: Mapping[str, str] = field(default_factory=dict)  # metric -> query as sent
    errors: Mapping[str, PrometheusError] = field(default_factory=dict)  # dry run: metric ->
    reason: str = ""  # why it was aborted, or what there was to do
    by_hand: bool = False  # --abort
    deploy: ops.DeployReport | None = None
    walk: list[ro.PlannedStep] = field(default_factory=list)  # dry run: the steps it would take
    prometheus: str | None = None  # dry run: the Prometheus queried; None: no analysis
    interval: str | None = None  # dry run: the analysis's interval

    def to_json(self) -> dict[str, Any]:
        p = self.progress
        return {
            "project": self.project,
            "stack": self.stack,
            "status": self.status,
            "stable": self.stable,
            "canary": self.canary,
            "step": None if self.step is None else self.step + 1,
            "steps": self.steps,
            "traffic": self.traffic.to_dict() if self.traffic else None,
            "weights": self.traffic.weights() if self.traffic else {},
            "failures": p.failures if p else 0,
            "inconclusive": p.inconclusive if p else 0,
            "failureLimit": self.failure_limit,
            "reason": self.reason,
            "updates": [u.to_json() for u in self.updates],
            "measurements": [
                {**m.to_dict(), **({"query": self.queries[m.metric]} if self.queries else {})}
                for m in self.measurements
            ],
            "errors": {k: str(e) for k, e in self.errors.items()},
            "deploy": self.deploy.to_json() if self.deploy else None,
            **(
                {"walk": [s.to_json() for s in self.walk], "prometheus": self.prometheus}
                if self.status == "dry-run"
                else {}
            ),
        }


# --- measuring -------------------------------------------------------------------------------


def _placeholders(spec: Spec, stable: str, canary: str) -> dict[str, str]:
    return {"name": spec.name, "namespace": spec.namespace, "stable": stable, "canary": canary}


def _queries(analysis: Analysis, values: Mapping[str, str]) -> dict[str, str]:
    return {m.name: render_query(m.query, values) for m in analysis.metrics}


def _round(
    client: Client, analysis: Analysis, queries: Mapping[str, str], step: int
) -> tuple[list[Measurement], dict[str, PrometheusError]]:
    """Every metric once, all at the same time (a round takes one query's time at most). An
    unanswered query is inconclusive, with the reason as its note."""
    answers = client.query_all({m.name: queries[m.name] for m in analysis.metrics})
    out, errors = [], {}
    for metric in analysis.metrics:
        answer = answers[metric.name]
        if isinstance(answer, PrometheusError):
            errors[metric.name] = answer
            out.append(ro.measure(metric, None, _now(), step, str(answer)))
        else:
            out.append(ro.measure(metric, answer.value, answer.time, step, answer.note))
    return out, errors


def _preflight(analysis: Analysis, values: Mapping[str, str]) -> None:
    """Every query once before anything changes: a query Prometheus rejects, or a Prometheus
    that cannot be reached, stops the rollout here rather than after its first step."""
    _, errors = _round(Client(analysis.address), analysis, _queries(analysis, values), 0)
    for name, e in errors.items():
        index = next(i for i, m in enumerate(analysis.metrics) if m.name == name)
        where = f"rollout.analysis.metrics[{index}].query ({name})"
        if e.rejected:
            raise UsageError(f"{where}: {e}; nothing was changed")
        raise PreconditionError(f"{e}; nothing was changed (checked {where} before the rollout)")


# --- the command -----------------------------------------------------------------------------


@dataclass
class _Run:
    """One `mlserve rollout` process walking the steps."""

    eng: Engine
    live: Live
    rollout: Rollout
    watcher: Watcher
    progress: Progress | None = None
    updates: list[Update] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return len(self.rollout.steps)

    def apply(self, command: str, new: TrafficState, progress: Progress) -> None:
        """One routing update: the traffic and the progress, recorded together."""
        live = read_live(self.eng)
        if self.progress is not None and not self.progress.matches(live.state):
            raise PreconditionError(
                f"the traffic changed outside this rollout ({describe(live.state)}, the rollout "
                f"set {describe(self.progress.traffic)}): stopping without changing anything. "
                "Run `mlserve rollout` to walk on from the live traffic"
            )
        extra = {ro.ROLLOUT_KEY: json.dumps(progress.to_dict(), sort_keys=True)}
        report = routing_update(self.eng, command, live, new, [], extra_config=extra)
        update = Update(command, report.revision, live.state, new, report.capacity)
        self.updates.append(update)
        self.progress = progress
        self.live = replace(live, record=replace(live.record, traffic=new))
        self.watcher.stepped(progress, self.steps, update)


def describe(state: TrafficState) -> str:
    return ", ".join(f"{v} {w}%" for v, w in state.weights().items())


def run(
    target: Target,
    spec: Spec | None = None,
    *,
    proceed: bool = False,
    restart: bool = False,
    watcher: Watcher | None = None,
    sink: Sink | None = None,
    confirm: Callable[[ops.PlanReport], bool] | None = None,
    on_plan: Callable[[ops.PlanReport], None] | None = None,
    lock_timeout: float = 0.0,
    debug: bool = False,
    prometheus: str | None = None,
) -> RolloutReport:
    """Deploy `spec` if given, then walk the rollout steps from the live traffic. `prometheus`:
    the Prometheus to query instead of the spec's `rollout.analysis.prometheus.address`."""
    watcher = watcher or _Unwatched()
    eng = Engine(target, sink=sink, lock_timeout=lock_timeout, debug=debug)
    before: Progress | None = None
    deployed = None
    if spec is not None:
        rollout = _rollout_of(spec, prometheus)
        if rollout.analysis is not None and spec.traffic.canary is not None:
            _preflight(
                rollout.analysis, _placeholders(spec, spec.traffic.stable, spec.traffic.canary)
            )
        before = _check_before_deploy(eng, spec, rollout, restart)
        deployed = ops.deploy(
            spec, target, sink=sink, confirm=confirm, on_plan=on_plan,
            lock_timeout=lock_timeout, debug=debug,
        )  # fmt: skip
        if not deployed.applied:
            raise PreconditionError("deploy cancelled: nothing was changed, no step was taken")
        watcher.deployed(deployed)
    live = read_live(eng)
    rollout = _rollout_of(live.spec, prometheus)
    # The deploy recorded whatever progress its workspace held (none on a fresh CI runner):
    # the progress read before it is the rollout's.
    record = before if spec is not None else ro.recorded(live.config)
    progress = ro.resume(rollout, live.state, record, restart=restart)
    if proceed and (progress is None or progress.status != "paused"):
        raise PreconditionError(
            f"nothing to continue: {_what(progress)}; run `mlserve rollout` without --continue"
        )
    stable, canary = _versions(progress, live.state)
    client = None
    queries: dict[str, str] = {}
    if rollout.analysis is not None:
        client = Client(rollout.analysis.address)
        queries = _queries(rollout.analysis, _placeholders(live.spec, stable, canary))
        if spec is None and (progress is None or progress.status != "paused" or proceed):
            _preflight(rollout.analysis, _placeholders(live.spec, stable, canary))

    walk = _Run(eng, live, rollout, watcher, progress)
    decision = ro.begin(rollout, live.state) if progress is None else None
    last_measured: datetime | None = None
    status: str = progress.status if progress else "running"
    try:
        while True:
            if decision is None:
                assert walk.progress is not None
                decision = ro.decide(
                    rollout, walk.live.state, walk.progress, _now(), last_measured,
                    proceed=proceed,
                )  # fmt: skip
            match decision:
                case ro.Advance(step=index, traffic=new, status=step_status):
                    walk.apply(
                        _step_command(rollout, index),
                        new,
                        _progress_at(
                            walk.progress, rollout, index, new, step_status, stable, canary
                        ),
                    )
                    proceed, last_measured = False, None
                    if step_status == "paused":
                        status = "paused"
                        break
                case ro.Observe(at=at):
                    assert walk.progress is not None
                    watcher.sleep(at, walk.progress, ro.pause_end(rollout, walk.progress))
                    last_measured = at
                    if client is not None and rollout.analysis is not None:
                        round_, _ = _round(client, rollout.analysis, queries, walk.progress.step)
                        walk.progress = ro.record_round(walk.progress, round_)
                        walk.measurements += round_
                        watcher.measured(walk.progress, round_, rollout.analysis.failure_limit)
                        last_measured = max(at, _now())
                case ro.Wait():
                    status = "paused"
                    break
                case ro.Finish(traffic=new):
                    progress = _progress_at(
                        walk.progress, rollout, walk.steps - 1, new, "completed", stable, canary
                    )
                    progress = replace(progress, ended=progress.started)
                    walk.apply(_finish_command(walk.live.state, new), new, progress)
                    status = "completed"
                    break
                case ro.Abort(traffic=new, reason=reason):
                    assert walk.progress is not None
                    aborted = replace(
                        walk.progress, status="aborted", reason=reason, traffic=new, ended=_now()
                    )
                    names = sorted({m.metric for m in walk.progress.last if m.outcome != "ok"})
                    walk.apply(f"mlserve rollout: aborted ({', '.join(names)})", new, aborted)
                    status = "aborted"
                    break
                case ro.Done(status=done):
                    status = done
                    break
            decision = None
    except KeyboardInterrupt:
        number = walk.progress.step + 1 if walk.progress else 1
        raise Interrupted(
            f"interrupted during step {number}/{walk.steps} ({describe(walk.live.state)}); "
            "run `mlserve rollout` to resume it"
        ) from None
    final = walk.progress
    return _report(
        target, rollout, stable, canary, status=status, step=final.step if final else None,
        traffic=walk.live.state, progress=final, updates=walk.updates,
        measurements=walk.measurements, reason=final.reason if final else "", deploy=deployed,
    )  # fmt: skip


def _rollout_of(spec: Spec, prometheus: str | None = None) -> Rollout:
    """The spec's rollout; `prometheus` replaces its analysis's Prometheus address."""
    if spec.rollout is None:
        which = "the deployed spec" if spec.source == "<spec>" else spec.source
        raise UsageError(
            f"{which} has no rollout section: add `rollout: {{steps: [...]}}` (see `mlserve "
            "schema`) and run `mlserve rollout SPEC`"
        )
    rollout = spec.rollout
    if prometheus is not None and rollout.analysis is not None:
        rollout = replace(rollout, analysis=replace(rollout.analysis, address=prometheus))
    return rollout


def check_prometheus_url(url: str | None) -> None:
    """--prometheus (or MLSERVE_PROMETHEUS_URL): an http(s) URL, as the spec's address."""
    if url is not None and not re.fullmatch(r"https?://[A-Za-z0-9.\[\]:-]+(/\S*)?", url):
        raise UsageError(
            f"--prometheus {url!r} is not a Prometheus URL: give http(s)://HOST[:PORT][/PATH], "
            "e.g. http://localhost:9090 for a port-forward"
        )


def _check_before_deploy(
    eng: Engine, spec: Spec, rollout: Rollout, restart: bool
) -> Progress | None:
    """The progress recorded before this run's deploy; an aborted rollout of the spec's canary
    stops here, before the deploy changes anything."""
    try:
        live = read_live(eng)
    except PreconditionError:
        return None  # nothing deployed yet, or not by mlserve
    record = ro.recorded(live.config)
    if record is not None and (record.stable, record.canary) == (
        spec.traffic.stable,
        spec.traffic.canary,
    ):
        ro.resume(rollout, live.state, record, restart=restart)
    return record


def _current(live: Live) -> Progress | None:
    """The progress the live update recorded, if it still describes the live traffic."""
    record = ro.recorded(live.config)
    return record if record is not None and record.matches(live.state) else None


def _report(
    target: Target, rollout: Rollout, stable: str, canary: str, **fields: Any
) -> RolloutReport:
    limit = rollout.analysis.failure_limit if rollout.analysis else 0
    return RolloutReport(
        project=target.project,
        stack=target.stack,
        stable=stable,
        canary=canary,
        steps=len(rollout.steps),
        failure_limit=limit,
        **fields,
    )


def _versions(progress: Progress | None, live: TrafficState) -> tuple[str, str]:
    if progress is not None:
        return progress.stable, progress.canary
    if live.canary is None:
        raise PreconditionError(f"nothing to roll out: no canary is live (stable {live.stable})")
    return live.stable, live.canary


def _what(progress: Progress | None) -> str:
    if progress is None:
        return "no rollout is in progress"
    return f"the rollout of {progress.canary} is {progress.status} at step {progress.step + 1}"


def _progress_at(
    current: Progress | None,
    rollout: Rollout,
    index: int,
    new: TrafficState,
    status: ro.Status,
    stable: str,
    canary: str,
) -> Progress:
    base = current or Progress(
        stable, canary, ro.fingerprint(rollout), index, _now(), "running", new
    )
    return replace(base, step=index, started=_now(), status=status, traffic=new)


def _step_command(rollout: Rollout, index: int) -> str:
    step = rollout.steps[index]
    parts = [f"mlserve rollout: step {index + 1}/{len(rollout.steps)}"]
    if step.mirror is not None:
        parts.append(f"mirror {step.mirror}%")
    if step.weight is not None:
        parts.append(f"weight {step.weight}")
    if step.pause is not None:
        parts.append(f"pause {step.pause}")
    return ", ".join(parts)


def _finish_command(before: TrafficState, after: TrafficState) -> str:
    if before.canary is not None and after.canary is None:
        return f"mlserve rollout: completed, {before.canary} promoted to stable"
    return "mlserve rollout: completed"


def abort(
    target: Target,
    *,
    sink: Sink | None = None,
    lock_timeout: float = 0.0,
    debug: bool = False,
) -> RolloutReport:
    """`rollout --abort`: the canary to 0% now, in one routing update, recorded as aborted."""
    eng = Engine(target, sink=sink, lock_timeout=lock_timeout, debug=debug)
    live = read_live(eng)
    rollout = _rollout_of(live.spec)
    progress = _current(live)
    if progress is not None and progress.status in ("completed", "aborted"):
        raise PreconditionError(
            f"the rollout of {progress.canary} is already {progress.status}: nothing was "
            "changed (`mlserve rollback` sends traffic back after a completed rollout)"
        )
    stable, canary = _versions(progress, live.state)
    new = traffic.halt(live.state)  # the canary at 0% and no mirror
    reason = "aborted by hand (mlserve rollout --abort)"
    aborted = replace(
        progress or Progress(stable, canary, ro.fingerprint(rollout), 0, _now(), "running", new),
        status="aborted",
        reason=reason,
        traffic=new,
        ended=_now(),
    )
    walk = _Run(eng, live, rollout, _Unwatched())
    walk.apply("mlserve rollout --abort", new, aborted)
    return _report(
        target, rollout, stable, canary, status="aborted", step=aborted.step, traffic=new,
        progress=aborted, updates=walk.updates, reason=reason, by_hand=True,
    )  # fmt: skip


def dry_run(
    target: Target,
    spec: Spec | None = None,
    *,
    debug: bool = False,
    prometheus: str | None = None,
) -> RolloutReport:
    """The steps and pauses the rollout would walk, and every query once against Prometheus;
    nothing changes. With a spec, from its traffic as a deploy of it would start; without, from
    the live stack and its recorded progress."""
    if spec is not None:
        if spec.traffic.canary is None:
            raise PreconditionError(
                f"{spec.source}: traffic.canary is not set: the queries need a canary"
            )
        stable, canary, source = spec.traffic.stable, spec.traffic.canary, spec
        start, progress = traffic.initial(spec), None
    else:
        eng = Engine(target, debug=debug)
        live = read_live(eng)
        progress = _current(live)
        if progress is not None and progress.status == "completed":
            progress = None  # its canary is the stable now: the live traffic says what is next
        stable, canary = _versions(progress, live.state)
        source, start = live.spec, live.state
    rollout = _rollout_of(source, prometheus)
    if progress is not None and progress.status == "aborted":
        walk = []  # nothing to walk until --restart
    else:
        walk = ro.planned_steps(rollout, start, progress)
    round_: list[Measurement] = []
    errors: dict[str, PrometheusError] = {}
    queries: dict[str, str] = {}
    if rollout.analysis is not None:
        client = Client(rollout.analysis.address)
        queries = _queries(rollout.analysis, _placeholders(source, stable, canary))
        round_, errors = _round(client, rollout.analysis, queries, 0)
    return _report(
        target, rollout, stable, canary, status="dry-run", step=None, traffic=start,
        progress=progress, measurements=round_, queries=queries, errors=errors, walk=walk,
        prometheus=rollout.analysis.address if rollout.analysis else None,
        interval=rollout.analysis.interval if rollout.analysis else None,
    )  # fmt: skip
