"""The rollout's decisions (mlserve/rollout.py): pure code, given steps, traffic, progress, time."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlserve import rollout as ro
from mlserve.errors import PreconditionError
from mlserve.rollout import Advance, Finish, Measurement, Observe, Progress, Wait
from mlserve.spec import Analysis, Metric, Rollout, RolloutStep, Spec
from mlserve.traffic import Mirror, TrafficState

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
ERRORS = Metric("error-rate", "q", max=0.01)
LATENCY = Metric("p95", "q", min=0.0, max=0.25)


def rollout(
    *steps: tuple[int | None, str | None],
    limit: int = 1,
    interval: str = "1m",
    complete: bool = True,
) -> Rollout:
    return Rollout(
        steps=tuple(RolloutStep(w, p) for w, p in steps),
        complete=complete,
        analysis=Analysis("http://prom:9090", (ERRORS, LATENCY), interval, limit),
    )


STEPS = rollout((10, "5m"), (25, "10m"), (None, "manual"), (50, "10m"))


def at(weight: int) -> TrafficState:
    return TrafficState("v1", "v2", weight)


def progress(step: int, weight: int, *, status: ro.Status = "running", **kw: object) -> Progress:
    return Progress(
        "v1",
        "v2",
        ro.fingerprint(STEPS),
        step,
        T0,
        status,
        at(weight),
        **kw,  # type: ignore[arg-type]
    )


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ok(step: int = 0) -> list[Measurement]:
    return [ro.measure(ERRORS, 0.001, T0, step), ro.measure(LATENCY, 0.1, T0, step)]


def failing(step: int = 0) -> list[Measurement]:
    return [ro.measure(ERRORS, 0.2, T0, step), ro.measure(LATENCY, 0.1, T0, step)]


def no_data(step: int = 0) -> list[Measurement]:
    return [ro.measure(ERRORS, None, T0, step, "no data"), ro.measure(LATENCY, 0.1, T0, step)]


# --- measuring and counting ------------------------------------------------------------------


def test_a_value_outside_its_bounds_fails_and_the_bounds_are_inclusive() -> None:
    outcomes = [ro.measure(LATENCY, v, T0, 0).outcome for v in (0.0, 0.25, 0.26, -0.1, math.inf)]
    assert outcomes == ["ok", "ok", "failed", "failed", "failed"]


def test_no_value_and_nan_are_inconclusive_with_the_reason() -> None:
    empty = ro.measure(ERRORS, None, T0, 0, "no data")
    nan = ro.measure(ERRORS, math.nan, T0, 0)
    assert (empty.outcome, empty.describe()) == ("inconclusive", "no data")
    assert (nan.outcome, nan.value, nan.describe()) == ("inconclusive", None, "NaN")


def test_a_measurement_says_which_bound_it_broke() -> None:
    assert ro.measure(ERRORS, 0.2, T0, 0).describe() == "0.2 > max 0.01"
    assert ro.measure(LATENCY, -1, T0, 0).describe() == "-1 < min 0"
    assert ro.measure(LATENCY, 0.1, T0, 0).describe() == "0.1 (min 0, max 0.25)"


def test_a_round_counts_once_a_failure_wins_over_inconclusive() -> None:
    p = progress(0, 10)
    p = ro.record_round(p, failing())
    p = ro.record_round(p, [ro.measure(ERRORS, 0.5, T0, 0), *no_data()[:1]])
    p = ro.record_round(p, no_data())
    p = ro.record_round(p, ok())
    assert (p.failures, p.inconclusive) == (2, 1)
    assert p.last == tuple(ok())


# --- starting --------------------------------------------------------------------------------


def test_a_new_rollout_starts_at_the_first_step() -> None:
    assert ro.begin(STEPS, at(0)) == Advance(0, at(10), "running")


def test_a_new_rollout_never_lowers_the_live_weight() -> None:
    # A canary promoted by hand to 30%: the steps to 10% and 25% are passed over, but the manual
    # gate after them still holds before 50%.
    assert ro.begin(STEPS, at(30)) == Advance(2, at(30), "paused")
    assert ro.begin(STEPS, at(25)) == Advance(1, at(25), "running")


def test_a_canary_beyond_every_step_is_completed() -> None:
    assert ro.begin(STEPS, at(60)) == Finish(TrafficState("v2", previous="v1"))
    keep = replace(STEPS, complete=False)
    assert ro.begin(keep, at(60)) == Finish(at(60))


def test_without_a_canary_there_is_nothing_to_roll_out() -> None:
    with pytest.raises(PreconditionError) as e:
        ro.begin(STEPS, TrafficState("v1"))
    assert str(e.value) == "nothing to roll out: no canary is live (stable v1)"


def test_a_last_step_without_a_pause_finishes_in_the_same_update() -> None:
    steps = rollout((20, "1m"), (100, None))
    p = replace(progress(0, 20), steps=ro.fingerprint(steps))
    assert ro.decide(steps, at(20), p, s(61), s(60)) == Finish(TrafficState("v2", previous="v1"))


# --- during a pause --------------------------------------------------------------------------


def test_a_pause_measures_every_interval_from_the_steps_start_and_at_its_end() -> None:
    steps = rollout((10, "150s"), (20, "1m"))
    p = replace(progress(0, 10), steps=ro.fingerprint(steps))
    assert ro.decide(steps, at(10), p, s(1), None) == Observe(s(60))
    assert ro.decide(steps, at(10), p, s(60.4), s(60.2)) == Observe(s(120))
    assert ro.decide(steps, at(10), p, s(121), s(120.5)) == Observe(s(150))
    assert ro.decide(steps, at(10), p, s(150.3), s(150.3)) == Advance(1, at(20), "running")


def test_measuring_late_skips_the_ticks_it_missed_instead_of_catching_up() -> None:
    p = progress(0, 10)
    assert ro.decide(STEPS, at(10), p, s(200), s(200)) == Observe(s(240))


def test_a_resumed_pause_that_already_ended_is_measured_once_before_going_on() -> None:
    p = progress(0, 10)
    assert ro.decide(STEPS, at(10), p, s(3600), None) == Observe(s(300))
    assert ro.decide(STEPS, at(10), p, s(3600), s(3600)) == Advance(1, at(25), "running")


def test_a_step_that_resumes_mid_pause_keeps_its_start_time() -> None:
    p = progress(1, 25)  # step 2 of 4 started at T0 with a 10 minute pause
    assert ro.decide(STEPS, at(25), p, s(330), None) == Observe(s(360))
    assert ro.time_left(STEPS, p, s(330)) == 270


def test_without_an_analysis_a_pause_only_waits() -> None:
    steps = replace(rollout((10, "5m"), (20, "5m")), analysis=None)
    p = replace(progress(0, 10), steps=ro.fingerprint(steps))
    assert ro.decide(steps, at(10), p, s(1), None) == Observe(s(300))
    assert ro.decide(steps, at(10), p, s(300), s(300)) == Advance(1, at(20), "running")


def test_time_left_in_the_pause() -> None:
    assert ro.time_left(STEPS, progress(0, 10), s(60)) == 240
    assert ro.time_left(STEPS, progress(0, 10), s(900)) == 0
    assert ro.time_left(STEPS, progress(2, 25, status="paused"), s(60)) is None


# --- manual pauses ---------------------------------------------------------------------------


def test_a_manual_pause_waits_and_continue_goes_on() -> None:
    paused = progress(2, 25, status="paused")
    assert ro.decide(STEPS, at(25), paused, s(9999), None) == Wait(2)
    assert ro.decide(STEPS, at(25), paused, s(1), None, proceed=True) == Advance(
        3, at(50), "running"
    )


def test_stepping_into_a_manual_pause_records_it_as_paused() -> None:
    assert ro.decide(STEPS, at(25), progress(1, 25), s(600), s(600)) == Advance(2, at(25), "paused")


# --- failing ---------------------------------------------------------------------------------


def test_failures_up_to_the_limit_keep_observing_one_more_aborts_to_0() -> None:
    p = ro.record_round(progress(1, 25), failing(1))
    assert isinstance(ro.decide(STEPS, at(25), p, s(61), s(60)), Observe)
    p = ro.record_round(p, failing(1))
    assert ro.decide(STEPS, at(25), p, s(121), s(120)) == ro.Abort(
        at(0), "error-rate 0.2 > max 0.01 (2 failed measurements; failureLimit 1)"
    )


def test_inconclusive_rounds_are_counted_apart_and_abort_after_the_same_limit() -> None:
    p = progress(1, 25)
    for _ in range(2):
        p = ro.record_round(p, no_data(1))
        p = ro.record_round(p, failing(1)) if p.failures == 0 else p
    assert (p.failures, p.inconclusive) == (1, 2)
    assert ro.decide(STEPS, at(25), p, s(1), None) == ro.Abort(
        at(0),
        "error-rate: no data (2 inconclusive measurements; the limit is failureLimit 1)",
    )


def test_failure_limit_0_aborts_on_the_first_failure() -> None:
    steps = rollout((10, "5m"), limit=0)
    p = ro.record_round(replace(progress(0, 10), steps=ro.fingerprint(steps)), failing())
    assert isinstance(ro.decide(steps, at(10), p, s(61), s(60)), ro.Abort)


def test_an_abort_after_completion_brings_the_previous_stable_back() -> None:
    steps = rollout((20, "1m"), (100, "10m"))
    done = TrafficState("v2", previous="v1")
    p = replace(progress(1, 20), steps=ro.fingerprint(steps), traffic=done)
    p = ro.record_round(ro.record_round(p, failing(1)), failing(1))
    assert ro.decide(steps, done, p, s(1), None).traffic == TrafficState("v1")  # type: ignore[union-attr]


def test_a_failed_analysis_at_0_percent_aborts_without_a_traffic_change() -> None:
    """Issue 20 item 1: a pause before the first weight, or any step behind the service
    gateway: `traffic.rollback` had nothing to roll back, so the abort never came."""
    steps = rollout((None, "5m"), (50, "5m"), (100, None))
    p = replace(progress(0, 0), steps=ro.fingerprint(steps))
    p = ro.record_round(ro.record_round(p, failing(0)), failing(0))
    decision = ro.decide(steps, at(0), p, s(1), None)
    assert isinstance(decision, ro.Abort)
    assert decision.traffic == at(0)
    assert decision.reason == "error-rate 0.2 > max 0.01 (2 failed measurements; failureLimit 1)"


def test_a_completed_or_aborted_rollout_has_nothing_left_to_do() -> None:
    for status in ("completed", "aborted"):
        p = progress(3, 50, status=status)  # type: ignore[arg-type]
        assert ro.decide(STEPS, at(50), p, s(1), None) == ro.Done(status)  # type: ignore[arg-type]


# --- resuming --------------------------------------------------------------------------------


def test_recorded_progress_resumes_while_the_live_traffic_is_what_it_applied() -> None:
    p = progress(1, 25)
    assert ro.resume(STEPS, at(25), p) == p


def test_a_promote_by_hand_since_makes_the_record_stale() -> None:
    assert ro.resume(STEPS, at(40), progress(1, 25)) is None


def test_changed_steps_start_over_from_the_live_traffic() -> None:
    other = rollout((10, "5m"), (25, "1m"))
    assert ro.resume(other, at(25), progress(1, 25)) is None


def test_restart_ignores_the_record() -> None:
    assert ro.resume(STEPS, at(25), progress(1, 25), restart=True) is None


def test_an_aborted_rollout_is_not_started_again_by_itself() -> None:
    aborted = progress(1, 0, status="aborted", reason="error-rate 0.2 > max 0.01")
    with pytest.raises(PreconditionError) as e:
        ro.resume(STEPS, at(0), aborted)
    assert str(e.value) == (
        "the rollout of v2 was aborted at 2026-01-01T12:00:00Z: error-rate 0.2 > max 0.01. "
        "Nothing was changed; to try v2 again, run `mlserve rollout --restart`"
    )
    assert ro.resume(STEPS, at(0), aborted, restart=True) is None


def test_the_refusal_gives_the_time_of_the_abort_not_of_its_step() -> None:
    aborted = progress(1, 0, status="aborted", reason="r", ended=s(272))
    with pytest.raises(PreconditionError) as e:
        ro.resume(STEPS, at(0), aborted)
    assert str(e.value).startswith("the rollout of v2 was aborted at 2026-01-01T12:04:32Z: r. ")
    assert Progress.from_dict(aborted.to_dict()) == aborted


def test_a_recorded_text_is_replayed_with_its_control_characters_escaped() -> None:
    """A record an older mlserve wrote may hold what Prometheus said, raw (issue 20 item 9)."""
    m = ro.measure(ERRORS, None, T0, 1, "no data")
    data = {
        **progress(1, 25, last=(m,)).to_dict(),
        "reason": "\x1b[2Jboom\r\nerror: fake",
    }
    data["last"][0]["note"] = "\x07bell\u202eevil"
    replayed = Progress.from_dict(data)
    assert replayed.reason == "\\x1b[2Jboom\\r\\nerror: fake"
    assert replayed.last[0].note == "\\x07bell\\u202eevil"


def test_status_after_completion_shows_the_canary_at_100() -> None:
    """Issue 20 item 15: it said `weight 0%` under `v2 100%`."""
    steps = rollout((50, "1m"))
    done = progress(0, 50, status="completed")
    done = replace(done, steps=ro.fingerprint(steps), traffic=TrafficState("v2", previous="v1"))
    spec = Spec.from_dict(
        {
            "apiVersion": "mlserve/v1",
            "name": "fraud",
            "gateway": {"type": "istio", "host": "models.example.com"},
            "versions": [{"name": "v1", "image": "a:1"}, {"name": "v2", "image": "a:2"}],
            "traffic": {"stable": "v2"},
            "rollout": steps.to_dict(),
        }
    )
    config = {ro.ROLLOUT_KEY: json.dumps(done.to_dict())}
    shown = ro.rollout_status(config, spec, TrafficState("v2", previous="v1"), s(90))
    assert shown is not None and shown.weight == 100


def test_progress_survives_the_stack_config_round_trip() -> None:
    p = ro.record_round(progress(1, 25), [*no_data(1), ro.measure(LATENCY, math.inf, T0, 1)])
    assert Progress.from_dict(p.to_dict()) == p
    assert p.to_dict()["last"][2]["value"] == "+Inf"
    with pytest.raises(ValueError, match="unknown rollout status 'done'"):
        Progress.from_dict({**p.to_dict(), "status": "done"})


# --- whole walks -----------------------------------------------------------------------------


def walk(
    steps: Rollout,
    rounds: list[list[Measurement]],
    *,
    start: Progress | None = None,
    proceed: bool = False,
) -> list[object]:
    """Apply decisions as the command does, with a clock that jumps to each measurement."""
    live = start.traffic if start else at(0)
    decision = ro.begin(steps, live) if start is None else None
    p, now, last = start, T0, None
    seen: list[object] = []
    while True:
        if decision is None:
            assert p is not None
            decision = ro.decide(steps, live, p, now, last, proceed=proceed)
        seen.append(decision)
        match decision:
            case Advance(step=i, traffic=new, status=status):
                base = p or Progress("v1", "v2", ro.fingerprint(steps), i, now, status, new)
                p = replace(base, step=i, started=now, status=status, traffic=new)
                live, last, proceed = new, None, False
                if status == "paused":
                    return seen
            case Observe(at=when):
                assert p is not None
                now = last = when
                p = ro.record_round(p, rounds.pop(0) if rounds else ok(p.step))
            case _:
                return seen
        decision = None


def test_a_healthy_walk_sets_every_weight_stops_at_the_gate_then_completes() -> None:
    first = walk(STEPS, [])
    assert [d for d in first if not isinstance(d, Observe)] == [
        Advance(0, at(10), "running"),
        Advance(1, at(25), "running"),
        Advance(2, at(25), "paused"),
    ]
    assert sum(isinstance(d, Observe) for d in first) == 5 + 10  # one a minute
    second = walk(STEPS, [], start=progress(2, 25, status="paused"), proceed=True)
    assert [d for d in second if not isinstance(d, Observe)] == [
        Advance(3, at(50), "running"),
        Finish(TrafficState("v2", previous="v1")),
    ]


@settings(max_examples=25, deadline=None)
@given(limit=st.integers(0, 4), healthy_rounds=st.integers(0, 4))
def test_the_abort_comes_at_the_failure_after_the_limit(limit: int, healthy_rounds: int) -> None:
    steps = rollout((10, "1h"), limit=limit)
    seen = walk(steps, [ok()] * healthy_rounds + [failing()] * (limit + 1))
    assert isinstance(seen[-1], ro.Abort)
    assert seen[-1].traffic == at(0)
    assert sum(isinstance(d, Observe) for d in seen) == healthy_rounds + limit + 1


# --- mirror steps: a shadow phase before the first weight -------------------------------------

SHADOW = Rollout(
    steps=(RolloutStep(None, "10m", 20), RolloutStep(None, "10m", 100), RolloutStep(10, "5m")),
    analysis=Analysis("http://prom:9090", (ERRORS,), "1m", 1),
)


def test_mirror_steps_copy_to_the_canary_at_0_and_the_first_weight_step_ends_the_mirror() -> None:
    live = at(0)
    first = ro.begin(SHADOW, live)
    assert first == Advance(0, TrafficState("v1", "v2", 0, mirror=Mirror("v2", 20)), "running")
    assert isinstance(first, Advance)
    p = replace(progress(0, 0), steps=ro.fingerprint(SHADOW), traffic=first.traffic)
    second = ro.decide(SHADOW, first.traffic, p, s(600), s(600))
    assert second == Advance(1, TrafficState("v1", "v2", 0, mirror=Mirror("v2", 100)), "running")
    assert isinstance(second, Advance)
    p = replace(p, step=1, started=s(600), traffic=second.traffic)
    third = ro.decide(SHADOW, second.traffic, p, s(1200), s(1200))
    assert third == Advance(2, TrafficState("v1", "v2", 10), "running")  # no mirror left


def test_an_abort_in_the_shadow_phase_ends_the_mirror_in_the_same_update() -> None:
    shadow = TrafficState("v1", "v2", 0, mirror=Mirror("v2", 100))
    p = replace(progress(1, 0), steps=ro.fingerprint(SHADOW), traffic=shadow)
    p = ro.record_round(ro.record_round(p, failing(1)), failing(1))
    decision = ro.decide(SHADOW, shadow, p, s(60), None)
    assert isinstance(decision, ro.Abort)
    assert decision.traffic == TrafficState("v1", "v2", 0)


def test_a_rollout_from_a_canary_that_serves_traffic_passes_the_mirror_steps_over() -> None:
    assert ro.first_step(SHADOW, 0) == 0
    assert ro.first_step(SHADOW, 5) == 2
    decision = ro.begin(SHADOW, at(5))
    assert decision == Advance(2, TrafficState("v1", "v2", 10), "running")


def test_mirror_steps_change_the_fingerprint_and_steps_without_keep_theirs() -> None:
    plain = rollout((10, "5m"), (50, "10m"))
    # as it was computed before mirror steps existed, so a recorded rollout still resumes
    before = json.dumps([[10, "5m"], [50, "10m"]]).encode()
    assert ro.fingerprint(plain) == hashlib.sha256(before).hexdigest()[:12]
    shadowed = replace(plain, steps=(RolloutStep(None, "5m", 100), *plain.steps))
    assert ro.fingerprint(shadowed) != ro.fingerprint(
        replace(plain, steps=(RolloutStep(None, "5m"), *plain.steps))
    )


def test_planned_steps_start_where_begin_starts_and_end_with_the_completion() -> None:
    walk = ro.planned_steps(STEPS, at(20), None)  # 10% is passed over: no step lowers a weight
    assert [(p.step, p.traffic.weights(), p.pause, p.current) for p in walk] == [
        (1, {"v1": 75, "v2": 25}, "10m", False),
        (2, {"v1": 75, "v2": 25}, "manual", False),
        (3, {"v1": 50, "v2": 50}, "10m", False),
        (None, {"v2": 100}, None, False),
    ]
    assert walk[-1].traffic.previous == "v1"
    assert ro.begin(STEPS, at(20)) == Advance(1, at(25), "running")


def test_planned_steps_resume_at_the_recorded_step_and_keep_an_incomplete_rollout() -> None:
    held = rollout((10, "5m"), (40, None), complete=False)
    walk = ro.planned_steps(held, at(10), replace(progress(0, 10), steps=ro.fingerprint(held)))
    assert [(p.step, p.traffic.weight, p.current) for p in walk] == [(0, 10, True), (1, 40, False)]
    with pytest.raises(PreconditionError, match="nothing to roll out: no canary is live"):
        ro.planned_steps(held, TrafficState("v1"), None)


def test_planned_steps_show_the_shadow_phase_and_its_end() -> None:
    walk = ro.planned_steps(SHADOW, at(0), None)
    assert [(p.step, p.traffic.mirror, p.traffic.weight) for p in walk] == [
        (0, Mirror("v2", 20), 0),
        (1, Mirror("v2", 100), 0),
        (2, None, 10),
        (None, None, 0),
    ]
    assert walk[1].to_json()["mirror"] == Mirror("v2", 100).to_dict()
