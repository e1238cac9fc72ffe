"""What humans and pipelines see: tables, live progress from engine events, traffic bars, JSON.

Without a terminal, or with CI=true, everything is plain lines: no colour, no live redraws.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from mlserve.engine import Event
    from mlserve.ops import (
        Check,
        DeployReport,
        DestroyReport,
        HistoryRow,
        PlanReport,
        SetupReport,
        StatusReport,
        TrafficReport,
    )
    from mlserve.traffic import TrafficState

SYMBOLS = {
    "create": "+",
    "update": "~",
    "delete": "-",
    "replace": "+-",
    "create-replacement": "++",
    "delete-replaced": "--",
    "read": ">",
    "refresh": "~",
    "import": "=",
}
DONE = {
    "create": "created",
    "update": "updated",
    "delete": "deleted",
    "replace": "replaced",
    "create-replacement": "created",
    "delete-replaced": "deleted",
    "read": "read",
    "refresh": "refreshed",
    "import": "imported",
}
RUNNING = {
    "create": "creating",
    "update": "updating",
    "delete": "deleting",
    "replace": "replacing",
    "create-replacement": "creating",
    "delete-replaced": "deleting",
}
PLANNED = {
    "create": "to create",
    "update": "to update",
    "delete": "to delete",
    "replace": "to replace",
}


def is_plain(stream: TextIO | None = None) -> bool:
    """No colour, spinners or prompts: CI=true, or output that is not a terminal."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return True
    stream = stream or sys.stdout
    return not (hasattr(stream, "isatty") and stream.isatty())


def to_json(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=False, default=str)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def describe_weights(weights: Sequence[tuple[str, Any, Any]]) -> str:
    if not weights:
        return ""
    old = "/".join("-" if o is None else str(o) for _, o, _ in weights)
    new = "/".join("-" if n is None else str(n) for _, _, n in weights)
    if all(o is None for _, o, _ in weights):
        return f"weights {new}"
    return f"weights {old} -> {new}"


def describe_traffic(state: TrafficState | None) -> str:
    if state is None:
        return "nothing deployed"
    text = ", ".join(f"{v} {w}%" for v, w in state.weights().items())
    if state.previous:
        text += f" (previous {state.previous} at 0%)"
    return text


def traffic_bars(weights: Mapping[str, int], plain: bool, width: int = 30) -> str:
    if not weights:
        return ""
    full, empty = ("#", ".") if plain else ("\u2588", "\u2591")
    pad = max(len(v) for v in weights)
    lines = []
    for version, pct in weights.items():
        filled = round(pct * width / 100)
        lines.append(
            f"  {version.ljust(pad)}  {full * filled}{empty * (width - filled)}  {pct:>3}%"
        )
    return "\n".join(lines)


def _counts(changes: Mapping[str, int], planned: bool) -> str:
    words = PLANNED if planned else DONE
    parts = [f"{n} {words.get(op, op)}" for op, n in changes.items() if op != "same" and n]
    if changes.get("same"):
        parts.append(f"{changes['same']} unchanged")
    return ", ".join(parts) or "no changes"


# --- live progress --------------------------------------------------------------------------


