"""The engine's settings, CLI discovery, event reduction and error mapping."""

from __future__ import annotations

import os
import textwrap
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
        "(No such file or directory): point PULUMI_CONFIG_PASSPHRASE_FILE at the file holding "
        "the passphrase"
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


def cli_script(path: Path, version: str | None) -> Path:
    """A `pulumi` at `path`: the stand-in, printing `version` for `pulumi version` (None: prints
    nothing, as a Go build without the version ldflag does)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if version is None:
        body = 'if [ "$1" = version ]; then exit 0; fi\n'
    else:
        body = f"FAKE_PULUMI_VERSION={version}; export FAKE_PULUMI_VERSION\n"
    path.write_text(f'#!/bin/sh\n{body}exec {fixture.FAKE_DIR / "pulumi"} "$@"\n')
    path.chmod(0o755)
    return path


def on_path(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    monkeypatch.setenv("PATH", f"{directory}:{os.environ['PATH'].split(':', 1)[1]}")


def test_a_newer_cli_on_path_wins_over_the_one_setup_installed(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    pinned = cli_script(engine.cli_root(fake.home) / "bin" / "pulumi", "3.272.0")
    newer = cli_script(fake.root / "bin" / "pulumi", "3.276.0")
    on_path(monkeypatch, newer.parent)
    command = engine.load_command(fake.home)
    assert (command.command, str(command.version)) == ("pulumi", "3.276.0")
    cli_script(newer, "3.200.0")
    command = engine.load_command(fake.home)
    assert (command.command, str(command.version)) == (str(pinned), "3.272.0")


def test_a_cli_that_fails_is_passed_over_for_one_that_works(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli_script(engine.cli_root(fake.home) / "bin" / "pulumi", None)
    command = engine.load_command(fake.home)
    assert command.command == "pulumi"


def test_an_empty_pulumi_version_is_engine_unavailable_saying_why(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    unversioned = cli_script(fake.root / "bin" / "pulumi", None)
    on_path(monkeypatch, unversioned.parent)
    expected = (
        "`pulumi version` printed nothing (`pulumi` on PATH): this Pulumi CLI was built without "
        "its version, which the Automation API needs (a source build needs -ldflags "
        '"-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v3.N.M"): run `mlserve '
        "setup`, or install Pulumi from https://www.pulumi.com/docs/install/"
    )
    with pytest.raises(EngineUnavailableError) as e:
        engine.load_command(fake.home)
    assert (str(e.value), e.value.exit_code) == (expected, 4)
    # The SDK's opt-out lets such a CLI through with no version, which its operations reject.
    monkeypatch.setenv("PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK", "true")
    with pytest.raises(EngineUnavailableError) as e:
        engine.load_command(fake.home)
    assert str(e.value) == expected


def test_a_version_that_is_not_one_and_every_problem_are_named(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    pinned = cli_script(engine.cli_root(fake.home) / "bin" / "pulumi", "3.150.0")
    bad = cli_script(fake.root / "bin" / "pulumi", "dev-build")
    on_path(monkeypatch, bad.parent)
    with pytest.raises(EngineUnavailableError) as e:
        engine.load_command(fake.home)
    assert str(e.value) == (
        "Minimum version requirement failed. The minimum CLI version requirement is 3.181.0, "
        f"your current CLI version is 3.150.0. Please update the Pulumi CLI. ({pinned}); "
        "`pulumi version` printed 'vdev-build', not a version (`pulumi` on PATH): run `mlserve "
        "setup`, or install Pulumi from https://www.pulumi.com/docs/install/"
    )


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


def test_weight_changes_leave_out_header_pinned_rules() -> None:
    def route(stable: int, canary: int) -> dict[str, object]:
        pin = {"name": "x-model-version", "type": "Exact", "value": "v1"}
        return {
            "spec": {
                "rules": [
                    {"matches": [{"headers": [pin]}], "backendRefs": [{"name": "a", "weight": 1}]},
                    {"matches": [{"path": {"value": "/"}}], "backendRefs": [
                        {"name": "a", "weight": stable}, {"name": "b", "weight": canary}]},
                ]
            }
        }  # fmt: skip

    assert engine.weight_changes(route(90, 10), route(50, 50)) == (
        ("spec.rules[1].backendRefs[0].weight", 90, 50),
        ("spec.rules[1].backendRefs[1].weight", 10, 50),
    )
    pinned = {"http": [{"match": [{"headers": {"v": {"exact": "v2"}}}], "route": [{"weight": 1}]}]}
    assert engine.weight_changes(None, pinned) == ()


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


def test_a_program_whose_cleanup_was_cut_short_is_finished_on_runs_thread() -> None:
    """The SDK's LanguageServer.Run (pulumi/automation/_server.py) cancels the program's pending
    tasks one by one and suppresses only CancelledError: once the CLI is gone, a task ending in
    a gRPC error escapes that cleanup (seen in this suite: Run raised _InactiveRpcError after a
    killed update) and the program's own task stays suspended on a loop no one runs. Collected
    later it printed "Exception ignored in: <coroutine object run_in_stack ...>". Here Run is
    imitated down to that: the program runs on Run's loop, a task fails, cleanup stops."""
    import asyncio
    import gc
    import sys

    wrapped = Engine.__new__(Engine)
    wrapped._program_error = None
    program = wrapped._keep_error(lambda: None)
    finished: list[str] = []
    tasks: list[asyncio.Task[None]] = []

    async def program_task() -> None:  # like run_in_stack: its cleanup needs a running loop
        program()
        try:
            await asyncio.Event().wait()  # an RPC that never answers
        finally:
            asyncio.get_running_loop()
            finished.append("cleanup ran")

    async def failing_rpc() -> None:
        raise ConnectionError("the monitor is gone")

    def run(self: object, request: object, context: object) -> None:
        loop = asyncio.new_event_loop()
        tasks.append(loop.create_task(program_task()))
        loop.run_until_complete(asyncio.sleep(0))  # the program has started
        loop.run_until_complete(failing_rpc())  # cleanup's first task fails: the rest never run

    seen: list[str] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda u: seen.append(repr(u.exc_value))
    try:
        with pytest.raises(ConnectionError):
            engine._finishing(run)(None, None, None)
        gc.collect()
    finally:
        sys.unraisablehook = previous
    assert finished == ["cleanup ran"]
    assert tasks[0].cancelled() and tasks[0].get_loop().is_closed()
    assert seen == []
    assert not engine._program_loops


