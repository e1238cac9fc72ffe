"""Shared by the Kong and Azure API Management tests: spec builders, fake workloads, and a mock
monitor that records what `render` leaves out (resource options, providers, secrets)."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.runtime
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor

from mlserve.backends.base import Workload
from mlserve.render import RenderedResource
from mlserve.spec import Spec

SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's marker of a secret value on the wire


def spec_of(base: Mapping[str, Any], **changes: Any) -> Spec:
    """`base` with dotted-path changes applied, e.g. `**{"gateway.path": "/x"}`; None deletes."""
    return Spec.from_dict(edit(base, **changes))


def edit(base: Mapping[str, Any], **changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(dict(base))
    for dotted, value in changes.items():
        node: Any = doc
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        if isinstance(node, list):
            node[int(last)] = value
        elif value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return doc


def fake_workloads(spec: Spec) -> dict[str, Workload]:
    """What workloads.declare would hand over for the image versions: call inside a program."""
    workloads = {}
    for v in spec.versions:
        if v.image is None:
            continue
        service = f"{spec.name}-{v.name}"
        res = pulumi.CustomResource("test:index:Workload", service, {"image": v.image})
        workloads[v.name] = Workload(
            v.name, service, 80, f"{service}.{spec.namespace}.svc.cluster.local", (res,)
        )
    return workloads


@dataclass(frozen=True)
class Registered:
    """One RegisterResource call as the engine would receive it."""

    type: str
    name: str
    urn: str
    inputs: dict[str, Any]  # secrets still wrapped in their signature dict
    provider: str  # "urn::id" of the explicit provider, or ""
    delete_before_replace: bool
    dependencies: tuple[str, ...]  # URNs


class _Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return f"{args.name}-id", dict(args.inputs)

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        return {}, None


class _RecordingMonitor(MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registered: list[Registered] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.registered.append(
                Registered(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    inputs=_integral(rpc.deserialize_properties(request.object)),
                    provider=request.provider,
                    delete_before_replace=request.deleteBeforeReplace,
                    dependencies=tuple(request.dependencies),
                )
            )
        return response


def _integral(value: Any) -> Any:
    """Numbers cross the monitor as doubles; give integers back their type, as render does."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def record(
    program: Callable[[], None], project: str = "fraud", stack: str = "dev"
) -> list[Registered]:
    """Run a program under mocks; every registration, providers included, with its options."""
    mocks = _Mocks()
    monitor = _RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.test(program)()  # type: ignore[no-untyped-call]
    return monitor.registered


def of_type(resources: Iterable[Any], token: str) -> list[Any]:
    return [r for r in resources if r.type == token]


def one(resources: Iterable[Any], token: str, name: str | None = None) -> Any:
    found = [r for r in of_type(resources, token) if name is None or r.name == name]
    assert len(found) == 1, f"expected one {token} {name or ''}, found {len(found)}"
    return found[0]


def as_json(resources: Iterable[RenderedResource]) -> str:
    return json.dumps([r.to_json() for r in resources], sort_keys=True)


# kong/tools/ip.lua check_hostname and hostname_type, as kong.md states them
def kong_hostname_ok(name: str) -> bool:
    if not re.fullmatch(r"[0-9A-Za-z._-]+", name) or re.fullmatch(r"[\d.]+", name):
        return False
    labels = name.split(".")
    return all(labels[:-1]) and not any(label.endswith("-") for label in labels)
