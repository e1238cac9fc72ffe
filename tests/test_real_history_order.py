"""History order on a shared bucket, on the REAL stack (tests/realstack.py): the real Pulumi CLI
lists a DIY stack's history by file name, each file named from its writer's clock
(pkg/backend/diy/state.go `addToHistory`, `getHistory`). The newest update's files are renamed as
a runner whose clock is behind would have named them; promote, rollback and status must follow
the commands (mlserve:sequence, engine.py `_in_sequence`), and so must the cluster's routing.
"""

from __future__ import annotations

import pytest

from tests.realstack import Real

pytestmark = [pytest.mark.real, pytest.mark.waits]

VS = "virtualservices.networking.istio.io"
PROJECT = ("--project", "fraud-detector")


def ok(real: Real, *args: str) -> str:
    result = real.mlserve(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def split(real: Real) -> dict[str, int]:
    route = real.get(VS, "fraud-detector")["spec"]["http"][-1]["route"]
    return {d["destination"]["subset"]: d.get("weight", 0) for d in route}


def skew_newest(real: Real, behind: int = 1) -> None:
    """Rename the newest entry's `<stack>-<UnixNano>.{history,checkpoint}.json` to sort below the
    `behind` entries before it."""
    (directory,) = {p.parent for p in (real.tmp / "state").rglob("*.history.json")}
    names = sorted(p.name for p in directory.glob("*.history.json"))

    def stamp(name: str) -> int:
        return int(name.rsplit("-", 1)[1].split(".", 1)[0])

    newest, below = stamp(names[-1]), stamp(names[-1 - behind])
    prefix = names[-1].rsplit("-", 1)[0]
    for kind in ("history", "checkpoint"):
        path = directory / f"{prefix}-{newest}.{kind}.json"
        path.rename(path.with_name(f"{prefix}-{below - 1}.{kind}.json"))


def test_traffic_follows_the_last_command_when_a_clock_names_it_first(real: Real) -> None:
    ok(real, "deploy", str(real.spec("istio.yaml")), "--yes")
    ok(real, "promote", "--weight", "25", *PROJECT)
    ok(real, "promote", "--weight", "50", *PROJECT)
    skew_newest(real)  # the real CLI now lists the 50% update below the 25% one

    status = ok(real, "status", *PROJECT)
    assert "traffic      v1 50%, v2 50%\n" in status, status
    assert "note: the backend lists this stack's history in another order" in status
    assert "does not hold" not in status  # the record read is the one the cluster holds

    promoted = ok(real, "promote", "--weight", "75", *PROJECT)
    assert "  before: v1 50%, v2 50%\n" in promoted, promoted
    assert split(real) == {"v1": 25, "v2": 75}

    ok(real, "promote", "--complete", *PROJECT)
    skew_newest(real, behind=4)  # the completion now sorts first of all
    rolled = ok(real, "rollback", *PROJECT)
    assert "  before: v2 100% (previous v1 at 0%)\n" in rolled, rolled
    assert split(real) == {"v1": 100}
    assert "traffic      v1 100%\n" in ok(real, "status", *PROJECT)