class Progress:
    """The per-resource progress of plan/deploy/destroy, fed from the engine's event thread."""

    def __init__(self, stream: TextIO, *, plain: bool, notes: TextIO | None = None) -> None:
        self.stream = stream
        self.notes = notes or sys.stderr
        self.plain = plain
        self._lock = threading.RLock()  # a signal handler may note() while we hold it
        self._rows: dict[str, list[str]] = {}
        self._live: Any = None
        self.summary: Mapping[str, int] | None = None

    def _line(self, e: Event, state: str) -> str:
        weights = describe_weights(e.weights)
        parts = [f"{SYMBOLS.get(e.op, ' ')} {e.op:<8}", e.type, e.name, state, weights]
        return "  " + "  ".join(p for p in parts if p)

    def event(self, e: Event) -> None:
        with self._lock:
            if e.kind in ("start", "done", "failed") and e.op != "same":
                if e.kind == "start":
                    state = "" if e.planning else RUNNING.get(e.op, "running")
                elif e.kind == "done":
                    state = "" if e.planning else DONE.get(e.op, "done")
                else:
                    state = "FAILED"
                if e.planning and e.kind == "done":
                    return
                self._rows[e.urn] = [
                    SYMBOLS.get(e.op, " "),
                    e.op,
                    e.type,
                    e.name,
                    state,
                    describe_weights(e.weights),
                ]
                if self.plain:
                    print(self._line(e, state), file=self.stream, flush=True)
                else:
                    self._redraw()
            elif e.kind == "diag":
                where = f"{e.name}: " if e.name else ""
                self._print(f"  {e.severity}: {where}{e.message}")
            elif e.kind == "summary":
                self.summary = e.changes

    def note(self, text: str) -> None:
        with self._lock:
            print(text, file=self.notes, flush=True)

    def _print(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    def _redraw(self) -> None:
        from rich.table import Table

        if self._live is None:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.stream, highlight=False)
            self._live = Live(console=console, auto_refresh=False, transient=False)
            self._live.start()

        grid = Table.grid(padding=(0, 2))
        for _ in range(6):
            grid.add_column()
        for row in self._rows.values():
            grid.add_row(*row)
        self._live.update(grid, refresh=True)

    def close(self) -> None:
        """End one operation's display; the next operation starts a fresh one."""
        with self._lock:
            if self._live is not None:
                self._live.stop()
                self._live = None
            self._rows.clear()


class Quiet:
    """A sink for --json runs: notes still go to stderr, progress nowhere."""

    def __init__(self, notes: TextIO | None = None) -> None:
        self.notes = notes or sys.stderr

    def event(self, e: Event) -> None:
        pass

    def note(self, text: str) -> None:
        print(text, file=self.notes, flush=True)

    def close(self) -> None:
        pass


# --- reports --------------------------------------------------------------------------------


def render_plan(report: PlanReport, plain: bool) -> str:
    lines = [
        f"Plan for stack '{report.stack}' of project '{report.project}' (backend {report.backend}):"
    ]
    if report.live is None:
        lines.append(f"  traffic: {describe_traffic(report.traffic)} (first deploy)")
    elif report.live == report.traffic:
        lines.append(f"  traffic: {describe_traffic(report.traffic)} (unchanged)")
    else:
        lines.append(
            f"  traffic: {describe_traffic(report.live)} -> {describe_traffic(report.traffic)}"
        )
    lines.append(traffic_bars(report.traffic.weights(), plain))
    lines.append(f"  resources: {_counts(report.changes, planned=True)}")
    lines += [f"warning: {w}" for w in report.warnings]
    return "\n".join(lines)


def render_deploy(report: DeployReport, plain: bool) -> str:
    if not report.applied:
        return "deploy cancelled: nothing was changed"
    rev = f" revision {report.revision}" if report.revision is not None else ""
    lines = [
        f"Deployed{rev} of stack '{report.plan.stack}': {_counts(report.changes, planned=False)}"
    ]
    endpoint = report.outputs.get("endpoint")
    if endpoint:
        lines.append(f"  endpoint: {endpoint}")
    lines.append(f"  traffic: {describe_traffic(report.plan.traffic)}")
    lines.append(traffic_bars(report.plan.traffic.weights(), plain))
    lines += [f"warning: {w}" for w in report.warnings]
    return "\n".join(lines)


def render_status(report: StatusReport, plain: bool) -> str:
    last = report.last
    rows = [
        ("stack", f"{report.stack} (project {report.project})"),
        ("backend", report.backend),
        ("endpoint", report.endpoint or "-"),
        ("versions", ", ".join(report.versions) or "-"),
        ("traffic", describe_traffic(report.traffic)),
        (
            "last update",
            f"#{last.revision} {last.kind} {last.result} at "
            f"{last.time:%Y-%m-%d %H:%M:%S} UTC" + (f" ({last.command})" if last.command else "")
            if last
            else "-",
        ),
    ]
    if report.drift is not None:
        drift = ", ".join(f"{n} {DONE.get(op, op)}" for op, n in report.drift.items())
        rows.append(("drift", drift or "none: the real world matches the state"))
    width = max(len(k) for k, _ in rows)
    text = "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
    bars = traffic_bars(report.weights, plain)
    notes = "".join(f"\nnote: {n}" for n in report.notes)
    return text + ("\n" + bars if bars else "") + notes


