"""promote and rollback never need a routing resource the stack does not already have.

They update only the routing resources the last update exported (Pulumi `target`), and a targeted
update cannot safely create a resource outside its target list. So for every gateway, every live
state and every transition, the routing resources the new state declares must be a subset of
those the old state declared: (type, logical name) pairs, taken from what each backend's
`declare` returned in `Declared.routing`, under Pulumi's mocks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from mlserve import traffic
from mlserve.backends import base
from mlserve.errors import PreconditionError
from mlserve.program import build_program
from mlserve.render import render_program
from mlserve.spec import Spec, Version, load_spec
from mlserve.traffic import TrafficState

REPO = Path(__file__).resolve().parents[1]
Routing = frozenset[tuple[str, str]]


def with_third_version(spec: Spec) -> Spec:
    """The spec plus one more version, so states can hold stable, canary and previous at once
    (deploy keeps `previous` deployed even when the spec no longer lists it)."""
    first = spec.versions[0]
    extra: Version = dataclasses.replace(first, name="vx")
    if first.url is not None:
        extra = dataclasses.replace(extra, url="https://model-vx.internal.example.com:9443")
        if first.url.startswith("http://"):
            extra = dataclasses.replace(extra, url="http://model-vx.internal.example.com:9080")
    return dataclasses.replace(spec, versions=(*spec.versions, extra))


def kong_images() -> Spec:
    spec = load_spec(REPO / "specs" / "kong.yaml")
    versions = tuple(
        dataclasses.replace(v, url=None, image=f"ghcr.io/acme/churn:{v.name}", port=8000)
        for v in spec.versions
    )
    return dataclasses.replace(spec, versions=versions)


SPECS: Mapping[str, Any] = {
    "istio": lambda: load_spec(REPO / "specs" / "istio.yaml"),
    "gateway-api": lambda: load_spec(REPO / "specs" / "gateway-api.yaml"),
    "ingress-nginx": lambda: load_spec(REPO / "specs" / "ingress-nginx.yaml"),
    "kong": lambda: load_spec(REPO / "specs" / "kong.yaml"),
    "kong-images": kong_images,
    "kong-urls": lambda: load_spec(REPO / "tests" / "specs" / "valid-kong-urls.yaml"),
    "azure-apim": lambda: load_spec(REPO / "specs" / "azure-apim.yaml"),
}


# Canary weights of the live states, and the weights promote moves to. An APIM render declares
# some 30 resources (0.4 s under mocks): it gets weights that lead back into the same states.
WEIGHTS = {"azure-apim": ((0, 30), (30, 100))}
ALL_WEIGHTS = ((0, 30, 100), (1, 50, 99, 100))


def live_states(names: tuple[str, ...], weights: tuple[int, ...]) -> Iterator[TrafficState]:
    """Every state over three versions, with the given canary weights."""
    for stable in names:
        others = [n for n in names if n != stable]
        for canary in [None, *others]:
            rest = [n for n in others if n != canary]
            for previous in [None, *rest]:
                for weight in weights if canary else (0,):
                    yield TrafficState(stable, canary, weight, previous)


def transitions(live: TrafficState, weights: tuple[int, ...]) -> list[tuple[str, TrafficState]]:
    """Every promote and rollback the live state allows."""
    out = []
    for weight in weights:
        with contextlib.suppress(PreconditionError):
            out.append((f"promote {weight}", traffic.promote(live, weight)))
    with contextlib.suppress(PreconditionError):
        out.append(("rollback", traffic.rollback(live)))
    return out


class Router:
    """Renders a spec under mocks and records the routing each backend declared."""

    def __init__(self, spec: Spec, monkeypatch: pytest.MonkeyPatch) -> None:
        self.spec = spec
        self.cache: dict[TrafficState, Routing] = {}
        self.last: list[tuple[str, str]] = []
        backend = base.load(spec.gateway.type)
        real_load = base.load

        def declare(spec: Spec, state: TrafficState, workloads: Mapping[str, Any]) -> Any:
            declared = backend.declare(spec, state, workloads)
            self.last = [(r.pulumi_resource_type, r.pulumi_resource_name) for r in declared.routing]
            return declared

        recording = type("Recording", (), {"declare": staticmethod(declare)})()

        def load(gateway: str) -> Any:
            return recording if gateway == spec.gateway.type else real_load(gateway)

        monkeypatch.setattr(base, "load", load)

    def routing(self, state: TrafficState) -> Routing:
        if state not in self.cache:
            self.last = []
            render_program(build_program(self.spec, state), self.spec.name, "dev")
            assert self.last, "the backend declared no routing"
            self.cache[state] = frozenset(self.last)
        return self.cache[state]


@pytest.mark.parametrize("gateway", list(SPECS))
def test_promote_and_rollback_only_keep_or_drop_routing_resources(
    gateway: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = with_third_version(SPECS[gateway]())
    router = Router(spec, monkeypatch)
    state_weights, promote_weights = WEIGHTS.get(gateway, ALL_WEIGHTS)
    failures = []
    checked = 0
    for live in live_states(spec.version_names[:3], state_weights):
        before = router.routing(live)
        for what, new in transitions(live, promote_weights):
            checked += 1
            missing = router.routing(new) - before
            if missing:
                failures.append(f"{live} --{what}--> {new}: would create {sorted(missing)}")
    assert checked >= 60
    assert failures == []


def test_kong_keeps_a_target_for_previous_at_weight_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = kong_images()
    router = Router(spec, monkeypatch)
    after_completion = router.routing(TrafficState("v2", previous="v1"))
    assert ("kong:index/target:Target", "churn-v1") in after_completion
    assert after_completion >= router.routing(TrafficState("v1"))


def test_the_states_cover_every_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    states = list(live_states(("a", "b", "c"), ALL_WEIGHTS[0]))
    assert len(states) == len(set(states)) == 45
    shapes = {(s.canary is not None, s.previous is not None) for s in states}
    assert shapes == set(itertools.product([False, True], repeat=2))
