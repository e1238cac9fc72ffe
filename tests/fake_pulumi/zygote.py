"""A warm start for the stand-in CLI in tests: a server that has imported the stand-in (gRPC,
protobuf and the SDK's stubs included, about 0.2 s of CPU per process otherwise) and forks one
child per `pulumi` call to run it. The same for `mlserve` (KIND mlserve): a server that has
imported mlserve, the SDK and the Kubernetes kinds (about 0.5 s of CPU per process otherwise),
for tests that start many mlserve processes whose start is not what they check.

The `pulumi` the caller starts stays a process of its own (shim.c): it sends its argv,
environment, working directory, signal state and its stdin/stdout/stderr (SCM_RIGHTS) here, then
forwards the signals it receives and exits as the command did. The child becomes what a fresh
`python fake_pulumi.py ARGS` started by that process would be: the caller's descriptors on 0-2,
its environment and directory, Python's start-up signal dispositions over the caller's ignored
signals and mask, new sys.std* streams. The server has no thread when it forks (checked), so the
child owns everything it inherits.

Per connection (SOCK_SEQPACKET): the shim's request, one message with the descriptors; then from
the shim one byte per signal to deliver, EOF if it died (the command is then killed, as a process
killed with SIGKILL cannot forward it); to the shim, the command's wait status (shim.c has
the format).

Started by tests/fake_pulumi/fixture.py (one server of each kind per test process): `python -S
zygote.py pulumi SOCKET SITE-DIRS`, or `python zygote.py mlserve SOCKET ''` (with the site
packages, .pth files included, as `python -m mlserve` has them); it exits when its stdin (a pipe
from the test process) closes.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import io
import os
import select
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

HERE = Path(__file__).resolve().parent
MAX_REQUEST = 1 << 22  # argv and environment: far above what a shell would accept
PYTHON_IGNORES = (signal.SIGPIPE, signal.SIGXFSZ)  # Python ignores these at start-up


# Everything the commands import, at the top of a module or in a function.
WARM = {
    "pulumi": (
        "standin.cli", "standin.commands", "standin.operation", "standin.rpc",
        "standin.providers", "standin.props", "google.protobuf.json_format",
        "google.protobuf.struct_pb2", "copy", "getpass", "shutil", "pwd",
        # gRPC's client and server, imported on first use (standin/rpc.py, standin/events.py)
        "grpc._channel", "grpc._server", "grpc._interceptor", "grpc._utilities",
        "grpc._simple_stubs", "grpc.experimental", "concurrent.futures.thread",
    ),
    # What an mlserve command imports before and while it runs the program: the CLI, the engine,
    # the SDK, every backend and the Kubernetes kinds they declare (half a second of CPU).
    "mlserve": (
        "mlserve.cli", "mlserve.ops", "mlserve.ops_rollout", "mlserve.engine", "mlserve.program",
        "mlserve.render", "mlserve.backends.istio", "mlserve.backends.gateway_api",
        "mlserve.backends.ingress_nginx", "mlserve.backends.kong", "mlserve.backends.service",
        "mlserve.backends.workloads", "pulumi.automation", "pulumi.runtime.mocks",
        "pulumi_kubernetes.core.v1", "pulumi_kubernetes.apps.v1", "pulumi_kubernetes.meta.v1",
        "pulumi_kubernetes.networking.v1", "pulumi_kubernetes.apiextensions",
    ),
}  # fmt: skip


def _warm_up(kind: str) -> None:
    if kind == "pulumi":
        sys.path.insert(0, str(HERE))
    for name in WARM[kind]:
        importlib.import_module(name)
    if kind == "pulumi":
        from standin.stubs import stub

        stub("events_pb2_grpc")  # the engine events' gRPC stream (standin/events.py)

    if len(os.listdir("/proc/self/task")) != 1:
        sys.exit("fake pulumi zygote: a thread started while importing; forking is not safe")
    gc.collect()
    gc.freeze()  # the children share these pages instead of copying them on the first collection


def serve(path: str, argv0: str) -> dict[str, Any]:
    """Accept calls until stdin closes; returns (in a forked child only) the call to run."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(64)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that SIGCHLD wakes select
    by_pid: dict[int, socket.socket] = {}
    by_conn: dict[socket.socket, int] = {}
    while True:
        ready, _, _ = select.select([listener, wake_r, sys.stdin, *by_conn], [], [])
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 1):
            for pid in by_pid:
                os.kill(pid, signal.SIGKILL)
            sys.exit(0)
        if wake_r in ready:
            os.read(wake_r, 512)
            while by_pid:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if not pid:
                    break
                conn = by_pid.pop(pid)
                if by_conn.pop(conn, None) is not None:
                    with contextlib.suppress(OSError):
                        conn.send(str(status).encode())
                conn.close()
        for conn in [c for c in ready if c in by_conn]:
            data = conn.recv(64)
            if not data:  # the shim died (SIGKILL): its command goes with it
                os.kill(by_conn.pop(conn), signal.SIGKILL)
                continue
            for signum in data:
                os.kill(by_conn[conn], signum)
        if listener in ready:
            conn, _ = listener.accept()
            message, ancillary, _, _ = conn.recvmsg(MAX_REQUEST, socket.CMSG_SPACE(3 * 4))
            fds = [int.from_bytes(data[i : i + 4], sys.byteorder)
                   for _, _, data in ancillary for i in range(0, len(data), 4)]  # fmt: skip
            if not message:  # the shim died before it sent its call
                conn.close()
                continue
            request = _parse(message)
            if len(os.listdir("/proc/self/task")) != 1:
                sys.exit("fake pulumi zygote: a thread is running; forking is not safe")
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                for s in (listener, conn, *by_conn):
                    s.close()
                os.close(wake_r)
                os.close(wake_w)
                _become(request, fds, argv0)
                return request  # type: ignore[no-any-return]
            for fd in fds:
                os.close(fd)
            by_pid[pid] = conn
            by_conn[conn] = pid


