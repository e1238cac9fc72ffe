"""What humans and pipelines see: tables, live progress from engine events, traffic bars, JSON.

Without a terminal, or with CI=true, everything is plain lines: no colour, no live redraws.
NO_COLOR (https://no-color.org) turns colour off and keeps the rest.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from mlserve.backends.base import Served
    from mlserve.capacity import Change
    from mlserve.engine import Event, Tally
    from mlserve.errors import Problem
    from mlserve.live import TrafficReport
    from mlserve.ops import (
        Check,
        DeployReport,
        DestroyReport,
        HistoryRow,
        PlanReport,
        Running,
        SetupReport,
        StatusReport,
    )
    from mlserve.ops_rollout import RolloutReport
    from mlserve.ops_rollout import Update as RolloutUpdate
    from mlserve.rollout import Measurement, RolloutStatus
    from mlserve.rollout import Progress as RolloutProgress
    from mlserve.traffic import Mirror, TrafficState

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
    "note": "36",
    "ok": "32",
    "create": "32",
    "update": "33",
    "delete": "31",
    "replace": "35",
    "stable": "32",
    "canary": "36",
    "mirror": "35",
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


def problem_line(problem: Problem, enabled: bool) -> str:
    """A problem or note of a spec as `validate` prints it (file:line:column: path: message). In
    colour, its place takes the colour of its severity, an error's, a warning's or a note's, and
    so does the `warning:` or `note:` that starts a note's message."""
    if not enabled:
        return str(problem)
    severity = next(
        (s for s in ("warning", "note") if problem.message.startswith(f"{s}: ")), "error"
    )
    message = problem.message
    if severity != "error":
        message = paint(f"{severity}:", severity, True) + message[len(severity) + 1 :]
    where = paint(f"{problem.file}:{problem.line}:{problem.column}:", severity, True)
    path = f" {problem.path}:" if problem.path else ""
    return f"{where}{path} {message}"


def warnings_text(warnings: Sequence[str], plain: bool) -> list[str]:
    return [f"{paint('warning:', 'warning', colour(plain))} {w}" for w in warnings]


def to_json(document: Any) -> str:
    """Standard JSON: a number JSON cannot write (NaN, an infinity, which a record from an older
    mlserve may hold) becomes a string, as a measurement writes "+Inf"."""
    try:
        return json.dumps(document, indent=2, sort_keys=False, default=str, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(document), indent=2, sort_keys=False, default=str)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


_printed = {"document": False}


def print_document(document: Any) -> None:
    """The one JSON document of a --json run, on stdout."""
    print(to_json(document), flush=True)
    _printed["document"] = True


def begin_document() -> None:
    """This run's document is being written (render's, in its own format): a later failure or
    interrupt prints none after it."""
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
    if state.mirror:
        text += f", mirror {state.mirror.describe()}"
    return text


def describe_served(served: Served) -> str:
    """What the gateway really sends, beside the spec's split: `Kong sends v1 95.24%, ...`."""
    shares = ", ".join(f"{v} {p:g}%" for v, p in served.shares.items())
    return f"{served.gateway} sends {shares} ({served.why})"


def traffic_bars(
    weights: Mapping[str, int], plain: bool, width: int = 30, mirror: Mirror | None = None
) -> str:
    """One bar per routed version, stable first (green), then the canary (cyan); a mirror's
    share (magenta, `~` when plain) below them, apart: its copies are not served."""
    if not weights:
        return ""
    full, empty = ("#", ".") if plain else ("\u2588", "\u2591")
    pad = max(len(v) for v in [*weights, *(["mirror"] if mirror else [])])
    lines = []
    for (version, pct), role in zip(weights.items(), ("stable", "canary", "canary"), strict=False):
        filled = round(pct * width / 100)
        bar = paint(full * filled, role, colour(plain)) + empty * (width - filled)
        lines.append(f"  {version.ljust(pad)}  {bar}  {pct:>3}%")
    if mirror is not None:
        filled = round(mirror.percent * width / 100)
        copy = "~" if plain else "\u2592"
        bar = paint(copy * filled, "mirror", colour(plain)) + empty * (width - filled)
        lines.append(
            f"  {'mirror'.ljust(pad)}  {bar}  {mirror.percent:>3}%  copied to {mirror.version}"
        )
    return "\n".join(lines)


