"""What humans and pipelines see: tables, live progress from engine events, traffic bars, JSON.

Without a terminal, or with CI=true, everything is plain lines: no colour, no live redraws.
NO_COLOR (https://no-color.org) turns colour off and keeps the rest.
"""

from __future__ import annotations

import json
import os
import shutil
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
    """No colour, spinners or prompts: CI=true, TERM=dumb, or output that is not a terminal."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return True
    if os.environ.get("TERM") == "dumb":
        return True
    stream = stream or sys.stdout
    return not (hasattr(stream, "isatty") and stream.isatty())


# SGR codes per role: what colour means is the same everywhere.
_COLOURS = {
    "error": "1;31",
    "warning": "33",
    "ok": "32",
    "create": "32",
    "update": "33",
    "delete": "31",
    "replace": "35",
    "stable": "32",
    "canary": "36",
}
_OP_ROLES = {
    "create": "create",
    "create-replacement": "create",
    "update": "update",
    "refresh": "update",
    "delete": "delete",
    "delete-replaced": "delete",
    "replace": "replace",
}


def colour(plain: bool) -> bool:
    """Colour on a terminal that is not plain (is_plain), unless NO_COLOR is set."""
    return not plain and not os.environ.get("NO_COLOR")


def paint(text: str, role: str, enabled: bool) -> str:
    return f"\x1b[{_COLOURS[role]}m{text}\x1b[0m" if enabled and text else text


def _symbol(op: str, enabled: bool) -> str:
    return paint(SYMBOLS.get(op, " "), _OP_ROLES.get(op, "update"), enabled)


def display_kind(type_token: str) -> str:
    """What a person calls a resource: its kind for Kubernetes (VirtualService), else the
    provider and kind (kong:Target), so a Kong Service is not taken for a Kubernetes one."""
    package, _, rest = type_token.partition(":")
    kind = rest.rsplit(":", 1)[-1] or type_token
    return kind if package == "kubernetes" else f"{package}:{kind}"


def warnings_text(warnings: Sequence[str], plain: bool) -> list[str]:
    return [f"{paint('warning:', 'warning', colour(plain))} {w}" for w in warnings]


def to_json(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=False, default=str)


_printed = {"document": False}


def print_document(document: Any) -> None:
    """The one JSON document of a --json run, on stdout."""
    print(to_json(document), flush=True)
    _printed["document"] = True


def document_printed() -> bool:
    """Whether this run printed its document already (a later failure then prints none)."""
    return _printed["document"]


def start_run() -> None:
    _printed["document"] = False


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
    """One bar per routed version, stable first (green), then the canary (cyan)."""
    if not weights:
        return ""
    full, empty = ("#", ".") if plain else ("\u2588", "\u2591")
    pad = max(len(v) for v in weights)
    lines = []
    for (version, pct), role in zip(weights.items(), ("stable", "canary", "canary"), strict=False):
        filled = round(pct * width / 100)
        bar = paint(full * filled, role, colour(plain)) + empty * (width - filled)
        lines.append(f"  {version.ljust(pad)}  {bar}  {pct:>3}%")
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

    def __init__(
        self,
        stream: TextIO,
        *,
        plain: bool,
        notes: TextIO | None = None,
        width: int | None = None,
    ) -> None:
        self.stream = stream
        self.notes = notes or sys.stderr
        self.plain = plain
        self.width = width  # the live display's; None: the terminal's (COLUMNS, then the tty)
        self._lock = threading.RLock()  # a signal handler may note() while we hold it
        self._stream_closed = False
        self._rows: dict[str, list[str]] = {}
        self._live: Any = None
        self.summary: Mapping[str, int] | None = None

    def _line(self, e: Event, state: str) -> str:
        weights = describe_weights(e.weights)
        parts = [
            f"{_symbol(e.op, colour(self.plain))} {e.op:<8}",
            display_kind(e.type),
            e.name,
            state,
            weights,
        ]
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
                    _symbol(e.op, colour(self.plain)),
                    e.op,
                    display_kind(e.type),
                    e.name,
                    state,
                    describe_weights(e.weights),
                ]
                if self.plain:
                    self._write(self._line(e, state))
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

    def _write(self, text: str) -> None:
        """A line of progress; once stdout is closed (`| head`), the operation goes on silently."""
        if self._stream_closed:
            return
        try:
            print(text, file=self.stream, flush=True)
        except BrokenPipeError:
            self._stream_closed = True

    def _print(self, text: str) -> None:
        if self._live is not None:
            from rich.text import Text

            self._live.console.print(Text.from_ansi(text), highlight=False)
        else:
            self._write(text)

    def _redraw(self) -> None:
        from rich.table import Table
        from rich.text import Text

        if self._live is None:
            from rich.console import Console
            from rich.live import Live

            width = self.width or shutil.get_terminal_size().columns
            console = Console(file=self.stream, highlight=False, width=width)
            self._live = Live(console=console, auto_refresh=False, transient=False)
            self._live.start()

        grid = Table.grid(padding=(0, 2))
        # symbol, op, kind, name, state, weights: a narrow terminal wraps the name and the
        # weights, and never cuts the kind
        for wraps in (False, False, False, True, False, True):
            grid.add_column(no_wrap=not wraps, overflow="fold")
        for row in self._rows.values():
            grid.add_row(*(Text.from_ansi(cell) for cell in row))
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
    lines += warnings_text(report.warnings, plain)
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
    weights = report.outputs.get("weights")
    bars = weights if isinstance(weights, Mapping) else report.plan.traffic.weights()
    lines.append(f"  traffic: {describe_traffic(report.plan.traffic)}")
    lines.append(traffic_bars(bars, plain))
    lines += warnings_text(report.warnings, plain)
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
    return text + ("\n" + bars if bars else "")


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
    lines += warnings_text(report.warnings, plain)
    return "\n".join(lines)


def render_destroy(report: DestroyReport) -> str:
    if not report.applied:
        return "destroy cancelled: nothing was changed"
    return (
        f"Destroyed stack '{report.stack}' of project '{report.project}': "
        f"{report.changes.get('delete', 0)} resources deleted (the stack and its history remain)"
    )


def render_doctor(checks: Sequence[Check], plain: bool) -> str:
    statuses = ["ok" if c.ok else "FAILED" for c in checks]
    lines = table(
        ["CHECK", "STATUS", "DETAIL"],
        [[c.name, status, c.detail] for c, status in zip(checks, statuses, strict=True)],
    ).splitlines()
    if colour(plain):
        at = max(len("CHECK"), *(len(c.name) for c in checks)) + 2
        for i, (c, status) in enumerate(zip(checks, statuses, strict=True), start=1):
            painted = paint(status, "ok" if c.ok else "error", True)
            lines[i] = lines[i][:at] + painted + lines[i][at + len(status) :]
    text = "\n".join(lines)
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
        self.plain = is_plain(sys.stdout) or json_out
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
            print_document(document)
        elif text:
            print(text, flush=True)

    def show_plan(self, text: str) -> None:
        """The plan before a confirmation: on stderr when stdout is reserved for JSON."""
        self.close()
        print(text, file=sys.stderr if self.json else sys.stdout, flush=True)

    def warn(self, text: str) -> None:
        [line] = warnings_text([text], is_plain(sys.stderr) or self.json)
        print(line, file=sys.stderr, flush=True)

    def confirm(self, question: str) -> bool:
        import typer

        self.close()
        return typer.confirm(question, default=False, err=True)
