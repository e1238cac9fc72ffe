"""`mlserve mirror` at the CLI, through the REAL pulumi.automation code and the stand-in CLI
(tests/fake_pulumi), as test_promote_rollback.py runs promote: what each step declared and
recorded is read from the file backend's own layout. And what promote, rollback, deploy and
status do with a live mirror (traffic.py's module docstring has the rules)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.fake_pulumi import fixture
from tests.fake_pulumi.fixture import Fake
from tests.helpers import REPO
from tests.helpers import run_cli as mlserve
from tests.test_promote_rollback import (
    PROJECT,
    ROUTES,
    history,
    ok,
    preview_targets,
    recorded,
    up_targets,
)
from tests.test_promote_rollback import traffic as state

fake = fixture.fake
ISTIO = REPO / "specs" / "istio.yaml"  # fraud-detector: v1 stable, v2 canary at 10%


@pytest.fixture
def shadow_spec(tmp_path: Path) -> Path:
    """The Istio example with its canary v2 at 0%: ready for a shadow phase."""
    path = tmp_path / "istio.yaml"
    path.write_text(re.sub(r"(?m)^  weight: 10 .*$", "  weight: 0", ISTIO.read_text()))
    return path


def test_a_mirror_is_set_changed_and_ended_by_routing_only_updates(
    fake: Fake, shadow_spec: Path
) -> None:
    fake.deployed(shadow_spec)
    first = ok("mirror", "--version", "v2", "--percent", "20", *PROJECT)
    assert first.stdout.splitlines() == [
        "  ~ update    VirtualService  fraud-detector  updating",
        "  ~ update    VirtualService  fraud-detector  updated",
        "Mirror set: revision 2 of stack 'dev' of project 'fraud-detector', routing only "
        "(2 resources targeted): 1 updated, 1 unchanged; 5 others not touched",
        "  before: v1 100%, v2 0%",
        "  v1  ##############################  100%",
        "  v2  ..............................    0%",
        "  after:  v1 100%, v2 0%, mirror 20% copied to v2",
        "  v1      ##############################  100%",
        "  v2      ..............................    0%",
        "  mirror  ~~~~~~........................   20%  copied to v2",
    ]
    ok("mirror", "--version", "v2", "--percent", "50", "--expect-mirror", "20", *PROJECT)
    ok("mirror", "--off", "--expect-mirror", "50", *PROJECT)
    assert recorded(fake) == [
        state("v1", "v2"),
        state("v1", "v2", mirror=("v2", 20)),
        state("v1", "v2", mirror=("v2", 50)),
        state("v1", "v2"),
    ]
    assert [e["message"] for e in history(fake)][1:] == [
        "mlserve mirror --version v2 --percent 20",
        "mlserve mirror --version v2 --percent 50 --expect-mirror 20",
        "mlserve mirror --off --expect-mirror 50",
    ]
    assert up_targets(fake) == [ROUTES, ROUTES, ROUTES]
    table = ok("history", *PROJECT).stdout.splitlines()
    start, end = table[0].index("MIRROR"), table[0].index("COMMAND")
    assert [line[start:end].strip() for line in table] == ["MIRROR", "-", "v2 50%", "v2 20%", "-"]


def test_mirror_dry_run_previews_the_same_update_and_changes_nothing(
    fake: Fake, shadow_spec: Path
) -> None:
    fake.deployed(shadow_spec)
    dry = ok("mirror", str(shadow_spec), "--version", "v2", "--percent", "20", "--dry-run")
    assert dry.stdout.splitlines()[:2] == [
        "  ~ update    VirtualService  fraud-detector",
        "Dry run (nothing was changed) of `mlserve mirror --version v2 --percent 20` on stack "
        "'dev' of project 'fraud-detector', routing only (2 resources targeted): 1 to update, "
        "1 unchanged; 5 others not touched",
    ]
    assert "  after:  v1 100%, v2 0%, mirror 20% copied to v2" in dry.stdout
    assert recorded(fake) == [state("v1", "v2")]
    assert up_targets(fake) == []
    assert preview_targets(fake) == [ROUTES]  # the targets `mirror` itself updates


def test_the_expect_mirror_guard_and_the_things_nobody_can_mirror_exit_6(
    fake: Fake, shadow_spec: Path
) -> None:
    fake.deployed(shadow_spec)
    fake.clear_log()
    cases = {
        ("--version", "v2", "--expect-mirror", "20"): (
            "--expect-mirror 20: no mirror is live, which counts as 0%; nothing was changed"
        ),
        ("--off",): "nothing to end: no mirror is live (v1 100%, v2 0%)",
        ("--version", "v1"): (
            "v1 is the stable version and serves 100% already: a mirror copies traffic to a "
            "version that serves none of it"
        ),
        ("--version", "v9"): (
            "version v9 is not deployed in stack 'dev' of project 'fraud-detector' (backend "
            f"{(fake.home / 'state').as_uri()}) (its versions: v1, v2): add it to the spec and "
            "deploy first"
        ),
    }
    for args, message in cases.items():
        result = mlserve("mirror", *args, *PROJECT)
        assert (result.returncode, result.stderr) == (6, f"error: {message}\n"), args
    assert "up" not in fake.commands()
    ok("mirror", "--version", "v2", *PROJECT)
    mismatch = mlserve("mirror", "--off", "--expect-mirror", "0", *PROJECT)
    assert (mismatch.returncode, mismatch.stderr) == (
        6,
        "error: --expect-mirror 0: the live mirror copies 100% to v2; nothing was changed\n",
    )


def test_a_canary_that_serves_traffic_is_not_mirrored(fake: Fake) -> None:
    fake.deployed(ISTIO)
    result = mlserve("mirror", "--version", "v2", "--percent", "20", *PROJECT)
    assert (result.returncode, result.stderr) == (
        6,
        "error: the canary v2 serves 10% already: a mirror would send it copies of requests "
        "it answers. Run `mlserve rollback` first to mirror it at 0%\n",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--off", "--version", "v2"), "give either --off or --version (and --percent), not both"),
        ((), "give --version V (and --percent P, default 100) to mirror, or --off to end it"),
        (("--version", "v2", "--percent", "0"), "--percent must be between 1 and 100, not 0"),
        (
            ("--percent", "20"),
            "give --version V (and --percent P, default 100) to mirror, or --off to end it",
        ),
        (("--off", "--expect-mirror", "101"), "--expect-mirror must be between 0 and 100, not 101"),
    ],
)
def test_bad_usage_exits_2_before_any_engine_work(
    fake: Fake, args: tuple[str, ...], message: str
) -> None:
    result = mlserve("mirror", *args, *PROJECT)
    assert (result.returncode, result.stderr) == (2, f"error: {message}\n")
    assert fake.calls() == []


def test_promote_of_the_mirrored_canary_ends_the_mirror_and_says_so(
    fake: Fake, shadow_spec: Path
) -> None:
    fake.deployed(shadow_spec)
    ok("mirror", "--version", "v2", "--percent", "20", *PROJECT)
    result = ok("promote", "--weight", "10", *PROJECT, "--json")
    document = json.loads(result.stdout)
    assert document["after"] == {**state("v1", "v2", 10), "weights": {"v1": 90, "v2": 10}}
    assert document["warnings"] == [
        "the mirror (20% copied to v2) ended: v2 now serves traffic itself"
    ]
    assert recorded(fake)[-1] == state("v1", "v2", 10)


def test_an_emergency_rollback_ends_the_mirror_in_the_same_update(
    fake: Fake, shadow_spec: Path
) -> None:
    fake.deployed(shadow_spec)
    ok("mirror", "--version", "v2", *PROJECT)
    back = ok("rollback", *PROJECT)
    assert (
        "warning: the mirror (100% copied to v2) ended: a rollback leaves load on the stable "
        "version only" in back.stdout + back.stderr
    )
    assert recorded(fake)[-1] == state("v1", "v2")
    assert up_targets(fake)[-1] == ROUTES  # routing only, one update
    again = mlserve("rollback", *PROJECT)
    assert (again.returncode, again.stderr) == (
        6,
        "error: nothing to roll back: v1 100%, v2 0%\n",
    )


def test_a_routine_deploy_keeps_the_live_mirror_and_status_shows_it(
    fake: Fake, shadow_spec: Path
) -> None:
    fake.deployed(shadow_spec)
    ok("mirror", "--version", "v2", "--percent", "20", *PROJECT)
    redeploy = ok("deploy", str(shadow_spec), "--yes")
    assert (
        "warning: keeping the live mirror (20% copied to v2; the spec says no mirror); use "
        "--reset-traffic to apply the spec's mirror" in redeploy.stdout + redeploy.stderr
    )
    assert recorded(fake)[-1] == state("v1", "v2", mirror=("v2", 20))
    status = ok("status", *PROJECT).stdout
    assert "traffic      v1 100%, v2 0%, mirror 20% copied to v2" in status
    assert status.splitlines()[-3:] == [
        "  v1      ##############################  100%",
        "  v2      ..............................    0%",
        "  mirror  ~~~~~~........................   20%  copied to v2",
    ]
    ok("deploy", str(shadow_spec), "--yes", "--reset-traffic")
    assert recorded(fake)[-1] == state("v1", "v2")


def test_a_gateway_that_cannot_mirror_refuses_with_the_reason(fake: Fake) -> None:
    fake.deployed(REPO / "specs" / "service.yaml")
    fake.clear_log()
    result = mlserve("mirror", "--version", "2024-12", "--project", "forecast")
    assert result.returncode == 6
    assert result.stderr == (
        "error: gateway service cannot mirror traffic: a Kubernetes Service only selects pods; "
        "it cannot copy requests; nothing was changed\n"
    )
    assert "up" not in fake.commands()


def test_ingress_nginx_mirrors_every_request_and_a_deploy_cannot_strip_the_path_under_it(
    fake: Fake, tmp_path: Path
) -> None:
    text = (
        (REPO / "specs" / "ingress-nginx.yaml").read_text().replace("  weight: 20", "  weight: 0")
    )
    unstripped = tmp_path / "unstripped.yaml"
    unstripped.write_text(
        text.replace("  path: /sentiment", "  path: /sentiment\n  stripPath: false")
    )
    fake.deployed(unstripped)
    project = ("--project", "sentiment")
    share = mlserve("mirror", "--version", "v4", "--percent", "20", *project)
    assert (share.returncode, share.stderr) == (
        6,
        "error: gateway ingress-nginx mirrors every request or none (20% asked): use percent "
        "100, or a gateway that mirrors a share (istio, gateway-api); nothing was changed\n",
    )
    ok("mirror", "--version", "v4", *project)
    stripped = tmp_path / "stripped.yaml"
    stripped.write_text(text)
    fake.clear_log()
    deploy = mlserve("deploy", str(stripped), "--yes")
    assert deploy.returncode == 6
    assert deploy.stderr.endswith(
        "set gateway.stripPath: false (the model then serves under /sentiment), or use istio or "
        "gateway-api. The live mirror (100% copied to v4) would stay: end it first with "
        "`mlserve mirror --off`, or deploy with --reset-traffic; nothing was changed\n"
    )
    assert "up" not in fake.commands()
    ok("deploy", str(stripped), "--yes", "--reset-traffic")
    assert json.loads(ok("status", *project, "--json").stdout)["traffic"] == state("v3", "v4")