def state_bars(state: TrafficState, plain: bool) -> str:
    """traffic_bars of a traffic state: its split and its mirror."""
    return traffic_bars(state.weights(), plain, mirror=state.mirror)


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _counts(changes: Mapping[str, int], planned: bool, tally: Tally | None = None) -> str:
    """The counts of the resources listed; what else Pulumi's own summary counts (the stack
    itself, an explicit provider) is named when it changed, since Pulumi's count then differs."""
    words = PLANNED if planned else DONE
    parts = [f"{n} {words.get(op, op)}" for op, n in changes.items() if op != "same" and n]
    if changes.get("same"):
        parts.append(f"{changes['same']} unchanged")
    text = ", ".join(parts) or "no changes"
    extras = [name for name, op in (tally.extras.items() if tally else ()) if op != "same"]
    if extras:
        text += f" (Pulumi also counts {_and(extras)})"
    return text


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
            _line(self.notes, text)

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
        _line(self.notes, text)

    def close(self) -> None:
        pass


def _line(stream: TextIO, text: str) -> None:
    """One line in one write: a signal handler that interrupts it (a second Ctrl-C while the
    first one's note is printed) cannot leave the line without its end."""
    stream.write(text + "\n")
    stream.flush()


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
    lines.append(state_bars(report.traffic, plain))
    if report.served is not None:
        lines.append(f"  {describe_served(report.served)}")
    lines += capacity_lines(report.capacity, planned=True)
    lines.append(f"  resources: {_counts(report.changes, planned=True, tally=report.tally)}")
    lines += warnings_text(report.warnings, plain)
    return "\n".join(lines)


def capacity_lines(changes: Sequence[Change], planned: bool) -> list[str]:
    """`  replicas: v2 1 -> 2, Ready before the weight moved`, one line a version."""
    out = []
    for c in changes:
        if c.when == "before":
            when = "Ready before the traffic moves" if planned else "Ready before the traffic moved"
        else:
            when = (
                "scaled down after the traffic moves"
                if planned
                else "scaled down after the traffic moved"
            )
        out.append(f"  replicas: {c.version} {c.before.describe()} -> {c.after.describe()}, {when}")
    return out


def render_deploy(report: DeployReport, plain: bool) -> str:
    if not report.applied:
        return "deploy cancelled: nothing was changed"
    rev = f" revision {report.revision}" if report.revision is not None else ""
    lines = [
        f"Deployed{rev} of stack '{report.plan.stack}': "
        + _counts(report.changes, planned=False, tally=report.tally)
    ]
    endpoint = report.outputs.get("endpoint")
    if endpoint:
        lines.append(f"  endpoint: {endpoint}")
    lines.append(f"  traffic: {describe_traffic(report.plan.traffic)}")
    lines.append(state_bars(report.plan.traffic, plain))
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
        *([("served", describe_served(report.served))] if report.served else []),
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
        if not drift:
            drift = (
                "none since the last refresh"
                if report.drifted
                else "none: the real world matches the state"
            )
        rows.append(("drift", drift))
    if report.rollout is not None:
        rows.append(("rollout", render_rollout_status(report.rollout)))
    width = max(len(k) for k, _ in rows)
    text = "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
    bars = state_bars(report.traffic, plain) if report.traffic else ""
    notes = "".join(f"\nnote: {n}" for n in report.notes)
    if report.drifted:
        applied = f"revision {report.applied}" if report.applied else "the last update"
        notes += "".join(f"\nwarning: {d.describe(applied)}" for d in report.drifted)
        notes += (
            f"\nnote: the traffic shown is what {applied} applied; the next mlserve update of the "
            "routing (deploy, promote, rollback) puts back what it declares"
        )
    replicas = "\n" + replicas_table(report.replicas) if report.replicas else ""
    return text + replicas + ("\n" + bars if bars else "") + notes