def render_history(rows: Sequence[HistoryRow]) -> str:
    if not rows:
        return "no updates yet"
    return table(
        ["REV", "TIME (UTC)", "KIND", "RESULT", "STABLE", "CANARY", "WEIGHT", "COMMAND"],
        [
            [
                r.revision,
                f"{r.time:%Y-%m-%d %H:%M:%S}",
                r.kind,
                r.result,
                r.traffic.stable if r.traffic else "-",
                (r.traffic.canary or "-") if r.traffic else "-",
                (f"{r.traffic.weight}%" if r.traffic.canary else "-") if r.traffic else "-",
                r.command or "-",
            ]
            for r in rows
        ],
    )


def render_traffic_change(report: TrafficReport, plain: bool) -> str:
    rev = f" revision {report.revision}" if report.revision is not None else ""
    if report.reapplied is not None:
        what = f"Re-applied revision {report.reapplied} as{rev}"
    else:
        verb = {"promote": "Promoted", "rollback": "Rolled back"}[report.command.split()[1]]
        what = f"{verb}:{rev}"
    scope = (
        f"routing only ({len(report.targets)} "
        f"resource{'' if len(report.targets) == 1 else 's'} targeted)"
        if report.targets is not None
        else "full update"
    )
    lines = [
        f"{what} of stack '{report.stack}' of project '{report.project}', {scope}: "
        f"{_counts(report.changes, planned=False)}",
        f"  before: {describe_traffic(report.before)}",
    ]
    if report.before is not None:
        lines.append(traffic_bars(report.before.weights(), plain))
    lines.append(f"  after:  {describe_traffic(report.after)}")
    lines.append(traffic_bars(report.after.weights(), plain))
    lines += [f"warning: {w}" for w in report.warnings]
    return "\n".join(lines)


def render_destroy(report: DestroyReport) -> str:
    if not report.applied:
        return "destroy cancelled: nothing was changed"
    return (
        f"Destroyed stack '{report.stack}' of project '{report.project}': "
        f"{report.changes.get('delete', 0)} resources deleted (the stack and its history remain)"
    )


def render_doctor(checks: Sequence[Check]) -> str:
    text = table(
        ["CHECK", "STATUS", "DETAIL"],
        [[c.name, "ok" if c.ok else "MISSING", c.detail] for c in checks],
    )
    fixes = [f"  {c.name}: {c.fix}" for c in checks if not c.ok and c.fix]
    return text + ("\n\nTo fix:\n" + "\n".join(fixes) if fixes else "")


def render_setup(report: SetupReport) -> str:
    lines = [f"Pulumi CLI v{report.version}: {report.cli}"]
    for p in report.plugins:
        lines.append(f"plugin {p}: installed")
    if not report.plugins:
        lines.append("no provider plugins needed")
    return "\n".join(lines)


# --- the CLI's printer ----------------------------------------------------------------------


class Ui:
    """One command's output: a JSON document or text on stdout, progress and notes apart."""

    def __init__(self, json_out: bool) -> None:
        self.json = json_out
        self.plain = is_plain(sys.stdout)
        self._sink: Progress | Quiet | None = None

    def sink(self) -> Progress | Quiet:
        if self._sink is None:
            # With --json, stdout carries only the document: progress goes nowhere.
            self._sink = Quiet() if self.json else Progress(sys.stdout, plain=self.plain)
        return self._sink

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()

    def show(self, text: str, document: Any) -> None:
        self.close()
        if self.json:
            print(to_json(document), flush=True)
        elif text:
            print(text, flush=True)

    def show_plan(self, text: str) -> None:
        """The plan before a confirmation: on stderr when stdout is reserved for JSON."""
        self.close()
        print(text, file=sys.stderr if self.json else sys.stdout, flush=True)

    def warn(self, text: str) -> None:
        print(f"warning: {text}", file=sys.stderr, flush=True)

    def confirm(self, question: str) -> bool:
        import typer

        self.close()
        return typer.confirm(question, default=False, err=True)
