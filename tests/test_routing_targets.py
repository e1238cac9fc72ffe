"""promote, rollback and mirror change nothing but routing resources.

They run a Pulumi update with `target` set to the routing resources: the union of those the
stack exported and those the new program declares (pulumi/pulumi deployment_executor.go
checkTargets accepts a target URN the program newly registers, so a promote may create a Kong
Target, and performDeletes deletes a targeted resource the program no longer declares). So for
every gateway, every live state and every transition, every resource the update would create,
delete or change must be in `Declared.routing` of the old or the new state, and every other
resource must stay exactly as it was: (type, logical name) pairs and inputs, under Pulumi's mocks.
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
from mlserve.traffic import Mirror, TrafficState

REPO = Path(__file__).resolve().parents[1]
Key = tuple[str, str]  # (type, logical name)


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


SPECS: Mapping[str, Any] = {  # the longest first (tests/conftest.py runs slow tests first)
    "azure-apim": lambda: load_spec(REPO / "specs" / "azure-apim.yaml"),
    "kong-images": kong_images,
    "kong": lambda: load_spec(REPO / "specs" / "kong.yaml"),
    "istio": lambda: load_spec(REPO / "specs" / "istio.yaml"),
    "gateway-api": lambda: load_spec(REPO / "specs" / "gateway-api.yaml"),
    # InferencePools: they do not change with the weights, so they are not routing resources.
    "llm-gateway-api": lambda: load_spec(REPO / "specs" / "llm-gateway-api.yaml"),
    "ingress-nginx": lambda: load_spec(REPO / "specs" / "ingress-nginx.yaml"),
    "kong-urls": lambda: load_spec(REPO / "tests" / "specs" / "valid-kong-urls.yaml"),
    "service": lambda: load_spec(REPO / "specs" / "service.yaml"),
}


# Canary weights of the live states, and the weights promote moves to. An APIM render declares
# some 30 resources (up to 2 s under mocks): it gets weights that lead back into the same
# states. A Service carries no weights: promote --complete is its only promotion.
WEIGHTS = {"azure-apim": ((0, 30), (30, 100)), "service": ((0,), (100,))}
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


@dataclasses.dataclass(frozen=True)
class Declared:
    resources: Mapping[Key, Any]  # every resource's inputs
    routing: frozenset[Key]  # what the backend returned in Declared.routing


class Router:
    """Renders a spec under mocks and records every resource and the routing the backend named."""

    def __init__(self, spec: Spec, monkeypatch: pytest.MonkeyPatch) -> None:
        self.spec = spec
        self.cache: dict[TrafficState, Declared] = {}
        self.last: list[Key] = []
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

    def declared(self, state: TrafficState) -> Declared:
        if state not in self.cache:
            self.last = []
            resources = render_program(build_program(self.spec, state), self.spec.name, "dev")
            assert self.last, "the backend declared no routing"
            self.cache[state] = Declared(
                {(r.type, r.name): r.inputs for r in resources}, frozenset(self.last)
            )
        return self.cache[state]


def changed(before: Declared, after: Declared) -> set[Key]:
    """What an update from `before` to `after` creates, deletes or updates."""
    keys = set(before.resources) | set(after.resources)
    return {k for k in keys if before.resources.get(k) != after.resources.get(k)}


@pytest.mark.slow
@pytest.mark.parametrize("gateway", list(SPECS))
def test_promote_and_rollback_change_only_routing_resources(
    gateway: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = with_third_version(SPECS[gateway]())
    router = Router(spec, monkeypatch)
    state_weights, promote_weights = WEIGHTS.get(gateway, ALL_WEIGHTS)
    failures = []
    checked = 0
    for live in live_states(spec.version_names[:3], state_weights):
        if gateway == "azure-apim" and live.stable != spec.version_names[0]:
            continue  # 2 s a render: the other stables give the same shapes under other names
        before = router.declared(live)
        for what, new in transitions(live, promote_weights):
            checked += 1
            after = router.declared(new)
            outside = changed(before, after) - before.routing - after.routing
            if outside:
                failures.append(f"{live} --{what}--> {new}: changes {sorted(outside)}")
    assert checked >= (15 if gateway in ("azure-apim", "service") else 60)
    assert failures == []


@pytest.mark.parametrize("gateway", ["istio", "gateway-api", "ingress-nginx"])
def test_setting_changing_and_ending_a_mirror_changes_only_routing_resources(
    gateway: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = with_third_version(SPECS[gateway]())
    if gateway == "ingress-nginx":  # it mirrors an unstripped path only, every request
        spec = dataclasses.replace(
            spec, gateway=dataclasses.replace(spec.gateway, strip_path=False)
        )
    router = Router(spec, monkeypatch)
    a, b, c = spec.version_names[:3]
    percents = (100,) if gateway == "ingress-nginx" else (20, 100)
    failures, checked = [], 0
    for live in [TrafficState(a, b, 0), TrafficState(a, b, 30), TrafficState(b, previous=a)]:
        mirrors = [
            Mirror(v, p)
            for v in (b, c)
            for p in percents
            if v != live.stable and live.weights().get(v, 0) == 0
        ]
        states = [live, *(dataclasses.replace(live, mirror=m) for m in mirrors)]
        for before, after in itertools.permutations(states, 2):
            checked += 1
            old, new = router.declared(before), router.declared(after)
            outside = changed(old, new) - old.routing - new.routing
            if outside:
                failures.append(f"{before} -> {after}: changes {sorted(outside)}")
            if before.mirror != after.mirror:
                assert changed(old, new), f"{before} -> {after} changes nothing"
    assert checked >= (10 if gateway == "ingress-nginx" else 30)
    assert failures == []


def test_kong_creates_and_deletes_targets_as_routing_resources(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    router = Router(kong_images(), monkeypatch)
    target = ("kong:index/target:Target", "churn-v2")
    at_zero, at_ten = (
        router.declared(TrafficState("v1", "v2", 0)),
        router.declared(TrafficState("v1", "v2", 10)),
    )
    assert target not in at_zero.resources  # a 0% canary has no Target
    assert target in at_ten.routing  # the promote to 10% creates it, as a routing resource
    assert changed(at_zero, at_ten) == {target}


def test_the_states_cover_every_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    states = list(live_states(("a", "b", "c"), ALL_WEIGHTS[0]))
    assert len(states) == len(set(states)) == 45
    shapes = {(s.canary is not None, s.previous is not None) for s in states}
    assert shapes == set(itertools.product([False, True], repeat=2))
