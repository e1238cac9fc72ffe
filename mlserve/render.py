"""Offline rendering: run the inline program under Pulumi's mocks and record what it declares.

Needs no Pulumi CLI, no cluster and no credentials. Explicit provider resources are left out:
their inputs may hold credentials (the Kong admin token), and they are not part of what a user
reviews. The output formats are DESIGN.md section 2's render output contract: `json` (every
resource as {type, name, inputs}), `yaml` (Kubernetes objects only, for `kubectl apply -f -`) and
`kong` (the Kong resources in decK's declarative format).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import secrets
import shutil
import stat
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

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
        # No outputs: with preview=False the SDK resolves each output the monitor does not return
        # from the resource's own input (pulumi/runtime/rpc.py resolve_outputs), so code that
        # reads another resource's name or host sees it as it would for real. Echoing the inputs
        # back instead would copy every input twice more.
        return mock_id(args.name), {}

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        return {}, None


# Pulumi's marker of a secret value on the wire: {SECRET_SIG: SECRET_SIG, "value": plaintext}.
SECRET_SIG = "4dabf18193072939515e22adb298388d"
MASK = "[secret]"


def mock_id(name: str) -> str:
    """The id a rendered resource gets; another resource's `*Id` input holds it."""
    return f"{name}-id"


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

FORMATS = ("yaml", "json", "kong")
_FIRST_KEYS = ("apiVersion", "kind", "metadata", "name", "namespace", "spec")
_STALE = re.compile(r"^\d{2,}-[a-z0-9.-]+\.(yaml|json)$")
# libyaml's emitter when PyYAML has it: the pure-Python one takes seconds for a large spec.
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def is_kubernetes(resource: RenderedResource) -> bool:
    return resource.type.startswith("kubernetes:")


def kind(resource: RenderedResource) -> str:
    """The last part of the type token: Deployment, VirtualService, Target, Api."""
    return resource.type.rsplit(":", 1)[-1]


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


def _entry(resource: RenderedResource) -> dict[str, Any]:
    return {"type": resource.type, "name": resource.name, "inputs": _ordered(resource.inputs)}


def document(resource: RenderedResource) -> dict[str, Any]:
    """A Kubernetes resource as its manifest; any other as {type, name, inputs}."""
    if is_kubernetes(resource):
        return _ordered(resource.inputs)  # type: ignore[no-any-return]
    return _entry(resource)


def selected(resources: list[RenderedResource], fmt: str) -> list[RenderedResource]:
    """What `fmt` prints: every resource (json), Kubernetes objects (yaml), Kong's (kong)."""
    if fmt == "json":
        return resources
    if fmt == "kong":
        return [r for r in resources if r.type.startswith("kong:")]
    return [r for r in resources if is_kubernetes(r)]


_PROVIDERS = {"kubernetes": "Kubernetes", "kong": "Kong", "azure-native": "Azure"}


def left_out(resources: list[RenderedResource], fmt: str) -> str | None:
    """A note for stderr naming what `fmt` does not print and how to see it, or None."""
    shown = {id(r) for r in selected(resources, fmt)}
    missing = [r for r in resources if id(r) not in shown]
    if not missing:
        return None
    groups: dict[str, Counter[str]] = {}
    for r in missing:
        package = r.type.split(":", 1)[0]
        groups.setdefault(_PROVIDERS.get(package, package), Counter())[kind(r)] += 1
    what = "; ".join(
        f"{sum(c.values())} {provider} resources ({', '.join(f'{n} {k}' for k, n in c.items())})"
        for provider, c in groups.items()
    )
    if fmt == "kong":
        see = "-o yaml"
    elif "Kong" in groups:
        see = "-o kong (decK) or -o json"
    else:
        see = "-o json"
    only = {"yaml": "Kubernetes objects", "kong": "Kong resources"}[fmt]
    if not shown:  # stdout stays empty: say so, rather than leave a silent success
        return (
            f"note: -o {fmt} prints {only} only, and this spec declares none: nothing was "
            f"printed. It declares {what}: see them with {see}"
        )
    return f"note: -o {fmt} prints {only} only; left out {what}: see them with {see}"


