"""History order on a shared bucket: the DIY backends list a stack's history by file name, and
each file is named from its writer's clock (pkg/backend/diy/state.go `addToHistory`,
`getHistory`), so a runner whose clock is behind names a later update to sort below an earlier
one. These tests rename the newest history file as such a clock would have named it, under the
stand-in (which keeps the file backend's own layout), and check that promote, rollback, status
and history follow the commands' order (mlserve's `mlserve:sequence`, engine.py `_in_sequence`).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.fake_pulumi import fixture
from tests.fake_pulumi.fixture import Fake
from tests.helpers import REPO
from tests.helpers import run_cli as mlserve

fake = fixture.fake
SPEC_FILE = REPO / "specs" / "istio.yaml"  # fraud-detector: v1 stable, v2 canary at 10%
PROJECT = ("--project", "fraud-detector")


def ok(*args: str) -> subprocess.CompletedProcess[str]:
    result = mlserve(*args)
    assert result.returncode == 0, result.stderr
    return result


def history_dir(fake: Fake) -> Path:
    return fake.home / "state" / ".pulumi" / "history" / "fraud-detector" / "dev"


def skew_newest(fake: Fake, behind: int = 1) -> None:
    """Rename the newest entry's files (`dev-<UnixNano>.history.json`, `.checkpoint.json`) as a
    writer whose clock is behind would have named them: to sort below the `behind` entries
    before it."""
    names = sorted(p.name for p in history_dir(fake).glob("*.history.json"))
    stamp = lambda name: int(name.split("-", 1)[1].split(".", 1)[0])  # noqa: E731
    newest, below = stamp(names[-1]), stamp(names[-1 - behind])
    for kind in ("history", "checkpoint"):
        path = history_dir(fake) / f"dev-{newest}.{kind}.json"
        path.rename(path.with_name(f"dev-{below - 1}.{kind}.json"))


def sequences(fake: Fake) -> list[str | None]:
    """`mlserve:sequence` of each entry, in the backend's (file name) order, oldest first."""
    return [
        json.loads(p.read_text())["config"].get("mlserve:sequence")
        for p in sorted(history_dir(fake).glob("*.history.json"))
    ]


def test_promote_status_and_history_follow_the_commands_not_the_file_names(fake: Fake) -> None:
    fake.deployed(SPEC_FILE)
    ok("promote", "--weight", "25", *PROJECT)
    ok("promote", "--weight", "50", *PROJECT)
    skew_newest(fake)  # the 50% update now sorts below the 25% one
    assert sequences(fake) == ["1", "3", "2"]

    status = ok("status", *PROJECT).stdout
    assert "traffic      v1 50%, v2 50%\n" in status
    assert status.endswith(
        "\nnote: the backend lists this stack's history in another order than mlserve's "
        "commands ran (a DIY backend names each entry from its writer's clock, and two "
        "writers' clocks differ): revisions are numbered, and the live traffic read, in the "
        "commands' order\n"
    )
    rows = ok("history", *PROJECT).stdout.splitlines()[1:]
    assert [r.split()[0] + " " + r.split()[7] for r in rows] == ["3 50%", "2 25%", "1 10%"]

    promoted = ok("promote", "--weight", "75", *PROJECT)
    assert "  before: v1 50%, v2 50%\n" in promoted.stdout
    assert "Promoted: revision 4 " in promoted.stdout
    assert sequences(fake) == ["1", "3", "2", "4"]
    assert "traffic      v1 25%, v2 75%\n" in ok("status", *PROJECT).stdout


def test_rollback_follows_the_last_command(fake: Fake) -> None:
    fake.deployed(SPEC_FILE)
    ok("promote", "--weight", "25", *PROJECT)
    ok("promote", "--complete", *PROJECT)
    skew_newest(fake)
    rolled = ok("rollback", *PROJECT)
    assert "  before: v2 100% (previous v1 at 0%)\n" in rolled.stdout
    assert "  after:  v1 100%\n" in rolled.stdout
    skew_newest(fake, behind=3)  # the rollback now sorts first of all
    assert sequences(fake) == ["4", "1", "3", "2"]
    assert "traffic      v1 100%\n" in ok("status", *PROJECT).stdout


def test_a_deploy_after_a_destroy_is_live_though_it_sorts_below_it(fake: Fake) -> None:
    fake.deployed(SPEC_FILE)
    ok("destroy", "--yes", *PROJECT)
    ok("deploy", str(SPEC_FILE), "--yes")
    skew_newest(fake)
    assert sequences(fake) == ["1", "3", "2"]
    assert "traffic      v1 90%, v2 10%\n" in ok("status", *PROJECT).stdout
    assert "before: v1 90%, v2 10%" in ok("promote", "--weight", "20", *PROJECT).stdout


def test_a_history_recorded_before_sequences_reads_by_position(fake: Fake) -> None:
    fake.deployed(SPEC_FILE)
    ok("promote", "--weight", "25", *PROJECT)
    for path in history_dir(fake).glob("*.history.json"):  # as an older mlserve wrote them
        info = json.loads(path.read_text())
        del info["config"]["mlserve:sequence"]
        path.write_text(json.dumps(info))
    assert "before: v1 75%, v2 25%" in ok("promote", "--weight", "50", *PROJECT).stdout
    assert sequences(fake) == [None, None, "1"]
    status = ok("status", *PROJECT).stdout
    assert "traffic      v1 50%, v2 50%\n" in status
    assert "note: the backend lists" not in status