def replicas_table(rows: Sequence[Running]) -> str:
    """Each image version's weight beside its replicas, desired and Ready, and its autoscaler."""

    def count(n: int | None) -> str:
        return "?" if n is None else str(n)

    return table(
        ["VERSION", "ROLE", "WEIGHT", "REPLICAS", "READY", "AUTOSCALER"],
        [
            [
                r.version,
                r.role or "-",
                "-" if r.weight is None else f"{r.weight}%",
                count(r.desired),
                count(r.ready),
                f"{r.autoscaler[0]}..{r.autoscaler[1]}" if r.autoscaler else "-",
            ]
            for r in rows
        ],
    )


def render_history(rows: Sequence[HistoryRow]) -> str:
    if not rows:
        return "no updates yet"
    return table(
        ["REV", "TIME (UTC)", "KIND", "RESULT", "STABLE", "CANARY", "WEIGHT", "MIRROR", "COMMAND"],
        [
            [
                r.revision,
                f"{r.time:%Y-%m-%d %H:%M:%S}",
                r.kind,
                r.result,
                r.traffic.stable if r.traffic else "-",
                (r.traffic.canary or "-") if r.traffic else "-",
                (f"{r.traffic.weight}%" if r.traffic.canary else "-") if r.traffic else "-",
                f"{r.traffic.mirror.version} {r.traffic.mirror.percent}%"
                if r.traffic and r.traffic.mirror
                else "-",
                r.command or "-",
            ]
            for r in rows
        ],
    )


def render_traffic_change(report: TrafficReport, plain: bool) -> str:
    rev = f" revision {report.revision}" if report.revision is not None else ""
    where = f"stack '{report.stack}' of project '{report.project}'"
    if report.dry_run:
        head = f"Dry run (nothing was changed) of `{report.command}` on {where}"
    elif report.reapplied is not None:
        head = f"Re-applied revision {report.reapplied} as{rev} of {where}"
    else:
        verb = {
            "promote": "Promoted",
            "rollback": "Rolled back",
            "mirror": "Mirror set" if report.after.mirror else "Mirror ended",
        }[report.command.split()[1]]
        head = f"{verb}:{rev} of {where}"
    counts = _update_counts(report)
    lines = [
        f"{head}, {counts}",
        f"  before: {describe_traffic(report.before)}",
    ]
    if report.before is not None:
        lines.append(state_bars(report.before, plain))
    lines.append(f"  after:  {describe_traffic(report.after)}")
    lines.append(state_bars(report.after, plain))
    lines += capacity_lines(report.capacity, planned=report.dry_run)
    lines += warnings_text(report.warnings, plain)
    return "\n".join(lines)


def _update_counts(report: TrafficReport) -> str:
    """A routing-only update's counts among the resources it targeted, and how many others it
    left alone (Pulumi counts those as unchanged); a full update's counts."""
    planned, tally = report.dry_run, report.tally
    if report.targets is None:
        return f"full update: {_counts(report.changes, planned, tally)}"
    n = len(report.targets)
    scaled = ", ".join(c.version for c in report.capacity)
    scope = f"routing and the replicas of {scaled}" if scaled else "routing only"
    head = f"{scope} ({n} resource{'' if n == 1 else 's'} targeted)"
    if tally is None or not tally.ops:
        return f"{head}: {_counts(report.changes, planned, tally)}"
    targeted = tally.among(report.targets)
    others = sum(report.changes.values()) - sum(targeted.values())
    text = f"{head}: {_counts(targeted, planned, tally)}"
    return text + (f"; {others} other{'' if others == 1 else 's'} not touched" if others else "")


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
    how = "installed" if report.cli_installed else "found, already suitable"
    lines = [f"Pulumi CLI v{report.version}: {report.cli} ({how})"]
    for p in report.plugins:
        lines.append(f"plugin {p}: {'installed' if p in report.plugins_installed else 'present'}")
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


