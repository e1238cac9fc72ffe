"""promote and rollback at the CLI, through the REAL pulumi.automation code and the stand-in CLI.

The stand-in runs mlserve's program, records every invocation (argv) and keeps each stack in the
file backend's own layout (`.pulumi/stacks`, `.pulumi/history`): that is what these tests read to
check what each step declared and recorded, independently of mlserve's own readers. The commands
run in this process (`run_cli`), each test from a copy of the deployed example (`fake.deployed`);
one runs them as separate processes, as a CI job does.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fake_pulumi import fixture
from tests.fake_pulumi.fixture import Fake
from tests.helpers import REPO, run_mlserve
from tests.helpers import run_cli as mlserve

fake = fixture.fake
SPEC_FILE = REPO / "specs" / "istio.yaml"  # fraud-detector: v1 stable, v2 canary at 10%
SPEC = str(SPEC_FILE)
PROJECT = ("--project", "fraud-detector")
URN = "urn:pulumi:dev::fraud-detector::kubernetes:networking.istio.io/v1:"
ROUTES = [URN + "DestinationRule::fraud-detector", URN + "VirtualService::fraud-detector"]


def ok(*args: str) -> subprocess.CompletedProcess[str]:
    result = mlserve(*args)
    assert result.returncode == 0, result.stderr
    return result


def state_dir(fake: Fake) -> Path:
    return fake.home / "state" / ".pulumi"


def history(fake: Fake) -> list[dict[str, Any]]:
    """Every history entry (UpdateInfo), oldest first: `STACK-<nanoseconds>.history.json` files
    (pkg/backend/diy/state.go `addToHistory`)."""
    directory = state_dir(fake) / "history" / "fraud-detector" / "dev"
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.history.json"))]


def resources(fake: Fake) -> list[dict[str, Any]]:
    """The resources of the stack's checkpoint (`.pulumi/stacks/PROJECT/STACK.json`)."""
    checkpoint = json.loads(
        (state_dir(fake) / "stacks" / "fraud-detector" / "dev.json").read_text()
    )
    return checkpoint["checkpoint"]["latest"]["resources"]  # type: ignore[no-any-return]


def outputs(fake: Fake) -> dict[str, Any]:
    stack = next(r for r in resources(fake) if r["type"] == "pulumi:pulumi:Stack")
    return stack["outputs"]  # type: ignore[no-any-return]


def recorded(fake: Fake, key: str = "mlserve:traffic") -> list[Any]:
    """The value of `key` each update recorded in its config, oldest first."""
    return [json.loads(e["config"][key]) for e in history(fake)]


def traffic(
    stable: str,
    canary: str | None = None,
    weight: int = 0,
    previous: str | None = None,
    mirror: tuple[str, int] | None = None,
) -> dict[str, Any]:
    return {
        "stable": stable,
        "canary": canary,
        "weight": weight,
        "previous": previous,
        "mirror": {"version": mirror[0], "percent": mirror[1]} if mirror else None,
    }


def up_targets(fake: Fake) -> list[list[str] | None]:
    """Each `up` call's --target URNs (None: an untargeted update), oldest first."""
    out: list[list[str] | None] = []
    for argv in fake.argvs():
        if argv[:1] == ["up"]:
            targets = [argv[i + 1] for i, a in enumerate(argv) if a == "--target"]
            out.append(targets or None)
    return out


