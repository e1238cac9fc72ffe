"""What several test modules share: running the CLI as a CI step does, and the real-engine setup."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlserve.cli import app
from mlserve.engine import Target
from tests.fake_pulumi import fixture

REPO = Path(__file__).resolve().parents[1]

# Contract tests against the real Pulumi CLI that scripts/realstack builds (no cluster needed):
# marked `engine`; skipped until it is built, failing instead under CI=true (tests/realstack.py).
real_engine_only = [pytest.mark.engine, pytest.mark.usefixtures("real_cli")]


def run_mlserve(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a process of its own without a terminal (stdin is /dev/null), as a CI step
    does; forked by the warm server (fixture.mlserve_command), which test_engine_truth checks
    against a fresh `python -m mlserve`."""
    return subprocess.run(
        [*fixture.mlserve_command(), *args],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in this process (typer's CliRunner, from the repository root, no terminal): the
    same parsing, messages and exit codes as `run_mlserve`, without a process per call. For tests
    whose subject is what a command does; `run_mlserve` where it matters that each command is a
    process of its own (what it prints to its streams, state across separate runs). Tests of
    signals, terminals and start-up start a fresh `python -m mlserve` themselves."""
    with contextlib.chdir(REPO):
        result = CliRunner().invoke(app, list(args), prog_name="mlserve")
    return subprocess.CompletedProcess(["mlserve", *args], result.exit_code, result.stdout,
                                       result.stderr)  # fmt: skip


@pytest.fixture
def real_target(real_cli: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Target:
    """A stack on a file backend under tmp_path, with a passphrase from the environment, for the
    real Pulumi CLI (`real_cli`)."""
    monkeypatch.setenv("MLSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "contract-passphrase")
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    monkeypatch.delenv("MLSERVE_BACKEND_URL", raising=False)
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    return Target("mlserve-contract", "dev", backend=(tmp_path / "state").as_uri())
