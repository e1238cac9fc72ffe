"""The traffic state machine (DESIGN.md section 4): exhaustive cases and invariants by property."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlserve.errors import PreconditionError, UsageError
from mlserve.spec import Spec
from mlserve.traffic import (
    Mirror,
    TrafficState,
    end_mirror,
    halt,
    initial,
    promote,
    reconcile,
    rollback,
    set_mirror,
)

NAMES = ["v1", "v2", "v3", "v4"]


def make_spec(
    stable: str,
    canary: str | None = None,
    weight: int = 0,
    mirror: Mirror | None = None,
    names: list[str] = NAMES,
) -> Spec:
    traffic: dict[str, object] = {"stable": stable, "weight": weight}
    if canary is not None:
        traffic["canary"] = canary
    if mirror is not None:
        traffic["mirror"] = mirror.to_dict()
    return Spec.from_dict(
        {
            "apiVersion": "mlserve/v1",
            "name": "fraud",
            "gateway": {"type": "istio", "host": "models.example.com"},
            "versions": [{"name": n, "image": f"ghcr.io/acme/fraud:{n}"} for n in names],
            "traffic": traffic,
        }
    )


# --- the state -----------------------------------------------------------------------------


def test_weights_sum_to_100_with_and_without_canary() -> None:
    assert TrafficState("v1").weights() == {"v1": 100}
    assert TrafficState("v1", "v2", 10).weights() == {"v1": 90, "v2": 10}
    assert TrafficState("v1", "v2", 0, previous="v0").weights() == {"v1": 100, "v2": 0}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"stable": "v1", "canary": "v1"},
        {"stable": "v1", "weight": 10},
        {"stable": "v1", "canary": "v2", "weight": 101},
        {"stable": "v1", "canary": "v2", "weight": -1},
        {"stable": "v1", "canary": "v2", "weight": True},
        {"stable": "v1", "canary": "v2", "weight": 10.5},
        {"stable": "v1", "previous": "v1"},
        {"stable": "v1", "canary": "v2", "previous": "v2"},
        {"stable": "v1", "mirror": Mirror("v1")},
        {"stable": "v1", "canary": "v2", "weight": 10, "mirror": Mirror("v2")},
    ],
)
def test_invalid_states_cannot_be_built(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TrafficState(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("percent", [0, 101, -1, True, 50.0])
def test_a_mirror_copies_1_to_100_percent(percent: object) -> None:
    with pytest.raises(ValueError):
        Mirror("v2", percent)  # type: ignore[arg-type]


def test_state_round_trips_through_dict() -> None:
    state = TrafficState("v1", "v2", 25, "v0")
    assert TrafficState.from_dict(state.to_dict()) == state
    mirrored = TrafficState("v1", "v2", 0, "v0", Mirror("v2", 20))
    assert mirrored.to_dict()["mirror"] == {"version": "v2", "percent": 20}
    assert TrafficState.from_dict(mirrored.to_dict()) == mirrored


def test_a_record_made_before_mirrors_reads_as_no_mirror() -> None:
    old = {"stable": "v1", "canary": "v2", "weight": 10, "previous": None}
    assert TrafficState.from_dict(old) == TrafficState("v1", "v2", 10)


def test_a_mirror_never_changes_the_served_split_and_its_version_is_deployed() -> None:
    state = TrafficState("v1", "v2", 0, mirror=Mirror("v3", 40))
    assert state.weights() == {"v1": 100, "v2": 0}
    assert state.versions() == ("v1", "v2", "v3")
    assert TrafficState("v1", "v2", mirror=Mirror("v2")).versions() == ("v1", "v2")


def test_traffic_module_imports_no_pulumi() -> None:
    tree = ast.parse(Path("mlserve/traffic.py").read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    } | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not any(name.startswith("pulumi") for name in imported)


# --- initial and reconcile -----------------------------------------------------------------


def test_initial_is_the_spec_traffic() -> None:
    assert initial(make_spec("v1", "v2", 10)) == TrafficState("v1", "v2", 10)
    assert initial(make_spec("v1")) == TrafficState("v1")
    assert initial(make_spec("v1", "v2", 0, Mirror("v2", 20))) == TrafficState(
        "v1", "v2", 0, mirror=Mirror("v2", 20)
    )


def test_reconcile_without_live_state_applies_the_spec() -> None:
    assert reconcile(make_spec("v1", "v2", 10), None) == (TrafficState("v1", "v2", 10), [])


def test_routine_redeploy_keeps_the_live_canary_weight_with_a_warning() -> None:
    state, warnings = reconcile(make_spec("v1", "v2", 10), TrafficState("v1", "v2", 50))
    assert state == TrafficState("v1", "v2", 50)
    assert warnings == [
        "keeping the live canary weight 50% for v2 (the spec says 10%); "
        "use --reset-traffic to apply the spec's weight"
    ]


def test_redeploy_with_the_same_weight_is_silent() -> None:
    assert reconcile(make_spec("v1", "v2", 10), TrafficState("v1", "v2", 10)) == (
        TrafficState("v1", "v2", 10),
        [],
    )


def test_reset_traffic_applies_the_spec_weight() -> None:
    state, warnings = reconcile(make_spec("v1", "v2", 10), TrafficState("v1", "v2", 50), True)
    assert (state, warnings) == (TrafficState("v1", "v2", 10), [])


def test_a_new_canary_starts_at_the_spec_weight() -> None:
    state, warnings = reconcile(make_spec("v1", "v3", 5), TrafficState("v1", "v2", 50))
    assert (state, warnings) == (TrafficState("v1", "v3", 5), [])


def test_live_promotion_of_the_spec_canary_is_kept_and_the_spec_flagged() -> None:
    live = TrafficState("v2", previous="v1")
    state, warnings = reconcile(make_spec("v1", "v2", 10), live)
    assert state == live
    assert warnings == [
        "canary v2 was already promoted to stable; keeping the live traffic (v2 100%). "
        "Update the spec: traffic.stable: v2, no canary."
    ]


def test_updated_spec_after_promotion_keeps_previous_deployed() -> None:
    state, warnings = reconcile(make_spec("v2"), TrafficState("v2", previous="v1"))
    assert (state, warnings) == (TrafficState("v2", previous="v1"), [])


def test_a_new_stable_in_the_spec_keeps_the_old_stable_as_previous() -> None:
    state, _ = reconcile(make_spec("v3"), TrafficState("v1", "v2", 30))
    assert state == TrafficState("v3", previous="v1")


def test_previous_is_dropped_when_the_spec_routes_it_again() -> None:
    state, _ = reconcile(make_spec("v2", "v1", 10), TrafficState("v2", previous="v1"))
    assert state == TrafficState("v2", "v1", 10)


# --- reconcile and the mirror: a deploy treats it as it treats the weight ----------------------


def test_a_routine_redeploy_keeps_the_live_mirror_with_a_warning() -> None:
    live = TrafficState("v1", "v2", 0, mirror=Mirror("v2", 20))
    state, warnings = reconcile(make_spec("v1", "v2", 0), live)
    assert state == live
    assert warnings == [
        "keeping the live mirror (20% copied to v2; the spec says no mirror); use "
        "--reset-traffic to apply the spec's mirror"
    ]
    assert reconcile(make_spec("v1", "v2", 0, Mirror("v2", 20)), live) == (live, [])


def test_a_routine_redeploy_keeps_a_mirror_ended_by_hand_ended() -> None:
    state, warnings = reconcile(
        make_spec("v1", "v2", 0, Mirror("v2", 50)), TrafficState("v1", "v2", 0)
    )
    assert state == TrafficState("v1", "v2", 0)
    assert warnings == [
        "keeping the live traffic without a mirror (the spec says 50% copied to v2); use "
        "--reset-traffic to apply the spec's mirror"
    ]


def test_reset_traffic_applies_the_spec_mirror_or_none() -> None:
    live = TrafficState("v1", "v2", 0, mirror=Mirror("v2", 20))
    assert reconcile(make_spec("v1", "v2", 0), live, reset=True) == (TrafficState("v1", "v2"), [])
    assert reconcile(make_spec("v1", "v2", 0, Mirror("v2", 70)), live, reset=True) == (
        TrafficState("v1", "v2", mirror=Mirror("v2", 70)),
        [],
    )


def test_a_new_canary_takes_the_spec_mirror_and_says_the_live_one_ends() -> None:
    live = TrafficState("v1", "v2", 0, mirror=Mirror("v2", 20))
    state, warnings = reconcile(make_spec("v1", "v3", 0, Mirror("v3", 10)), live)
    assert state == TrafficState("v1", "v3", 0, mirror=Mirror("v3", 10))
    assert warnings == [
        "ending the live mirror (20% copied to v2): the spec's traffic is new (stable v1, "
        "canary v3); applying its mirror (10% copied to v3)"
    ]


def test_a_live_mirror_of_a_version_the_spec_dropped_ends() -> None:
    live = TrafficState("v1", "v2", 0, mirror=Mirror("v3", 20))
    state, warnings = reconcile(make_spec("v1", "v2", 0, names=["v1", "v2"]), live)
    assert state == TrafficState("v1", "v2", 0)
    assert warnings == ["ending the live mirror (20% copied to v3): the spec no longer lists v3"]


# --- promote and rollback ------------------------------------------------------------------


def test_promote_moves_the_canary() -> None:
    assert promote(TrafficState("v1", "v2", 10), 50) == TrafficState("v1", "v2", 50)


def test_promote_to_100_completes_and_keeps_the_old_stable_as_previous() -> None:
    assert promote(TrafficState("v1", "v2", 50), 100) == TrafficState("v2", previous="v1")


def test_promote_without_canary_is_a_precondition_error() -> None:
    with pytest.raises(PreconditionError, match="nothing to promote: no canary is live"):
        promote(TrafficState("v1"), 50)


@pytest.mark.parametrize("weight", [0, -5, 101, 150])
def test_promote_rejects_weights_outside_1_to_100(weight: int) -> None:
    with pytest.raises(UsageError, match="between 1 and 100"):
        promote(TrafficState("v1", "v2", 10), weight)


def test_rollback_with_a_canary_sends_it_to_zero_and_keeps_it_deployed() -> None:
    assert rollback(TrafficState("v1", "v2", 40, "v0")) == TrafficState("v1", "v2", 0, "v0")


def test_rollback_after_completed_promotion_restores_previous() -> None:
    assert rollback(TrafficState("v2", previous="v1")) == TrafficState("v1")


def test_second_rollback_does_not_flip_back() -> None:
    with pytest.raises(PreconditionError, match="nothing to roll back: v1 100%"):
        rollback(rollback(TrafficState("v2", previous="v1")))


def test_promote_of_the_mirrored_canary_ends_the_mirror_and_keeps_another() -> None:
    shadow = TrafficState("v1", "v2", 0, mirror=Mirror("v2", 20))
    assert promote(shadow, 10) == TrafficState("v1", "v2", 10)
    assert promote(shadow, 100) == TrafficState("v2", previous="v1")
    other = TrafficState("v1", "v2", 10, mirror=Mirror("v3", 20))
    assert promote(other, 50) == TrafficState("v1", "v2", 50, mirror=Mirror("v3", 20))
    assert promote(other, 100) == TrafficState("v2", previous="v1", mirror=Mirror("v3", 20))


def test_rollback_ends_every_mirror_in_the_same_update() -> None:
    # the emergency: a shadowed canary at 0% that is hurting: the rollback ends the mirror
    assert rollback(TrafficState("v1", "v2", 0, mirror=Mirror("v2", 100))) == TrafficState(
        "v1", "v2", 0
    )
    assert rollback(TrafficState("v1", "v2", 30, mirror=Mirror("v3", 5))) == TrafficState(
        "v1", "v2", 0
    )
    assert rollback(TrafficState("v2", previous="v1", mirror=Mirror("v3"))) == TrafficState("v1")
    assert rollback(TrafficState("v1", mirror=Mirror("v3"))) == TrafficState("v1")
    assert rollback(TrafficState("v1", previous="v0", mirror=Mirror("v3"))) == TrafficState("v0")


def test_an_aborted_rollout_halts_the_canary_and_the_mirror_or_changes_nothing() -> None:
    assert halt(TrafficState("v1", "v2", 0, mirror=Mirror("v2"))) == TrafficState("v1", "v2")
    assert halt(TrafficState("v1", "v2", 40)) == TrafficState("v1", "v2")
    assert halt(TrafficState("v1", "v2", 0)) == TrafficState("v1", "v2")


def test_set_mirror_copies_to_a_version_that_serves_none() -> None:
    assert set_mirror(TrafficState("v1", "v2", 0), "v2", 20) == TrafficState(
        "v1", "v2", 0, mirror=Mirror("v2", 20)
    )
    changed = set_mirror(TrafficState("v1", "v2", 0, mirror=Mirror("v2", 20)), "v3", 100)
    assert changed == TrafficState("v1", "v2", 0, mirror=Mirror("v3", 100))
    assert set_mirror(TrafficState("v1", "v2", 30), "v3", 5).weights() == {"v1": 70, "v2": 30}


def test_set_mirror_refuses_the_stable_and_a_canary_with_a_weight() -> None:
    with pytest.raises(PreconditionError, match="v1 is the stable version and serves 100%"):
        set_mirror(TrafficState("v1", "v2", 0), "v1", 20)
    with pytest.raises(PreconditionError) as e:
        set_mirror(TrafficState("v1", "v2", 30), "v2", 20)
    assert str(e.value) == (
        "the canary v2 serves 30% already: a mirror would send it copies of requests it "
        "answers. Run `mlserve rollback` first to mirror it at 0%"
    )
    with pytest.raises(UsageError, match="--percent must be between 1 and 100, not 0"):
        set_mirror(TrafficState("v1", "v2"), "v2", 0)


def test_end_mirror_needs_a_live_mirror() -> None:
    assert end_mirror(TrafficState("v1", "v2", 5, mirror=Mirror("v3"))) == TrafficState(
        "v1", "v2", 5
    )
    with pytest.raises(PreconditionError) as e:
        end_mirror(TrafficState("v1", "v2", 5))
    assert str(e.value) == "nothing to end: no mirror is live (v1 95%, v2 5%)"


def test_rollback_of_a_canary_already_at_zero_is_a_precondition_error() -> None:
    with pytest.raises(PreconditionError, match="nothing to roll back: v1 100%, v2 0%"):
        rollback(TrafficState("v1", "v2", 0))


# --- invariants by property ----------------------------------------------------------------


@st.composite
def mirrors(draw: st.DrawFn, names: list[str], weight: int) -> Mirror | None:
    """None, or a mirror of a version that serves none of the traffic (names[0] is stable)."""
    idle = [n for n in names[1:] if not (n == names[1] and weight > 0)]
    version = draw(st.sampled_from([None, *idle]))
    return None if version is None else Mirror(version, draw(st.integers(1, 100)))


@st.composite
def states(draw: st.DrawFn) -> TrafficState:
    names = draw(st.permutations(NAMES))
    stable = names[0]
    canary = draw(st.sampled_from([None, names[1]]))
    weight = draw(st.integers(0, 100)) if canary else 0
    previous = draw(st.sampled_from([None, names[2]]))
    mirror = draw(mirrors(list(names), weight if canary else 0))
    return TrafficState(stable, canary, weight, previous, mirror)


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    names = draw(st.permutations(NAMES))
    canary = draw(st.sampled_from([None, names[1]]))
    weight = draw(st.integers(0, 100)) if canary else 0
    return make_spec(names[0], canary, weight, draw(mirrors(list(names), weight)))


def assert_invariants(state: TrafficState, deployable: set[str]) -> None:
    weights = state.weights()
    assert sum(weights.values()) == 100
    assert all(isinstance(w, int) and 0 <= w <= 100 for w in weights.values())
    assert state.stable != state.canary
    assert set(state.versions()) <= deployable
    if state.mirror is not None:  # copies go to a version that serves none of the traffic
        assert weights.get(state.mirror.version, 0) == 0


@given(states(), st.integers(1, 100))
def test_promote_keeps_the_invariants(live: TrafficState, weight: int) -> None:
    try:
        after = promote(live, weight)
    except PreconditionError:
        assert live.canary is None
        return
    assert_invariants(after, set(live.versions()))
    if weight == 100:
        assert (after.stable, after.canary, after.previous) == (live.canary, None, live.stable)
    else:
        assert after.weights()[after.canary or ""] == weight


@given(states())
def test_rollback_keeps_the_invariants_and_never_raises_canary_weight(live: TrafficState) -> None:
    try:
        after = rollback(live)
    except PreconditionError:
        return
    assert_invariants(after, set(live.versions()))
    assert after.weight == 0
    assert after.mirror is None


@given(states(), st.sampled_from(NAMES), st.integers(1, 100))
def test_set_mirror_never_changes_the_served_split(
    live: TrafficState, version: str, percent: int
) -> None:
    try:
        after = set_mirror(live, version, percent)
    except PreconditionError:
        assert version == live.stable or (version == live.canary and live.weight > 0)
        return
    assert after.weights() == live.weights()
    assert after.mirror == Mirror(version, percent)
    assert_invariants(after, set(live.versions()) | {version})
    assert end_mirror(after) == TrafficState(live.stable, live.canary, live.weight, live.previous)


@given(specs(), st.none() | states(), st.booleans())
def test_reconcile_keeps_the_invariants(spec: Spec, live: TrafficState | None, reset: bool) -> None:
    state, _ = reconcile(spec, live, reset)
    live_versions = set(live.versions()) if live else set()
    assert_invariants(state, set(spec.version_names) | live_versions)
    if live is None or reset:
        assert (state.stable, state.canary, state.weight) == (
            spec.traffic.stable,
            spec.traffic.canary,
            spec.traffic.weight,
        )


@given(specs(), states())
def test_reconcile_never_drops_the_live_stable_from_deployment(
    spec: Spec, live: TrafficState
) -> None:
    state, _ = reconcile(spec, live)
    assert live.stable in state.versions()