# --- rollout ----------------------------------------------------------------------------------


def _clock(t: datetime) -> str:
    return f"{t:%H:%M:%S}"


def _value(m: Measurement) -> str:
    return "-" if m.value is None else f"{m.value:g}"


_RESULT = {"ok": "ok", "failed": "FAILED", "inconclusive": "inconclusive"}


def measurement_rows(measurements: Sequence[Measurement]) -> list[list[str]]:
    return [
        [
            _clock(m.time),
            str(m.step + 1),
            m.metric,
            _value(m),
            m.bounds,
            _RESULT[m.outcome] + (f": {m.note}" if m.note else ""),
        ]
        for m in measurements
    ]


MEASUREMENT_HEADERS = ["TIME (UTC)", "STEP", "METRIC", "VALUE", "BOUNDS", "RESULT"]


class RolloutView:
    """The live view of `mlserve rollout`: each step with its weight bars, each measurement as a
    table row as it comes, and in a terminal a countdown while it waits. Quiet with --json."""

    def __init__(
        self, stream: TextIO, *, plain: bool, quiet: bool, before_print: Any = None
    ) -> None:
        self.stream = stream
        self.plain = plain
        self.quiet = quiet
        self.before_print = before_print  # closes the engine's progress display
        self._widths: list[int] | None = None

    def _print(self, text: str) -> None:
        if self.before_print is not None:
            self.before_print()
        print(text, file=self.stream, flush=True)

    def deployed(self, report: DeployReport) -> None:
        if not self.quiet:
            self._print(render_deploy(report, self.plain))

    def stepped(self, progress: RolloutProgress, steps: int, update: RolloutUpdate) -> None:
        if self.quiet:
            return
        rev = f" (revision {update.revision})" if update.revision is not None else ""
        what = {
            "completed": "Completed",
            "aborted": "Aborted",
            "paused": f"Step {progress.step + 1}/{steps}, paused",
        }.get(progress.status, f"Step {progress.step + 1}/{steps}")
        self._print(f"{what}{rev}: {describe_traffic(update.after)}")
        self._print(state_bars(update.after, self.plain))
        for line in capacity_lines(update.capacity, planned=False):
            self._print(line)
        self._widths = None  # a fresh table header after each step

    def measured(self, progress: RolloutProgress, round_: list[Measurement], limit: int) -> None:
        if self.quiet:
            return
        rows = measurement_rows(round_)
        if self._widths is None:
            self._widths = [
                max(len(h), *(len(r[i]) for r in rows), 10 if i == 3 else 0)
                for i, h in enumerate(MEASUREMENT_HEADERS)
            ]
            self._print(self._row(MEASUREMENT_HEADERS))
        for row in rows:
            self._print(self._row(row))
        if (progress.failures or progress.inconclusive) and max(
            progress.failures, progress.inconclusive
        ) <= limit:  # past the limit, the abort says it
            self._print(
                f"  failed {progress.failures} of {limit} tolerated, "
                f"inconclusive {progress.inconclusive} of {limit}"
            )

    def _row(self, cells: Sequence[str]) -> str:
        assert self._widths is not None
        return (
            "  " + "  ".join(c.ljust(w) for c, w in zip(cells, self._widths, strict=False)).rstrip()
        )

    def sleep(self, until: datetime, progress: RolloutProgress, pause_end: datetime | None) -> None:
        import time

        left = (until - datetime.now(UTC)).total_seconds()
        if self.quiet or self.plain or left <= 1:
            time.sleep(max(0.0, left))
            return
        from rich.console import Console
        from rich.live import Live

        if self.before_print is not None:
            self.before_print()
        console = Console(file=self.stream, force_terminal=True, highlight=False)
        with Live(console=console, transient=True, auto_refresh=False) as live:
            while (left := (until - datetime.now(UTC)).total_seconds()) > 0:
                text = f"  step {progress.step + 1}: next measurement in {left:.0f}s"
                if pause_end is not None:
                    rest = max(0.0, (pause_end - datetime.now(UTC)).total_seconds())
                    text += f", {rest:.0f}s left in the pause"
                live.update(text, refresh=True)
                time.sleep(min(1.0, left))


