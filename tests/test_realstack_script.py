"""scripts/realstack's answers to bad input: a clear message, a non-zero exit, nothing started.

Those marked `real` need the built stack (the running one of this test process, or only the
binaries); the others run anywhere.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.realstack import SCRIPT, RealStack


def realstack(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
        env=env,
    )  # fmt: skip


def test_bad_usage_exits_2_with_the_usage() -> None:
    result = realstack("start")
    assert result.returncode == 2
    assert result.stderr == (
        "realstack: usage: scripts/realstack build [--kong] | start DIR [--port N] "
        "[--stop-with PID] | stop DIR (got: start)\n"
    )
    assert realstack("start", "x", "--port", "http").stderr == (
        "realstack: --port takes a number, got 'http'\n"
    )


def test_stop_of_a_directory_without_a_stack_is_refused(tmp_path: Path) -> None:
    result = realstack("stop", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr == (
        f"realstack: no stack was started in {tmp_path} (no {tmp_path / 'stack.json'})\n"
    )


def test_build_without_go_says_what_it_would_build(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": "/usr/bin:/bin", "MLSERVE_REALSTACK_CACHE": str(tmp_path)}
    result = realstack("build", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith(
        "realstack: Go is not installed (no `go` on PATH), and Pulumi CLI v3.277.0, "
    )
    assert result.stderr.endswith(
        ": install Go 1.26 (https://go.dev/doc/install) and run `scripts/realstack build` again\n"
    )


def test_start_before_build_says_to_build(tmp_path: Path) -> None:
    env = {**os.environ, "MLSERVE_REALSTACK_CACHE": str(tmp_path / "cache")}
    result = realstack("start", str(tmp_path / "stack"), env=env)
    assert result.returncode == 1
    assert "run `scripts/realstack build` first" in result.stderr
    assert not (tmp_path / "stack").exists()


@pytest.mark.real
def test_a_built_stack_builds_again_without_go(real_stack: RealStack) -> None:
    """Everything cached: nothing is compiled, so Go is not needed."""
    result = realstack("build", env={**os.environ, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("realstack: everything is built (")
    assert "building" not in result.stdout


@pytest.mark.real
def test_start_in_a_directory_where_a_stack_runs_is_refused(real_stack: RealStack) -> None:
    result = realstack("start", str(real_stack.dir))
    assert result.returncode == 1
    assert result.stderr.startswith(f"realstack: a stack already runs in {real_stack.dir} (pids ")
    assert result.stderr.endswith(
        f"`scripts/realstack stop {real_stack.dir}` first, or use another directory\n"
    )
    # ... and that stack still answers.
    assert real_stack.kubectl("get", "node", "-o", "name").stdout == "node/realstack-node\n"


@pytest.mark.real
def test_start_on_a_taken_port_is_refused_before_anything_starts(
    real_stack: RealStack, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = realstack("start", str(tmp_path / "stack"), "--port", str(port))
    assert result.returncode == 1
    assert result.stderr == (
        f"realstack: port {port} is taken: choose another --port, or leave it out\n"
    )
    assert not (tmp_path / "stack").exists()
