"""Issue 9's table, row by row, through the stand-in CLI that runs mlserve's real program with the
file backend's real history rules (every entry version 0, 10 entries without --page-size, locks,
--config-file, --target): revisions, the race guard, the preview a deploy confirmed, targets,
provider upgrades, failed updates; and how many `pulumi` processes each
command starts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlserve import engine, live, ops
from mlserve.backends import istio
from mlserve.engine import Engine, Target
from mlserve.errors import OperationFailedError, PreconditionError
from mlserve.live import SPEC_KEY
from mlserve.spec import Spec, load_spec
from mlserve.traffic import TrafficState
from tests.fake_pulumi import fixture
from tests.fake_pulumi.fixture import Fake
from tests.helpers import REPO
from tests.helpers import run_cli as mlserve

fake = fixture.fake
SPEC_FILE = REPO / "specs" / "istio.yaml"  # fraud-detector: v1 stable, v2 canary at 10%
SPEC = load_spec(SPEC_FILE)
PROJECT = ("--project", "fraud-detector")
TARGET = Target("fraud-detector", "dev")


def with_canary_v3() -> Spec:
    """The example spec with a third version, v3, as the canary at 40%."""
    data = SPEC.to_dict()
    data["versions"] = [*data["versions"], {**data["versions"][1], "name": "v3"}]
    data["traffic"] = {"stable": "v1", "canary": "v3", "weight": 40}
    return Spec.from_dict(data)


def ok(*args: str) -> subprocess.CompletedProcess[str]:
    result = mlserve(*args)
    assert result.returncode == 0, result.stderr
    return result


def rows(*args: str) -> list[dict[str, Any]]:
    return json.loads(ok("history", *PROJECT, "--json", *args).stdout)  # type: ignore[no-any-return]


def weights_recorded() -> list[tuple[int, str, int | None]]:
    """(revision, command, canary weight) of every entry, newest first."""
    return [(r["revision"], r["command"], r["weight"]) for r in rows()]


# --- revisions ----------------------------------------------------------------------------------


def test_history_on_the_file_backend_numbers_revisions_from_one(fake: Fake) -> None:
    fake.deployed(SPEC_FILE)
    ops.promote(TARGET, weight=50)
    ops.rollback(TARGET)
    # What the CLI itself says: version 0 for every entry (pkg/backend/diy/backend.go `apply`).
    raw = Engine(TARGET).stack().history(page_size=0, show_secrets=False)
    assert [s.version for s in raw] == [0, 0, 0]
    assert [(r["revision"], r["command"], r["weight"]) for r in rows()] == [
        (3, "mlserve rollback", 0),
        (2, "mlserve promote --weight 50", 50),
        (1, "mlserve deploy", 10),
    ]
    assert [r.revision for r in ops.history(TARGET, limit=2)] == [3, 2]
    assert [r.revision for r in ops.history(TARGET, limit=9)] == [3, 2, 1]
    last = ops.status(TARGET).last
    assert last is not None and last.revision == 3


def test_on_pulumi_cloud_revisions_are_the_services_own_and_the_running_update_is_skipped(
    fake: Fake,
) -> None:
    """The service numbers updates and lists the running one as in-progress (the stand-in's
    Cloud imitation): the guard, reading history inside its own update, sees that entry."""
    cloud = Target("fraud-detector", "dev", backend="https://api.pulumi.example")
    assert ops.deploy(SPEC, cloud).revision == 1
    assert ops.promote(cloud, weight=50, expect_weight=10).revision == 2
    assert ops.rollback(cloud).revision == 3
    assert [(r.revision, r.traffic) for r in ops.history(cloud)] == [
        (3, TrafficState("v1", "v2", 0)),
        (2, TrafficState("v1", "v2", 50)),
        (1, TrafficState("v1", "v2", 10)),
    ]


def test_history_limit_must_be_positive(fake: Fake) -> None:
    result = mlserve("history", *PROJECT, "--limit", "0")
    assert (result.returncode, result.stderr) == (2, "error: --limit must be at least 1, not 0\n")
    assert fake.calls() == []


def test_rollback_to_2_re_applies_revision_2_on_the_file_backend(fake: Fake) -> None:
    fake.deployed(SPEC_FILE)
    ops.promote(TARGET, weight=25)
    ops.promote(TARGET, complete=True)
    report = ops.rollback(TARGET, to=2)
    assert (report.reapplied, report.revision) == (2, 4)
    assert (report.after, report.targets) == (TrafficState("v1", "v2", 25), None)
    assert ops.history(TARGET)[0].command == "mlserve rollback --to 2"


def test_promote_finds_the_live_state_behind_more_than_ten_refreshes(fake: Fake) -> None:
    fake.deployed(SPEC_FILE)
    eng = Engine(TARGET)
    for _ in range(11):  # each writes a history entry (`status --refresh`); a page is 10
        eng.refresh()
    report = ops.promote(TARGET, weight=50, expect_weight=10)
    assert (report.before, report.revision) == (TrafficState("v1", "v2", 10), 13)
    assert len(ops.history(TARGET)) == 13


# --- the race guard ---------------------------------------------------------------------------


# Two CI jobs promoting with the same --expect-weight, started together (issue 9: both used to
# exit 0, the second overwriting the first), 20 rounds: against the real CLI's lock in
# tests/test_real_engine.py, which retired the stand-in's version of this test.


@pytest.mark.parametrize(
    ("code", "args"),
    [
        (0, ("status", *PROJECT, "--json")),
        (6, ("promote", *PROJECT, "--weight", "30", "--expect-weight", "99", "--json")),
        (2, ("promote", *PROJECT, "--weight", "101")),
    ],
    ids=["status", "precondition", "usage"],
)
def test_a_warm_mlserve_process_answers_as_a_fresh_one(
    fake: Fake, code: int, args: tuple[str, ...]
) -> None:
    """Racing promotes under the stand-in (tests/test_rollout_safety.py) are forked by a warm
    server (fixture.mlserve_command) to save half a second of imports each: what they print and
    how they exit is what a fresh `python -m mlserve` prints and exits with."""
    fake.deployed(SPEC_FILE)

    def run(command: list[str]) -> tuple[int, str, str]:
        done = subprocess.run(
            [*command, *args], cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip
        return done.returncode, done.stdout, done.stderr

    fresh = run([sys.executable, "-m", "mlserve"])
    assert fresh[0] == code, fresh
    assert run(fixture.mlserve_command()) == fresh


def test_deploy_refuses_when_the_stack_changed_after_the_preview_it_showed(fake: Fake) -> None:
    """The file backend does not lock a preview (pkg/backend/diy/backend.go `Preview`): another
    job can update the stack while a user reads the plan."""
    fake.deployed(SPEC_FILE)

    def confirm(plan: ops.PlanReport) -> bool:
        assert plan.traffic == TrafficState("v1", "v2", 30)
        ops.promote(TARGET, weight=50)  # another job, while the plan is on screen
        return True

    spec30 = SPEC.from_dict(
        {**SPEC.to_dict(), "traffic": {"stable": "v1", "canary": "v2", "weight": 30}}
    )
    with pytest.raises(PreconditionError) as e:
        ops.deploy(spec30, TARGET, confirm=confirm, reset_traffic=True)
    backend = (fake.home / "state").as_uri()
    assert str(e.value) == (
        f"stack 'dev' of project 'fraud-detector' (backend {backend}) changed since the "
        "preview: revision 2 (`mlserve promote --weight 50`, succeeded). Nothing was changed: "
        "check `mlserve status`, then run the command again"
    )
    assert ops.status(TARGET).traffic == TrafficState("v1", "v2", 50)


# --- targets ------------------------------------------------------------------------------------


def test_a_routing_resource_a_weight_change_adds_is_created_and_one_it_drops_is_deleted(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gateway may declare routing only for versions with traffic (as Kong drops a 0% Target):
    the target list holds what the new program declares (a target must be in the stack or
    registered, deployment_executor.go `checkTargets`) and what the stack holds (else a dropped
    resource would stay, untargeted)."""
    real = istio.declare

    def declare(spec: Any, state: TrafficState, workloads: Any) -> Any:
        import pulumi_kubernetes as k8s

        declared = real(spec, state, workloads)
        if state.canary and state.weight:
            marker = k8s.core.v1.ConfigMap(
                "fraud-detector-canary", metadata={"name": "canary", "namespace": "ml"}
            )
            declared.routing.append(marker)
        return declared

    monkeypatch.setattr(istio, "declare", declare)
    marker = "urn:pulumi:dev::fraud-detector::kubernetes:core/v1:ConfigMap::fraud-detector-canary"
    ops.deploy(SPEC, TARGET)
    assert marker in Engine(TARGET).state().urns
    rolled = ops.rollback(TARGET)  # canary to 0%: the program no longer declares the marker
    assert rolled.targets is not None and marker in rolled.targets
    assert marker not in Engine(TARGET).state().urns
    promoted = ops.promote(TARGET, weight=30)  # declared again: created by a targeted update
    assert promoted.targets is not None and marker in promoted.targets
    assert marker in Engine(TARGET).state().urns