def test_a_read_that_finds_the_stack_half_written_by_another_process_is_tried_again(
    tmp_path: Path,
) -> None:
    """gocloud.dev's fileblob rewrites a stack's `.attrs` sidecar in place, so a reader racing a
    writer can fail with "failed to load checkpoint: EOF" (seen on the real CLI with two racing
    promotes): a read is tried again; another failure is not. The CLI here is a script that
    fails its first call so and answers its second."""
    calls = tmp_path / "calls"
    script = tmp_path / "bin" / "pulumi"
    script.parent.mkdir()
    script.write_text(
        "#!/bin/sh\n"
        'case " $* " in *" version "*) echo v3.277.0; exit 0;; esac\n'
        f'echo x >> "{calls}"\n'
        f'if [ "$(wc -l < "{calls}")" -lt 2 ]; then\n'
        '  echo "error: failed to load checkpoint: ${FAIL:-EOF}" >&2; exit 255\n'
        "fi\n"
        'echo "{}"\n'
    )
    script.chmod(0o755)
    command = engine.Command(root=str(tmp_path), version=None)
    assert command.run(["stack", "export"], str(tmp_path), {}).stdout == "{}"
    assert calls.read_text().count("x") == 2
    calls.unlink()
    with pytest.raises(auto.CommandError):
        command.run(["stack", "export"], str(tmp_path), {"FAIL": "permission denied"})
    assert calls.read_text().count("x") == 1
