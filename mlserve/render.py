"""Offline rendering: run the inline program under Pulumi's mocks and record what it declares.

Needs no Pulumi CLI, no cluster and no credentials. Explicit provider resources are left out:
their inputs may hold credentials (the Kong admin token), and they are not part of what a user
reviews.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.runtime
from pulumi.runtime.mocks import MockMonitor

from mlserve.program import build_program
from mlserve.spec import Spec
from mlserve.traffic import TrafficState, initial


@dataclass(frozen=True)
class RenderedResource:
    type: str  # the Pulumi type token, e.g. kubernetes:apps/v1:Deployment
    name: str  # the logical name
    inputs: dict[str, Any]  # as the engine receives them (camelCase); a Kubernetes manifest

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "inputs": self.inputs}


class _Recorder(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[RenderedResource] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if not args.typ.startswith("pulumi:providers:"):
            inputs = _plain(dict(args.inputs))
            self.resources.append(RenderedResource(args.typ, args.name, inputs))
        # Echo the inputs back as outputs: with preview=False every output is then known, so
        # code that reads another resource's outputs (ids, names) runs as it would for real.
        return f"{args.name}-id", dict(args.inputs)

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        return {}, None


# Pulumi's marker of a secret value on the wire: {SECRET_SIG: SECRET_SIG, "value": plaintext}.
SECRET_SIG = "4dabf18193072939515e22adb298388d"
MASK = "[secret]"


def _plain(value: Any) -> Any:
    """Inputs as a user should see them: secrets masked, integers given back their type
    (numbers cross the mock monitor as protobuf doubles)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        if SECRET_SIG in value:
            return MASK
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def render_program(program: Callable[[], None], project: str, stack: str) -> list[RenderedResource]:
    """Run an inline program under mocks; return the resources it registered, in order."""
    recorder = _Recorder()
    # A fresh monitor per run: MockMonitor accumulates resources across runs otherwise.
    pulumi.runtime.set_mocks(
        recorder, project=project, stack=stack, preview=False, monitor=MockMonitor(recorder)
    )
    pulumi.runtime.test(program)()  # type: ignore[no-untyped-call]
    return recorder.resources


def render(
    spec: Spec, traffic: TrafficState | None = None, stack: str = "dev"
) -> list[RenderedResource]:
    """What a deploy of `spec` would declare, with the spec's own traffic unless given."""
    return render_program(build_program(spec, traffic or initial(spec)), spec.name, stack)
