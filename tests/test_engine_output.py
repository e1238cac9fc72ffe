"""What the engine commands print: progress lines from event threads, bars, tables, colour."""

from __future__ import annotations

import io
import threading
from datetime import datetime

import pytest

from mlserve import output
from mlserve.engine import Event
from mlserve.ops import HistoryRow
from mlserve.traffic import Mirror, TrafficState


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
        "  ~ update    Deployment  fraud-v1  updating  weights 90 -> 50",
        "  ~ update    Deployment  fraud-v1  updated  weights 90 -> 50",
        "  - delete    Deployment  fraud-v3  deleting",
        "  - delete    Deployment  fraud-v3  FAILED",
        "  error: fraud-v3: forbidden",
    ]


def test_a_plan_prints_each_planned_step_once() -> None:
    out = io.StringIO()
    progress = output.Progress(out, plain=True)
    progress.event(step("start", "create", "fraud-v2", planning=True))
    progress.event(step("done", "create", "fraud-v2", planning=True))
    assert out.getvalue() == "  + create    Deployment  fraud-v2\n"


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
        line.startswith("  + create    Deployment  r") and line.endswith("creating")
        for line in lines
    )


def test_progress_shows_the_kind_and_name_of_every_resource_type() -> None:
    assert [
        output.display_kind(t)
        for t in (
            "kubernetes:networking.istio.io/v1:VirtualService",
            "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute",
            "kong:index/target:Target",
            "azure-native:apimanagement:ApiVersionSet",
        )
    ] == ["VirtualService", "HTTPRoute", "kong:Target", "azure-native:ApiVersionSet"]


def _live(width: int) -> str:
    out = io.StringIO()
    progress = output.Progress(out, plain=False, width=width)
    name = "fraud-detector-champion-challenger-v10"
    istio = "kubernetes:networking.istio.io/v1:VirtualService"
    progress.event(Event(kind="start", op="update", urn="u1", type=istio, name=name))
    progress.close()
    return out.getvalue()


def test_the_live_display_uses_the_width_it_has_and_never_cuts_a_kind_or_a_name() -> None:
    wide = _live(120)
    assert "VirtualService  fraud-detector-champion-challenger-v10  updating" in wide
    narrow = _live(50)
    assert max(len(line) for line in narrow.splitlines()) <= 50
    assert "VirtualService" in narrow
    lines = narrow.splitlines()
    start = lines[0].index("fraud")
    width = lines[0].index(" ", start) - start
    column = "".join(line[start : start + width].strip() for line in lines)
    assert column == "fraud-detector-champion-challenger-v10"  # folded over lines, whole


def test_plain_progress_keeps_going_when_stdout_is_closed() -> None:
    class Closed(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError

    progress = output.Progress(Closed(), plain=True)
    progress.event(step("start", "create", "fraud-v1"))  # no exception: the update goes on
    progress.event(step("done", "create", "fraud-v1"))


def test_traffic_bars_plain_and_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert output.traffic_bars({"v1": 90, "v2": 10}, plain=True, width=10) == (
        "  v1  #########.   90%\n  v2  #.........   10%"
    )
    assert output.traffic_bars({"v1": 75, "v2": 25}, plain=False, width=4) == (
        "  v1  \x1b[32m\u2588\u2588\u2588\x1b[0m\u2591   75%\n"
        "  v2  \x1b[36m\u2588\x1b[0m\u2591\u2591\u2591   25%"
    )
    monkeypatch.setenv("NO_COLOR", "1")
    assert output.traffic_bars({"stable": 100}, plain=False, width=4) == (
        "  stable  \u2588\u2588\u2588\u2588  100%"
    )


def test_plan_symbols_and_warnings_are_coloured_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = io.StringIO()
    progress = output.Progress(out, plain=False, width=100)
    progress.event(step("start", "delete", "fraud-v3", planning=True))
    progress.close()
    assert "-  delete" in out.getvalue()
    assert output._symbol("delete", True) == "\x1b[31m-\x1b[0m"
    assert output._symbol("create", True) == "\x1b[32m+\x1b[0m"
    assert output.warnings_text(["live weight kept"], plain=False) == [
        "\x1b[33mwarning:\x1b[0m live weight kept"
    ]
    assert output.warnings_text(["live weight kept"], plain=True) == ["warning: live weight kept"]


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("env", "plain", "colour"),
    [
        ({}, False, True),
        ({"NO_COLOR": "1"}, False, False),
        ({"NO_COLOR": ""}, False, True),  # no-color.org: present and not empty
        ({"CI": "true"}, True, False),
        ({"TERM": "dumb"}, True, False),
    ],
)
def test_colour_follows_no_color_ci_and_the_terminal(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], plain: bool, colour: bool
) -> None:
    for var in ("NO_COLOR", "CI", "TERM"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert output.is_plain(Tty()) is plain
    assert output.colour(output.is_plain(Tty())) is colour
    assert output.is_plain(io.StringIO()) is True  # not a terminal


def test_history_table() -> None:
    rows = [
        HistoryRow(
            3,
            datetime(2025, 3, 1, 12, 1, 0),
            "update",
            "succeeded",
            "mlserve mirror --version v2 --percent 20",
            TrafficState("v1", "v2", 0, mirror=Mirror("v2", 20)),
            {},
        ),
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
        "REV  TIME (UTC)           KIND    RESULT     STABLE  CANARY  WEIGHT  MIRROR  COMMAND",
        "3    2025-03-01 12:01:00  update  succeeded  v1      v2      0%      v2 20%  "
        "mlserve mirror --version v2 --percent 20",
        "2    2025-03-01 12:00:05  update  failed     v1      v2      50%     -       "
        "mlserve promote --weight 50",
        "1    2025-03-01 11:00:00  update  succeeded  v1      -       -       -       "
        "mlserve deploy",
    ]
    assert output.render_history([]) == "no updates yet"


def test_describe_traffic_mentions_the_previous_stable_and_the_mirror() -> None:
    assert output.describe_traffic(TrafficState("v2", previous="v1")) == (
        "v2 100% (previous v1 at 0%)"
    )
    assert output.describe_traffic(TrafficState("v1", "v2", mirror=Mirror("v2", 20))) == (
        "v1 100%, v2 0%, mirror 20% copied to v2"
    )


def test_a_mirror_is_drawn_below_the_split_and_apart_from_it() -> None:
    state = TrafficState("v1", "v2", 0, mirror=Mirror("v2", 20))
    assert output.state_bars(state, plain=True).splitlines() == [
        "  v1      ##############################  100%",
        "  v2      ..............................    0%",
        "  mirror  ~~~~~~........................   20%  copied to v2",
    ]
    assert output.describe_traffic(None) == "nothing deployed"
