"""Ctrl-C in an mlserve process: at once where nothing needs finishing, KeyboardInterrupt where
something does.

From its first line (mlserve/__main__.py) to its end, an mlserve process answers SIGINT with
`at_once`: `error: interrupted` on stderr (with --json, also the error document on stdout), exit
130, nothing else run. Only code with something to finish when interrupted gets Python's
KeyboardInterrupt, while it runs (`raising`): the body of every command but render, validate and
schema (a Pulumi operation to cancel, a rollout step to record), and render --out's writing (its
staging directory to remove). A run that left nothing for Python's exit to finish ends the
process itself (`end`), once its output is flushed.

Why not KeyboardInterrupt throughout, caught at the top: where Python raises it decides what
happens, and it can raise it anywhere.
- While modules are imported or typer builds the commands (before any try of mlserve's), it ends
  in a traceback.
- Under `python -m mlserve`, one that passes through code run by exec or eval of a string
  (dataclasses and namedtuple at import; typer as it reads the commands' annotations) leaves
  CPython's _Py_UnhandledKeyboardInterrupt set (Python/pythonrun.c run_eval_code_obj) even when
  mlserve catches it and exits 130: the interpreter then kills itself with SIGINT at exit
  (Modules/main.c Py_RunMain: status -2, after "error: interrupted").
- At exit, Python puts SIGINT back to its default action (Python/pylifecycle.c Py_FinalizeEx,
  _PySignal_Fini) and then tears down every module, the Pulumi SDK's included: for render a
  fifth of its CPU time (0.3 s), during which a Ctrl-C kills the process silently. Before that,
  KeyboardInterrupt in threading._shutdown or an atexit function prints "Exception ignored" with
  a traceback.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

TYPE_CHECKING = False  # not typing's: this module loads before the handler is in place
if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType
    from typing import NoReturn

_state = {"raised": False}  # whether code that leaves work for Python's exit ran (`raising`)


def _json_run() -> bool:
    argv = sys.argv[1:]
    return "--json" in (argv[: argv.index("--")] if "--" in argv else argv)


def _texts() -> tuple[str, str]:
    """What `at_once` prints, as cli._fail prints an interrupt: the line for stderr, and with
    --json the error document for stdout (none once the run's document is under way)."""
    json_out = _json_run()
    document = {"error": {"code": 130, "kind": "interrupted", "message": "interrupted"}}
    try:
        from mlserve import output

        plain = output.is_plain(sys.stderr) or json_out
        line = f"{output.paint('error:', 'error', output.colour(plain))} interrupted\n"
        text = output.to_json(document) + "\n"
        return line, text if json_out and not output.document_printed() else ""
    except Exception:  # output half imported when the signal came: plain
        return "error: interrupted\n", ""


def at_once(signum: int, frame: FrameType | None) -> None:
    """The SIGINT handler: say it and end the process, without unwinding anything.

    Raw writes: the main thread may be inside a write to sys.stdout or sys.stderr."""
    line, document = _texts()
    for fd, text in ((2, line), (1, document)):
        if text:
            with contextlib.suppress(OSError):
                os.write(fd, text.encode())
    os._exit(130)


def install() -> None:
    """Make `at_once` the SIGINT handler, unless SIGINT was ignored when the process started (a
    background job of a shell script, `nohup`: Python keeps it ignored, and so does mlserve)."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        with contextlib.suppress(ValueError):  # not the main thread: not a process start
            signal.signal(signal.SIGINT, at_once)


@contextlib.contextmanager
def raising(*, teardown: bool = True) -> Iterator[None]:
    """Ctrl-C as KeyboardInterrupt inside, for code that has something to finish when
    interrupted; `at_once` again after. `teardown`: what runs inside may leave work for Python's
    exit (threads, atexit functions), so the process ends through it (`end`). Outside an mlserve
    process (the tests' CliRunner), or with SIGINT ignored, the handler is left as it is."""
    if signal.getsignal(signal.SIGINT) is not at_once:
        yield
        return
    _state["raised"] = _state["raised"] or teardown
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, at_once)


def end(code: int) -> NoReturn:
    """End the process with `code`. A run that left nothing for Python's teardown to finish
    (render, validate, schema, help, a usage error) flushes the standard streams and ends here,
    so that no Ctrl-C can come after at_once has stopped answering. Others, and a flush that
    fails, take Python's own way out."""
    if signal.getsignal(signal.SIGINT) is at_once and not _state["raised"]:
        try:
            for stream in (sys.stdout, sys.stderr):
                if stream is not None:
                    stream.flush()
        except (OSError, ValueError):
            sys.exit(code)
        os._exit(code)
    # Python's teardown still runs (atexit functions, threads, the streams' last flush), but its
    # garbage collector no longer walks what the run left alive: after a promote, the Pulumi SDK,
    # the Kubernetes SDK and gRPC, 0.2 s idle and a second on a loaded 2-core machine between the
    # last atexit function and the process's end (bench/routing_latency.py). Nothing frozen is
    # collected, so no finalizer of it runs at exit: mlserve leaves none that must (its
    # temporary files go with their `with` blocks and atexit functions). Only in an mlserve
    # process of its own: a test process running the CLI in itself goes on collecting.
    if signal.getsignal(signal.SIGINT) in (at_once, signal.SIG_IGN):
        import gc

        gc.freeze()
    sys.exit(code)
