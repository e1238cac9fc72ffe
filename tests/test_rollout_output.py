"""What people see of a rollout: the live rows, the countdown, the status line."""

from __future__ import annotations

import io
import json
import math
from datetime import UTC, datetime, timedelta

from mlserve import output
from mlserve import rollout as ro
from mlserve.rollout import Progress, RolloutStatus
from mlserve.spec import Metric
from mlserve.traffic import TrafficState

T0 = datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC)
ERRORS = Metric("error-rate", "q", max=0.01)


def progress(**kw: object) -> Progress:
    return Progress("v1", "v2", "f", 1, T0, "running", TrafficState("v1", "v2", 25), **kw)  # type: ignore[arg-type]


def test_each_measurement_is_a_row_under_one_header_with_the_count_so_far() -> None:
    out = io.StringIO()
    view = output.RolloutView(out, plain=True, quiet=False)
    first = [ro.measure(ERRORS, 0.002, T0, 1)]
    second = [ro.measure(ERRORS, 0.2, T0 + timedelta(seconds=60), 1)]
    view.measured(ro.record_round(progress(), first), first, 1)
    view.measured(ro.record_round(progress(), second), second, 1)
    assert out.getvalue().splitlines() == [
        "  TIME (UTC)  STEP  METRIC      VALUE       BOUNDS    RESULT",
        "  12:00:05    2     error-rate  0.002       max 0.01  ok",
        "  12:01:05    2     error-rate  0.2         max 0.01  FAILED",
        "  failed 1 of 1 tolerated, inconclusive 0 of 1",
    ]


def test_with_json_the_view_prints_nothing() -> None:
    out = io.StringIO()
    view = output.RolloutView(out, plain=True, quiet=True)
    view.measured(progress(), [ro.measure(ERRORS, 0.2, T0, 1)], 1)
    assert out.getvalue() == ""


def test_in_a_terminal_the_wait_counts_down() -> None:
    out = io.StringIO()
    view = output.RolloutView(out, plain=False, quiet=False)
    now = datetime.now(UTC)
    view.sleep(now + timedelta(seconds=1.5), progress(), now + timedelta(seconds=30))
    assert "step 2: next measurement in " in out.getvalue()
    assert "s left in the pause" in out.getvalue()


def test_status_shows_step_time_left_and_last_measurements() -> None:
    p = ro.record_round(progress(), [ro.measure(ERRORS, None, T0, 1, "no data")])
    text = output.render_rollout_status(RolloutStatus(p, 4, 25, 272.4))
    assert text.splitlines() == [
        "v2 running, step 2 of 4, weight 25%, 4m32s left in the pause",
        "             last measured 12:00:05 UTC: error-rate no data",
    ]


def test_json_documents_never_hold_nan_or_infinity() -> None:
    """Issue 20 item 4: `--json` printed NaN or Infinity (a record from before bounds had to be
    finite), which is not JSON."""
    text = output.to_json({"min": math.nan, "max": math.inf, "values": [-math.inf, 0.5]})
    assert json.loads(text) == {"min": "NaN", "max": "+Inf", "values": ["-Inf", 0.5]}
    assert "Infinity" not in text and "NaN," not in text
