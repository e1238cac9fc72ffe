"""Revisions, the race guard's mark, the stack state an export shows, the private config file and
the error texts of the real CLI. Pure functions and the Engine without any `pulumi` process."""

from __future__ import annotations

import os
import stat
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi import automation as auto

from mlserve import engine
from mlserve.engine import Engine, HistoryEntry, Mark, Target
from mlserve.errors import EngineUnavailableError, PreconditionError

T0 = datetime(2026, 1, 1, 10, 0, 0)


def summary(version: int | None, result: str = "succeeded", **kw: Any) -> auto.UpdateSummary:
    changes = kw.pop("changes", {"same": 3})
    return auto.UpdateSummary(
        kind=kw.pop("kind", "update"),
        start_time=kw.pop("start", T0),
        message=kw.pop("message", "mlserve deploy"),
        environment={},
        config={"mlserve:traffic": {"value": '{"stable": "v1"}', "secret": False}},
        result=result,
        end_time=None if result == "in-progress" else T0,
        version=version,
        resource_changes=None if result == "in-progress" else changes,
    )


def entry(revision: int, result: str = "succeeded", **kw: Any) -> HistoryEntry:
    return HistoryEntry(
        revision=revision,
        kind=kw.get("kind", "update"),
        result=result,
        start=T0,
        end=T0,
        message=kw.get("message", f"update {revision}"),
        config={},
        changes=kw.get("changes", {"update": 1}),
    )


# --- revisions -------------------------------------------------------------------------------


def test_the_file_backends_version_0_entries_are_numbered_by_position_oldest_first() -> None:
    # pkg/backend/diy: every entry reports version 0, newest first.
    entries = engine._numbered([summary(0, message=m) for m in ("third", "second", "first")])
    assert [(e.revision, e.message) for e in entries] == [
        (3, "third"),
        (2, "second"),
        (1, "first"),
    ]


def test_pulumi_clouds_own_versions_are_kept() -> None:
    entries = engine._numbered([summary(12, "in-progress"), summary(11), summary(9)])
    assert [e.revision for e in entries] == [12, 11, 9]


def test_an_empty_history_has_no_revisions() -> None:
    assert engine._numbered([]) == []


# --- the guard's mark ------------------------------------------------------------------------


def test_a_refused_update_changes_nothing_so_it_does_not_move_the_mark() -> None:
    before = [entry(2), entry(1)]
    refused = entry(3, "failed", changes={"same": 1})  # the guard stopped the program
    assert Mark.of([refused, *before]) == Mark.of(before)


def test_any_update_that_finished_moves_the_mark() -> None:
    before = [entry(2), entry(1)]
    assert Mark.of([entry(3), *before]) != Mark.of(before)
    assert Mark.of([entry(3, "failed"), *before]) != Mark.of(before)  # it changed resources
    assert Mark.of([entry(3, kind="refresh", changes={}), *before]) != Mark.of(before)


def test_the_running_update_listed_by_the_service_does_not_move_the_mark() -> None:
    before = [entry(11), entry(10)]
    running = entry(12, "in-progress", changes={})
    assert Mark.of([running, *before]) == Mark.of(before)


def test_an_entry_is_described_by_revision_command_and_result() -> None:
    e = entry(7, "failed", message="mlserve promote --weight 50")
    assert e.describe() == "revision 7 (`mlserve promote --weight 50`, failed)"


# --- stack export -----------------------------------------------------------------------------

SIG = "4dabf18193072939515e22adb298388d"
URN = "urn:pulumi:dev::fraud::"


def export(**deployment: Any) -> dict[str, Any]:
    """`pulumi stack export` output: apitype.UntypedDeployment holding a DeploymentV3."""
    return {
        "version": 3,
        "deployment": {
            "manifest": {"time": "2026-01-01T10:00:00Z", "magic": "x", "version": "v3.272.0"},
            "secrets_providers": {"type": "passphrase", "state": {"salt": "v1:abc"}},
            **deployment,
        },
    }


def test_a_stack_export_gives_urns_masked_outputs_providers_and_pending_creates() -> None:
    state = engine.stack_state(
        export(
            resources=[
                {
                    "urn": URN + "pulumi:pulumi:Stack::fraud-dev",
                    "custom": False,
                    "type": "pulumi:pulumi:Stack",
                    "outputs": {
                        "endpoint": "http://fraud.example.com/",
                        "routing": [URN + "kong:index/target:Target::fraud-v1"],
                        "token": {SIG: "1b47061264138c4ac30d75fd1eb44270", "ciphertext": "v1:x"},
                    },
                },
                {
                    "urn": URN + "pulumi:providers:kubernetes::default_4_34_2",
                    "custom": True,
                    "type": "pulumi:providers:kubernetes",
                    "inputs": {"version": "4.34.2"},
                },
                {
                    "urn": URN + "pulumi:providers:kong::fraud-kong",
                    "custom": True,
                    "type": "pulumi:providers:kong",
                    "inputs": {"version": "4.6.3"},
                },
                {
                    "urn": URN + "kong:index/target:Target::fraud-v1",
                    "custom": True,
                    "type": "kong:index/target:Target",
                },
            ],
            pending_operations=[
                {
                    "resource": {
                        "urn": URN + "kubernetes:apps/v1:Deployment::fraud-v3",
                        "type": "kubernetes:apps/v1:Deployment",
                    },
                    "type": "creating",
                },
                {"resource": {"urn": URN + "kong:index/route:Route::fraud"}, "type": "updating"},
            ],
        )
    )
    assert state.outputs == {
        "endpoint": "http://fraud.example.com/",
        "routing": [URN + "kong:index/target:Target::fraud-v1"],
        "token": "[secret]",
    }
    assert URN + "kong:index/target:Target::fraud-v1" in state.urns
    assert state.providers == {"kubernetes": "4.34.2"}  # explicit providers are not default ones
    assert state.plugins == {"kubernetes", "kong"}
    assert state.pending_creates == (("kubernetes:apps/v1:Deployment", "fraud-v3"),)


