"""Contract tests against the REAL Pulumi CLI that `scripts/realstack build` makes (`engine`).

They run inline programs that only export outputs or declare component resources (no provider, no
plugin), on a file backend under tmp_path with a passphrase from the environment, so they need no
cloud, no cluster and no login: only the built CLI, first on PATH (tests/realstack.py
`real_cli`). They skip until it is built, and fail instead under CI=true, which builds it. Each
asserts what pulumi/pulumi's source says the CLI does (file named beside it), and what the built
CLI then did.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from mlserve import engine
from mlserve.engine import Engine, Mark, Target
from mlserve.errors import PreconditionError, StackBusyError
from mlserve.live import SPEC_KEY, TRAFFIC_KEY, live_record
from mlserve.spec import load_spec
from tests.helpers import REPO, real_engine_only, real_target

pytestmark = real_engine_only
target = real_target
TRAFFIC = {"stable": "v1", "canary": "v2", "weight": 10, "previous": None}
RECORD = {
    TRAFFIC_KEY: json.dumps(TRAFFIC),
    SPEC_KEY: json.dumps(load_spec(REPO / "specs" / "istio.yaml").to_dict()),
}


def program() -> None:
    import pulumi

    pulumi.export("endpoint", "http://models.example.test/fraud")
    pulumi.export("weights", {"v1": 90, "v2": 10})
    pulumi.export("token", pulumi.Output.secret("contract-secret-token"))


def routes(*names: str, pause: float = 0) -> Callable[[], None]:
    """A program declaring component resources (no provider needed), as routing stands in."""

    def run() -> None:
        import pulumi

        time.sleep(pause)
        for name in names:
            pulumi.ComponentResource("mlserve:contract:Route", name)
        pulumi.export("routing", list(names))

    return run


def up(eng: Engine, prog: Callable[[], None], message: str, **kw: object) -> int:
    kw.setdefault("config", RECORD)
    kw.setdefault("expect", Mark.of(eng.history()))
    outcome = eng.up(prog, message=message, since="the test read it", **kw)  # type: ignore[arg-type]
    return outcome.revision


def test_deploy_outputs_history_destroy_on_a_real_engine(target: Target) -> None:
    eng = Engine(target)
    eng.stack(create=True)
    preview = eng.preview(program, RECORD)
    # The engine counts the pulumi:pulumi:Stack; mlserve lists no resource and names it apart.
    assert preview.tally.engine.get("create") == 1
    assert (preview.changes, dict(preview.tally.extras)) == ({}, {"the stack itself": "create"})

    assert up(eng, program, "mlserve deploy") == 1
    fresh = Engine(target)  # a new command: selects the existing stack
    entries = fresh.history()
    assert [(e.revision, e.kind, e.result, e.message) for e in entries] == [
        (1, "update", "succeeded", "mlserve deploy")
    ]
    # --config-file: the update's history entry records that file's config
    # (pkg/backend/diy/backend.go `apply`: Config: update.Target.Config) ...
    assert json.loads(entries[0].config[TRAFFIC_KEY]) == TRAFFIC
    # ... and the workspace's own settings never saw it; the private copy is gone.
    settings = yaml.safe_load((fresh.workdir / "Pulumi.dev.yaml").read_text()) or {}
    assert not any(str(k).startswith("mlserve:") for k in settings.get("config") or {})
    assert "encryptionsalt" in settings  # written by `stack init --secrets-provider passphrase`
    assert not list(fresh.workdir.glob(".mlserve-config-*"))
    # `stack export` without --show-secrets: outputs with the secret still encrypted
    assert fresh.state().outputs == {
        "endpoint": "http://models.example.test/fraud",
        "weights": {"v1": 90, "v2": 10},
        "token": "[secret]",
    }

    # The engine's summary counts the deleted stack resource (delete: 1); mlserve lists no
    # resource of this program, and names the stack apart, as in the preview above.
    assert fresh.destroy(message="mlserve destroy") == {}
    assert [(e.revision, e.kind) for e in Engine(target).history()] == [
        (2, "destroy"),
        (1, "update"),
    ]
    assert live_record(Engine(target).history()) is None


def test_revisions_past_the_cli_default_page_of_ten_stay_unique_and_the_record_is_found(
    target: Target,
) -> None:
    # The file backend reports version 0 for every entry (pkg/backend/diy/backend.go `apply`),
    # and `stack history` without --page-size returns the newest 10 (stack_history.go).
    eng = Engine(target)
    eng.stack(create=True)
    up(eng, program, "mlserve deploy")
    for _ in range(11):
        eng.refresh()
    entries = Engine(target).history()
    assert [e.revision for e in entries] == list(range(12, 0, -1))
    assert [e.kind for e in entries] == ["refresh"] * 11 + ["update"]
    live = live_record(entries)
    assert live is not None and live.revision == 1


def test_a_spec_larger_than_an_argument_may_be_reaches_the_history_through_the_config_file(
    target: Target,
) -> None:
    eng = Engine(target)
    eng.stack(create=True)
    big = "x" * 150_000  # one argv string may hold 128 KiB on Linux (MAX_ARG_STRLEN)
    up(eng, program, "mlserve deploy", config={**RECORD, "mlserve:big": big})
    assert Engine(target).history()[0].config["mlserve:big"] == big


def test_a_fresh_workspace_without_stack_settings_updates_with_the_states_salt(
    target: Target,
) -> None:
    eng = Engine(target)
    eng.stack(create=True)
    up(eng, program, "first")
    (eng.workdir / "Pulumi.dev.yaml").unlink()  # a new CI runner: only the backend is shared
    # PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER (pkg/cmd/pulumi/stack/secrets.go): the state's
    # secrets manager is used, and nothing is written into the workspace.
    fresh = Engine(target)
    assert up(fresh, program, "second") == 2
    assert not (fresh.workdir / "Pulumi.dev.yaml").exists()
    assert fresh.state().outputs["token"] == "[secret]"


def test_a_target_registered_by_the_program_may_be_new_and_an_unknown_one_fails(
    target: Target,
) -> None:
    eng = Engine(target)
    eng.stack(create=True)
    up(eng, routes("a"), "deploy")
    urn = f"urn:pulumi:dev::{target.project}::mlserve:contract:Route::"  # deployment.go generateURN
    assert urn + "a" in Engine(target).state().urns
    # A target must be in the old state or registered by the program (deployment_executor.go
    # `checkTargets`): "b" is new and registered, so it is created.
    up(eng, routes("a", "b"), "targeted", target=[urn + "a", urn + "b"])
    assert urn + "b" in Engine(target).state().urns
    # Neither in the state nor registered: the update fails (diag 2011).
    with pytest.raises(PreconditionError, match="could not be found in the stack"):
        up(eng, routes("a", "b"), "unknown", target=[urn + "a", urn + "zzz"])


def test_a_missing_stack_is_a_precondition_error_on_a_real_engine(target: Target) -> None:
    with pytest.raises(PreconditionError, match="no stack 'dev' of project 'mlserve-contract'"):
        Engine(target).history()


def test_a_held_lock_is_stack_busy_on_a_real_engine(target: Target) -> None:
    holder = Engine(target)
    holder.stack(create=True)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            up(holder, routes("a", pause=8), "holder", expect=Mark.of([]))
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        time.sleep(4)  # the update has taken the DIY lock and is running the slow program
        waiter = Engine(target, lock_timeout=0)
        waiter.stack()
        # refresh locks like update (pkg/backend/diy/backend.go `Refresh`); preview does not
        with pytest.raises(StackBusyError, match="is locked by another update"):
            waiter.refresh()
    finally:
        thread.join(120)
    assert errors == []


def test_of_two_updates_computed_from_one_history_the_one_that_waited_changes_nothing(
    target: Target,
) -> None:
    first = Engine(target)
    first.stack(create=True)
    up(first, routes("a"), "deploy")
    read = Mark.of(first.history())
    results: dict[str, object] = {}

    def racer(name: str, pause: float) -> None:
        eng = Engine(target, lock_timeout=120)
        eng.stack()
        try:
            results[name] = up(eng, routes("a", pause=pause), name, expect=read)
        except PreconditionError as e:
            results[name] = e

    # The first holds the lock 8 s in its program; the second waits for it, then its guard reads
    # the first's entry: `stack history` takes no lock (RequireStack LoadOnly) and the DIY
    # backend writes an update's entry when it ends, before unlocking (backend.go `apply`).
    a = threading.Thread(target=racer, args=("winner", 8))
    a.start()
    time.sleep(3)
    b = threading.Thread(target=racer, args=("loser", 0))
    b.start()
    a.join(180)
    b.join(180)
    assert results["winner"] == 2
    assert isinstance(results["loser"], PreconditionError)
    assert "changed since the test read it: revision 2 (`winner`, succeeded)" in str(
        results["loser"]
    )
    entries = Engine(target).history()
    assert [(e.revision, e.message, e.result) for e in entries][:2] == [
        (3, "loser", "failed"),
        (2, "winner", "succeeded"),
    ]
    assert Mark.of(entries) == Mark.of(entries[1:])  # the refused update changed nothing


def family(*names: str, parents: dict[str, str] | None = None) -> Callable[[], None]:
    """Component resources `names`, each the child of another as given."""

    def run() -> None:
        import pulumi

        made: dict[str, pulumi.Resource] = {}
        for name in names:
            parent = made[parents[name]] if parents and name in parents else None
            opts = pulumi.ResourceOptions(parent=parent)
            made[name] = pulumi.ComponentResource("mlserve:contract:Route", name, opts=opts)
        pulumi.export("routing", list(names))

    return run


def test_a_targeted_update_that_would_delete_what_it_does_not_target_is_refused_as_such(
    target: Target,
) -> None:
    """Diag 2014 (sdk/go/common/diag/errors.go, step_generator.go): a routing-only update that
    would have to delete what it does not target fails; mlserve says the routing may have
    changed and to deploy first (exit 6), not a generic engine failure."""
    eng = Engine(target)
    eng.stack(create=True)
    up(eng, family("a", "b", parents={"b": "a"}), "deploy")
    urn = f"urn:pulumi:dev::{target.project}::mlserve:contract:Route::"
    # The targeted `a` is gone, and with it its child `b`, which is not targeted.
    with pytest.raises(PreconditionError) as refused:
        up(eng, family(), "drops a", target=[urn + "a"])
    child = f"urn:pulumi:dev::{target.project}::mlserve:contract:Route$mlserve:contract:Route::b"
    assert str(refused.value) == (
        f"the routing-only update failed: b: Resource '{child}' will be destroyed but was not "
        "specified in --target list. Part of the routing may have changed: run `mlserve deploy` "
        "first, then check `mlserve status` (run with --debug for the engine's full output)"
    )


# --- Issue 21 §3, the smaller disagreements, against the real CLI -----------------------------


def pulumi(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real CLI (first on PATH: `real_cli`) in `cwd`, with `env` added."""
    result = subprocess.run(
        ["pulumi", "--non-interactive", *args], cwd=cwd, env={**os.environ, **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result


def project_dir(tmp_path: Path) -> Path:
    """A directory with a Pulumi.yaml whose backend is a file backend under tmp_path."""
    work = tmp_path / "project"
    work.mkdir()
    backend = (tmp_path / "backend").as_uri()
    (work / "Pulumi.yaml").write_text(
        f"name: contract\nruntime: python\nbackend:\n  url: {backend}\n"
    )
    (tmp_path / "backend").mkdir()
    return work


def test_a_passphrase_file_is_trimmed_of_all_white_space_as_the_cli_trims_it(
    target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI reads PULUMI_CONFIG_PASSPHRASE_FILE with Go's strings.TrimSpace
    (pkg/secrets/passphrase/manager.go `readPassphrase`): leading blanks, tabs and Unicode
    spaces go too, not only the newline mlserve used to strip. What mlserve reads is what opens
    the stack (and what it scrubs from every output)."""
    work = project_dir(tmp_path)
    secret_file = tmp_path / "passphrase"
    secret_file.write_text("\u3000 team passphrase\t \n\n", encoding="utf-8")
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE_FILE", str(secret_file))
    read = engine.resolve_passphrase(tmp_path / "home", "s3://bucket", False)
    assert read.secret == "team passphrase"

    pulumi(work, "stack", "init", "dev", "--secrets-provider", "passphrase")
    pulumi(work, "config", "set", "--secret", "token", "t0ken", "--stack", "dev")
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE")
    got = pulumi(work, "config", "get", "token", "--stack", "dev",
                 PULUMI_CONFIG_PASSPHRASE=read.secret)  # fmt: skip
    assert got.stdout.strip() == "t0ken"


def test_stacks_kept_as_json_zst_are_found(target: Target, tmp_path: Path) -> None:
    """PULUMI_DIY_BACKEND_ZSTD=true keeps a stack as <stack>.json.zst (pkg/backend/diy/
    backend.go, encoding.ZSTDExt); mlserve must see it before it makes a new passphrase that
    could not open it."""
    work = project_dir(tmp_path)
    pulumi(work, "stack", "init", "dev", PULUMI_DIY_BACKEND_ZSTD="true")
    pulumi(work, "stack", "init", "prod", PULUMI_DIY_BACKEND_GZIP="true")
    root = tmp_path / "backend" / ".pulumi" / "stacks"
    files = sorted(p.name for p in root.rglob("*.json*"))  # and a .bak and an .attrs beside each
    assert [f for f in files if not f.endswith((".bak", ".attrs"))] == [
        "dev.json.zst",
        "prod.json.gz",
    ]
    assert engine.stored_stacks(tmp_path / "backend") == ["contract/dev", "contract/prod"]


def test_a_plugin_directory_beside_a_partial_marker_is_not_installed(
    target: Target, tmp_path: Path
) -> None:
    """An interrupted plugin install leaves `<dir>.partial` beside its directory, and the CLI
    lists no such plugin (sdk/go/common/workspace/plugins.go `getPlugins`), so mlserve installs it
    again instead of counting it as there."""
    plugins = Path(os.environ["PULUMI_HOME"]) / "plugins"
    for version in ("1.0.0", "2.0.0"):
        folder = plugins / f"resource-contract-v{version}"
        folder.mkdir(parents=True)
        (folder / "pulumi-resource-contract").write_text("#!/bin/sh\n")
        (folder / "pulumi-resource-contract").chmod(0o755)
    (plugins / "resource-contract-v2.0.0.partial").write_text("")
    listed = json.loads(pulumi(tmp_path, "plugin", "ls", "--json").stdout)
    assert [(p["name"], p["version"]) for p in listed] == [("contract", "1.0.0")]
    assert engine.plugin_installed("contract", "1.0.0")
    assert not engine.plugin_installed("contract", "2.0.0")


def test_a_targeted_update_that_needs_a_create_it_does_not_target_is_refused_as_such(
    target: Target,
) -> None:
    """Diag 2013 (sdk/go/common/diag/errors.go, step_generator.go): a targeted new resource whose
    parent (or dependency: a component's own URN is no dependency, the SDK expands it to its
    children) is a create left out of --target fails, as a routing update whose route needs an
    object that does not exist yet would: mlserve says deploy first (exit 6)."""
    eng = Engine(target)
    eng.stack(create=True)
    up(eng, routes(), "deploy")
    urn = f"urn:pulumi:dev::{target.project}::mlserve:contract:Route"
    child = f"{urn}$mlserve:contract:Route::b"
    with pytest.raises(PreconditionError) as refused:
        up(eng, family("a", "b", parents={"b": "a"}), "b under a", target=[child])
    assert str(refused.value) == (
        f"the routing-only update failed: b: Resource '{child}' depends on '{urn}::a' which was "
        "was not specified in --target list. Part of the routing may have changed: run "
        "`mlserve deploy` first, then check `mlserve status` (run with --debug for the engine's "
        "full output)"
    )


class Notes:
    def __init__(self) -> None:
        self.notes: list[str] = []

    def event(self, event: object) -> None:
        pass

    def note(self, text: str) -> None:
        self.notes.append(text)


def test_a_pulumi_on_path_built_without_its_version_is_named_when_setups_cli_runs_instead(
    target: Target, real_cli: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `go build` of the CLI without the version ldflag prints nothing for `pulumi version`
    (pkg/version: Version is empty; reference/realstack.md), and the SDK rejects it. With the CLI
    `mlserve setup` installed under MLSERVE_HOME (here the real build, linked), that one runs:
    mlserve says so, naming the build on PATH it passed over, which may be the newer one. (The
    unversioned build is a script printing nothing, as such a build prints: building a second
    CLI takes minutes.)"""
    pinned = engine.cli_root(Path(os.environ["MLSERVE_HOME"])) / "bin" / "pulumi"
    pinned.parent.mkdir(parents=True)
    pinned.symlink_to(real_cli)
    unversioned = tmp_path / "source-build"
    unversioned.mkdir()
    (unversioned / "pulumi").write_text('#!/bin/sh\n[ "$1" = version ] && exit 0\nexit 1\n')
    (unversioned / "pulumi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{unversioned}{os.pathsep}{os.environ['PATH']}")
    sink = Notes()
    command = Engine(target, sink=sink).command()
    assert command.command == str(pinned)
    assert sink.notes == [
        "note: `pulumi version` printed nothing (`pulumi` on PATH): this Pulumi CLI was built "
        "without its version, which the Automation API needs (a source build needs -ldflags "
        f'"{engine.VERSION_LDFLAG}"); using {pinned} v{command.version} instead'
    ]
