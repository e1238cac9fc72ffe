"""The stand-in CLI itself, driven through the REAL pulumi.automation with small inline programs
that declare real SDK resources (pulumi_kubernetes, pulumi_kong). No mlserve code runs here.

Each expectation names the pulumi/pulumi source it checks the stand-in against; what these tests
show is that the stand-in imitates that source, not that a real CLI was run.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kong as kong
import pulumi_kubernetes as k8s
import pytest
from pulumi import automation as auto

from tests.fake_pulumi import fixture
from tests.fake_pulumi.fixture import Fake

fake = fixture.fake
K8S = importlib.metadata.version("pulumi-kubernetes")
KONG = importlib.metadata.version("pulumi-kong")
PASSPHRASE = "correct horse"


def stack_of(
    fake: Fake,
    program: Callable[[], None],
    backend: str | None = None,
    name: str = "dev",
) -> auto.Stack:
    url = backend or (fake.root / "state").as_uri()
    if url.startswith("file://"):
        (fake.root / "state").mkdir(exist_ok=True)
    (fake.root / "ws").mkdir(exist_ok=True)
    opts = auto.LocalWorkspaceOptions(
        work_dir=str(fake.root / "ws"),
        secrets_provider=None if url.startswith("https://") else "passphrase",
        env_vars={"PULUMI_BACKEND_URL": url, "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE},
        project_settings=auto.ProjectSettings(name="proj", runtime="python"),
    )
    return auto.create_or_select_stack(name, project_name="proj", program=program, opts=opts)


def config_map(name: str, data: dict[str, str], **opts: Any) -> k8s.core.v1.ConfigMap:
    return k8s.core.v1.ConfigMap(
        name,
        metadata={"name": name, "namespace": "ml"},
        data=data,
        opts=pulumi.ResourceOptions(**opts) if opts else None,
    )


def deployment(name: str, replicas: int, app: str = "a") -> k8s.apps.v1.Deployment:
    return k8s.apps.v1.Deployment(
        name,
        metadata={"name": name, "namespace": "ml"},
        spec={
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {"containers": [{"name": "c", "image": "img:1"}]},
            },
        },
    )


def diy(fake: Fake) -> Path:
    return fake.root / "state" / ".pulumi"


def checkpoint(fake: Fake) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((diy(fake) / "stacks/proj/dev.json").read_text())
    return data["checkpoint"]["latest"]


def pending_urns(fake: Fake) -> list[str]:
    """The URNs of the pending operations in the stack file, [] while it is missing or mid-write."""
    try:
        return [p["resource"]["urn"] for p in checkpoint(fake).get("pending_operations", [])]
    except (OSError, ValueError, KeyError):
        return []


def resources(fake: Fake) -> dict[str, dict[str, Any]]:
    return {r["urn"]: r for r in checkpoint(fake)["resources"]}


def urn(typ: str, name: str) -> str:
    return f"urn:pulumi:dev::proj::{typ}::{name}"


CM = "kubernetes:core/v1:ConfigMap"


def ops(events: list[auto.EngineEvent]) -> list[tuple[str, str]]:
    """(op, resource name) of each resource pre-event, in order."""
    return [
        (e.resource_pre_event.metadata.op.value, e.resource_pre_event.metadata.urn.split("::")[-1])
        for e in events
        if e.resource_pre_event
    ]


# --- history, versions, paging ----------------------------------------------------------------


def test_file_backend_history_has_version_0_pages_of_10_and_the_diy_layout(fake: Fake) -> None:
    def program() -> None:
        config_map("cm", {"k": "v"})

    s = stack_of(fake, program)
    s.up(message="up 0")
    for i in range(1, 12):
        s.refresh(message=f"refresh {i}")  # a refresh writes an entry too, and costs less
    newest = s.history()  # no --page-size: the CLI's default page of 10 (stack_history.go)
    assert [h.message for h in newest] == [f"refresh {i}" for i in range(11, 1, -1)]
    assert {h.version for h in newest} == {0}  # diy backend.go apply sets no Version
    assert [h.message for h in s.history(page_size=5, page=3)] == ["refresh 1", "up 0"]
    assert s.history(page_size=5, page=4) == []

    root = diy(fake)
    assert (root / "meta.yaml").read_text() == "version: 1\n"
    history = sorted(p.name for p in (root / "history/proj/dev").iterdir())
    assert len(history) == 24  # a .history.json and a .checkpoint.json per update
    assert all(name.startswith("dev-") for name in history)
    assert (root / "stacks/proj/dev.json.bak").exists()
    assert len(list((root / "backups/proj/dev").iterdir())) == 12  # diy state.go backupStack
    assert list((root / "locks/organization/proj/dev").iterdir()) == []


def test_cloud_numbers_updates_and_lists_the_running_one_as_in_progress(fake: Fake) -> None:
    seen: list[list[tuple[int | None, str]]] = []
    holder: dict[str, auto.Stack] = {}

    def program() -> None:
        config_map("cm", {"k": "v"})
        # The program asks for the history while its own update holds the stack.
        seen.append([(h.version, h.result) for h in holder["s"].history(page_size=2)])

    s = holder["s"] = stack_of(fake, program, backend="https://api.pulumi.example")
    s.up()
    s.up()
    assert seen == [[(1, "in-progress")], [(2, "in-progress"), (1, "succeeded")]]
    assert [(h.version, h.result) for h in s.history()] == [(2, "succeeded"), (1, "succeeded")]


def test_bucket_backends_run_the_diy_code_and_keep_version_0(fake: Fake) -> None:
    s = stack_of(fake, lambda: config_map("cm", {"k": "v"}) and None, backend="s3://team/state")
    s.up()
    assert [h.version for h in s.history()] == [0]
    bucket = fake.root / "fake-state" / "buckets" / "s3" / "team" / "state" / ".pulumi"
    assert (bucket / "stacks" / "proj" / "dev.json").exists()


def test_cloud_reports_a_running_update_as_a_409(fake: Fake) -> None:
    s = stack_of(fake, lambda: config_map("cm", {"k": "v"}) and None, backend="https://api.x")
    fake.set(locked=1)
    with pytest.raises(auto.ConcurrentUpdateError) as e:
        s.up()
    assert "[409] Conflict: Another update is currently in progress." in str(e.value)
    s.up()  # the other update has finished


def test_refresh_and_destroy_write_history_previews_do_not(fake: Fake) -> None:
    s = stack_of(fake, lambda: config_map("cm", {"k": "v"}) and None)
    s.preview()
    s.up()
    s.preview()
    s.refresh()
    s.destroy()
    assert [h.kind for h in s.history()] == ["destroy", "refresh", "update"]


# --- locks ----------------------------------------------------------------------------------


def test_preview_takes_no_lock_and_up_does(fake: Fake) -> None:
    locks = diy(fake) / "locks/organization/proj/dev"
    held: list[int] = []

    def program() -> None:
        held.append(len(list(locks.glob("*.json"))) if locks.exists() else 0)
        config_map("cm", {"k": "v"})

    s = stack_of(fake, program)
    s.preview()
    s.up()
    assert held == [0, 1]  # diy/backend.go: Preview calls apply without Lock


RUNNER = """
import json, sys
from pulumi import automation as auto
import pulumi_kubernetes as k8s
def program():
    k8s.core.v1.ConfigMap("cm", metadata={"name": "cm", "namespace": "ml"},
                          data=json.loads(sys.argv[3]))