def test_a_stack_that_was_never_updated_exports_nothing() -> None:
    state = engine.stack_state(export())
    assert (state.urns, state.outputs, state.providers, state.pending_creates) == (
        frozenset(),
        {},
        {},
        (),
    )


# --- the private config file -----------------------------------------------------------------


@pytest.fixture
def eng(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setenv("MLSERVE_HOME", str(tmp_path / "home"))
    e = Engine(Target("fraud", "dev"))
    e.workdir.mkdir(parents=True)
    return e


def test_the_config_file_copies_the_stacks_settings_and_replaces_mlserves_record(
    eng: Engine,
) -> None:
    shared = eng.workdir / "Pulumi.dev.yaml"
    shared.write_text(
        yaml.safe_dump(
            {
                "secretsprovider": "passphrase",
                "encryptionsalt": "v1:c2FsdA==:v1:bm9uY2U=:Y3Q=",
                "config": {
                    "kubernetes:context": "prod",
                    "mlserve:traffic": '{"stable": "stale"}',
                    "mlserve:rollout": "stale",
                    "app:token": {"secure": "v1:abc"},
                },
            }
        )
    )
    before = shared.read_bytes()
    big = "x" * 200_000  # far past what one argv string may hold (128 KiB on Linux)
    with eng._config_file({"mlserve:traffic": '{"stable": "v2"}', "mlserve:spec": big}) as path:
        private = Path(path)
        assert private.parent == eng.workdir
        assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
        assert yaml.safe_load(private.read_text()) == {
            "secretsprovider": "passphrase",
            "encryptionsalt": "v1:c2FsdA==:v1:bm9uY2U=:Y3Q=",
            "config": {
                "kubernetes:context": "prod",
                "app:token": {"secure": "v1:abc"},
                "mlserve:traffic": '{"stable": "v2"}',
                "mlserve:spec": big,
            },
        }
    assert not private.exists()
    assert shared.read_bytes() == before


def test_without_stack_settings_the_config_file_holds_only_the_record(eng: Engine) -> None:
    with eng._config_file({"mlserve:traffic": "{}"}) as path:
        assert yaml.safe_load(Path(path).read_text()) == {"config": {"mlserve:traffic": "{}"}}


def test_unreadable_stack_settings_are_a_precondition_error_naming_the_file(eng: Engine) -> None:
    (eng.workdir / "Pulumi.dev.yaml").write_text("config: [unclosed\n")
    with (
        pytest.raises(PreconditionError, match=r"Pulumi\.dev\.yaml cannot be read"),
        eng._config_file({}),
    ):
        pass


# --- the real CLI's error texts -----------------------------------------------------------------


def command_error(stdout: str, stderr: str = "") -> auto.CommandError:
    return auto.CommandError(auto.CommandResult(stdout=stdout, stderr=stderr, code=255))


def test_a_plugin_the_cli_could_not_download_is_exit_4_with_the_fix(eng: Engine) -> None:
    # InstallPluginError.Error() (pkg/workspace/plugins.go)
    text = (
        "error: Could not automatically download and install resource plugin "
        "'pulumi-resource-kubernetes' at version v4.34.2, install the plugin using `pulumi "
        "plugin install resource kubernetes v4.34.2`: 403 HTTP error fetching plugin"
    )
    err = eng.map_error(command_error(text), "update")
    assert isinstance(err, EngineUnavailableError) and err.exit_code == 4
    assert str(err) == (
        "the kubernetes provider plugin v4.34.2 is missing and could not be installed "
        "automatically: run `mlserve setup` where there is network, or install it by hand: "
        "`pulumi plugin install resource kubernetes 4.34.2` (add `--file PATH` to install it "
        "from a plugin binary, folder or tarball you downloaded)"
    )


def test_a_missing_plugin_without_automatic_acquisition_is_exit_4(eng: Engine) -> None:
    text = (
        "error: no resource plugin 'pulumi-resource-kong' found in the workspace at version v4.6.3"
    )
    err = eng.map_error(command_error(text), "preview")
    assert isinstance(err, EngineUnavailableError)
    assert str(err).startswith("the kong provider plugin v4.6.3 is missing")


@pytest.mark.parametrize(
    "line",
    [
        # diag.GetTargetCouldNotBeFoundError (sdk/go/common/diag/errors.go)
        "error: Target 'urn:pulumi:dev::fraud::kong:index/target:Target::fraud-v3' could not be "
        "found in the stack.",
        # step_generator.go, a provider version changed under --target
        "error: provider urn:pulumi:dev::fraud::pulumi:providers:kubernetes::default_4_35_0::"
        "04da6b54 for resource urn:pulumi:dev::fraud::kubernetes:apps/v1:Deployment::fraud-v1 "
        "has not been registered yet, this is due to a change of providers mixed with --target. "
        "Change your program back to the original providers",
    ],
)
def test_a_targeted_update_the_engine_refused_says_to_deploy_first(eng: Engine, line: str) -> None:
    err = eng.map_error(command_error(f"Updating (dev):\n{line}\n"), "update")
    assert isinstance(err, PreconditionError) and err.exit_code == 6
    assert str(err).startswith("the routing-only update failed: ")
    assert str(err).endswith(
        ". Part of the routing may have changed: run `mlserve deploy` first, then check "
        "`mlserve status` (run with --debug for the engine's full output)"
    )