def _parse(message: bytes) -> dict[str, Any]:
    """The shim's request (shim.c): NUL-terminated records, each a tag byte and a value."""
    request: dict[str, Any] = {"argv": [], "env": {}, "mask": [], "ignored": [], "stdio": []}
    for record in message.split(b"\0")[:-1]:
        tag, value = chr(record[0]), record[1:]
        if tag == "a":
            request["argv"].append(value)
        elif tag == "e":
            name, _, content = value.partition(b"=")
            request["env"][name] = content
        elif tag == "c":
            request["cwd"] = value
        else:
            request[{"m": "mask", "i": "ignored", "s": "stdio"}[tag]].append(int(value))
    return request


def _become(request: dict[str, Any], fds: list[int], argv0: str) -> None:
    """This child as a fresh `python fake_pulumi.py ARGS` (or `python -m mlserve ARGS`) started
    by the shim would be."""
    received = dict(zip(request["stdio"], fds, strict=True))
    # The server's own streams go first (closing them closes its descriptors 0-2 here).
    streams = (sys.__stdin__, sys.__stdout__, sys.__stderr__)
    encodings = [(s.encoding, s.errors) if s else ("utf-8", None) for s in streams]
    for name in ("stdin", "stdout", "stderr"):
        getattr(sys, name).close()
        setattr(sys, name, None)
        setattr(sys, f"__{name}__", None)
    for target in (0, 1, 2):
        if target in received:
            os.dup2(received[target], target)
        else:
            with contextlib.suppress(OSError):
                os.close(target)
    for fd in fds:
        if fd not in (0, 1, 2):
            os.close(fd)
    os.environb.clear()
    os.environb.update(request["env"])
    os.chdir(request["cwd"])
    for signum in range(1, signal.NSIG):
        if signum in (signal.SIGKILL, signal.SIGSTOP):
            continue
        if signum in request["ignored"] or signum in PYTHON_IGNORES:
            handler: Any = signal.SIG_IGN
        elif signum == signal.SIGINT:
            handler = signal.default_int_handler
        else:
            handler = signal.SIG_DFL
        with contextlib.suppress(OSError, ValueError):  # numbers the C library reserves
            signal.signal(signum, handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, request["mask"])
    _stdio(encodings)
    sys.argv = [argv0, *map(os.fsdecode, request["argv"])]


def _stdio(encodings: list[tuple[str, str | None]]) -> None:
    """sys.stdin/stdout/stderr over descriptors 0-2 as a starting Python makes them
    (Python/pylifecycle.c create_stdio): buffered text, line-buffered on a terminal (stderr
    always); raw and written through with PYTHONUNBUFFERED."""
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            setattr(sys, name, None)
            continue
        encoding, errors = encodings[fd]
        raw = io.FileIO(fd, "r" if fd == 0 else "w", closefd=False)
        binary: Any = raw
        if fd == 0:
            binary = io.BufferedReader(raw)
        elif not unbuffered:
            binary = io.BufferedWriter(raw)
        stream = io.TextIOWrapper(
            binary,
            encoding=encoding,
            errors=errors,
            line_buffering=fd != 0 and not unbuffered and (fd == 2 or raw.isatty()),
            write_through=fd != 0 and unbuffered,
        )
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _exit(code: int) -> NoReturn:
    """Exit as the interpreter does after `sys.exit(code)` (Python/pylifecycle.c Py_FinalizeEx:
    wait for the non-daemon threads, run the atexit functions, flush the standard streams),
    without then tearing down the modules: that would touch, and so copy, every page of the heap
    this child shares with the server (some 13 ms of CPU a call)."""
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    os._exit(code)


def _status(code: object) -> int:
    """The exit status of an uncaught `SystemExit(code)` (Python/pythonrun.c
    _Py_HandleSystemExit): None is 0, an int is itself, anything else is printed and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    kind, socket_path, site_dirs = sys.argv[1:4]
    if site_dirs:
        sys.path.extend(site_dirs.split(os.pathsep))
    _warm_up(kind)
    if kind == "pulumi":
        serve(socket_path, str(HERE / "fake_pulumi.py"))
        from standin.cli import main

        _exit(main(sys.argv[1:]))  # an exception takes Python's own way out (traceback, exit 1)
    import mlserve.cli

    serve(socket_path, str(Path(mlserve.cli.__file__).with_name("__main__.py")))
    sys.path[0] = os.getcwd()  # as `python -m` puts it first
    try:
        mlserve.cli.main()
    except SystemExit as e:
        _exit(_status(e.code))
    _exit(0)