def test_a_canary_rollout_declares_each_steps_weights_and_targets_only_routing(
    fake: Fake,
) -> None:
    fake.deployed(SPEC_FILE)
    assert sorted(outputs(fake)["routing"]) == ROUTES

    first = ok("promote", "--weight", "25", *PROJECT)
    assert first.stdout == (
        "  ~ update    VirtualService  fraud-detector  updating"
        "  weights 90/10 -> 75/25\n"
        "  ~ update    VirtualService  fraud-detector  updated"
        "  weights 90/10 -> 75/25\n"
        "Promoted: revision 2 of stack 'dev' of project 'fraud-detector', routing only "
        "(2 resources targeted): 1 updated, 1 unchanged; 5 others not touched\n"
        "  before: v1 90%, v2 10%\n"
        "  v1  ###########################...   90%\n"
        "  v2  ###...........................   10%\n"
        "  after:  v1 75%, v2 25%\n"
        "  v1  ######################........   75%\n"
        "  v2  ########......................   25%\n"
    )
    ok("promote", "--weight", "50", *PROJECT)
    redeploy = ok("deploy", SPEC, "--yes")
    assert (
        "warning: keeping the live canary weight 50% for v2 (the spec says 10%); use "
        "--reset-traffic to apply the spec's weight" in redeploy.stdout + redeploy.stderr
    )
    ok("promote", "--weight", "100", *PROJECT)
    ok("rollback", *PROJECT)

    assert recorded(fake) == [
        traffic("v1", "v2", 10),
        traffic("v1", "v2", 25),
        traffic("v1", "v2", 50),
        traffic("v1", "v2", 50),  # a routine redeploy keeps the live weight
        traffic("v2", previous="v1"),  # completed: v1 kept at 0% for an instant rollback
        traffic("v1"),  # rolled back to v1; no `previous`, so a second rollback has nothing
    ]
    # Each promote and rollback passed exactly the routing URNs; a deploy updates everything.
    assert up_targets(fake) == [ROUTES, ROUTES, None, ROUTES, ROUTES]
    messages = [e["message"] for e in history(fake)]
    assert messages == [
        "mlserve deploy",
        "mlserve promote --weight 25",
        "mlserve promote --weight 50",
        "mlserve deploy",
        "mlserve promote --weight 100",
        "mlserve rollback",
    ]
    # After the completed promotion the previous stable is still deployed.
    spec = recorded(fake, "mlserve:spec")[4]
    assert [v["name"] for v in spec["versions"]] == ["v1", "v2"]
    deployments = {
        r["urn"].rsplit("::", 1)[1] for r in resources(fake) if "Deployment" in r["type"]
    }
    assert deployments == {"fraud-detector-v1", "fraud-detector-v2"}

    table = ok("history", *PROJECT)
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "REV", "TIME", "(UTC)", "KIND", "RESULT", "STABLE", "CANARY", "WEIGHT", "MIRROR",
        "COMMAND",
    ]  # fmt: skip
    assert {line.split()[8] for line in lines[1:]} == {"-"}  # MIRROR: none was set
    rows = [line.split()[:1] + line.split()[3:8] + line.split()[9:] for line in lines[1:]]
    assert rows == [
        ["6", "update", "succeeded", "v1", "-", "-", "mlserve", "rollback"],
        ["5", "update", "succeeded", "v2", "-", "-", "mlserve", "promote", "--weight", "100"],
        ["4", "update", "succeeded", "v1", "v2", "50%", "mlserve", "deploy"],
        ["3", "update", "succeeded", "v1", "v2", "50%", "mlserve", "promote", "--weight", "50"],
        ["2", "update", "succeeded", "v1", "v2", "25%", "mlserve", "promote", "--weight", "25"],
        ["1", "update", "succeeded", "v1", "v2", "10%", "mlserve", "deploy"],
    ]


def test_complete_is_the_same_as_weight_100(fake: Fake) -> None:
    fake.deployed(SPEC_FILE)
    done = ok("promote", "--complete", *PROJECT, "--json")
    assert json.loads(done.stdout)["after"] == {
        **traffic("v2", previous="v1"),
        "weights": {"v2": 100},
    }
    assert recorded(fake)[-1] == traffic("v2", previous="v1")
    assert history(fake)[-1]["message"] == "mlserve promote --complete"


def test_json_output_has_before_and_after(fake: Fake) -> None:
    fake.deployed(SPEC_FILE)
    result = ok("promote", "--weight", "40", "--expect-weight", "10", *PROJECT, "--json")
    document = json.loads(result.stdout)
    assert document == {
        "command": "mlserve promote --weight 40 --expect-weight 10",
        "project": "fraud-detector",
        "stack": "dev",
        "backend": document["backend"],
        "before": {**traffic("v1", "v2", 10), "weights": {"v1": 90, "v2": 10}},
        "after": {**traffic("v1", "v2", 40), "weights": {"v1": 60, "v2": 40}},
        "revision": 2,
        "reappliedRevision": None,
        "changes": {"update": 1},
        "targetedChanges": {"same": 1, "update": 1},
        "pulumiChanges": {"same": 7, "update": 1},  # with the stack itself
        "targets": ROUTES,
        "dryRun": False,
        "steps": [],
        "capacity": [],
        "warnings": [],
    }
    back = json.loads(ok("rollback", *PROJECT, "--json").stdout)
    assert (back["before"]["weights"], back["after"]["weights"]) == (
        {"v1": 60, "v2": 40},
        {"v1": 100, "v2": 0},
    )