def render_rollout(report: RolloutReport, plain: bool) -> str:
    if report.status == "dry-run":
        return _render_dry_run(report)
    p = report.progress
    step = f"step {report.step + 1}/{report.steps}" if report.step is not None else ""
    if report.status == "aborted":
        lines = [
            f"Rollout of {report.canary} aborted at {step}: {report.reason}",
            f"  traffic: {describe_traffic(report.traffic)}",
        ]
        failing = {m.metric for m in (p.last if p else ()) if m.outcome != "ok"}
        shown = [m for m in report.measurements if m.metric in failing]
        if shown:
            lines += ["", table(MEASUREMENT_HEADERS, measurement_rows(shown))]
    elif report.status == "paused":
        lines = [
            f"Rollout of {report.canary} paused at {step} ({describe_traffic(report.traffic)}): "
            "run `mlserve rollout --continue` to go on"
        ]
    elif report.status == "completed" and not report.updates:
        lines = [f"The rollout of {report.canary} is already completed: nothing to do"]
    else:
        lines = [f"Rollout of {report.canary} {report.status}: {describe_traffic(report.traffic)}"]
    if report.traffic is not None:
        lines.append(state_bars(report.traffic, plain))
    return "\n".join(lines)


def _render_dry_run(report: RolloutReport) -> str:
    """The steps and pauses the rollout would walk, then every query once."""
    start = f" from {describe_traffic(report.traffic)}" if report.traffic else ""
    lines = [
        f"Dry run (nothing was changed): the rollout of {report.canary} (stable "
        f"{report.stable}){start}"
    ]
    p = report.progress
    if p is not None and p.status in ("completed", "aborted"):
        lines.append(f"  the rollout of {p.canary} is {p.status}: no step to walk")
    elif report.walk:
        interval = report.interval
        rows = []
        for s in report.walk:
            if s.step is None:
                rows.append(["then", describe_traffic(s.traffic), "complete: the canary is stable"])
                continue
            if s.pause is None:
                pause = "-"
            elif s.pause == "manual":
                pause = "manual: until `mlserve rollout --continue`"
            else:
                pause = s.pause + (f", measured every {interval}" if interval else "")
            number = f"{s.step + 1}/{report.steps}" + (" (now)" if s.current else "")
            rows.append([number, describe_traffic(s.traffic), pause])
        lines.append(table(["STEP", "TRAFFIC", "PAUSE"], rows))
    if report.prometheus is None:
        lines.append("no analysis: nothing to query")
        return "\n".join(lines)
    rows = [
        [m.metric, _value(m), m.bounds, _would(m, report.errors.get(m.metric))]
        for m in report.measurements
    ]
    lines += [
        "",
        f"Every query once, at {report.prometheus}:",
        table(["METRIC", "VALUE", "BOUNDS", "RESULT"], rows),
    ]
    return "\n".join(lines)


def _would(m: Measurement, error: Exception | None) -> str:
    if error is not None:
        return f"ERROR: {error}"
    if m.outcome == "ok":
        return "would pass"
    if m.outcome == "failed":
        return "would FAIL"
    return f"inconclusive: {m.note}"


def render_rollout_status(status: RolloutStatus) -> str:
    p = status.progress
    text = f"{p.canary} {p.status}, step {p.step + 1} of {status.steps}, weight {status.weight}%"
    if status.time_left is not None:
        text += f", {format_seconds(status.time_left)} left in the pause"
    if p.reason:
        text += f": {p.reason}"
    if p.last:
        last = ", ".join(f"{m.metric} {m.describe()}" for m in p.last)
        text += f"\n{'':<13}last measured {_clock(p.last[0].time)} UTC: {last}"
    return text


def format_seconds(seconds: float) -> str:
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"