opts = auto.LocalWorkspaceOptions(work_dir=sys.argv[1], secrets_provider="passphrase",
    env_vars={"PULUMI_BACKEND_URL": sys.argv[2], "PULUMI_CONFIG_PASSPHRASE": "correct horse"},
    project_settings=auto.ProjectSettings(name="proj", runtime="python"))
auto.create_or_select_stack("dev", project_name="proj", program=program, opts=opts).up()
"""


def run_elsewhere(fake: Fake, data: dict[str, str]) -> subprocess.Popen[bytes]:
    """An `up` of the same stack from another process (another CI job)."""
    (fake.root / "ws").mkdir(exist_ok=True)
    (fake.root / "state").mkdir(exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(fake.root / "ws"), (fake.root / "state").as_uri(),
         json.dumps(data)],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def test_two_racing_updates_one_gets_the_lock_error(fake: Fake) -> None:
    s = stack_of(fake, lambda: config_map("cm", {"who": "b"}) and None)
    s.up()
    fake.set(sleep=20)
    other = run_elsewhere(fake, {"who": "a"})
    locks = diy(fake) / "locks/organization/proj/dev"
    deadline = time.time() + 30
    while not list(locks.glob("*.json")) and time.time() < deadline:
        time.sleep(0.05)
    with pytest.raises(auto.ConcurrentUpdateError) as e:
        s.up()
    assert "the stack is currently locked by 1 lock(s)" in str(e.value)
    holder = [c for c in fake.calls() if c["argv"][1:2] == ["up"]][1]  # the racer's
    os.kill(holder["pid"], signal.SIGINT)  # let the holder finish (cancelled) instead of sleeping
    other.wait(timeout=60)
    assert list(locks.glob("*.json")) == []


def test_first_ctrl_c_cancels_records_a_failed_update_and_releases_the_lock(fake: Fake) -> None:
    s = stack_of(fake, lambda: config_map("cm", {"k": "v"}) and None)
    fake.set(sleep=20)
    errors: list[BaseException] = []
    thread = threading.Thread(target=lambda: _catch(errors, s.up))
    thread.start()
    locks = diy(fake) / "locks/organization/proj/dev"
    while not list(locks.glob("*.json")):
        time.sleep(0.05)
    up = next(c for c in fake.calls() if c["argv"][1:2] == ["up"])
    os.kill(up["pid"], signal.SIGINT)
    thread.join(timeout=60)
    (error,) = errors
    assert (
        "^C received; cancelling. If you would like to terminate immediately, press ^C again."
        in (str(error))
    )
    assert "error: update canceled" in str(error)
    assert [(h.kind, h.result) for h in s.history()] == [("update", "failed")]
    assert list(locks.glob("*.json")) == []


def _catch(errors: list[BaseException], fn: Callable[[], Any]) -> None:
    try:
        fn()
    except BaseException as e:  # handed to the test
        errors.append(e)


# --- targets --------------------------------------------------------------------------------


def test_targets_leave_untargeted_resources_alone_and_may_create_targeted_ones(fake: Fake) -> None:
    version = {"v": "1", "extra": False, "keep": True}

    def program() -> None:
        config_map("a", {"v": version["v"]})
        config_map("b", {"v": version["v"]})
        if version["keep"]:
            config_map("old", {"v": "1"})
        if version["extra"]:
            config_map("new", {"v": "1"})
            config_map("untargeted-new", {"v": "1"})

    s = stack_of(fake, program)
    s.up()
    version.update(v="2", extra=True, keep=False)
    result = s.up(target=[urn(CM, "a"), urn(CM, "new")])
    state = resources(fake)
    assert state[urn(CM, "a")]["inputs"]["data"] == {"v": "2"}
    assert state[urn(CM, "b")]["inputs"]["data"] == {"v": "1"}  # untargeted: old state kept
    assert urn(CM, "old") in state  # an untargeted old resource is not deleted
    assert urn(CM, "new") in state  # checkTargets: "or ... a resource that was created"
    assert urn(CM, "untargeted-new") not in state
    assert result.summary.resource_changes == {"create": 1, "replace": 1, "same": 2}


def test_a_target_neither_in_the_stack_nor_registered_fails_with_2011(fake: Fake) -> None:
    s = stack_of(fake, lambda: config_map("a", {"v": "1"}) and None)
    s.up()
    missing = urn(CM, "nope")
    with pytest.raises(auto.CommandError) as e:
        s.up(target=[missing])
    # sdk/go/common/diag/errors.go 2011 (a URN without `$`), then "update failed".
    assert (
        f"error: Target '{missing}' could not be found in the stack. Did you forget to escape $ "
        "in your shell?" in str(e.value)
    )
    assert "error: update failed" in str(e.value)
    assert [(h.kind, h.result) for h in s.history(page_size=1)] == [("update", "failed")]


def test_a_provider_version_change_mixed_with_target_fails(fake: Fake) -> None:
    newer = "4.99.0"
    fake.install_plugin("kubernetes", newer)
    use = {"version": None}

    def program() -> None:
        opts = pulumi.ResourceOptions(version=use["version"]) if use["version"] else None
        k8s.core.v1.ConfigMap("a", metadata={"name": "a"}, data={"v": "1"}, opts=opts)
        k8s.core.v1.ConfigMap("b", metadata={"name": "b"}, data={"v": "1"}, opts=opts)

    s = stack_of(fake, program)
    s.up()
    use["version"] = newer
    with pytest.raises(auto.CommandError) as e:
        s.up(target=[urn(CM, "a")])
    provider = f"urn:pulumi:dev::proj::pulumi:providers:kubernetes::default_{K8S.replace('.', '_')}"
    assert f"error: provider {provider}::" in str(e.value)
    assert (
        f"for resource {urn(CM, 'b')} has not been registered yet, this is due to a change of "
        "providers mixed with --target. Change your program back to the original providers"
    ) in str(e.value)
    s.up()  # without --target the new default provider takes over
    state = resources(fake)
    assert state[urn(CM, "b")]["provider"].startswith(
        "urn:pulumi:dev::proj::pulumi:providers:kubernetes::default_4_99_0::"
    )
    assert provider not in state  # the old default provider is deleted


# --- plugins, providers, URNs -----------------------------------------------------------------


def test_a_missing_plugin_fails_with_the_install_plugin_error(fake: Fake) -> None:
    def program() -> None:
        kong.Upstream("up", name="up.internal")

    s = stack_of(fake, program)
    with pytest.raises(auto.CommandError) as e:
        s.up()
    assert (
        "error: Could not automatically download and install resource plugin "
        f"'pulumi-resource-kong' at version v{KONG}, install the plugin using "
        f"`pulumi plugin install resource kong v{KONG}`: " in str(e.value)
    )
    fake.install_plugin("kong", KONG)
    # The failed run had created the stack resource already.
    assert s.up().summary.resource_changes == {"create": 1, "same": 1}


def test_urns_default_providers_and_duplicates(fake: Fake) -> None:
    class Group(pulumi.ComponentResource):
        def __init__(self, name: str) -> None:
            super().__init__("acme:index:Group", name)
            config_map(f"{name}-cm", {"k": "v"}, parent=self)
            self.register_outputs({})

    twice = {"on": False}

    def program() -> None:
        Group("g")
        config_map("top", {"k": "v"})
        if twice["on"]:
            config_map("top", {"k": "w"})

    s = stack_of(fake, program)
    s.up()
    assert sorted(resources(fake)) == sorted(
        [
            "urn:pulumi:dev::proj::pulumi:pulumi:Stack::proj-dev",
            "urn:pulumi:dev::proj::acme:index:Group::g",
            "urn:pulumi:dev::proj::acme:index:Group$kubernetes:core/v1:ConfigMap::g-cm",
            f"urn:pulumi:dev::proj::pulumi:providers:kubernetes::default_{K8S.replace('.', '_')}",
            urn(CM, "top"),
        ]
    )
    twice["on"] = True
    with pytest.raises(auto.CommandError) as e:
        s.up()
    assert f"Duplicate resource URN '{urn(CM, 'top')}'; try giving it a unique name" in str(e.value)


# --- diff: update, replace, ordering ----------------------------------------------------------


def test_updates_and_replacements_follow_each_providers_force_new_fields(fake: Fake) -> None:
    fake.install_plugin("kong", KONG)
    v = {"replicas": 1, "app": "a", "weight": 10}

    def program() -> None:
        deployment("web", v["replicas"], v["app"])
        upstream = kong.Upstream("up", name="up.internal")
        kong.Target("t", target="10.0.0.1:80", upstream_id=upstream.id, weight=v["weight"])

    s = stack_of(fake, program)
    s.up()
    events: list[auto.EngineEvent] = []
    v["replicas"] = 2  # apps/v1 Deployment: only spec.selector forces a replacement
    s.up(on_event=events.append)
    assert [op for op in ops(events) if op[0] != "same"] == [("update", "web")]

    events.clear()
    # kong_target: weight is ForceNew (create-before-delete, the bridge's default); the
    # Deployment's selector forces a replacement and, named, the provider asks delete-first.
    v.update(app="b", weight=20)
    s.up(on_event=events.append)
    changed = [op for op in ops(events) if op[0] != "same"]
    # Each resource's steps in their order; the two resources' steps may come in either order
    # (sdk/python/lib/pulumi/runtime/resource.py sends each registration from an executor
    # thread, `t`'s once `up` answered: under load, `t` can reach the engine first).
    assert [op for op, name in changed if name == "web"] == [
        "delete-replaced",
        "replace",
        "create-replacement",
    ]
    assert [op for op, name in changed if name == "t"] == [
        "create-replacement",
        "replace",
        "delete-replaced",
    ]
    assert len(changed) == 6
    replaced = {
        e.resource_pre_event.metadata.urn.rsplit("::", 1)[-1]: e.resource_pre_event.metadata.keys
        for e in events
        if e.resource_pre_event and e.resource_pre_event.metadata.op.value == "replace"
    }
    assert replaced == {"web": ["spec.selector.matchLabels.app"], "t": ["weight"]}


def test_delete_before_replace_option_deletes_first(fake: Fake) -> None:
    fake.install_plugin("kong", KONG)
    v = {"weight": 10}

    def program() -> None:
        up = kong.Upstream("up", name="up.internal")
        kong.Target(
            "t",
            target="10.0.0.1:80",
            upstream_id=up.id,
            weight=v["weight"],
            opts=pulumi.ResourceOptions(delete_before_replace=True),
        )

    s = stack_of(fake, program)
    s.up()
    events: list[auto.EngineEvent] = []
    v["weight"] = 20
    s.up(on_event=events.append)
    assert [op for op in ops(events) if op[0] != "same"] == [
        ("delete-replaced", "t"),
        ("replace", "t"),
        ("create-replacement", "t"),
    ]


def test_resources_the_program_stops_declaring_are_deleted_dependents_first(fake: Fake) -> None:
    fake.install_plugin("kong", KONG)
    keep = {"all": True}

    def program() -> None:
        config_map("stays", {"k": "v"})
        if keep["all"]:
            up = kong.Upstream("up", name="up.internal")
            kong.Target("t", target="10.0.0.1:80", upstream_id=up.id, weight=1)

    s = stack_of(fake, program)
    s.up()
    events: list[auto.EngineEvent] = []
    keep["all"] = False
    s.up(on_event=events.append)
    assert [op for op in ops(events) if op[0] == "delete"] == [("delete", "t"), ("delete", "up")]


# --- failures, outputs, pending operations ----------------------------------------------------


def test_a_failed_update_keeps_the_outputs_its_program_registered(fake: Fake) -> None:
    mode = {"raise": False}

    def program() -> None:
        config_map("cm", {"k": "v"})
        pulumi.export("a", 1 if not mode["raise"] else 10)
        if not mode["raise"]:
            pulumi.export("b", 2)
        if mode["raise"]:
            raise ValueError("boom")

    s = stack_of(fake, program)
    s.up()
    mode["raise"] = True
    with pytest.raises(auto.InlineSourceRuntimeError) as e:
        s.up()
    assert "python inline source runtime error: boom" in str(e.value)
    assert "an unhandled error occurred: python inline source runtime error: boom" in str(e.value)
    # pulumi/pulumi#15754 (#14621): registered outputs update, the others stay.
    assert {k: v.value for k, v in s.outputs().items()} == {"a": 10, "b": 2}


def test_a_provider_failure_fails_the_step_and_the_update(fake: Fake) -> None:
    s = stack_of(fake, lambda: config_map("cm", {"k": "v"}) and None)
    fake.set(fail={"up": {"ConfigMap::cm": "admission webhook denied the request"}})
    events: list[auto.EngineEvent] = []
    with pytest.raises(auto.CommandError) as e:
        s.up(on_event=events.append)
    assert (
        "  kubernetes:core/v1:ConfigMap (cm):\n    error: admission webhook denied the request"
        in (str(e.value))
    )
    failed = [ev.res_op_failed_event.metadata.urn for ev in events if ev.res_op_failed_event]
    assert failed == [urn(CM, "cm")]
    assert urn(CM, "cm") not in resources(fake)


def test_an_update_killed_mid_step_leaves_pending_operations_and_its_lock(fake: Fake) -> None:
    fake.set(sleep=300)  # an upper bound only: the step is killed as soon as it is pending
    runner = run_elsewhere(fake, {"k": "v"})
    deadline = time.time() + 240  # a loaded machine (parallel workers) starts processes slowly
    while pending_urns(fake) != [urn(CM, "cm")]:
        # The default provider's create is briefly pending too (pkg/backend/snapshot.go doCreate
        # records one for every create step): kill once the ConfigMap's is the only one.
        assert time.time() < deadline, "the update never recorded its pending create"
        time.sleep(0.05)
    up = next(c for c in fake.calls() if c["argv"][1:2] == ["up"])
    os.kill(up["pid"], signal.SIGKILL)
    runner.wait(timeout=30)
    fake.set()
    assert [p["type"] for p in checkpoint(fake)["pending_operations"]] == ["creating"]

    warnings: list[str] = []
    s = stack_of(fake, lambda: config_map("cm", {"k": "v"}) and None)
    with pytest.raises(auto.ConcurrentUpdateError):
        s.up()  # the killed process's lock is still there
    s.cancel()
    s.up(
        on_event=lambda e: warnings.extend(
            [e.diagnostic_event.message]
            if e.diagnostic_event and e.diagnostic_event.severity == "warning"
            else []
        )
    )
    assert warnings[0].startswith(
        "Attempting to deploy or update resources with 1 pending operations from previous "
        f"deployment.\n  * {urn(CM, 'cm')}, interrupted while creating\n"
    ), warnings
    assert "pending_operations" in checkpoint(fake)  # a pending create survives an update...
    s.refresh(clear_pending_creates=True)
    assert "pending_operations" not in checkpoint(fake)  # ...until --clear-pending-creates


# --- config, events ---------------------------------------------------------------------------


def test_a_config_file_replaces_the_stack_settings_and_is_what_history_records(fake: Fake) -> None:
    seen: list[str] = []

    def program() -> None:
        seen.append(pulumi.Config().require("weight"))
        config_map("cm", {"k": "v"})

    s = stack_of(fake, program)
    s.set_config("weight", auto.ConfigValue("10"))
    settings = fake.root / "ws" / "Pulumi.dev.yaml"
    before = settings.read_text()
    config_file = fake.root / "override.yaml"
    config_file.write_text("config:\n  proj:weight: '75'\n")
    s.up(config_file=str(config_file))
    assert seen == ["75"]
    assert settings.read_text() == before
    (last,) = s.history(page_size=1)
    assert last.config["proj:weight"].value == "75"
    assert "encryptionsalt" in config_file.read_text()  # the secrets manager saved its salt there


def test_events_come_in_the_engines_order_without_default_provider_steps(fake: Fake) -> None:
    def program() -> None:
        pulumi.log.warn("careful")
        config_map("cm", {"k": "v"})

    s = stack_of(fake, program)
    events: list[auto.EngineEvent] = []
    s.up(on_event=events.append)
    kinds = []
    for e in events:
        for kind in ("prelude_event", "resource_pre_event", "res_outputs_event",
                     "diagnostic_event", "summary_event", "cancel_event"):  # fmt: skip
            if getattr(e, kind):
                kinds.append(kind)
    assert kinds[0] == "prelude_event"
    assert kinds[-2:] == ["summary_event", "cancel_event"]
    assert [e.sequence for e in events] == sorted(e.sequence for e in events)
    steps = [(op, name) for op, name in ops(events)]
    assert steps == [("create", "proj-dev"), ("create", "cm")]
    warning = next(e.diagnostic_event for e in events if e.diagnostic_event)
    assert (warning.severity, warning.message) == ("warning", "careful\n")
    created = next(
        e.res_outputs_event.metadata
        for e in events
        if e.res_outputs_event and e.res_outputs_event.metadata.type == CM
    )
    assert created.new is not None and created.new.inputs["data"] == {"k": "v"}
    assert events[-2].summary_event.resource_changes == {"create": 2}


def test_preview_leaves_changed_outputs_unknown_and_writes_nothing(fake: Fake) -> None:
    seen: list[Any] = []

    def program() -> None:
        cm = config_map("cm", {"k": "v"})
        cm.id.apply(seen.append)

    s = stack_of(fake, program)
    before = (diy(fake) / "stacks/proj/dev.json").read_text()
    s.preview()
    assert seen == []  # the id of a resource to create is unknown: the apply never runs
    assert (diy(fake) / "stacks/proj/dev.json").read_text() == before
    s.up()
    assert seen == ["ml/cm"]  # pulumi-kubernetes ids are namespace/name


@pytest.mark.parametrize("server", ["warm server", "no server"])
def test_unknown_commands_and_flags_are_errors(
    fake: Fake, monkeypatch: pytest.MonkeyPatch, server: str
) -> None:
    """The same answers whether `pulumi` hands the call to the tests' warm server (zygote.py)
    or, without one, runs the stand-in itself."""
    if server == "no server":
        monkeypatch.delenv("FAKE_PULUMI_ZYGOTE")
    pulumi_bin = str(fixture.FAKE_DIR / "pulumi")
    result = subprocess.run([pulumi_bin, "frobnicate"], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (
        2,
        'error: unknown command "frobnicate" for "pulumi"\n',
    )
    result = subprocess.run([pulumi_bin, "version", "--frob"], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (2, "error: unknown flag: --frob\n")
    version = subprocess.run([pulumi_bin, "version"], capture_output=True, text=True)
    assert version.stdout == f"v{importlib.metadata.version('pulumi')}\n"


def test_a_wrong_passphrase_is_the_real_error(fake: Fake) -> None:
    s = stack_of(fake, lambda: config_map("cm", {"k": "v"}) and None)
    s.set_config("token", auto.ConfigValue("t0ps3cret", secret=True))
    s.workspace.env_vars["PULUMI_CONFIG_PASSPHRASE"] = "wrong"
    with pytest.raises(auto.CommandError) as e:
        s.preview()
    assert "error: getting secrets manager: incorrect passphrase" in str(e.value)
    assert "t0ps3cret" not in (fake.root / "ws" / "Pulumi.dev.yaml").read_text()
