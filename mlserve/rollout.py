"""Progressive rollout: what to do next, as pure code (DESIGN.md section 4). No Pulumi, no I/O.

A rollout walks `spec.rollout.steps` for one canary. Its progress (`Progress`) is recorded in the
stack config (`mlserve:rollout`) by the same update that applies a step's traffic, so a rollout
killed with its CI job is resumed by the next `mlserve rollout` from the recorded step and the
time that step started. `decide` looks at the steps, the live traffic, the progress and the time,
and answers with one `Decision`; the caller applies it and asks again.

Failures are counted over the whole rollout, as Flagger counts failed checks: one round of
measurements (every metric, once) fails when any metric is out of bounds, and is inconclusive when
none fails but one has no value (no data, NaN, Prometheus unreachable). Past `failureLimit` of
either, the rollout aborts: the canary goes to 0% (`traffic.rollback`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from mlserve import redact, traffic
from mlserve.errors import PreconditionError
from mlserve.traffic import TrafficState

if TYPE_CHECKING:
    from mlserve.spec import Metric, Rollout, RolloutStep, Spec

Status = Literal["running", "paused", "completed", "aborted"]
Outcome = Literal["ok", "failed", "inconclusive"]
_UNITS = {"s": 1, "m": 60, "h": 3600}
ROLLOUT_KEY = "mlserve:rollout"


def seconds(duration: str) -> float:
    """A spec duration (`30s`, `5m`, `1h`; the schema allows nothing else) in seconds."""
    return float(int(duration[:-1]) * _UNITS[duration[-1]])


def fingerprint(rollout: Rollout) -> str:
    """Identifies the steps: progress recorded for other steps does not apply to these."""
    # A mirror step adds its percent; steps without one keep the fingerprint they had before.
    steps = [[s.weight, s.pause, *([s.mirror] if s.mirror else [])] for s in rollout.steps]
    return hashlib.sha256(json.dumps(steps).encode()).hexdigest()[:12]


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _replayed(text: object) -> str:
    """A recorded text from Prometheus (a note, an abort's reason), as `status` shows it again:
    a record an older mlserve wrote may hold control characters or be very long."""
    return redact.capped(redact.printable(str(text)), 10_000)


# --- measurements ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """One metric measured once: its value (None: inconclusive) against its bounds."""

    metric: str
    time: datetime
    value: float | None
    outcome: Outcome
    min: float | None = None
    max: float | None = None
    note: str = ""  # why it is inconclusive, e.g. "no data"
    step: int = 0

    @property
    def bounds(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f"min {self.min:g}")
        if self.max is not None:
            parts.append(f"max {self.max:g}")
        return ", ".join(parts)

    def describe(self) -> str:
        """`0.12 > max 0.01`, `0.002 (max 0.01)`, `no data`."""
        if self.value is None:
            return self.note or "no value"
        if self.min is not None and self.value < self.min:
            return f"{self.value:g} < min {self.min:g}"
        if self.max is not None and self.value > self.max:
            return f"{self.value:g} > max {self.max:g}"
        return f"{self.value:g} ({self.bounds})"

    def to_dict(self) -> dict[str, Any]:
        value: float | str | None = self.value
        if self.value is not None and math.isinf(self.value):
            value = "+Inf" if self.value > 0 else "-Inf"  # JSON has no infinity
        return {
            "metric": self.metric,
            "time": _iso(self.time),
            "step": self.step + 1,  # 1-based, as people count steps
            "value": value,
            "min": self.min,
            "max": self.max,
            "outcome": self.outcome,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        value = data.get("value")
        return cls(
            metric=str(data["metric"]),
            time=_time(data["time"]),
            value=None if value is None else float(value),
            outcome=data["outcome"],
            min=data.get("min"),
            max=data.get("max"),
            note=_replayed(data.get("note", "")),
            step=int(data["step"]) - 1,
        )


def measure(
    metric: Metric, value: float | None, time: datetime, step: int, note: str = ""
) -> Measurement:
    """Judge one value: outside min/max fails; no value (or NaN) is inconclusive."""
    if value is None or math.isnan(value):
        outcome: Outcome = "inconclusive"
        value, note = None, note or "NaN"
    elif (metric.min is not None and value < metric.min) or (
        metric.max is not None and value > metric.max
    ):
        outcome = "failed"
    else:
        outcome = "ok"
    return Measurement(metric.name, time, value, outcome, metric.min, metric.max, note, step)


# --- progress --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """A rollout's record, stored as `mlserve:rollout` with the traffic it applied."""

    stable: str
    canary: str
    steps: str  # fingerprint() of the steps it walks
    step: int  # the current step's index
    started: datetime  # when the current step began
    status: Status
    traffic: TrafficState  # what this rollout last applied: if the live traffic differs, the
    # record is stale (someone promoted or rolled back by hand since)
    failures: int = 0
    inconclusive: int = 0
    reason: str = ""  # why it was aborted
    last: tuple[Measurement, ...] = ()  # the latest round, for `status`
    ended: datetime | None = None  # when it was completed or aborted

    def matches(self, live: TrafficState) -> bool:
        return self.traffic == live

    def to_dict(self) -> dict[str, Any]:
        return {
            "stable": self.stable,
            "canary": self.canary,
            "steps": self.steps,
            "step": self.step,
            "started": _iso(self.started),
            "status": self.status,
            "traffic": self.traffic.to_dict(),
            "failures": self.failures,
            "inconclusive": self.inconclusive,
            "reason": self.reason,
            "last": [m.to_dict() for m in self.last],
            **({"ended": _iso(self.ended)} if self.ended else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Progress:
        status = data["status"]
        if status not in ("running", "paused", "completed", "aborted"):
            raise ValueError(f"unknown rollout status {status!r}")
        return cls(
            stable=str(data["stable"]),
            canary=str(data["canary"]),
            steps=str(data["steps"]),
            step=int(data["step"]),
            started=_time(data["started"]),
            status=status,
            traffic=TrafficState.from_dict(data["traffic"]),
            failures=int(data.get("failures", 0)),
            inconclusive=int(data.get("inconclusive", 0)),
            reason=_replayed(data.get("reason", "")),
            last=tuple(Measurement.from_dict(m) for m in data.get("last", [])),
            ended=_time(data["ended"]) if data.get("ended") else None,
        )


def record_round(progress: Progress, round_: list[Measurement]) -> Progress:
    """Count one round of measurements: a failure if any failed, else inconclusive if any was."""
    outcomes = {m.outcome for m in round_}
    return replace(
        progress,
        failures=progress.failures + ("failed" in outcomes),
        inconclusive=progress.inconclusive
        + ("failed" not in outcomes and "inconclusive" in outcomes),
        last=tuple(round_),
    )


# --- decisions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Advance:
    """Start step `step`: apply `traffic` and record the progress, in one routing update."""

    step: int
    traffic: TrafficState
    status: Status  # "paused" when the step waits for `--continue`


@dataclass(frozen=True)
class Observe:
    """Wait until `at`, then measure every metric (if there is an analysis)."""

    at: datetime


@dataclass(frozen=True)
class Wait:
    """A manual pause: nothing to do until `mlserve rollout --continue`."""

    step: int


@dataclass(frozen=True)
class Finish:
    """The last step is done: apply `traffic` (the promotion, with `complete`) and record it."""

    traffic: TrafficState


@dataclass(frozen=True)
class Abort:
    """Too many failed or inconclusive rounds: the canary goes to 0%."""

    traffic: TrafficState
    reason: str


@dataclass(frozen=True)
class Done:
    """Nothing to do: the rollout is completed or aborted."""

    status: Status


Decision = Advance | Observe | Wait | Finish | Abort | Done


def _step_traffic(live: TrafficState, step: RolloutStep) -> TrafficState:
    if step.mirror is not None and live.canary is not None and live.weight == 0:
        return traffic.set_mirror(live, live.canary, step.mirror)  # a shadow step
    if step.weight is None or step.weight == live.weight or live.canary is None:
        return live
    return traffic.promote(live, step.weight)  # which ends a mirror of the canary


def _enter(rollout: Rollout, live: TrafficState, index: int) -> Decision:
    """Start step `index`; past the last step, finish. A last step without a pause finishes
    in the same update that sets its weight."""
    if index >= len(rollout.steps):
        return Finish(_complete(rollout, live))
    step = rollout.steps[index]
    state = _step_traffic(live, step)
    if index == len(rollout.steps) - 1 and step.pause is None:
        return Finish(_complete(rollout, state))
    return Advance(index, state, "paused" if step.pause == "manual" else "running")


def _complete(rollout: Rollout, live: TrafficState) -> TrafficState:
    if rollout.complete and live.canary is not None:
        return traffic.promote(live, 100)
    return live


def first_step(rollout: Rollout, weight: int) -> int:
    """Where a new rollout starts from a live canary weight: no step ever lowers the weight, so
    the steps up to the last one setting a weight below it are passed over, and so are the
    mirror steps (all before the first weight step) once the canary serves traffic."""
    start = 0
    for i, step in enumerate(rollout.steps):
        if step.weight is not None and step.weight < weight:
            start = i + 1
        if step.mirror is not None and weight > 0:
            start = i + 1
    return start


def begin(rollout: Rollout, live: TrafficState) -> Decision:
    """A rollout with no progress that applies: start from the live traffic."""
    if live.canary is None:
        raise PreconditionError(f"nothing to roll out: no canary is live (stable {live.stable})")
    return _enter(rollout, live, first_step(rollout, live.weight))


def pause_end(rollout: Rollout, progress: Progress) -> datetime | None:
    """When the current step's timed pause ends; None for no pause or a manual one."""
    pause = rollout.steps[progress.step].pause
    if pause is None or pause == "manual":
        return None
    return progress.started + timedelta(seconds=seconds(pause))


def next_measurement(
    rollout: Rollout, progress: Progress, after: datetime | None, now: datetime
) -> datetime | None:
    """When to measure next in the current pause: at the next multiple of `interval` from the
    step's start, and at the pause's end; every pause with an analysis is measured at least
    once, at its end at the latest. None: the pause is over. `after`: the last measurement in
    this step, if this process made one."""
    end = pause_end(rollout, progress)
    if end is None or (after is not None and after >= end):
        return None
    if rollout.analysis is None:
        return end
    interval = seconds(rollout.analysis.interval)
    since = (max(now, after or now) - progress.started).total_seconds()
    at = progress.started + timedelta(seconds=(math.floor(since / interval) + 1) * interval)
    return min(at, end)


def decide(
    rollout: Rollout,
    live: TrafficState,
    progress: Progress,
    now: datetime,
    last_measured: datetime | None,
    *,
    proceed: bool = False,
) -> Decision:
    """What to do next. `last_measured`: when this process last measured (None: not yet in
    this step); `proceed`: `--continue` was given, so a manual pause here is passed."""
    if progress.status in ("completed", "aborted"):
        return Done(progress.status)
    limit = rollout.analysis.failure_limit if rollout.analysis else 0
    if progress.failures > limit or progress.inconclusive > limit:
        return Abort(traffic.halt(live), _abort_reason(progress, limit))
    step = rollout.steps[progress.step]
    if step.pause == "manual":
        return _enter(rollout, live, progress.step + 1) if proceed else Wait(progress.step)
    at = next_measurement(rollout, progress, last_measured, now)
    if at is not None:
        return Observe(at)
    return _enter(rollout, live, progress.step + 1)


def _abort_reason(progress: Progress, limit: int) -> str:
    if progress.failures > limit:
        failed = [m for m in progress.last if m.outcome == "failed"]
        what = ", ".join(f"{m.metric} {m.describe()}" for m in failed)
        return f"{what} ({progress.failures} failed measurements; failureLimit {limit})"
    unknown = [m for m in progress.last if m.outcome == "inconclusive"]
    what = ", ".join(f"{m.metric}: {m.describe()}" for m in unknown)
    return (
        f"{what} ({progress.inconclusive} inconclusive measurements; the limit is "
        f"failureLimit {limit})"
    )


def resume(
    rollout: Rollout, live: TrafficState, record: Progress | None, *, restart: bool = False
) -> Progress | None:
    """The recorded progress that still applies to the live traffic, or None to begin anew.

    A record applies while the live traffic is what the rollout last applied (a promote or
    rollback by hand since makes it stale) and, unless it was aborted, the steps are the same.
    An aborted rollout is not started again by itself: that takes `--restart`.
    """
    if record is None or restart or not record.matches(live):
        return None
    if record.status == "aborted":
        when = _iso(record.ended or record.started)
        raise PreconditionError(
            f"the rollout of {record.canary} was aborted at {when}: {record.reason}. Nothing "
            f"was changed; to try {record.canary} again, run `mlserve rollout --restart`"
        )
    return record if record.steps == fingerprint(rollout) else None


def time_left(rollout: Rollout, progress: Progress, now: datetime) -> float | None:
    """Seconds left in the current timed pause (0 when over); None when it has none."""
    end = pause_end(rollout, progress)
    if end is None or progress.status != "running":
        return None
    return max(0.0, (end - now).total_seconds())


# --- reading the record ----------------------------------------------------------------------


def recorded(config: Mapping[str, str]) -> Progress | None:
    """The rollout progress an update recorded; a damaged record is an error, not a restart."""
    raw = config.get(ROLLOUT_KEY)
    if not raw:
        return None
    try:
        return Progress.from_dict(json.loads(raw))
    except (KeyError, TypeError, ValueError) as e:
        raise PreconditionError(
            f"the stack's recorded rollout ({ROLLOUT_KEY}) is not valid: {e}; "
            "run `mlserve rollout --restart` to start the rollout over"
        ) from None


@dataclass(frozen=True)
class RolloutStatus:
    """The rollout shown by `mlserve status`."""

    progress: Progress
    steps: int
    weight: int  # the canary's live share: 100 once it is promoted to stable
    time_left: float | None

    def to_json(self) -> dict[str, Any]:
        p = self.progress
        return {
            "canary": p.canary,
            "status": p.status,
            "step": p.step + 1,
            "steps": self.steps,
            "weight": self.weight,
            "stepStarted": p.to_dict()["started"],
            "timeLeft": self.time_left,
            "failures": p.failures,
            "inconclusive": p.inconclusive,
            "reason": p.reason,
            "lastMeasurements": [m.to_dict() for m in p.last],
        }


def rollout_status(
    config: Mapping[str, str], spec: Spec, live: TrafficState, now: datetime
) -> RolloutStatus | None:
    """The recorded rollout, if it still describes the live traffic."""
    try:
        progress = recorded(config)
    except PreconditionError:
        return None
    rollout = spec.rollout
    if progress is None or rollout is None or live is None or not progress.matches(live):
        return None
    if progress.step >= len(rollout.steps):
        return None
    weight = live.weights().get(progress.canary, 0)
    return RolloutStatus(progress, len(rollout.steps), weight, time_left(rollout, progress, now))


@dataclass(frozen=True)
class PlannedStep:
    """One step `rollout` would walk from the live traffic (`rollout --dry-run`)."""

    step: int | None  # the step's index; None: the completion after the last step
    traffic: TrafficState  # the traffic once the step's update is made
    pause: str | None  # "5m", "manual" or None
    current: bool = False  # the step the recorded progress is at (its update is made)

    def to_json(self) -> dict[str, Any]:
        return {
            "step": None if self.step is None else self.step + 1,
            "weights": self.traffic.weights(),
            "mirror": self.traffic.mirror.to_dict() if self.traffic.mirror else None,
            "pause": self.pause,
            "current": self.current,
        }


def planned_steps(
    rollout: Rollout, live: TrafficState, progress: Progress | None
) -> list[PlannedStep]:
    """The steps a rollout would walk from `live`, each with the traffic it sets and its pause:
    from the recorded progress's step, or where `begin` would start; then the completion."""
    if progress is None:
        if live.canary is None:
            raise PreconditionError(
                f"nothing to roll out: no canary is live (stable {live.stable})"
            )
        start, current = first_step(rollout, live.weight), None
    else:
        start, current = progress.step, progress.step
    out, state = [], live
    for i in range(start, len(rollout.steps)):
        step = rollout.steps[i]
        if i != current:
            state = _step_traffic(state, step)
        out.append(PlannedStep(i, state, step.pause, i == current))
    done = _complete(rollout, state)
    if done != state:
        out.append(PlannedStep(None, done, None))
    return out
