"""What a stack's history records for mlserve, read back: the live record, and each kind of damage
a hand edit, another tool or an older mlserve can leave (issue 11 item 1)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from mlserve.engine import HistoryEntry
from mlserve.live import SPEC_KEY, TRAFFIC_KEY, DamagedRecord, live_record
from mlserve.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
SPEC = load_spec(REPO / "specs" / "istio.yaml")  # versions v1, v2
GOOD_TRAFFIC = json.dumps({"stable": "v1", "canary": "v2", "weight": 10, "previous": None})
GOOD_SPEC = json.dumps(SPEC.to_dict())
WAY_OUT = (
    "Nothing was changed. To recover, `mlserve deploy SPEC --reset-traffic` replaces the record "
    "with the spec's traffic; `mlserve history` lists every revision"
)


def entry(
    revision: int, result: str = "succeeded", kind: str = "update", **config: Any
) -> HistoryEntry:
    return HistoryEntry(
        revision=revision,
        kind=kind,
        result=result,
        start=datetime(2026, 1, 1),
        end=datetime(2026, 1, 1),
        message=f"command {revision}",
        config=config,
        changes={"update": 1},
    )


def recorded(traffic: str = GOOD_TRAFFIC, spec: str = GOOD_SPEC, revision: int = 4) -> HistoryEntry:
    return entry(revision, **{TRAFFIC_KEY: traffic, SPEC_KEY: spec})


def test_the_live_record_is_the_newest_successful_update_not_a_failed_attempt() -> None:
    failed = entry(6, "failed", **{TRAFFIC_KEY: "[1, 2]", SPEC_KEY: "{"})
    refresh = entry(5, kind="refresh")
    live = live_record([failed, refresh, recorded(revision=4), recorded(revision=3)])
    assert live is not None
    assert (live.revision, live.traffic.weight, live.versions) == (4, 10, ("v1", "v2"))


def test_nothing_is_live_after_a_successful_destroy() -> None:
    assert live_record([entry(5, kind="destroy"), recorded(revision=4)]) is None


@pytest.mark.parametrize(
    ("traffic", "spec", "damage"),
    [
        ("{stable: v1", GOOD_SPEC, "`mlserve:traffic`: it is not JSON: '{stable: v1'"),
        ("[1, 2]", GOOD_SPEC, "`mlserve:traffic`: it is JSON [1, 2], not an object"),
        ('{"canary": "v2"}', GOOD_SPEC, "`mlserve:traffic`: it has no stable version name"),
        ('{"stable": 1}', GOOD_SPEC, "`mlserve:traffic`: it has no stable version name"),
        (
            '{"stable": "v1", "weight": "10"}',
            GOOD_SPEC,
            '`mlserve:traffic`: it has weight "10", not an integer',
        ),
        (
            '{"stable": "v1", "canary": ["v2"]}',
            GOOD_SPEC,
            '`mlserve:traffic`: it has canary ["v2"], not a version name',
        ),
        (
            '{"stable": "v1", "canary": "v2", "weight": 120}',
            GOOD_SPEC,
            "`mlserve:traffic`: it is not a valid traffic state: weight must be in 0..100, not 120",
        ),
        (
            '{"stable": "v9"}',
            GOOD_SPEC,
            "`mlserve:traffic`: it names v9, which its `mlserve:spec` does not define",
        ),
        (GOOD_TRAFFIC, "not json", "`mlserve:spec`: it is not JSON: 'not json'"),
        (
            GOOD_TRAFFIC,
            '{"versions": "x"}',
            "`mlserve:spec`: it is not a valid spec: (top level): 'apiVersion' is a required "
            "property (and 4 more)",
        ),
        (
            GOOD_TRAFFIC,
            "[1, 2]",
            "`mlserve:spec`: it is not a valid spec: (top level): [1, 2] is not of type 'object'",
        ),
    ],
)
def test_each_kind_of_damage_names_the_revision_the_key_and_the_way_out(
    traffic: str, spec: str, damage: str
) -> None:
    with pytest.raises(DamagedRecord) as e:
        live_record([recorded(traffic, spec)])
    assert str(e.value) == f"revision 4 recorded a damaged {damage}. {WAY_OUT}"
    assert e.value.exit_code == 6


def test_a_record_without_its_spec_is_damaged() -> None:
    with pytest.raises(DamagedRecord, match=r"damaged `mlserve:spec`: it is missing\. "):
        live_record([entry(2, **{TRAFFIC_KEY: GOOD_TRAFFIC})])


def test_a_record_may_hold_more_versions_than_a_spec_file_may_list() -> None:
    # deploy keeps `previous` and the live versions beside the spec's ten
    first = SPEC.to_dict()["versions"][0]
    many = {**SPEC.to_dict(), "versions": [{**first, "name": f"v{i}"} for i in range(1, 12)]}
    live = live_record([recorded(spec=json.dumps(many))])
    assert live is not None and len(live.versions) == 11
