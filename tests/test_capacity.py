"""Capacity that follows traffic, as pure decisions (mlserve/capacity.py): what each version runs
for a spec and a traffic state, how a plan meets what is live, and which way each change goes."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlserve import capacity, traffic
from mlserve.capacity import Scale
from mlserve.spec import Spec
from mlserve.traffic import Mirror, TrafficState
from tests.k8s_helpers import REPO, spec_dict


def spec(
    stable: dict[str, Any] | None = None,
    canary: dict[str, Any] | None = None,
    **traffic_keys: Any,
) -> Spec:
    """v1 stable, v2 canary and v3 idle on istio, each version's keys replaced as given."""
    doc = spec_dict("istio", versions=3, weight=10)
    doc["traffic"] = {"stable": "v1", "canary": "v3", "weight": 10, **traffic_keys}
    for i, keys in ((0, stable), (2, canary)):
        if keys is not None:
            doc["versions"][i].update(keys)
    return Spec.from_dict(doc)


FIXED_4 = {"replicas": 4}
AUTO = {"autoscale": {"min": 2, "max": 12, "cpu": 70}, "resources": {"requests": {"cpu": "1"}}}


@pytest.mark.parametrize(
    ("weight", "expected"),
    [(0, 1), (1, 1), (10, 1), (25, 1), (26, 2), (50, 2), (51, 3), (75, 3), (76, 4), (99, 4)],
)
def test_a_proportional_canary_runs_the_ceiling_of_its_share_and_at_least_one(
    weight: int, expected: int
) -> None:
    s = spec(FIXED_4, canaryReplicas="proportional")
    assert capacity.plan(s, TrafficState("v1", "v3", weight))["v3"] == Scale(
        expected, why="proportional"
    )


