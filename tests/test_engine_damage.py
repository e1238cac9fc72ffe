"""Issue 11 item 1, by fault injection: the newest update recorded a damaged `mlserve:traffic` or
`mlserve:spec` (a hand edit, another tool, an older mlserve). Every stack-reading command either
refuses with exit 6 naming the revision, the key and the way out, or works; `deploy
--reset-traffic` recovers; `destroy` and `history` work. Through the stand-in CLI, which keeps the
file backend's real history files."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from mlserve import ops
from mlserve.engine import Engine, Mark, Target
from mlserve.errors import MlserveError
from mlserve.live import SPEC_KEY, TRAFFIC_KEY
from mlserve.program import build_program
from mlserve.spec import load_spec
from mlserve.traffic import TrafficState
from tests.fake_pulumi import fixture
from tests.fake_pulumi.fixture import Fake
from tests.helpers import REPO
from tests.helpers import run_cli as mlserve

fake = fixture.fake
SPEC_FILE = REPO / "specs" / "istio.yaml"  # v1 stable, v2 canary at 10%
SPEC = load_spec(SPEC_FILE)
TARGET = Target("fraud-detector", "dev")
LIVE = TrafficState("v1", "v2", 10)
T, S = TRAFFIC_KEY, SPEC_KEY
DAMAGE = {
    "traffic-not-json": ({T: "{stable: v1"}, f"`{T}`: it is not JSON: '{{stable: v1'"),
    "traffic-a-list": ({T: "[1, 2]"}, f"`{T}`: it is JSON [1, 2], not an object"),
    "traffic-no-stable": ({T: '{"canary": "v2"}'}, f"`{T}`: it has no stable version name"),
    "traffic-bad-type": (
        {T: '{"stable": "v1", "canary": "v2", "weight": "ten"}'},
        f'`{T}`: it has weight "ten", not an integer',
    ),
    "traffic-bad-mirror": (
        {T: '{"stable": "v1", "canary": "v2", "mirror": {"version": "v2", "percent": "all"}}'},
        f'`{T}`: it has mirror {{"version": "v2", "percent": "all"}}, not {{version, percent}}',
    ),
    "traffic-mirror-on-stable": (
        {T: '{"stable": "v1", "mirror": {"version": "v1", "percent": 5}}'},
        f"`{T}`: it is not a valid traffic state: the mirror and the stable are both 'v1'",
    ),
    "spec-wrong-shape": (
        {S: '{"versions": "x"}'},
        f"`{S}`: it is not a valid spec: (top level): 'apiVersion' is a required property "
        "(and 4 more)",
    ),
}
WAY_OUT = (
    "Nothing was changed. To recover, `mlserve deploy SPEC --reset-traffic` replaces the record "
    "with the spec's traffic; `mlserve history` lists every revision"
)


def record_damage(values: dict[str, str]) -> None:
    """An update that recorded `values` over a good record, with the live program (the state
    stays what it was): what an older mlserve or a hand-edited config would have written."""
    eng = Engine(TARGET)
    eng.stack()
    good = {T: json.dumps(LIVE.to_dict()), S: json.dumps(SPEC.to_dict())}
    eng.up(
        build_program(SPEC, LIVE),
        message="a hand edit",
        config={**good, **values},
        expect=Mark.of(eng.history()),
        since="the test read it",
    )


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_state_is_exit_6_with_the_way_out_and_reset_traffic_recovers(
    fake: Fake, kind: str
) -> None:
    values, damage = DAMAGE[kind]
    fake.deployed(SPEC_FILE)
    record_damage(values)
    refused: dict[str, Callable[[], Any]] = {
        "status": lambda: ops.status(TARGET),
        "plan": lambda: ops.plan(SPEC, TARGET),
        "deploy": lambda: ops.deploy(SPEC, TARGET),
        "promote": lambda: ops.promote(TARGET, weight=50, expect_weight=10),
        "rollback": lambda: ops.rollback(TARGET),
    }
    for name, run in refused.items():
        fake.clear_log()
        with pytest.raises(MlserveError) as e:
            run()
        assert (name, e.value.exit_code) == (name, 6)
        assert str(e.value) == f"revision 2 recorded a damaged {damage}. {WAY_OUT}"
        assert "up" not in fake.commands(), name

    assert [(r.revision, r.command) for r in ops.history(TARGET)] == [
        (2, "a hand edit"),
        (1, "mlserve deploy"),
    ]

    reset = ops.deploy(SPEC, TARGET, reset_traffic=True)
    assert reset.plan.warnings[0] == (
        f"revision 2 recorded a damaged {damage}; --reset-traffic replaces it with the spec's "
        "traffic"
    )
    assert (reset.revision, ops.status(TARGET).traffic) == (3, LIVE)

    record_damage(values)
    destroyed = ops.destroy(TARGET)
    assert destroyed.applied and destroyed.changes.get("delete")
    assert ops.status(TARGET).traffic is None


def test_the_cli_says_the_same_and_exits_6(fake: Fake) -> None:
    values, damage = DAMAGE["traffic-a-list"]
    fake.deployed(SPEC_FILE)
    record_damage(values)
    result = mlserve("status", "--project", "fraud-detector")
    assert (result.returncode, result.stderr) == (
        6,
        f"error: revision 2 recorded a damaged {damage}. {WAY_OUT}\n",
    )
    listed = mlserve("history", "--project", "fraud-detector", "--json")
    assert listed.returncode == 0
    assert [r["revision"] for r in json.loads(listed.stdout)] == [2, 1]


def test_rollback_to_a_good_revision_is_another_way_out(fake: Fake) -> None:
    fake.deployed(SPEC_FILE)
    record_damage(DAMAGE["spec-wrong-shape"][0])
    report = ops.rollback(TARGET, to=1)
    assert (report.before, report.after, report.revision) == (None, LIVE, 3)
    assert report.warnings[0].startswith("revision 2 recorded a damaged `mlserve:spec`: ")
    assert report.warnings[0].endswith("; this update replaces it")
    assert ops.status(TARGET).traffic == LIVE


def test_a_damaged_revision_cannot_be_re_applied(fake: Fake) -> None:
    fake.deployed(SPEC_FILE)
    record_damage(DAMAGE["traffic-not-json"][0])
    ops.deploy(SPEC, TARGET, reset_traffic=True)
    with pytest.raises(MlserveError) as e:
        ops.rollback(TARGET, to=2)
    assert str(e.value) == (
        f"revision 2 recorded a damaged {DAMAGE['traffic-not-json'][1]}. Nothing was changed: "
        "re-apply another revision (`mlserve history`)"
    )
    assert e.value.exit_code == 6
