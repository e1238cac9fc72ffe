"""The inline Pulumi program: a closure over a validated, frozen spec and a traffic state."""

from __future__ import annotations

from collections.abc import Callable

from mlserve.spec import Spec
from mlserve.traffic import TrafficState


def build_program(spec: Spec, traffic: TrafficState) -> Callable[[], None]:
    """Return the inline program that declares the workloads and the gateway's routing."""

    def program() -> None:
        raise NotImplementedError("build_program")

    return program
