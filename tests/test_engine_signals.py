"""Issue 11 item 9: Ctrl-C, SIGTERM and SIGHUP reach the running Pulumi operation exactly once.

The stand-in CLI handles SIGINT as the real one's source does (first: cancel cleanly, second:
terminate; tests/fake_pulumi/fake_pulumi.py names the source); the real CLI was not run here.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest

from mlserve import engine, ops
from mlserve.engine import Target
from tests.fake_pulumi import fixture
from tests.fake_pulumi.fixture import Fake
from tests.helpers import REPO
from tests.test_engine_settings import PROJECT, SPEC

fake = fixture.fake


def read_until(fd: int, text: str, seen: bytearray, timeout: float = 60) -> None:
    """Read a process's output from fd until `text` appears (or fail after `timeout`)."""
    while text.encode() not in seen:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"no {text!r} in {bytes(seen).decode(errors='replace')!r}"
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # a pty's master reads EIO once the child side is closed
            chunk = b""
        assert chunk, f"no {text!r} in {bytes(seen).decode(errors='replace')!r}"
        seen.extend(chunk)


def read_all(fd: int, seen: bytearray, timeout: float = 60) -> str:
    while select.select([fd], [], [], timeout)[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen.extend(chunk)
    return bytes(seen).decode(errors="replace").replace("\r\n", "\n")


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """mlserve in a new session without a terminal, as a CI runner starts a step."""
    return subprocess.Popen(
        [sys.executable, "-m", "mlserve", *args],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )


CANCELLED = (
    "error: interrupted: Pulumi cancelled the update cleanly: the steps already running finished "
    "and the stack's lock was released. Run `mlserve status --refresh --stack dev` to see what "
    "it changed before running it again\n"
)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_to_mlserve_alone_cancels_the_update_once(fake: Fake, signum: int) -> None:
    fake.set(sleep=60)
    proc = start("deploy", SPEC, "--yes")
    assert proc.stdout is not None
    seen = bytearray()
    read_until(proc.stdout.fileno(), "creating", seen)
    os.kill(proc.pid, signum)  # the process, not its group: `kill`, a CI runner's cancel
    output = read_all(proc.stdout.fileno(), seen)
    assert proc.wait(timeout=60) == 130
    assert output.endswith(CANCELLED), output
    assert fake.get_control()["sigints"] == 1
    history = ops.history(Target("fraud-detector", "dev"))
    assert [(r.kind, r.result) for r in history] == [("update", "failed")]


def test_ctrl_c_in_a_terminal_reaches_pulumi_once(fake: Fake) -> None:
    """The terminal signals the whole foreground group: mlserve must not pass on a second."""
    fake.set(sleep=60)
    pid, master = pty.fork()
    if pid == 0:  # the child: session leader on the new terminal, in its foreground group
        try:
            os.chdir(REPO)
            os.execv(sys.executable, [sys.executable, "-m", "mlserve", "deploy", SPEC, "--yes"])
        finally:
            os._exit(127)
    seen = bytearray()
    try:
        read_until(master, "creating", seen)
        os.write(master, b"\x03")  # Ctrl-C, as typed
        output = read_all(master, seen)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(master)
    assert os.waitstatus_to_exitcode(status) == 130
    assert output.endswith(CANCELLED), output
    assert fake.get_control()["sigints"] == 1


def test_a_second_interrupt_stops_pulumi_at_once_and_says_what_may_be_left(fake: Fake) -> None:
    fake.set(sleep=60, cancel_delay=60)
    proc = start("deploy", SPEC, "--yes")
    assert proc.stdout is not None
    seen = bytearray()
    read_until(proc.stdout.fileno(), "creating", seen)
    os.kill(proc.pid, signal.SIGINT)
    read_until(proc.stdout.fileno(), "letting Pulumi cancel the operation cleanly", seen)
    # Two SIGINTs that reach a process before its handler runs count once (POSIX does not queue
    # standard signals, nor does CPython's handler): the second comes once the CLI has the first.
    deadline = time.monotonic() + 60
    while fake.get_control().get("sigints") != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGINT)
    output = read_all(proc.stdout.fileno(), seen)
    assert proc.wait(timeout=60) == 130
    assert output.endswith(
        "error: interrupted twice: Pulumi was stopped in the middle of the update, so stack "
        "'dev' of project 'fraud-detector' (backend "
        f"{engine.default_backend(fake.home)}) may still be locked and hold pending operations. "
        "Run `mlserve status --refresh --stack dev`: if the stack is locked, it says how to "
        "remove the lock\n"
    ), output
    # mlserve waits up to 10 s for the stopped CLI to exit; on a loaded machine the stand-in may
    # count the second interrupt later than that.
    deadline = time.monotonic() + 60
    while fake.get_control().get("sigints") != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake.get_control()["sigints"] == 2


def test_a_cli_killed_mid_update_is_named_with_the_way_out_and_no_sdk_warning(fake: Fake) -> None:
    """A runner or the OOM killer ends the CLI with SIGKILL: it writes no error of its own and
    its event stream breaks off (the SDK warns "Error in event stream" on stderr)."""
    fake.set(sleep=60)
    proc = start("deploy", SPEC, "--yes")
    assert proc.stdout is not None
    seen = bytearray()
    read_until(proc.stdout.fileno(), "creating", seen)
    (up,) = [c for c, words in zip(fake.calls(), fake.commands(), strict=True) if words == "up"]
    os.kill(up["pid"], signal.SIGKILL)
    output = read_all(proc.stdout.fileno(), seen)
    assert proc.wait(timeout=60) == 5
    assert "Error in event stream" not in output
    assert output.endswith(
        "error: the update failed: the Pulumi CLI was killed (SIGKILL) in the middle of it, so "
        "stack 'dev' of project 'fraud-detector' (backend "
        f"{engine.default_backend(fake.home)}) may still be locked and hold pending operations. "
        "Run `mlserve status --refresh --stack dev`: if the stack is locked, it says how to "
        "remove the lock\n"
    ), output


def test_ctrl_c_while_waiting_for_a_lock_stops_at_once_and_claims_no_cancel(fake: Fake) -> None:
    fake.deployed(REPO / "specs" / "istio.yaml")
    fake.set(locked=-1)
    env = {**os.environ, "MLSERVE_LOCK_POLL_SECONDS": "600"}  # one long wait before a retry
    proc = start("destroy", "--yes", *PROJECT, "--lock-timeout", "1h", env=env)
    assert proc.stdout is not None
    seen = bytearray()
    read_until(proc.stdout.fileno(), "waiting up to 1h", seen)
    os.kill(proc.pid, signal.SIGINT)
    output = read_all(proc.stdout.fileno(), seen)
    assert proc.wait(timeout=30) == 130  # not after the 600 s wait
    assert output.endswith(
        "error: interrupted while waiting for the lock on stack 'dev' of project "
        f"'fraud-detector' (backend {engine.default_backend(fake.home)}): the destroy had not "
        "started; nothing was changed\n"
    ), output
