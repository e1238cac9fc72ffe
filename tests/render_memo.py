"""Renders shared within the test process: a render of the same spec and traffic state declares
the same resources (test_backends_k8s checks that two renders agree), and one costs from 50 ms
(Kubernetes) to over half a second (Azure API Management) of CPU under Pulumi's mocks."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from typing import Any

from mlserve import render as render_module
from mlserve.render import RenderedResource
from mlserve.spec import Spec
from mlserve.traffic import TrafficState, initial

_MEMO: dict[Any, tuple[Spec, list[RenderedResource]]] = {}


def remembered(
    what: str, spec: Spec, state: TrafficState, run: Callable[[], list[RenderedResource]]
) -> list[RenderedResource]:
    """What `run` renders for `spec` in `state`, rendered once per (what, spec, state) in this
    process. The spec is keyed by its canonical JSON (`Spec.to_dict`, which round-trips); each
    caller gets its own deep copy, so no test can alter what another sees."""
    key = (what, json.dumps(spec.to_dict(), sort_keys=True), state)
    if key not in _MEMO:
        _MEMO[key] = (spec, run())
    first, resources = _MEMO[key]
    # to_dict names every field a render reads: two specs it keys alike are equal (but where
    # they were loaded from).
    assert dataclasses.replace(first, source=spec.source) == spec
    return copy.deepcopy(resources)


def render(
    spec: Spec, traffic: TrafficState | None = None, stack: str = "dev"
) -> list[RenderedResource]:
    """mlserve.render.render, remembered (the project is the spec's name)."""
    state = traffic or initial(spec)
    return remembered(
        f"render {stack}", spec, state, lambda: render_module.render(spec, state, stack)
    )
