"""The traffic state machine (DESIGN.md section 4): exhaustive cases and invariants by property."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlserve.errors import PreconditionError, UsageError
from mlserve.spec import Spec
from mlserve.traffic import TrafficState, initial, promote, reconcile, rollback

NAMES = ["v1", "v2", "v3", "v4"]


def make_spec(stable: str, canary: str | None = None, weight: int = 0) -> Spec:
    traffic: dict[str, object] = {"stable": stable, "weight": weight}
    if canary is not None:
        traffic["canary"] = canary
    return Spec.from_dict(
        {
            "apiVersion": "mlserve/v1",
            "name": "fraud",
            "gateway": {"type": "istio", "host": "models.example.com"},
            "versions": [{"name": n, "image": f"ghcr.io/acme/fraud:{n}"} for n in NAMES],
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
    ],
)
def test_invalid_states_cannot_be_built(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TrafficState(**kwargs)  # type: ignore[arg-type]


def test_state_round_trips_through_dict() -> None:
    state = TrafficState("v1", "v2", 25, "v0")
    assert TrafficState.from_dict(state.to_dict()) == state


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


def test_rollback_of_a_canary_already_at_zero_is_a_precondition_error() -> None:
    with pytest.raises(PreconditionError, match="nothing to roll back: v1 100%, v2 0%"):
        rollback(TrafficState("v1", "v2", 0))


# --- invariants by property ----------------------------------------------------------------


@st.composite
def states(draw: st.DrawFn) -> TrafficState:
    names = draw(st.permutations(NAMES))
    stable = names[0]
    canary = draw(st.sampled_from([None, names[1]]))
    weight = draw(st.integers(0, 100)) if canary else 0
    previous = draw(st.sampled_from([None, names[2]]))
    return TrafficState(stable, canary, weight, previous)


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    names = draw(st.permutations(NAMES))
    canary = draw(st.sampled_from([None, names[1]]))
    return make_spec(names[0], canary, draw(st.integers(0, 100)) if canary else 0)


def assert_invariants(state: TrafficState, deployable: set[str]) -> None:
    weights = state.weights()
    assert sum(weights.values()) == 100
    assert all(isinstance(w, int) and 0 <= w <= 100 for w in weights.values())
    assert state.stable != state.canary
    assert set(state.versions()) <= deployable


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