def test_a_provider_upgrade_stops_promote_before_anything_changes(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After `pip install -U pulumi-kubernetes`, a targeted update fails with "provider ... has
    not been registered yet" (step_generator.go, pulumi/pulumi#15732): promote says to deploy."""
    fake.deployed(SPEC_FILE)
    held = engine.sdk_version("kubernetes")
    monkeypatch.setattr(live, "sdk_version", lambda name: "99.0.0")
    fake.install_plugin("kubernetes", "99.0.0")
    fake.clear_log()
    with pytest.raises(PreconditionError) as e:
        ops.promote(TARGET, weight=50)
    backend = (fake.home / "state").as_uri()
    assert str(e.value) == (
        f"stack 'dev' of project 'fraud-detector' (backend {backend}) was deployed with the "
        f"kubernetes provider v{held}, and v99.0.0 is installed: a routing-only update cannot "
        "change provider versions. Nothing was changed: run `mlserve deploy` first (or install "
        f"pulumi-kubernetes=={held})"
    )
    assert "up" not in fake.commands()


# --- failed updates, pending creates -------------------------------------------------------------


def test_status_shows_the_last_successful_split_not_a_failed_attempts(fake: Fake) -> None:
    """A failed update keeps the outputs its program registered (pulumi/pulumi#14621), and its
    config is in its history entry: neither is what is live."""
    fake.deployed(SPEC_FILE)
    fake.set(fail={"up": {"VirtualService": "admission webhook denied the request"}})
    with pytest.raises(OperationFailedError):
        ops.deploy(with_canary_v3(), TARGET)  # creates v3's workload, then fails on routing
    fake.set()
    report = ops.status(TARGET)
    assert (report.traffic, report.weights) == (TrafficState("v1", "v2", 10), {"v1": 90, "v2": 10})
    assert report.last is not None and (report.last.revision, report.last.result) == (2, "failed")
    assert report.notes == [
        "revision 2 (`mlserve deploy`, failed) failed after changing resources: the traffic "
        "shown is what revision 1 applied, and part of the stack may differ. `mlserve status "
        "--refresh` compares it with the real world; `mlserve rollback --to 1` or `mlserve "
        "deploy` applies a known state again"
    ]


# An update killed while creating leaves a pending create, which `status --refresh` clears
# (`refresh --clear-pending-creates`, pulumi/pulumi#10394) and names: on the real stack in
# tests/test_real_engine.py (the CLI killed with SIGKILL, and stopped by a second interrupt).


# --- process budget, argv -----------------------------------------------------------------------


def test_promote_and_rollback_start_at_most_five_pulumi_processes(fake: Fake) -> None:
    """Each is a start of the Go CLI (issue 9: at most 7); bench/engine_processes.py shows all.
    A routing update selects no stack (its history read says if there is none), and reads the
    history and the state side by side, in either order."""
    fake.deployed(SPEC_FILE)
    for run, reads in (
        (
            lambda: ops.promote(TARGET, weight=50, expect_weight=10),
            ["stack export", "stack history"],
        ),
        (lambda: ops.rollback(TARGET), ["stack export", "stack history"]),
        (lambda: ops.rollback(TARGET, to=2), ["stack select", "stack history"]),
    ):
        fake.clear_log()
        run()
        commands = fake.commands()
        # the last `stack history` is the guard's, inside the update
        assert commands[0] == "version" and commands[-2:] == ["up", "stack history"]
        assert sorted(commands[1:-2]) == sorted(reads)


def test_a_spec_of_150_kb_deploys_and_nothing_of_it_is_on_any_argv(
    fake: Fake, tmp_path: Path
) -> None:
    """Issue 11 item 2: `config set-all` put the spec on one argument (128 KiB at most on Linux,
    and visible in `ps`); the record now goes through a private --config-file."""
    data = yaml.safe_load(SPEC_FILE.read_text())
    for i, version in enumerate(data["versions"]):
        version["env"] = {f"TABLE_{n}": f"ENV{i}{n}-" + "x" * 24_990 for n in range(3)}
    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump(data))
    assert big.stat().st_size > 150_000
    ops.deploy(load_spec(big), TARGET)
    ops.promote(TARGET, weight=40)
    for argv in fake.argvs():
        assert not any("ENV0" in a or "ENV1" in a for a in argv)
    assert "config" not in {argv[0] for argv in fake.argvs()}
    spec = json.loads(Engine(TARGET).history()[0].config[SPEC_KEY])
    assert spec["versions"][0]["env"]["TABLE_0"].startswith("ENV00-")
    assert not list(fake.workspace("fraud-detector").glob(".mlserve-config-*"))