def test_expect_weight_mismatch_exits_6_and_changes_nothing(fake: Fake) -> None:
    fake.deployed(SPEC_FILE)
    fake.clear_log()
    result = mlserve("promote", "--weight", "50", "--expect-weight", "25", *PROJECT)
    assert result.returncode == 6
    assert result.stderr == (
        "error: --expect-weight 25: the live canary v2 is at 10%; nothing was changed\n"
    )
    assert "up" not in fake.commands()
    assert recorded(fake) == [traffic("v1", "v2", 10)]


def test_expect_weight_counts_no_canary_as_zero(fake: Fake) -> None:
    fake.deployed(SPEC_FILE)
    ok("promote", "--complete", *PROJECT)
    result = mlserve("promote", "--weight", "50", "--expect-weight", "10", *PROJECT)
    assert result.returncode == 6
    assert result.stderr == (
        "error: --expect-weight 10: no canary is live (v2 takes 100%), which counts as 0%; "
        "nothing was changed\n"
    )
    # At 0 the guard passes, and the promote itself finds nothing to promote.
    nothing = mlserve("promote", "--weight", "50", "--expect-weight", "0", *PROJECT)
    assert nothing.returncode == 6
    assert nothing.stderr == (
        "error: nothing to promote: no canary is live (v2 takes 100%); v1, the previous stable, "
        "is kept at 0%: `mlserve rollback` brings it back\n"
    )


def test_promote_after_a_completed_promotion_and_a_rollback_says_how_to_go_again(
    fake: Fake,
) -> None:
    fake.deployed(SPEC_FILE)
    ok("promote", "--complete", *PROJECT)
    ok("rollback", *PROJECT)
    again = mlserve("promote", "--weight", "20", *PROJECT)
    assert again.returncode == 6
    assert again.stderr == (
        "error: nothing to promote: no canary is live (v1 takes 100%); v2 is still deployed, at "
        "0%. To send v2 out again, deploy a spec whose traffic names it as the canary (traffic: "
        "{stable: v1, canary: v2, weight: 10}) with `mlserve deploy SPEC`, then promote it\n"
    )
    # The way out it names works: the example spec names v2 as the canary at 10%.
    deployed = ok("deploy", SPEC, "--yes")
    assert "  traffic: v1 90%, v2 10%" in deployed.stdout
    assert ok("promote", SPEC, "--weight", "20").returncode == 0
    assert recorded(fake)[-1] == traffic("v1", "v2", 20)


def test_promote_without_a_canary_exits_6(fake: Fake, tmp_path: Path) -> None:
    no_canary = tmp_path / "spec.yaml"
    no_canary.write_text(
        Path(SPEC).read_text().replace("  canary: v2", "").replace("  weight: 10", "")
    )
    ok("deploy", str(no_canary), "--yes")
    fake.clear_log()
    result = mlserve("promote", "--weight", "20", *PROJECT)
    assert result.returncode == 6
    assert result.stderr == (
        "error: nothing to promote: no canary is live (v1 takes 100%); v2 is still deployed, at "
        "0%. To send v2 out again, deploy a spec whose traffic names it as the canary (traffic: "
        "{stable: v1, canary: v2, weight: 10}) with `mlserve deploy SPEC`, then promote it\n"
    )
    assert "up" not in fake.commands()


def test_promote_on_a_stack_never_deployed_exits_6(fake: Fake) -> None:
    result = mlserve("promote", "--weight", "20", *PROJECT)
    assert result.returncode == 6
    assert "no stack 'dev' of project 'fraud-detector'" in result.stderr