def _yaml(docs: Iterable[dict[str, Any]], stream: TextIO, start: bool = True) -> None:
    yaml.dump_all(
        docs,
        stream,
        Dumper=_Dumper,
        explicit_start=start,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=4096,  # no folded lines: a long image or annotation stays on one line
    )


def _json(document: Any, stream: TextIO) -> None:
    json.dump(document, stream, indent=2, ensure_ascii=False)
    stream.write("\n")


def write(resources: list[RenderedResource], fmt: str, stream: TextIO) -> None:
    """Print `resources` in `fmt` (FORMATS) to `stream`, one document at a time."""
    if fmt == "json":
        _json({"resources": [_entry(r) for r in resources]}, stream)
    elif fmt == "kong":
        _yaml([to_kong(resources)], stream, start=False)
    else:
        _yaml((document(r) for r in selected(resources, "yaml")), stream)


# --- Kong's declarative format (decK) ---------------------------------------------------------

KONG_FORMAT_VERSION = "3.0"  # decK writes "3.0" for Kong >= 3.0 (go-database-reconciler
# pkg/file/writer.go getFormatVersion); the file format is its pkg/file/types.go Content.


def _snake(key: str) -> str:
    """A Pulumi input name as decK's field name: stripPath -> strip_path."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _kong_fields(resource: RenderedResource) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in _ordered(resource.inputs).items():
        if key == "headers" and isinstance(value, list):
            # Pulumi: [{name, values}]; decK and the Admin API: {name: [values]}
            headers: dict[str, list[str]] = {}
            for header in value:
                headers.setdefault(header["name"], []).extend(header["values"])
            value = headers
        fields[_snake(key)] = value
    # what identifies the entity first, as decK writes it
    return {k: fields[k] for k in sorted(fields, key=lambda k: k not in ("name", "target"))}


def to_kong(resources: list[RenderedResource]) -> dict[str, Any]:
    """The Kong resources as a decK file: services with their routes, upstreams with their targets.

    Render links the resources by mock ids (a Target's `upstreamId` is its Upstream's id), so
    each Target and Route is placed under the resource that id names, by type."""
    kong = selected(resources, "kong")
    if not kong:
        raise UsageError(
            "-o kong: this spec renders no Kong resources (its gateway is not kong); "
            "use -o yaml or -o json"
        )
    parents: dict[str, dict[str, dict[str, Any]]] = {"Service": {}, "Upstream": {}}
    children = {
        "Route": ("service_id", "Service", "routes"),
        "Target": ("upstream_id", "Upstream", "targets"),
    }
    entries: list[tuple[str, dict[str, Any]]] = []
    for r in kong:
        fields = _kong_fields(r)
        if kind(r) in parents:
            parents[kind(r)][mock_id(r.name)] = fields
        elif kind(r) not in children:  # a backend declares a type this mapping lacks: a bug
            raise ValueError(f"-o kong: Kong resource type {r.type} has no decK mapping here")
        entries.append((kind(r), fields))
    for k, fields in entries:
        if k in children:
            link, parent_kind, key = children[k]
            parent = parents[parent_kind].get(fields.pop(link, None))
            if parent is None:  # the program linked to nothing it declared: a bug
                raise ValueError(f"-o kong: a {k} names no rendered {parent_kind}")
            parent.setdefault(key, []).append(fields)
    document: dict[str, Any] = {"_format_version": KONG_FORMAT_VERSION}
    # `deck gateway diff/sync` then compares only the entities carrying these tags, not the
    # whole gateway (decK select_tags; go-database-reconciler pkg/file/builder.go).
    common = set.intersection(*(set(f.get("tags", [])) for _, f in entries))
    first_tags = entries[0][1].get("tags", [])
    if common:
        document["_info"] = {"select_tags": [t for t in first_tags if t in common]}
    for k, key in (("Service", "services"), ("Upstream", "upstreams")):
        if parents[k]:
            document[key] = list(parents[k].values())
    return document


# --- one file per resource (--out DIR) --------------------------------------------------------


def file_name(index: int, resource: RenderedResource, fmt: str) -> str:
    name = re.sub(r"[^a-z0-9.-]+", "-", resource.name.lower()).strip("-")
    return f"{index:02d}-{kind(resource).lower()}-{name}.{fmt}"


def apply_order(resources: list[RenderedResource]) -> list[RenderedResource]:
    """Kubernetes resources first, each group in declaration order."""
    return [r for r in resources if is_kubernetes(r)] + [
        r for r in resources if not is_kubernetes(r)
    ]


def write_files(resources: list[RenderedResource], directory: Path, fmt: str) -> list[Path]:
    """One file per resource `fmt` prints, numbered in apply order; returns the paths written.

    A file an earlier render left (`NN-kind-name.yaml|json`) that this render would not overwrite
    is an error, not deleted: `kubectl apply -f DIR` would apply it too. Nothing is written
    outside DIR: the files are written in a staging directory first, then a new DIR is that
    directory renamed, and in an existing one each file replaces the old one by a rename, which
    replaces a symbolic link of that name (never the file it points to). DIR itself may be a link
    to a directory.
    """
    if fmt == "kong":
        raise UsageError("--out writes one file per resource; -o kong is one file: redirect stdout")
    chosen = apply_order(selected(resources, fmt))
    names = [file_name(i, r, fmt) for i, r in enumerate(chosen, start=1)]
    texts = [_text(r, fmt) for r in chosen]  # before anything is written
    staging: Path | None = None
    try:
        existing = _prepare_dir(directory, names)
        staging = _staging(directory if existing else directory.parent, directory.name)
        for name, text in zip(names, texts, strict=True):
            with (staging / name).open("x", encoding="utf-8") as f:
                f.write(text)
        if existing:
            _swap(staging, directory, names)
        else:
            staging.rename(directory)  # the whole directory appears at once
            staging = None
    except OSError as e:
        raise UsageError(
            f"--out {directory}: cannot write there ({e.strerror or e}); "
            "choose a directory you can write to"
        ) from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return [directory / name for name in names]


def _text(resource: RenderedResource, fmt: str) -> str:
    stream = io.StringIO()
    if fmt == "json":
        _json(document(resource), stream)
    else:
        _yaml([document(resource)], stream)
    return stream.getvalue()


def _staging(parent: Path, name: str) -> Path:
    """A new, empty directory in `parent` (mode as umask allows, as DIR itself would get)."""
    while True:
        path = parent / f".{name or 'out'}.mlserve-{secrets.token_hex(4)}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path


def _swap(staging: Path, directory: Path, names: list[str]) -> None:
    """Each staged file into `directory`, by rename; a failure says exactly what was left."""
    for done, name in enumerate(names):
        try:
            os.replace(staging / name, directory / name)
        except OSError as e:
            left = names[done:]
            replaced = f"{done} of {len(names)} files ({_span(names[:done])})" if done else "none"
            raise UsageError(
                f"--out {directory}: cannot write there ({e.strerror or e}) after replacing "
                f"{replaced}; {_span(left)} {'is' if len(left) == 1 else 'are'} as before "
                "this render (an earlier render's, or absent)"
            ) from None


def _span(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{names[0]} to {names[-1]}"


def _prepare_dir(directory: Path, names: list[str]) -> bool:
    """Whether `directory` exists; refuses what this render must not overwrite or leave."""
    if str(directory) == "":
        raise UsageError("--out needs a directory name (--out . for the current directory)")
    if directory.is_dir():
        entries = {p.name: p for p in directory.iterdir()}
        stale = sorted(
            n
            for n, p in entries.items()
            if _STALE.match(n) and n not in names and (p.is_symlink() or p.is_file())
        )
        if stale:
            raise UsageError(
                f"{directory} holds files this render does not write ({', '.join(stale)}); "
                "remove them or choose an empty directory"
            )
        odd = [
            n
            for n in names
            if n in entries and not (entries[n].is_symlink() or _is_regular(entries[n]))
        ]
        if odd:
            raise UsageError(
                f"--out {directory}: {', '.join(odd)} {'is' if len(odd) == 1 else 'are'} not a "
                "file (a directory, a FIFO, a device): remove it or choose another directory"
            )
        return True
    if directory.exists():
        raise UsageError(f"--out {directory}: not a directory")
    if not directory.parent.is_dir():
        raise UsageError(
            f"--out {directory}: {directory.parent} does not exist; create it first, "
            "or choose another directory"
        )
    return False


def _is_regular(path: Path) -> bool:
    return stat.S_ISREG(path.lstat().st_mode)
