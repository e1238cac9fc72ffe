"""The kong gateway."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlserve.backends.base import Declared, Workload
    from mlserve.spec import Spec
    from mlserve.traffic import TrafficState


def check(spec: Spec) -> list[tuple[str, str]]:
    return []


def declare(spec: Spec, traffic: TrafficState, workloads: Mapping[str, Workload]) -> Declared:
    raise NotImplementedError("kong")