def test_a_second_rollback_after_completion_has_nothing_to_roll_back(fake: Fake) -> None:
    """As a CI job runs them: each command a process of its own."""
    fake.deployed(SPEC_FILE)
    assert run_mlserve("promote", "--complete", *PROJECT).returncode == 0
    first = run_mlserve("rollback", *PROJECT)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[2:] == [
        "Rolled back: revision 3 of stack 'dev' of project 'fraud-detector', routing only "
        "(2 resources targeted): 1 updated, 1 unchanged; 5 others not touched",
        "  before: v2 100% (previous v1 at 0%)",
        "  v2  ##############################  100%",
        "  after:  v1 100%",
        "  v1  ##############################  100%",
    ]
    fake.clear_log()
    second = run_mlserve("rollback", *PROJECT)
    assert second.returncode == 6
    assert second.stderr == "error: nothing to roll back: v1 100%\n"
    assert "up" not in fake.commands()


def test_rollback_of_a_canary_at_zero_has_nothing_to_roll_back(fake: Fake) -> None:
    fake.deployed(SPEC_FILE)
    ok("rollback", *PROJECT)
    again = mlserve("rollback", *PROJECT)
    assert again.returncode == 6
    assert again.stderr == "error: nothing to roll back: v1 100%, v2 0%\n"


def test_rollback_to_a_revision_re_applies_its_spec_and_traffic(fake: Fake) -> None:
    fake.deployed(SPEC_FILE)
    ok("promote", "--weight", "25", *PROJECT)
    ok("promote", "--complete", *PROJECT)
    result = ok("rollback", "--to", "2", *PROJECT)
    assert result.stdout.splitlines()[2:4] == [
        "Re-applied revision 2 as revision 4 of stack 'dev' of project 'fraud-detector', "
        "full update: 1 updated, 6 unchanged",
        "  before: v2 100% (previous v1 at 0%)",
    ]
    assert "  after:  v1 75%, v2 25%" in result.stdout
    assert recorded(fake)[-1] == traffic("v1", "v2", 25)
    assert recorded(fake, "mlserve:spec")[-1] == recorded(fake, "mlserve:spec")[1]
    assert up_targets(fake)[-1] is None  # a redeploy of an old state, not routing only
    assert history(fake)[-1]["message"] == "mlserve rollback --to 2"


@pytest.mark.parametrize(
    ("revision", "message"),
    [
        (
            "9",
            "revision 9 is not in the history of stack 'dev' of project 'fraud-detector' "
            "(backend {backend}) (revisions 1..2): see `mlserve history`",
        ),
        ("2", "revision 2 was a update that failed: only a successful update can be re-applied"),
    ],
    ids=["missing", "failed"],
)
def test_rollback_to_a_revision_that_cannot_be_re_applied_exits_6(
    fake: Fake, revision: str, message: str
) -> None:
    fake.deployed(SPEC_FILE)
    fake.set(fail={"up": "admission webhook denied the request"})
    assert mlserve("promote", "--weight", "30", *PROJECT).returncode == 5
    fake.set()
    fake.clear_log()
    result = mlserve("rollback", "--to", revision, *PROJECT)
    assert result.returncode == 6
    backend = (fake.home / "state").as_uri()
    assert result.stderr == f"error: {message.format(backend=backend)}\n"
    assert "up" not in fake.commands()


def test_a_failed_promote_leaves_the_live_state_as_it_was(fake: Fake) -> None:
    fake.deployed(SPEC_FILE)
    fake.set(fail={"up": "admission webhook denied the request"})
    failed = mlserve("promote", "--weight", "30", *PROJECT)
    assert failed.returncode == 5
    fake.set()
    # The next promote reads the last successful update, not the failed one's config.
    result = ok("promote", "--weight", "40", "--expect-weight", "10", *PROJECT, "--json")
    assert json.loads(result.stdout)["before"]["weight"] == 10


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--weight", "150"], "--weight must be between 1 and 100, not 150"),
        (["--weight", "0"], "--weight must be between 1 and 100, not 0"),
        (["--weight", "-5"], "--weight must be between 1 and 100, not -5"),
        (["--weight", "50", "--complete"], "give either --weight or --complete, not both"),
        ([], "give --weight N (1..99, or 100 to complete) or --complete"),
        (["--weight", "50", "--expect-weight", "101"],
         "--expect-weight must be between 0 and 100, not 101"),
        (["--weight", "50", "--lock-timeout", "soon"], None),
        (["--weight", "50", "--project", "bad name"], None),
    ],
    ids=["150", "0", "negative", "both", "neither", "expect-101", "lock-timeout", "project"],
)  # fmt: skip
def test_invalid_promote_exits_2_before_any_engine_work(
    fake: Fake, args: list[str], message: str | None
) -> None:
    project = [] if "--project" in args else list(PROJECT)
    result = mlserve("promote", *args, *project)
    assert result.returncode == 2, result.stderr
    if message is not None:
        assert result.stderr == f"error: {message}\n"
    assert fake.calls() == []