@given(stable=st.integers(0, 1000), weight=st.integers(0, 100))
def test_the_rule_is_max_1_ceil_stable_times_weight(stable: int, weight: int) -> None:
    got = capacity.proportional(stable, weight)
    assert got == max(1, -(-stable * weight // 100))
    assert got >= 1 and got * 100 >= stable * weight and (got - 1) * 100 < max(stable * weight, 100)


def test_without_proportional_every_version_runs_its_own_replicas() -> None:
    s = spec(FIXED_4, {"replicas": 3})
    assert capacity.plan(s, TrafficState("v1", "v3", 50)) == {
        "v1": Scale(4),
        "v2": Scale(1),
        "v3": Scale(3),
    }


def test_an_autoscaled_canary_gets_the_rule_as_its_autoscalers_min() -> None:
    s = spec(FIXED_4, AUTO, canaryReplicas="proportional")
    at = capacity.plan(s, TrafficState("v1", "v3", 50))["v3"]
    assert at == Scale(None, (2, 12), why="proportional", take=True)
    assert at.autoscaled and at.floor == 2
    # Above the canary's own max, the max follows: an autoscaler's min may not pass its max.
    big = spec({"replicas": 40}, AUTO, canaryReplicas="proportional")
    assert capacity.plan(big, TrafficState("v1", "v3", 50))["v3"].hpa == (20, 20)


def test_an_autoscaled_stable_counts_its_min() -> None:
    s = spec(AUTO, canaryReplicas="proportional")
    assert capacity.plan(s, TrafficState("v1", "v3", 50)) == {
        "v1": Scale(None, (2, 12), take=True),
        "v2": Scale(1),
        "v3": Scale(1, why="proportional"),
    }


def test_a_mirror_of_the_canary_counts_as_its_share() -> None:
    s = spec(FIXED_4, canaryReplicas="proportional")
    shadow = TrafficState("v1", "v3", 0, mirror=Mirror("v3", 100))
    assert capacity.plan(s, shadow)["v3"].floor == 4
    other = TrafficState("v1", "v3", 10, mirror=Mirror("v2", 100))
    assert capacity.plan(s, other)["v3"].floor == 1


def test_the_previous_stable_runs_previous_replicas() -> None:
    s = spec(FIXED_4, {"replicas": 3}, previousReplicas=0)
    done = traffic.promote(TrafficState("v1", "v3", 50), 100)
    assert done == TrafficState("v3", previous="v1")
    assert capacity.plan(s, done) == {
        "v1": Scale(0, why="previous"),
        "v2": Scale(1),
        "v3": Scale(3),
    }
    # A rollback makes it the stable again: its own replicas.
    assert capacity.plan(s, traffic.rollback(done))["v1"] == Scale(4)


def test_an_autoscaled_previous_stable_is_pinned_or_paused_at_zero() -> None:
    done = TrafficState("v3", previous="v1")
    one = capacity.plan(spec(AUTO, previousReplicas=1), done)["v1"]
    assert one == Scale(None, (1, 1), why="previous", take=True)
    zero = capacity.plan(spec(AUTO, previousReplicas=0), done)["v1"]
    # The autoscaler stays; a target at 0 replicas has scaling disabled, so it leaves it there.
    assert zero == Scale(0, (2, 12), why="previous", take=True)
    # Every Deployment beside an autoscaler is applied forced (workloads.py says why).
    assert all(s.take for s in capacity.plan(spec(AUTO, AUTO), done).values() if s.hpa)
    assert zero.describe() == "0 (autoscaler paused)"


def test_a_mirrored_previous_stable_keeps_its_own_replicas() -> None:
    s = spec(FIXED_4, previousReplicas=0)
    state = TrafficState("v3", previous="v1", mirror=Mirror("v1", 10))
    assert capacity.plan(s, state)["v1"] == Scale(4)


def test_url_versions_run_nothing() -> None:
    doc = spec_dict("kong", versions=2)
    doc["gateway"] = {"type": "kong", "kong": {"adminUrl": "http://kong:8001"}}
    doc["versions"][1] = {"name": "v2", "url": "https://v2.example.com"}
    doc["traffic"]["canaryReplicas"] = "proportional"
    s = Spec.from_dict(doc)
    assert capacity.plan(s, TrafficState("v1", "v2", 50)) == {"v1": Scale(1)}


def test_settle_wakes_a_version_held_at_zero_with_an_explicit_count() -> None:
    asleep = Scale(0, (2, 12), why="previous", take=True)
    awake = Scale(None, (2, 12), take=True)
    assert capacity.settle({"v1": awake}, {"v1": asleep}) == {"v1": Scale(2, (2, 12), take=True)}
    assert capacity.settle({"v1": awake}, None) == {"v1": awake}
    assert capacity.settle({"v1": awake}, {"v1": awake}) == {"v1": awake}


def test_settle_takes_replicas_back_from_a_dropped_autoscaler() -> None:
    assert capacity.settle({"v1": Scale(4)}, {"v1": Scale(None, (2, 12), take=True)}) == {
        "v1": Scale(4, take=True)
    }
    assert capacity.settle({"v1": Scale(4)}, {"v1": Scale(3)}) == {"v1": Scale(4)}


def test_rising_and_falling_go_by_the_floor() -> None:
    before = {"a": Scale(1), "b": Scale(2), "c": Scale(None, (2, 12)), "d": Scale(3)}
    after = {"a": Scale(2), "b": Scale(1), "c": Scale(None, (2, 6)), "d": Scale(3), "e": Scale(1)}
    assert capacity.rising(before, after) == {"a"}
    assert capacity.falling(before, after) == {"b", "c"}  # c: a lower max falls too
    assert capacity.changed(before, after) == {"a", "b", "c"}
    assert capacity.rising(None, after) == capacity.falling(None, after) == frozenset()
    assert [(c.version, c.when) for c in capacity.changes(before, after)] == [
        ("a", "before"),
        ("b", "after"),
        ("c", "after"),
    ]


def test_every_promote_and_rollback_of_a_proportional_canary_goes_capacity_first() -> None:
    """The walk of the issue: a 4-replica stable, its canary at 10% then 50%, completed,
    rolled back, with the old stable kept at 0."""
    s = spec(FIXED_4, {"replicas": 2}, canaryReplicas="proportional", previousReplicas=0)
    walk = [TrafficState("v1", "v3", 10)]
    walk.append(traffic.promote(walk[-1], 50))
    walk.append(traffic.promote(walk[-1], 100))
    walk.append(traffic.rollback(walk[-1]))
    plans = [capacity.plan(s, state) for state in walk]
    steps = [
        [(c.version, c.before.describe(), c.after.describe(), c.when) for c in changes]
        for changes in (capacity.changes(a, b) for a, b in itertools.pairwise(plans))
    ]
    assert steps == [
        [("v3", "1", "2", "before")],  # 10% -> 50%: the second replica Ready first
        # completed: v3 runs its own 2 replicas, as many as at 50%; v1 goes to 0 after the switch
        [("v1", "4", "0", "after")],
        [("v1", "0", "4", "before")],  # the rollback starts v1's 4 pods before moving traffic
    ]


def test_describe_and_json() -> None:
    assert Scale(4).describe() == "4"
    assert Scale(None, (2, 12)).describe() == "2..12 (autoscaled)"
    assert Scale(None, (3, 3)).describe() == "3 (autoscaled)"
    assert Scale(None, (2, 12), why="proportional").to_json() == {
        "replicas": None,
        "autoscaler": {"min": 2, "max": 12},
        "floor": 2,
        "why": "proportional",
    }
    change = capacity.Change("v2", Scale(1), Scale(2, why="proportional"))
    assert change.to_json()["when"] == "before"
    assert dataclasses.replace(change, after=Scale(0)).when == "after"


def test_validate_says_what_proportional_and_previous_replicas_do() -> None:
    from mlserve.spec import load_spec

    loaded = load_spec(REPO / "tests" / "specs" / "valid-capacity.yaml")
    notes = [str(n).split(": ", 1)[1] for n in loaded.notes if "Replicas" in str(n)]
    assert notes == [
        "traffic.canaryReplicas: note: the canary v2 runs an autoscaler min of 1 at 10% "
        "(proportional to v1's 4); a promote starts new replicas and waits until they are Ready "
        "before raising the weight, and stops them only after lowering it",
        "traffic.previousReplicas: note: after promote --complete the old stable keeps no pods; "
        "a rollback to it first scales it back and moves traffic only once its pods are Ready, "
        "so it is no longer instant: it waits for the model to start, and with pods that start "
        "at once it took 0.6 s more than one to a stable that kept its pods (measured on a real "
        "API server); it serves nothing until then",
    ]


def test_a_woken_version_says_it_is_autoscaled_again() -> None:
    assert Scale(2, (2, 12), take=True).describe() == "2, then 2..12 (autoscaled)"
