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
import threading
import time
from collections.abc import Callable

import pytest
import yaml

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
