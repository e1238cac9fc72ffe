"""plan, deploy, status, history, destroy via the REAL pulumi.automation code and the stand-in."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlserve import ops
from mlserve.engine import Event, Target
from mlserve.errors import (
    EngineUnavailableError,
    OperationFailedError,
    PreconditionError,
    StackBusyError,
)
from mlserve.spec import Spec
from mlserve.traffic import TrafficState
from tests.fake_pulumi import fixture
from tests.fake_pulumi.fixture import Fake

fake = fixture.fake
K8S = importlib.metadata.version("pulumi-kubernetes")
TARGET = Target("fraud", "dev")


def make_spec(
    versions: tuple[str, ...] = ("v1", "v2"),
    stable: str = "v1",
    canary: str | None = "v2",
    weight: int = 10,
) -> Spec:
    traffic: dict[str, Any] = {"stable": stable, "weight": weight}
    if canary:
        traffic["canary"] = canary
    return Spec.from_dict(
        {
            "apiVersion": "mlserve/v1",
            "name": "fraud",
            "gateway": {
                "type": "istio",
                "host": "models.example.com",
                "path": "/fraud",
                "istio": {"gateways": ["istio-system/public"]},  # not mesh-only: no note
            },
            "versions": [{"name": v, "image": f"ghcr.io/acme/fraud:{v}"} for v in versions],
            "traffic": traffic,
        }
    )


def deployed(fake: Fake) -> None:
    """As `ops.deploy(make_spec(), TARGET)` leaves a fresh stack: a copy (`Fake.deployed`)."""
    spec = fake.root / "fraud.yaml"
    spec.write_text(yaml.safe_dump(make_spec().to_dict()))
    fake.deployed(spec)


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.notes: list[str] = []

    def event(self, event: Event) -> None:
        self.events.append(event)

    def note(self, text: str) -> None:
        self.notes.append(text)


def recorded(fake: Fake, project: str = "fraud", stack: str = "dev") -> dict[str, Any]:
    """The config the newest history entry recorded, read from the file backend's own files
    (`.pulumi/history/PROJECT/STACK/STACK-<nanoseconds>.history.json`, pkg/backend/diy/state.go
    `addToHistory`), not through mlserve."""
    directory = fake.home / "state" / ".pulumi" / "history" / project / stack
    newest = sorted(directory.glob("*.history.json"))[-1]
    return dict(json.loads(newest.read_text())["config"])


# --- deploy ---------------------------------------------------------------------------------


def test_first_deploy_creates_the_stack_with_backend_passphrase_and_config(fake: Fake) -> None:
    sink = Recorder()
    report = ops.deploy(make_spec(), TARGET, sink=sink)

    assert report.applied and report.revision == 1
    assert report.outputs["endpoint"] == "http://models.example.com/fraud"
    assert report.outputs["weights"] == {"v1": 90, "v2": 10}
    assert fake.commands() == [
        "version",
        "stack select",
        "stack init",
        "stack history",
        "preview",
        "up",
        "stack history",  # the guard, inside the update
        "stack export",  # the outputs the report shows
    ]
    backend = (fake.home / "state").as_uri()
    passphrase = fake.home / "passphrase"
    for call in fake.calls()[1:]:
        assert call["env"]["PULUMI_BACKEND_URL"] == backend
        assert call["env"]["PULUMI_CONFIG_PASSPHRASE_FILE"] == str(passphrase)
        assert call["env"]["PULUMI_SKIP_UPDATE_CHECK"] == "true"
        assert call["cwd"] == str(fake.workspace("fraud"))
    assert "--secrets-provider" in fake.argvs()[2]
    assert stat.S_IMODE(passphrase.stat().st_mode) == 0o600
    assert sink.notes == [
        f"created a passphrase for stack secrets in {passphrase} (mode 0600); "
        "keep it: every later command on this backend needs it"
    ]
    config = recorded(fake)
    assert json.loads(config["mlserve:traffic"]) == {
        "stable": "v1",
        "canary": "v2",
        "weight": 10,
        "previous": None,
        "mirror": None,
    }
    assert json.loads(config["mlserve:spec"]) == make_spec().to_dict()
    up = next(a for a in fake.argvs() if a[0] == "up")
    assert up[up.index("--message") + 1] == "mlserve deploy"
    # the record goes through a private copy of the stack settings, never into the workspace's
    assert Path(up[up.index("--config-file") + 1]).parent == fake.workspace("fraud")
    settings = yaml.safe_load((fake.workspace("fraud") / "Pulumi.dev.yaml").read_text())
    assert not any(k.startswith("mlserve:") for k in settings.get("config") or {})


def test_the_passphrase_file_is_created_once_and_reused(fake: Fake) -> None:
    deployed(fake)
    first = (fake.home / "passphrase").read_text()
    sink = Recorder()
    ops.deploy(make_spec(), TARGET, sink=sink)
    assert (fake.home / "passphrase").read_text() == first
    assert sink.notes == []


def test_a_second_deploy_selects_the_stack_and_spawns_seven_processes(fake: Fake) -> None:
    deployed(fake)
    fake.clear_log()
    ops.deploy(make_spec(), TARGET)
    assert fake.commands() == [
        "version",
        "stack select",
        "stack history",
        "preview",
        "up",
        "stack history",
        "stack export",
    ]


def test_deploy_installs_the_plugin_at_the_sdk_version_only_when_missing(fake: Fake) -> None:
    shutil.rmtree(fake.pulumi_home / "plugins")
    sink = Recorder()
    ops.deploy(make_spec(), TARGET, sink=sink)
    assert ["plugin", "install", "resource", "kubernetes", f"v{K8S}"] in fake.argvs()
    assert f"installing the kubernetes plugin v{K8S}" in sink.notes
    fake.clear_log()
    ops.deploy(make_spec(), TARGET)
    assert not [c for c in fake.commands() if c.startswith("plugin")]


def test_a_plugin_that_cannot_be_installed_exits_4_with_the_way_out(fake: Fake) -> None:
    shutil.rmtree(fake.pulumi_home / "plugins")
    fake.set(plugin_install_fails="failed to download plugin: dial tcp: no route to host")
    with pytest.raises(EngineUnavailableError) as e:
        ops.deploy(make_spec(), TARGET)
    assert str(e.value) == (
        f"could not install the kubernetes plugin v{K8S}: failed to download plugin: dial tcp: "
        "no route to host; run `mlserve setup` where there is network, or install it by hand: "
        f"`pulumi plugin install resource kubernetes {K8S}` (add `--file PATH` to install it "
        "from a plugin binary, folder or tarball you downloaded)"
    )


def test_deploy_keeps_the_live_canary_weight_and_records_it_in_history(fake: Fake) -> None:
    deployed(fake)
    ops.deploy(make_spec(weight=50), TARGET, reset_traffic=True)
    report = ops.deploy(make_spec(weight=10), TARGET)

    assert report.plan.traffic == TrafficState("v1", "v2", 50)
    assert report.plan.warnings == [
        "keeping the live canary weight 50% for v2 (the spec says 10%); "
        "use --reset-traffic to apply the spec's weight"
    ]
    rows = ops.history(TARGET)
    assert [(r.revision, r.command, r.traffic) for r in rows] == [
        (3, "mlserve deploy", TrafficState("v1", "v2", 50)),
        (2, "mlserve deploy --reset-traffic", TrafficState("v1", "v2", 50)),
        (1, "mlserve deploy", TrafficState("v1", "v2", 10)),
    ]


def test_a_fresh_workspace_reads_the_live_state_from_the_backend(fake: Fake) -> None:
    deployed(fake)
    ops.deploy(make_spec(weight=40), TARGET, reset_traffic=True)
    shutil.rmtree(fake.home / "workspaces")  # a new CI runner sharing the backend

    report = ops.deploy(make_spec(weight=10), TARGET)
    assert report.plan.live == TrafficState("v1", "v2", 40)
    assert report.plan.traffic == TrafficState("v1", "v2", 40)


def test_deploy_keeps_previous_and_live_versions_the_spec_dropped(fake: Fake) -> None:
    deployed(fake)
    report = ops.deploy(make_spec(("v2", "v3"), "v2", "v3", 5), TARGET)

    assert report.plan.traffic == TrafficState("v2", "v3", 5, previous="v1")
    assert report.plan.versions == ("v2", "v3", "v1")
    assert (
        "v1 is not in the spec but stays deployed: it is the previous stable, kept at 0% "
        "for an instant rollback" in report.plan.warnings
    )
    spec = json.loads(recorded(fake)["mlserve:spec"])
    assert [v["name"] for v in spec["versions"]] == ["v2", "v3", "v1"]
    assert not [s for s in report.plan.steps if s.op == "delete" and s.name == "fraud-v1"]


def test_deploy_removes_a_version_nothing_references_any_more(fake: Fake) -> None:
    ops.deploy(make_spec(("v1", "v2", "v3"), "v1", "v2", 10), TARGET)
    report = ops.deploy(make_spec(("v1", "v2"), "v1", "v2", 10), TARGET)
    deleted = sorted(s.name for s in report.plan.steps if s.op == "delete")
    assert deleted == ["fraud-v3", "fraud-v3"]
    assert report.changes["delete"] == 2


def test_deploy_waits_for_a_lock_then_proceeds(fake: Fake) -> None:
    deployed(fake)
    fake.clear_log()
    fake.set(locked=2)
    sink = Recorder()
    report = ops.deploy(
        make_spec(weight=20), TARGET, sink=sink, lock_timeout=30, reset_traffic=True
    )
    assert report.applied
    # a preview takes no lock (pkg/backend/diy/backend.go `Preview`); the update waits
    assert (fake.commands().count("preview"), fake.commands().count("up")) == (1, 3)
    assert sink.notes[-1] == (
        f"stack 'dev' of project 'fraud' (backend {(fake.home / 'state').as_uri()}) is locked by "
        "another update; waiting up to 30s"
    )


def test_a_lock_not_released_in_time_is_stack_busy_with_the_recovery(fake: Fake) -> None:
    deployed(fake)
    fake.set(locked=-1)
    with pytest.raises(StackBusyError) as e:
        ops.deploy(make_spec(), TARGET, lock_timeout=0.05)
    backend = (fake.home / "state").as_uri()
    assert str(e.value) == (
        f"stack 'dev' of project 'fraud' (backend {backend}) is locked by another update and was "
        "not released within --lock-timeout 0.05s: created by ci@runner-7 (pid 4242) at "
        "2025-01-01T10:00:00Z. Wait for that update to finish, or retry with --lock-timeout 5m. "
        "If no update is running (an interrupted one left its lock), remove the lock with: "
        f"pulumi cancel --yes --stack dev --cwd {fake.workspace('fraud')}"
    )
    assert e.value.exit_code == 3


def test_lock_timeout_zero_fails_at_once(fake: Fake) -> None:
    deployed(fake)
    fake.clear_log()
    fake.set(locked=-1)
    with pytest.raises(StackBusyError):
        ops.deploy(make_spec(), TARGET)
    assert fake.commands().count("up") == 1


def test_a_failed_update_is_exit_5_with_the_engines_reason(fake: Fake) -> None:
    reason = "Deployment fraud-v2 never became ready: ImagePullBackOff"
    fake.set(fail={"up": {"Deployment::fraud-v2": reason}})
    with pytest.raises(OperationFailedError) as e:
        ops.deploy(make_spec(), TARGET)
    assert str(e.value) == (
        "the update failed: fraud-v2: Deployment fraud-v2 never became ready: ImagePullBackOff "
        "(run with --debug for the engine's full output)"
    )
    assert e.value.exit_code == 5
    assert [(r.kind, r.result) for r in ops.history(TARGET)] == [("update", "failed")]


def test_debug_adds_the_engines_output_without_secrets(fake: Fake) -> None:
    fake.set(fail={"up": "boom"}, leak=True)
    with pytest.raises(OperationFailedError) as e:
        ops.deploy(make_spec(), TARGET, debug=True)
    passphrase = (fake.home / "passphrase").read_text().strip()
    text = str(e.value)
    assert "--- engine output ---" in text
    assert "Diagnostics:" in text
    assert passphrase not in text
    assert "boom (passphrase was [secret])" in text


def test_a_failing_program_reports_the_programs_message(fake: Fake) -> None:
    fake.set(program_error="KeyError: 'v9'")
    with pytest.raises(OperationFailedError) as e:
        ops.plan(make_spec(), TARGET)
    assert str(e.value) == (
        "the program failed during the preview: python inline source runtime error: "
        "KeyError: 'v9' (run with --debug for the engine's full output)"
    )


def test_a_live_version_defined_nowhere_is_a_precondition_error(fake: Fake) -> None:
    deployed(fake)
    # the stack's record lost v2's definition (an older mlserve, a hand edit)
    spec = make_spec(("v1",), "v1", None, 0)
    with pytest.raises(PreconditionError, match="version v9 carries traffic"):
        ops.effective_spec(spec, TrafficState("v1", "v9", 5), None)


# --- plan -----------------------------------------------------------------------------------


def test_plan_shows_weight_changes_and_pending_counts(fake: Fake) -> None:
    deployed(fake)
    sink = Recorder()
    report = ops.plan(make_spec(weight=50), TARGET, sink=sink, reset_traffic=True)

    assert report.pending
    assert report.changes == {"same": 6, "update": 1}  # the stack is not listed, nor counted
    assert report.tally is not None and report.tally.engine == {"same": 7, "update": 1}
    (step,) = report.steps
    assert (step.op, step.type, step.name) == (
        "update",
        "kubernetes:networking.istio.io/v1:VirtualService",
        "fraud",
    )
    assert step.weights == (
        ("spec.http[0].route[0].weight", 90, 50),
        ("spec.http[0].route[1].weight", 10, 50),
    )
    assert report.to_json()["steps"][0]["weights"][0] == {
        "path": "spec.http[0].route[0].weight",
        "old": 90,
        "new": 50,
    }
    assert [e.kind for e in sink.events if e.kind in ("summary",)] == ["summary"]
    assert "up" not in fake.commands()[-3:]


def test_plan_with_nothing_to_change_is_not_pending(fake: Fake) -> None:
    deployed(fake)
    report = ops.plan(make_spec(), TARGET)
    assert not report.pending
    assert report.steps == []


def test_plan_works_with_the_file_event_log_of_older_clis(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_PULUMI_VERSION", "3.205.0")
    report = ops.plan(make_spec(), TARGET)
    preview = next(a for a in fake.argvs() if a[0] == "preview")
    log = preview[preview.index("--event-log") + 1]
    assert not log.startswith("tcp://")
    assert len(report.steps) == 7


# --- status, history, destroy ---------------------------------------------------------------


def test_status_reports_endpoint_versions_weights_and_last_update(fake: Fake) -> None:
    deployed(fake)
    fake.clear_log()
    report = ops.status(TARGET)
    assert report.endpoint == "http://models.example.com/fraud"
    assert report.traffic == TrafficState("v1", "v2", 10)
    assert report.weights == {"v1": 90, "v2": 10}
    assert report.versions == ("v1", "v2")
    assert report.last is not None
    assert (report.last.revision, report.last.kind, report.last.result) == (
        1,
        "update",
        "succeeded",
    )
    assert report.drift is None
    assert "refresh" not in fake.commands()


def test_status_refresh_reports_drift_and_clears_pending_creates(fake: Fake) -> None:
    deployed(fake)
    fake.set(drift=2)
    report = ops.status(TARGET, refresh=True)
    assert report.drift == {"update": 2}
    refresh = next(a for a in fake.argvs() if a[0] == "refresh")
    assert "--clear-pending-creates" in refresh


def test_status_of_a_stack_that_does_not_exist_says_so(fake: Fake) -> None:
    with pytest.raises(PreconditionError) as e:
        ops.status(Target("fraud", "prod"))
    assert str(e.value) == (
        f"no stack 'prod' of project 'fraud' (backend {(fake.home / 'state').as_uri()}): "
        "deploy it first, or check --stack, --project and --backend"
    )


def test_destroy_removes_everything_and_nothing_is_live_afterwards(fake: Fake) -> None:
    deployed(fake)
    report = ops.destroy(TARGET)
    assert report.applied and report.changes["delete"] == 7  # and the stack itself
    assert [r.kind for r in ops.history(TARGET)] == ["destroy", "update"]
    again = ops.deploy(make_spec(weight=30), TARGET)
    assert again.plan.live is None
    assert again.plan.traffic == TrafficState("v1", "v2", 30)


def test_destroy_declined_changes_nothing(fake: Fake) -> None:
    deployed(fake)
    asked: list[str] = []
    report = ops.destroy(TARGET, confirm=lambda what: asked.append(what) is not None)
    assert not report.applied
    assert asked == [f"stack 'dev' of project 'fraud' (backend {(fake.home / 'state').as_uri()})"]
    assert "destroy" not in fake.commands()


def test_deploy_declined_runs_no_update(fake: Fake) -> None:
    report = ops.deploy(make_spec(), TARGET, confirm=lambda plan: False)
    assert not report.applied
    assert "up" not in fake.commands()


# --- backends and passphrases ---------------------------------------------------------------


def test_a_shared_backend_without_passphrase_stops_before_running_anything(
    fake: Fake, tmp_path: Path
) -> None:
    target = Target("fraud", "dev", backend="s3://team-state/mlserve")
    with pytest.raises(EngineUnavailableError) as e:
        ops.deploy(make_spec(), target)
    assert str(e.value) == (
        "the backend s3://team-state/mlserve keeps stack secrets with a passphrase and none is "
        "set: export PULUMI_CONFIG_PASSPHRASE_FILE=<file holding the team's passphrase> "
        "(or PULUMI_CONFIG_PASSPHRASE)"
    )
    assert fake.commands() == ["version"]


def test_backend_flag_wins_and_gets_its_own_workspace(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PULUMI_BACKEND_URL", "file:///nowhere")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "team secret")
    shared = tmp_path / "shared-state"
    ops.deploy(make_spec(), Target("fraud", "dev", backend=shared.as_uri()))
    call = fake.calls()[-1]
    assert call["env"]["PULUMI_BACKEND_URL"] == shared.as_uri()
    assert "PULUMI_CONFIG_PASSPHRASE_FILE" not in call["env"]
    assert Path(call["cwd"]).parent == fake.home / "workspaces"
    assert Path(call["cwd"]).name.startswith("fraud.")
    assert shared.is_dir()
    assert not (fake.home / "passphrase").exists()


def test_a_wrong_passphrase_says_which_one_to_set(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "first one")
    ops.deploy(make_spec(), TARGET)
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "second one")
    ops.status(TARGET)  # reads nothing secret: no passphrase needed
    with pytest.raises(EngineUnavailableError) as e:
        ops.promote(TARGET, weight=50)
    assert str(e.value) == (
        f"the passphrase does not open stack 'dev' of project 'fraud' (backend "
        f"{(fake.home / 'state').as_uri()}): set PULUMI_CONFIG_PASSPHRASE_FILE (or "
        "PULUMI_CONFIG_PASSPHRASE) to the one it was created with"
    )


def test_no_process_sees_the_passphrase_in_argv(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "hunter2-correct-horse")
    ops.deploy(make_spec(), TARGET)
    ops.status(TARGET, refresh=True)
    ops.destroy(TARGET)
    for argv in fake.argvs():
        assert not any("hunter2" in a for a in argv)
    assert os.environ["PULUMI_CONFIG_PASSPHRASE"] == "hunter2-correct-horse"


def test_pending_operations_from_an_interrupted_update_come_with_the_way_out(fake: Fake) -> None:
    deployed(fake)
    fake.set(pending=True)
    report = ops.promote(TARGET, weight=20)
    assert report.warnings == [
        "Attempting to deploy or update resources with 1 pending operations from previous "
        "deployment. (an interrupted update left pending operations: run "
        "`mlserve status --refresh --stack dev` to reconcile them)"
    ]


@pytest.mark.parametrize(
    ("example", "plugins"),
    [
        ("istio", ["kubernetes"]),
        ("gateway-api", ["kubernetes"]),
        ("ingress-nginx", ["kubernetes"]),
        ("kong", ["kubernetes", "kong"]),  # the example mixes image and url versions
        ("azure-apim", ["azure-native"]),
    ],
)
def test_plugins_follow_the_gateway_and_the_image_versions(
    example: str, plugins: list[str]
) -> None:
    from mlserve.live import plugins_for
    from mlserve.spec import load_spec

    repo = Path(__file__).resolve().parents[1]
    assert plugins_for(load_spec(repo / "specs" / f"{example}.yaml")) == plugins