def test_a_weight_that_is_not_a_number_exits_2_before_any_engine_work(fake: Fake) -> None:
    result = mlserve("promote", "--weight", "fifty", *PROJECT)
    assert result.returncode == 2
    assert "Invalid value for '--weight'" in result.stderr
    assert fake.calls() == []


def test_promote_waits_for_the_lock_like_deploy(fake: Fake) -> None:
    fake.deployed(SPEC_FILE)
    fake.set(locked=2)
    waited = ok("promote", "--weight", "30", "--lock-timeout", "30s", *PROJECT)
    assert "is locked by another update; waiting up to 30s" in waited.stderr
    fake.set(locked=1)
    busy = mlserve("rollback", *PROJECT)
    assert busy.returncode == 3
    assert recorded(fake)[-1] == traffic("v1", "v2", 30)


def test_a_fresh_workspace_promotes_from_the_stacks_record(fake: Fake) -> None:
    """A CI runner has no local Pulumi.<stack>.yaml: the state comes from the backend."""
    fake.deployed(SPEC_FILE)
    for f in fake.workspace("fraud-detector").glob("Pulumi.*.yaml"):
        f.unlink()
    ok("promote", "--weight", "60", "--expect-weight", "10", *PROJECT)
    assert recorded(fake)[-1] == traffic("v1", "v2", 60)
    assert recorded(fake, "mlserve:spec")[-1] == recorded(fake, "mlserve:spec")[0]


# --- the re-check under the lock --------------------------------------------------------------


