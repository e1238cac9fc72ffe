"""preview, up, refresh and destroy: lock, run the program, write the state and the history.

pkg/backend/diy/backend.go: Update, Refresh, Destroy (and Import) take the stack's lock, Preview
does not (a refresh or destroy with --preview-only still locks); `apply` prints the banner, runs
the engine, then - unless it was a dry run - adds a history entry with the config the operation
used and the update's result, and backs the checkpoint up. pkg/backend CancellationScope: the
first Ctrl-C cancels (in-flight steps finish, nothing new starts), the second terminates.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from typing import Any

from . import control
from .argv import Argv
from .commands import Stack, cli_version, dumps
from .control import Fail
from .engine import Deployment, Options, Res, now
from .events import Events
from .project import config_values
from .props import seal, unseal

ACTION = {  # backend.ActionLabel
    ("update", False): "Updating",
    ("update", True): "Previewing update",
    ("refresh", False): "Refreshing",
    ("refresh", True): "Previewing refresh",
    ("destroy", False): "Destroying",
    ("destroy", True): "Previewing destroy",
}
CANCELLING = (
    "^C received; cancelling. If you would like to terminate immediately, press ^C again.\n"
)
CANCELLING_NOTE = (
    "Note that terminating immediately may lead to orphaned resources and other inconsistencies.\n"
)


# Accepted by the CLI, but their semantics are not imitated: refused rather than ignored.
NOT_IMITATED = (
    "--exclude", "--target-dependents", "--exclude-dependents", "--expect-no-changes",
    "--continue-on-error", "--refresh", "--plan", "--save-plan", "--import-file", "--policy-pack",
    "--policy-pack-config", "--exclude-protected",
)  # fmt: skip


def operation(a: Argv) -> str:
    for flag in NOT_IMITATED:
        if a.has(flag) or a.many(flag):
            raise Fail(f"error: the test stand-in does not imitate {flag}")
    word = a.words[0]
    kind = {"preview": "update", "up": "update", "update": "update"}.get(word, word)
    preview = word == "preview" or a.has("--preview-only")
    s = Stack(a)
    settings = s.settings()
    c = s.crypter(settings)
    config = config_values(settings, c)
    latest = s.backend.read(s.ref)
    state_c = s.state_crypter(latest, settings)
    olds = [
        Res.from_state(r, lambda v: unseal(v, state_c.decrypt))
        for r in (latest or {}).get("resources") or []
    ]
    pending = [
        {
            "resource": Res.from_state(p["resource"], lambda v: unseal(v, state_c.decrypt)),
            "type": p["type"],
        }
        for p in (latest or {}).get("pending_operations") or []
    ]
    knobs = control.control()
    if knobs.get("pending") and latest and olds:
        # The `pending` knob: the state an update killed mid-step leaves behind, written into
        # the checkpoint so that every later operation finds it.
        victim = next((r for r in olds if r.custom and not r.type.startswith("pulumi:")), olds[-1])
        pending.append({"resource": victim, "type": "updating"})
        latest = {**latest, "pending_operations": [
            *(latest.get("pending_operations") or []),
            {"resource": victim.to_state(lambda v: seal(v, state_c.encrypt)), "type": "updating"},
        ]}  # fmt: skip
        s.backend.write(s.ref, latest)
        control.update(lambda ctl: ctl.pop("pending", None))
    leak = ""
    if knobs.get("leak"):
        from .project import passphrase

        leak = f" (passphrase was {passphrase()})"
    opts = Options(
        kind=kind,
        preview=preview,
        stack=s.ref.name,
        project=s.ref.project,
        org=s.ref.org,
        targets=a.many("--target"),
        replaces=a.many("--replace"),
        config=config,
        knob_op={"update": "preview" if preview else "up"}.get(kind, kind),
        knobs=knobs,
        leak=leak,
    )

    def persist(resources: list[Res], pend: list[dict[str, Any]]) -> None:
        deployment: dict[str, Any] = {
            "manifest": {"time": now(), "magic": "", "version": "v" + cli_version()},
            "secrets_providers": {
                "type": "service" if s.backend.cloud else "passphrase",
                "state": {} if s.backend.cloud else {"salt": settings.data.get("encryptionsalt")},
            },
            "resources": [r.to_state(lambda v: seal(v, c.encrypt)) for r in resources],
        }
        if pend:
            deployment["pending_operations"] = [
                {
                    "resource": p["resource"].to_state(lambda v: seal(v, c.encrypt)),
                    "type": p["type"],
                }
                for p in pend
            ]
        s.backend.write(s.ref, deployment)

    locks = kind != "update" or not preview
    if locks:
        s.backend.lock(s.ref)
    events = Events(a.get("--event-log"), ACTION[(kind, preview)], s.ref.name)
    d = Deployment(opts, olds, pending, events, None if preview else persist)
    start = int(time.time())
    info: dict[str, Any] = {
        "kind": kind,
        "startTime": start,
        "message": a.get("--message", ""),
        "environment": {"exec.kind": a.get("--exec-kind", "cli")},
        # backend.go apply: `Config: update.GetTarget().Config` - what this operation used.
        "config": dict(settings.config),
        "result": "in-progress",
        "version": 0,
    }
    token = None if preview else s.backend.begin(s.ref, info)
    try:
        _install_sigint(d, events, preview, s, token, info)
        events.prelude({k: ("[secret]" if sec else v) for k, (v, sec) in config.items()}, preview)
        if d.pending and kind == "update" and not preview:
            _pending_warning(d)
        _drive(d, a, kind, preview, knobs)
        if d.failed:
            d.diag("error", f"{'preview' if preview else 'update'} failed")
        elif d.canceled.is_set():
            d.diag("error", f"{'preview' if preview else 'update'} canceled")
        seconds = max(int(time.time()) - start, 1)
        changes = dict(d.changes)
        events.summary(changes, seconds, preview)
        events.close()
        ok = not d.failed and not d.canceled.is_set()
        if not preview:
            info.update(
                result="succeeded" if ok else "failed",
                endTime=int(time.time()),
                resourceChanges=changes,
            )
            s.backend.finish(s.ref, token, info)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if locks:
            s.backend.unlock(s.ref)
    outputs = d.outputs() if kind == "update" and not preview else None
    if word == "preview" and a.has("--json"):
        text = dumps({"steps": [], "changeSummary": changes, "duration": seconds * 10**9})
    else:
        text = events.text(changes, outputs, preview, seconds, d.stack_urn)
    if not ok:
        raise Fail("", stdout=text)
    return text


def _pending_warning(d: Deployment) -> None:
    """deployment_executor.go printPendingOperationsWarning (a warning with an empty URN)."""
    ops = "".join(f"  * {p['resource'].urn}, interrupted while {p['type']}\n" for p in d.pending)
    d.diag(
        "warning",
        "Attempting to deploy or update resources "
        f"with {len(d.pending)} pending operations from previous deployment.\n"
        + ops
        + "These resources are in an unknown state because the Pulumi CLI was interrupted while "
        "waiting for changes to these resources to complete. You should confirm whether or not "
        "the operations listed completed successfully by checking the state of the appropriate "
        "provider. For example, if you are using AWS, you can confirm using the AWS Console.\n"
        "\n"
        "Once you have confirmed the status of the interrupted operations, you can repair your "
        "stack using `pulumi refresh` which will refresh the state from the provider you are "
        "using and clear the pending operations if there are any.\n"
        "\n"
        "Note that `pulumi refresh` will need to be run interactively to clear pending CREATE "
        "operations.",
    )


def _install_sigint(
    d: Deployment, events: Events, preview: bool, s: Stack, token: Any, info: dict[str, Any]
) -> None:
    def on_sigint(signum: int, frame: Any) -> None:
        # The knob `sigints` counts the interrupts this CLI received, for the tests.
        control.update(lambda knobs: knobs.__setitem__("sigints", knobs.get("sigints", 0) + 1))
        if not d.canceled.is_set():
            events.stdout(CANCELLING + ("" if preview else CANCELLING_NOTE))
            d.canceled.set()
            return
        # The second Ctrl-C terminates: in-flight operations are abandoned (their pending
        # operations stay in the state), the update is recorded as failed and the lock released
        # by the deferred Unlock of diyBackend.Update.
        events.stdout("^C received; terminating")
        if not preview:
            info.update(result="failed", endTime=int(time.time()), resourceChanges=dict(d.changes))
            s.backend.finish(s.ref, token, info)
            s.backend.unlock(s.ref)
        sys.stdout.write("\n".join(events.lines) + "\n")
        sys.stdout.flush()
        os._exit(control.EXIT_ERROR)

    signal.signal(signal.SIGINT, on_sigint)


def _drive(d: Deployment, a: Argv, kind: str, preview: bool, knobs: dict[str, Any]) -> None:
    run_program = kind == "update" or (a.get("--run-program", "false") or "").lower() == "true"
    if kind != "update":
        d.readonly = True
    if run_program:
        client = a.get("--client")
        if not client:
            raise Fail("error: the stand-in runs inline programs only: --client is required")
        _run_program(d, client, a)
    if d.failed or d.canceled.is_set():
        d.finalize_outputs()
        return
    if kind == "update":
        targets_ok = d.check_targets() if d.o.targets else True
        with d.mu:
            d.delete_leftovers()
        if not targets_ok:
            d.failed = True
    elif kind == "refresh":
        d.refresh(int(knobs.get("drift", 0)), a.has("--clear-pending-creates"))
    elif kind == "destroy":
        d.destroy()
    d.finalize_outputs()


def _run_program(d: Deployment, client: str, a: Argv) -> None:
    from . import rpc

    # The servers live until the process exits: stopping them would send GOAWAY to the
    # program's channels, which gRPC logs into the caller's stderr.
    d.servers, monitor, engine = rpc.serve(d)
    channel, future = rpc.run(
        client, d, monitor, engine, os.getcwd(), int(a.get("--parallel") or 16)
    )
    try:
        while not future.done():
            if d.failed or d.canceled.is_set():
                break
            time.sleep(0.01)
        # In-flight steps finish first (they hold the deployment's lock). Timed waits: the
        # kernel may give a SIGINT to another thread, and Python runs the handler only when this
        # (main) thread next runs bytecode, which an untimed wait would hold off until the
        # in-flight steps finished; the real CLI's CancellationScope takes a second Ctrl-C at once.
        while not d.mu.acquire(timeout=0.05):
            pass
        try:
            d.stopped = True
        finally:
            d.mu.release()
        if future.done() and not d.failed and not d.canceled.is_set():
            try:
                response = future.result()
            except Exception as e:  # the language host went away
                d.diag("error", f"an unhandled error occurred: {e}")
                d.failed = True
                return
            if response.error:
                # source_eval.go forkRun: the program's error, reported without a URN.
                d.diag("error", f"an unhandled error occurred: {response.error}")
                d.failed = True
            elif response.bail:
                d.failed = True
    finally:
        if not future.done():
            with contextlib.suppress(Exception):
                future.result(timeout=5)
        channel.close()
