"""The engine's settings, CLI discovery, event reduction and error mapping."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from pulumi import automation as auto

from mlserve import engine
from mlserve.engine import Engine, Target
from mlserve.errors import (
    EngineUnavailableError,
    OperationFailedError,
    StackBusyError,
    UsageError,
)
from tests.fake_pulumi import fixture
from tests.fake_pulumi.fixture import Fake

fake = fixture.fake
no_pulumi = fixture.no_pulumi
REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0), ("45s", 45), ("5m", 300), ("1h", 3600), ("30", 30), ("1.5", 1.5), (" 2m ", 120)],
)
def test_lock_timeout_durations(text: str, seconds: float) -> None:
    assert engine.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5x", "", "-1", "m", "1m30s", "five"])
def test_a_bad_lock_timeout_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError) as e:
        engine.parse_duration(text)
    assert str(e.value) == (
        f"--lock-timeout: {text!r} is not a duration (use 0, 45s, 5m or 1h; "
        "a plain number is seconds)"
    )


def test_backend_precedence_flag_then_mlserve_then_pulumi_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.delenv("MLSERVE_BACKEND_URL", raising=False)
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    assert engine.resolve_backend(None, home) == ((home / "state").as_uri(), True)
    monkeypatch.setenv("PULUMI_BACKEND_URL", "s3://from-pulumi")
    assert engine.resolve_backend(None, home) == ("s3://from-pulumi", False)
    monkeypatch.setenv("MLSERVE_BACKEND_URL", "gs://from-mlserve")
    assert engine.resolve_backend(None, home) == ("gs://from-mlserve", False)
    assert engine.resolve_backend("azblob://flag", home) == ("azblob://flag", False)


def test_relative_file_backends_resolve_against_the_users_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url, default = engine.resolve_backend("file://./state", tmp_path / "home")
    assert url == (tmp_path / "state").as_uri()
    assert not default


def test_passphrase_from_the_environment_is_never_copied_into_env_vars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "s3cret-value")
    pp = engine.resolve_passphrase(tmp_path, "s3://x", False)
    assert pp.env == {}
    assert pp.secret == "s3cret-value"
    assert pp.secrets_provider == "passphrase"


def test_an_unreadable_passphrase_file_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE_FILE", str(tmp_path / "missing"))
    with pytest.raises(EngineUnavailableError) as e:
        engine.resolve_passphrase(tmp_path, "s3://x", False)
    assert str(e.value) == (
        f"PULUMI_CONFIG_PASSPHRASE_FILE={tmp_path / 'missing'}: cannot read it "
        "(No such file or directory)"
    )


def test_pulumi_cloud_needs_no_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    pp = engine.resolve_passphrase(tmp_path, "https://api.pulumi.com", False)
    assert pp == engine.Passphrase({}, None, None)
    assert not (tmp_path / "passphrase").exists()


# --- the CLI: missing, old, broken -----------------------------------------------------------


def test_no_pulumi_cli_is_engine_unavailable_with_the_fix(no_pulumi: Path) -> None:
    with pytest.raises(EngineUnavailableError) as e:
        engine.load_command(engine.mlserve_home())
    assert str(e.value) == (
        "the Pulumi CLI was not found (`pulumi` on PATH): run `mlserve setup`, or install Pulumi "
        "from https://www.pulumi.com/docs/install/"
    )
    assert e.value.exit_code == 4


def test_an_old_pulumi_cli_is_engine_unavailable(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_PULUMI_VERSION", "3.150.0")
    with pytest.raises(EngineUnavailableError) as e:
        engine.load_command(engine.mlserve_home())
    assert str(e.value) == (
        "Minimum version requirement failed. The minimum CLI version requirement is 3.181.0, "
        "your current CLI version is 3.150.0. Please update the Pulumi CLI. (`pulumi` on PATH): "
        "run `mlserve setup`, or install Pulumi from https://www.pulumi.com/docs/install/"
    )


def test_a_broken_pulumi_cli_is_engine_unavailable(fake: Fake) -> None:
    fake.set(broken_version=True)
    with pytest.raises(EngineUnavailableError) as e:
        engine.load_command(engine.mlserve_home())
    assert str(e.value).startswith("`pulumi version` failed with exit code 1 (`pulumi` on PATH)")


def test_the_cli_under_mlserve_home_is_used_before_the_one_on_path(fake: Fake) -> None:
    bin_dir = engine.cli_root(fake.home) / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "pulumi").symlink_to(fixture.FAKE_DIR / "pulumi")
    command = engine.load_command(fake.home)
    assert command.command == str(bin_dir / "pulumi")


# --- events and errors ----------------------------------------------------------------------


def test_weight_changes_list_every_weight_old_and_new() -> None:
    old = {"spec": {"http": [{"route": [{"weight": 90}, {"weight": 10}]}]}}
    new = {"spec": {"http": [{"route": [{"weight": 50}, {"weight": 50}]}]}}
    assert engine.weight_changes(old, new) == (
        ("spec.http[0].route[0].weight", 90, 50),
        ("spec.http[0].route[1].weight", 10, 50),
    )
    assert engine.weight_changes(old, old) == ()
    assert engine.weight_changes(None, {"weight": 30}) == (("weight", None, 30),)
    nginx = {"metadata": {"annotations": {"nginx.ingress.kubernetes.io/canary-weight": "20"}}}
    assert engine.weight_changes({}, nginx) == (
        ("metadata.annotations.nginx.ingress.kubernetes.io/canary-weight", None, "20"),
    )


def _command_error(cls: type[auto.CommandError], stdout: str, stderr: str) -> auto.CommandError:
    return cls(auto.CommandResult(stdout=stdout, stderr=stderr, code=255))


def test_the_reason_is_the_engines_error_lines_not_the_whole_dump(fake: Fake) -> None:
    eng = Engine(Target("fraud", "dev"))
    stdout = textwrap.dedent(
        """\
        Updating (dev):
         +  kubernetes:apps/v1:Deployment fraud-v2 creating (0s)
        Diagnostics:
          kubernetes:apps/v1:Deployment (fraud-v2):
            error: 1 error occurred:
            \t* the Kubernetes API server reported that "ml/fraud-v2" failed to fully initialize
          pulumi:pulumi:Stack (fraud-dev):
            error: update failed
        Resources:
            1 unchanged
        """
    )
    err = eng.map_error(_command_error(auto.CommandError, stdout, ""), "update")
    assert isinstance(err, OperationFailedError)
    assert str(err) == (
        'the update failed: fraud-v2: the Kubernetes API server reported that "ml/fraud-v2" '
        "failed to fully initialize (run with --debug for the engine's full output)"
    )


def test_error_lines_are_scrubbed_of_credentials_from_the_environment(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARM_CLIENT_SECRET", "very-secret-azure-value")
    eng = Engine(Target("fraud", "dev"))
    err = eng.map_error(
        _command_error(
            auto.CommandError, "", "error: auth failed for very-secret-azure-value: 401"
        ),
        "update",
    )
    assert str(err) == (
        "the update failed: auth failed for [secret]: 401 "
        "(run with --debug for the engine's full output)"
    )


def test_a_concurrent_update_without_a_holder_line_is_still_stack_busy(fake: Fake) -> None:
    eng = Engine(Target("fraud", "dev"))
    err = eng.map_error(
        _command_error(
            auto.ConcurrentUpdateError,
            "",
            "error: [409] Conflict: Another update is currently in progress.",
        ),
        "update",
    )
    assert isinstance(err, StackBusyError)
    assert str(err).startswith("stack 'dev' of project 'fraud' (backend ")
    assert "is locked by another update and was not released. Wait" in str(err)


def test_a_missing_summary_event_is_an_operation_failure(fake: Fake) -> None:
    eng = Engine(Target("fraud", "dev"))
    err = eng.map_error(RuntimeError("summary event never found"), "preview")
    assert str(err) == (
        "the preview ended without a summary from the engine "
        "(run with --debug for the engine's full output)"
    )


# --- Ctrl-C ---------------------------------------------------------------------------------

CTRL_C_SCRIPT = """
import sys
from mlserve import ops
from mlserve.engine import Target
from mlserve.errors import MlserveError
from mlserve.spec import Spec

spec = Spec.from_dict({
    "apiVersion": "mlserve/v1", "name": "fraud",
    "gateway": {"type": "istio", "host": "models.example.com"},
    "versions": [{"name": "v1", "image": "ghcr.io/acme/fraud:1"}],
    "traffic": {"stable": "v1"},
})

class Sink:
    def event(self, e):
        if e.kind == "start" and not e.planning:
            print("started", flush=True)
    def note(self, text):
        print("note:", text, file=sys.stderr, flush=True)

try:
    ops.deploy(spec, Target("fraud", "dev"), sink=Sink())
except MlserveError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(e.exit_code)
"""


def test_ctrl_c_lets_pulumi_cancel_and_exits_130(fake: Fake) -> None:
    fake.set(sleep=30)
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_SCRIPT],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal would make it
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "note: interrupted: letting Pulumi cancel the operation cleanly" in stderr
    assert "error: interrupted: the update was cancelled." in stderr
    # nothing ran after the cancelled update but the guard's history read, inside it
    assert fake.commands()[-2:] == ["up", "stack history"]
