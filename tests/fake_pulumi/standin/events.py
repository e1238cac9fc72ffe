"""Engine events (sdk/go/common/apitype/events.go shapes, pkg/engine/events.go emission) and the
non-interactive display built from them (pkg/backend/display).

`--event-log tcp://ADDR` streams them to the automation API's Events server (CLI > 3.205, the
generated `events_pb2_grpc` stub); a path appends JSON lines, which the automation API tails.
The stream ends with a cancelEvent (pkg/engine/events.go Close).
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from typing import Any

from .props import masked

# display.go: the glyph and verb of each step op (pkg/backend/display/progress.go, rows).
OP_GLYPH = {
    "same": "   ", "create": " + ", "update": " ~ ", "delete": " - ", "replace": " +-",
    "create-replacement": " ++", "delete-replaced": " --", "read": " > ", "refresh": " ~ ",
}  # fmt: skip
OP_DONE = {
    "create": "created", "update": "updated", "delete": "deleted", "replace": "replaced",
    "create-replacement": "created replacement", "delete-replaced": "deleted original",
    "read": "read", "refresh": "refreshed", "same": "",
}  # fmt: skip
OP_PREVIEW = {
    "create": "create", "update": "update", "delete": "delete", "replace": "replace",
    "create-replacement": "create replacement", "delete-replaced": "delete original",
    "read": "read", "refresh": "refresh", "same": "",
}  # fmt: skip
SUMMARY = [
    ("create", "+", "created", "to create"),
    ("update", "~", "updated", "to update"),
    ("delete", "-", "deleted", "to delete"),
    ("replace", "+-", "replaced", "to replace"),
]


class Events:
    def __init__(self, target: str | None, action: str, stack: str) -> None:
        self.target = target
        self.seq = 0
        self.mu = threading.Lock()
        self.lines: list[str] = [f"{action} ({stack}):"]
        self.diags: list[tuple[str, str, str]] = []  # (urn, severity, message)
        self.q: queue.Queue[Any] = queue.Queue()
        self.future: Any = None
        if target and target.startswith("tcp://"):
            import grpc

            from .stubs import stub

            self._request = stub("events_pb2").EventRequest
            channel = grpc.insecure_channel(target[len("tcp://") :])
            events = stub("events_pb2_grpc").EventsStub(channel)
            self.future = events.StreamEvents.future(iter(self.q.get, None))

    def emit(self, **event: Any) -> None:
        with self.mu:
            self.seq += 1
            line = json.dumps({"sequence": self.seq, "timestamp": int(time.time()), **event})
            if self.future is not None:
                self.q.put(self._request(event=line))
            elif self.target:
                with open(self.target, "a", encoding="utf-8") as f:
                    f.write(line + "\n")

    def close(self) -> None:
        self.emit(cancelEvent={})
        if self.future is not None:
            self.q.put(None)
            # the caller may already have gone (a terminated run)
            with contextlib.suppress(Exception):
                self.future.result(timeout=10)

    # -- typed events

    def prelude(self, config: dict[str, str], preview: bool) -> None:
        self.emit(preludeEvent={"config": config})

    def stdout(self, message: str) -> None:
        self.lines.append(message.rstrip("\n"))
        self.emit(stdoutEvent={"message": message, "color": "never"})

    def diag(self, severity: str, message: str, urn: str = "", ephemeral: bool = False) -> None:
        # pkg/engine/events.go diagEvent: the message keeps its trailing newline.
        text = message if message.endswith("\n") else message + "\n"
        self.diags.append((urn, severity, text))
        event: dict[str, Any] = {
            "urn": urn,
            "message": text,
            "color": "never",
            "severity": severity,
        }
        if ephemeral:
            event["ephemeral"] = True
        self.emit(diagnosticEvent=event)

    def step_pre(self, meta: dict[str, Any], planning: bool) -> None:
        self.emit(resourcePreEvent={"metadata": meta, "planning": planning})
        if meta["op"] != "same" and not planning:
            self._row(meta, "ing")

    def step_done(self, meta: dict[str, Any], planning: bool) -> None:
        self.emit(resOutputsEvent={"metadata": meta, "planning": planning})
        if meta["op"] != "same":
            self._row(meta, "preview" if planning else "done")

    def step_failed(self, meta: dict[str, Any], status: int = 1) -> None:
        self.emit(resOpFailedEvent={"metadata": meta, "status": status, "steps": 1})
        self.lines.append(
            f"{OP_GLYPH.get(meta['op'], '   ')} {meta['type']} {_name(meta['urn'])} **failed**"
        )

    def _row(self, meta: dict[str, Any], phase: str) -> None:
        op = meta["op"]
        if phase == "ing":
            verb = {"create": "creating", "update": "updating", "delete": "deleting",
                    "replace": "replacing", "create-replacement": "creating replacement",
                    "delete-replaced": "deleting original", "refresh": "refreshing",
                    "read": "reading"}.get(op, op)  # fmt: skip
        elif phase == "preview":
            verb = OP_PREVIEW.get(op, op)
        else:
            verb = OP_DONE.get(op, op)
        self.lines.append(f"{OP_GLYPH.get(op, '   ')} {meta['type']} {_name(meta['urn'])} {verb}")

    def summary(self, changes: dict[str, int], seconds: int, preview: bool) -> None:
        self.emit(
            summaryEvent={
                "maybeCorrupt": False,
                "durationSeconds": seconds,
                "resourceChanges": changes,
                "PolicyPacks": {},
            }
        )

    # -- the text the CLI prints

    def text(
        self,
        changes: dict[str, int],
        outputs: dict[str, Any] | None,
        preview: bool,
        seconds: int,
        stack_urn: str,
    ) -> str:
        out = list(self.lines)
        shown = [d for d in self.diags if d[1] in ("error", "warning", "info", "info#err")]
        if shown:
            out += ["", "Diagnostics:"]
            by_urn: dict[str, list[tuple[str, str]]] = {}
            for urn, sev, msg in shown:
                by_urn.setdefault(urn or stack_urn, []).append((sev, msg))
            for urn, items in by_urn.items():
                out.append(f"  {_type(urn)} ({_name(urn)}):")
                for sev, msg in items:
                    prefix = "" if sev in ("info", "info#err") else f"{sev}: "
                    body = msg.rstrip("\n").split("\n")
                    out.append(f"    {prefix}{body[0]}")
                    out += [f"    {x}" for x in body[1:]]
                out.append("")
        if outputs:
            out += ["Outputs:"]
            width = max(len(k) for k in outputs)
            for k in sorted(outputs):
                out.append(f"    {k.ljust(width)}: {json.dumps(masked(outputs[k]))}")
            out.append("")
        out += ["Resources:"]
        total = 0
        for op, glyph, done, todo in SUMMARY:
            n = changes.get(op, 0)
            if n:
                total += n
                out.append(f"    {glyph} {n} {todo if preview else done}")
        same = changes.get("same", 0)
        if total and same:
            out.append(f"    {total} change{'s' if total != 1 else ''}. {same} unchanged")
        elif same:
            out.append(f"    {same} unchanged")
        out += ["", f"Duration: {seconds}s"]
        return "\n".join(out) + "\n"


def _name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def _type(urn: str) -> str:
    qualified = urn.split("::")[2] if urn.count("::") >= 3 else urn
    return qualified.rsplit("$", 1)[-1]
