"""What the engine commands print: progress lines from event threads, bars, tables."""

from __future__ import annotations

import io
import threading
from datetime import datetime

from mlserve import output
from mlserve.engine import Event
from mlserve.ops import HistoryRow
from mlserve.traffic import TrafficState


def step(kind: str, op: str, name: str, planning: bool = False, **kw: object) -> Event:
    return Event(
        kind=kind,
        op=op,
        urn=f"urn:pulumi:dev::fraud::kubernetes:apps/v1:Deployment::{name}",
        type="kubernetes:apps/v1:Deployment",
        name=name,
        planning=planning,
        **kw,  # type: ignore[arg-type]
    )


def test_plain_progress_prints_one_line_per_state_change() -> None:
    out = io.StringIO()
    progress = output.Progress(out, plain=True, notes=out)
    progress.event(step("start", "same", "fraud-v0"))
    progress.event(step("start", "update", "fraud-v1", weights=(("weight", 90, 50),)))
    progress.event(step("done", "update", "fraud-v1", weights=(("weight", 90, 50),)))
    progress.event(step("start", "delete", "fraud-v3"))
    progress.event(step("failed", "delete", "fraud-v3"))
    progress.event(Event(kind="diag", severity="error", name="fraud-v3", message="forbidden"))
    assert out.getvalue().splitlines() == [
        "  ~ update    kubernetes:apps/v1:Deployment  fraud-v1  updating  weights 90 -> 50",
        "  ~ update    kubernetes:apps/v1:Deployment  fraud-v1  updated  weights 90 -> 50",
        "  - delete    kubernetes:apps/v1:Deployment  fraud-v3  deleting",
        "  - delete    kubernetes:apps/v1:Deployment  fraud-v3  FAILED",
        "  error: fraud-v3: forbidden",
    ]


def test_a_plan_prints_each_planned_step_once() -> None:
    out = io.StringIO()
    progress = output.Progress(out, plain=True)
    progress.event(step("start", "create", "fraud-v2", planning=True))
    progress.event(step("done", "create", "fraud-v2", planning=True))
    assert out.getvalue() == "  + create    kubernetes:apps/v1:Deployment  fraud-v2\n"


def test_events_from_many_threads_never_interleave_within_a_line() -> None:
    out = io.StringIO()
    progress = output.Progress(out, plain=True)

    def emit(i: int) -> None:
        for j in range(50):
            progress.event(step("start", "create", f"r{i}-{j}"))

    threads = [threading.Thread(target=emit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = out.getvalue().splitlines()
    assert len(lines) == 400
    assert all(
        line.startswith("  + create    kubernetes:apps/v1:Deployment  r")
        and line.endswith("creating")
        for line in lines
    )


def test_traffic_bars_plain_and_terminal() -> None:
    assert output.traffic_bars({"v1": 90, "v2": 10}, plain=True, width=10) == (
        "  v1  #########.   90%\n  v2  #.........   10%"
    )
    assert output.traffic_bars({"stable": 100}, plain=False, width=4) == (
        "  stable  \u2588\u2588\u2588\u2588  100%"
    )


def test_history_table() -> None:
    rows = [
        HistoryRow(
            2,
            datetime(2025, 3, 1, 12, 0, 5),
            "update",
            "failed",
            "mlserve promote --weight 50",
            TrafficState("v1", "v2", 50),
            {},
        ),
        HistoryRow(
            1,
            datetime(2025, 3, 1, 11, 0, 0),
            "update",
            "succeeded",
            "mlserve deploy",
            TrafficState("v1"),
            {},
        ),
    ]
    assert output.render_history(rows).splitlines() == [
        "REV  TIME (UTC)           KIND    RESULT     STABLE  CANARY  WEIGHT  COMMAND",
        "2    2025-03-01 12:00:05  update  failed     v1      v2      50%     mlserve promote "
        "--weight 50",
        "1    2025-03-01 11:00:00  update  succeeded  v1      -       -       mlserve deploy",
    ]
    assert output.render_history([]) == "no updates yet"


def test_describe_traffic_mentions_the_previous_stable() -> None:
    assert output.describe_traffic(TrafficState("v2", previous="v1")) == (
        "v2 100% (previous v1 at 0%)"
    )
    assert output.describe_traffic(None) == "nothing deployed"