def test_a_promote_that_waited_on_another_jobs_update_refuses_and_changes_nothing(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Job B read weight 10, then another job moved the canary to 50 before B's update took the
    lock. B's program, run under the lock, finds the newer revision and stops: --expect-weight
    10 is not silently applied over the other job's 50."""
    from mlserve import ops
    from mlserve.engine import Engine, Target
    from mlserve.errors import PreconditionError

    target = Target("fraud-detector", "dev")
    fake.deployed(SPEC_FILE)
    real_up = Engine.up
    other_job_ran = []

    def up(self: Engine, program: Any, **kw: Any) -> Any:
        if not other_job_ran:
            other_job_ran.append(True)
            ops.promote(Target("fraud-detector", "dev"), weight=50)
        return real_up(self, program, **kw)

    monkeypatch.setattr(Engine, "up", up)
    with pytest.raises(PreconditionError) as e:
        ops.promote(target, weight=25, expect_weight=10)
    backend = (fake.home / "state").as_uri()
    assert str(e.value) == (
        f"stack 'dev' of project 'fraud-detector' (backend {backend}) changed since this "
        "command read it at revision 1: revision 2 (`mlserve promote --weight 50`, succeeded). "
        "Nothing was changed: check `mlserve status`, then run the command again"
    )
    entries = history(fake)
    assert [(e["message"], e["result"]) for e in entries] == [
        ("mlserve deploy", "succeeded"),
        ("mlserve promote --weight 50", "succeeded"),
        ("mlserve promote --weight 25 --expect-weight 10", "failed"),
    ]
    assert entries[-1]["resourceChanges"].get("update") is None  # it changed nothing
    # With nothing in between, the same check passes and the update runs.
    ops.promote(target, weight=75, expect_weight=50)
    assert recorded(fake)[-1] == traffic("v1", "v2", 75)


def test_a_deploy_that_would_undo_a_rollback_says_so(fake: Fake) -> None:
    fake.deployed(SPEC_FILE)
    ok("promote", "--complete", *PROJECT)
    ok("rollback", *PROJECT)  # revision 3: v1 100%; the spec still has v2 as canary at 10%
    plan = ok("plan", SPEC)
    assert (
        "the last update (revision 3, `mlserve rollback`) was a rollback; this deploy sends "
        "traffic back: v2 0% -> 10%. If that is not intended, update the spec's traffic first"
        in plan.stdout
        + plan.stderr
    )


def test_a_deploy_that_keeps_a_rolled_back_canary_at_zero_does_not_warn_of_undoing(
    fake: Fake,
) -> None:
    fake.deployed(SPEC_FILE)
    ok("promote", "--weight", "50", *PROJECT)
    ok("rollback", *PROJECT)  # v2 stays deployed at 0%; a redeploy keeps the live 0%
    redeploy = ok("deploy", SPEC, "--yes")
    out = redeploy.stdout + redeploy.stderr
    assert "keeping the live canary weight 0% for v2" in out
    assert "was a rollback" not in out


def preview_targets(fake: Fake) -> list[list[str] | None]:
    """Each `preview` call's --target URNs (None: untargeted), oldest first."""
    out: list[list[str] | None] = []
    for argv in fake.argvs():
        if argv[:1] == ["preview"]:
            targets = [argv[i + 1] for i, a in enumerate(argv) if a == "--target"]
            out.append(targets or None)
    return out


def test_promote_dry_run_previews_the_update_with_its_targets_and_changes_nothing(
    fake: Fake,
) -> None:
    fake.deployed(SPEC_FILE)
    before = history(fake)
    dry = ok("promote", SPEC, "--weight", "50", "--dry-run")
    assert dry.stdout == (
        "  ~ update    VirtualService  fraud-detector  weights 90/10 -> 50/50\n"
        "Dry run (nothing was changed) of `mlserve promote --weight 50` on stack 'dev' of "
        "project 'fraud-detector', routing only (2 resources targeted): 1 to update, "
        "1 unchanged; 5 others not touched\n"
        "  before: v1 90%, v2 10%\n"
        "  v1  ###########################...   90%\n"
        "  v2  ###...........................   10%\n"
        "  after:  v1 50%, v2 50%\n"
        "  v1  ###############...............   50%\n"
        "  v2  ###############...............   50%\n"
    )
    assert "up" not in fake.commands()
    assert history(fake) == before
    assert preview_targets(fake) == [ROUTES]
    fake.clear_log()
    ok("promote", SPEC, "--weight", "50")  # the update itself targets the same resources
    assert preview_targets(fake) == [] and up_targets(fake) == [ROUTES]


def test_rollback_dry_run_json_lists_the_objects_that_would_change(fake: Fake) -> None:
    fake.deployed(SPEC_FILE)
    dry = ok("rollback", SPEC, "--dry-run", "--json")
    document = json.loads(dry.stdout)
    assert (document["dryRun"], document["revision"]) == (True, None)
    assert document["after"]["weights"] == {"v1": 100, "v2": 0}
    assert document["targets"] == ROUTES
    assert [(s["op"], s["name"]) for s in document["steps"]] == [("update", "fraud-detector")]
    assert [(w["old"], w["new"]) for w in document["steps"][0]["weights"]] == [(90, 100), (10, 0)]
    assert recorded(fake) == [traffic("v1", "v2", 10)]
    assert preview_targets(fake) == [ROUTES] and up_targets(fake) == []


def test_rollback_to_a_revision_dry_run_previews_the_full_update(fake: Fake) -> None:
    fake.deployed(SPEC_FILE)
    ok("promote", "--weight", "25", *PROJECT)
    fake.clear_log()
    dry = ok("rollback", "--to", "1", "--dry-run", *PROJECT)
    assert dry.stdout.splitlines()[1] == (
        "Dry run (nothing was changed) of `mlserve rollback --to 1` on stack 'dev' of project "
        "'fraud-detector', full update: 1 to update, 6 unchanged"
    )
    assert preview_targets(fake) == [None] and up_targets(fake) == []
    assert recorded(fake)[-1] == traffic("v1", "v2", 25)
