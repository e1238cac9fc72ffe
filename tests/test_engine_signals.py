"""Issue 11 item 9: an interrupt while mlserve waits for a stack's lock, under the stand-in.

What an interrupt does in the middle of an update (one signal cancels cleanly, a second stops
the CLI at once, a CLI killed with SIGKILL) runs against the real CLI, provider and API server in
tests/test_real_engine.py, which retired the stand-in's versions of those tests. This one stays
on the stand-in: its `locked` knob holds the stack's lock file for as long as the test needs, with
no update running, and mlserve's wait between attempts is its own code, not the CLI's.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys

from mlserve import engine
from tests.fake_pulumi import fixture
from tests.fake_pulumi.fixture import Fake
from tests.helpers import REPO
from tests.test_engine_settings import PROJECT

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
