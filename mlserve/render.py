"""Offline rendering: run the inline program under Pulumi's mocks and record what it declares.

Needs no Pulumi CLI, no cluster and no credentials. Explicit provider resources are left out:
their inputs may hold credentials (the Kong admin token), and they are not part of what a user
reviews.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi.runtime
import yaml
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.settings import get_root_resource

from mlserve.errors import UsageError
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


@contextlib.contextmanager
def _worker_loops() -> Iterator[None]:
    """Give the SDK's RPC worker threads event loops that are closed when the run ends.

    The SDK registers resources from threads of the main loop's default executor, and each such
    thread gets an event loop it never closes; at interpreter exit those loops can be finalized
    after their sockets and print "Exception ignored ... Invalid file descriptor" on stderr.
    """
    loops: list[asyncio.AbstractEventLoop] = []
    lock = threading.Lock()

    def init() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        with lock:
            loops.append(loop)

    main = _main_loop()
    saved = getattr(main, "_default_executor", None)
    executor = ThreadPoolExecutor(thread_name_prefix="mlserve-render", initializer=init)
    main.set_default_executor(executor)
    try:
        yield
    finally:
        executor.shutdown(wait=True)
        for loop in loops:
            loop.close()
        # Back to the loop's own executor (None: created on first use), so later code on this
        # loop does not meet the one just shut down.
        main._default_executor = saved  # type: ignore[attr-defined]


def _main_loop() -> asyncio.AbstractEventLoop:
    """The loop the SDK will run the program on (it uses the thread's current loop)."""
    try:
        return asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        return loop


def render_program(program: Callable[[], None], project: str, stack: str) -> list[RenderedResource]:
    """Run an inline program under mocks; return the resources it declared, in declaration order."""
    recorder = _Recorder()
    # A fresh monitor per run: MockMonitor accumulates resources across runs otherwise.
    pulumi.runtime.set_mocks(
        recorder, project=project, stack=stack, preview=False, monitor=MockMonitor(recorder)
    )
    # Registrations reach the monitor in whatever order their inputs resolve, which changes from
    # run to run; a stack transformation runs in the constructor, so it sees declaration order.
    declared: list[tuple[str, str]] = []

    def note(args: pulumi.ResourceTransformationArgs) -> None:
        declared.append((args.type_, args.name))

    root = get_root_resource()
    assert root is not None  # set_mocks creates it
    saved = root._transformations
    # The root stack lives as long as the process: restore it, or the next run records here too.
    root._transformations = [*(saved or []), note]
    try:
        with _worker_loops():
            pulumi.runtime.test(program)()  # type: ignore[no-untyped-call]
    finally:
        root._transformations = saved
    position = {key: i for i, key in enumerate(declared)}
    return sorted(recorder.resources, key=lambda r: position.get((r.type, r.name), len(position)))


def render(
    spec: Spec, traffic: TrafficState | None = None, stack: str = "dev"
) -> list[RenderedResource]:
    """What a deploy of `spec` would declare, with the spec's own traffic unless given."""
    return render_program(build_program(spec, traffic or initial(spec)), spec.name, stack)


# --- output formats (DESIGN.md section 2, render output contract) ---------------------------

FORMATS = ("yaml", "json")
_FIRST_KEYS = ("apiVersion", "kind", "metadata", "name", "namespace", "spec")
_STALE = re.compile(r"^\d{2,}-[a-z0-9.-]+\.(yaml|json)$")


def is_kubernetes(resource: RenderedResource) -> bool:
    return resource.type.startswith("kubernetes:")


def _ordered(value: Any) -> Any:
    """Keys in a stable, readable order: apiVersion, kind, metadata, name, namespace, spec, then
    the rest alphabetically. The engine's inputs arrive in no particular order."""
    if isinstance(value, dict):
        first = [k for k in _FIRST_KEYS if k in value]
        rest = sorted(k for k in value if k not in _FIRST_KEYS)
        return {k: _ordered(value[k]) for k in (*first, *rest)}
    if isinstance(value, list):
        return [_ordered(v) for v in value]
    return value


def document(resource: RenderedResource) -> dict[str, Any]:
    """A Kubernetes resource as its manifest; any other as {type, name, inputs}."""
    if is_kubernetes(resource):
        return _ordered(resource.inputs)  # type: ignore[no-any-return]
    return _entry(resource)


def _entry(resource: RenderedResource) -> dict[str, Any]:
    return {"type": resource.type, "name": resource.name, "inputs": _ordered(resource.inputs)}


def apply_order(resources: list[RenderedResource]) -> list[RenderedResource]:
    """Kubernetes resources first, each group in declaration order."""
    return [r for r in resources if is_kubernetes(r)] + [
        r for r in resources if not is_kubernetes(r)
    ]


def to_json(resources: list[RenderedResource]) -> str:
    body = {"resources": [_entry(r) for r in resources]}
    return json.dumps(body, indent=2, ensure_ascii=False) + "\n"


def _yaml(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(
        docs,
        explicit_start=True,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=4096,  # no folded lines: a long image or annotation stays on one line
    )


def to_yaml(resources: list[RenderedResource]) -> str:
    """A multi-document stream `kubectl apply -f -` accepts, then the non-Kubernetes resources."""
    return _yaml([document(r) for r in apply_order(resources)])


def format_resources(resources: list[RenderedResource], fmt: str) -> str:
    if fmt == "json":
        return to_json(resources)
    return to_yaml(resources)


def file_name(index: int, resource: RenderedResource, fmt: str) -> str:
    kind = resource.type.rsplit(":", 1)[-1].lower()
    name = re.sub(r"[^a-z0-9.-]+", "-", resource.name.lower()).strip("-")
    return f"{index:02d}-{kind}-{name}.{fmt}"


def write_files(resources: list[RenderedResource], directory: Path, fmt: str) -> list[Path]:
    """One file per resource, numbered in apply order; returns the paths written.

    A file an earlier render left (`NN-kind-name.yaml|json`) that this render would not overwrite
    is an error, not deleted: `kubectl apply -f DIR` would apply it too.
    """
    names = [file_name(i, r, fmt) for i, r in enumerate(apply_order(resources), start=1)]
    if directory.is_dir():
        stale = sorted(
            p.name
            for p in directory.iterdir()
            if _STALE.match(p.name) and p.name not in names and p.is_file()
        )
        if stale:
            raise UsageError(
                f"{directory} holds files this render does not write ({', '.join(stale)}); "
                "remove them or choose an empty directory"
            )
    elif directory.exists():
        raise UsageError(f"--out {directory}: not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, r in zip(names, apply_order(resources), strict=True):
        doc = document(r)
        text = (
            json.dumps(doc, indent=2, ensure_ascii=False) + "\n" if fmt == "json" else _yaml([doc])
        )
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
