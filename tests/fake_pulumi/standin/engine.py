"""The deployment: registrations from the program become steps, diffed against the old state.

Follows pkg/resource/deploy: step_generator.go (generateURN and duplicate URNs, targets and
skipped creates, the untargeted-provider error, generateStepsFromDiff with create-before-delete
and delete-before-replace, GenerateDeletes), deployment_executor.go (checkTargets after the
program, deletes after it in reverse dependency order, printPendingOperationsWarning, the
"update failed"/"update canceled" diagnostics, stack outputs finalized at the end), source_eval.go
(default providers `default_X_Y_Z` requested by package and version, "an unhandled error
occurred"), step_executor.go / pkg/engine journal (pending operations written around each
step). Step ops and counts follow pkg/engine/update.go (default provider steps are internal:
no events, not counted; create-replacement and delete-replaced are not logical).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import providers
from .events import Events
from .props import UNKNOWN, diff_paths, kind_of, masked, plain, secret

STACK_TYPE = "pulumi:pulumi:Stack"
PROVIDER_PREFIX = "pulumi:providers:"
UNKNOWN_ID = UNKNOWN  # providers/reference.go UnknownID


def make_urn(stack: str, project: str, parent_type: str, typ: str, name: str) -> str:
    """sdk/go/common/resource/urn.go NewURN: the parent's qualified type joins with `$`; the root
    stack is not named as a parent (deployment.go generateURN)."""
    qualified = f"{parent_type}${typ}" if parent_type else typ
    return f"urn:pulumi:{stack}::{project}::{qualified}::{name}"


def qualified_type(urn: str) -> str:
    return urn.split("::")[2]


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Res:
    """A resource state (apitype.ResourceV3), values in wire form."""

    urn: str
    type: str
    custom: bool
    id: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    parent: str = ""
    provider: str = ""
    dependencies: list[str] = field(default_factory=list)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    protect: bool = False
    delete: bool = False
    external: bool = False
    created: str = ""
    modified: str = ""
    # The provider made the object but its await failed (plugin.InitError): the reasons
    # (apitype.ResourceV3 initErrors, pkg/resource/deploy/step.go CreateStep/UpdateStep.Apply).
    init_errors: list[str] = field(default_factory=list)

    def to_state(self, seal: Callable[[Any], Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"urn": self.urn, "custom": self.custom}
        if self.delete:
            out["delete"] = True
        if self.id:
            out["id"] = self.id
        out["type"] = self.type
        if self.inputs:
            out["inputs"] = seal(self.inputs)
        if self.outputs:
            out["outputs"] = seal(self.outputs)
        for key, value in (
            ("parent", self.parent),
            ("protect", self.protect),
            ("external", self.external),
            ("dependencies", self.dependencies),
            ("provider", self.provider),
            ("propertyDependencies", self.property_dependencies),
            ("created", self.created),
            ("modified", self.modified),
            ("initErrors", self.init_errors),
        ):
            if value:
                out[key] = value
        return out

    @classmethod
    def from_state(cls, d: dict[str, Any], unseal: Callable[[Any], Any]) -> Res:
        return cls(
            urn=d["urn"],
            type=d["type"],
            custom=bool(d.get("custom")),
            id=d.get("id", ""),
            inputs=unseal(d.get("inputs") or {}),
            outputs=unseal(d.get("outputs") or {}),
            parent=d.get("parent", ""),
            provider=d.get("provider", ""),
            dependencies=list(d.get("dependencies") or []),
            property_dependencies=dict(d.get("propertyDependencies") or {}),
            protect=bool(d.get("protect")),
            delete=bool(d.get("delete")),
            external=bool(d.get("external")),
            created=d.get("created", ""),
            modified=d.get("modified", ""),
            init_errors=list(d.get("initErrors") or []),
        )

    def copy(self, **changes: Any) -> Res:
        data = dict(self.__dict__)
        data.update(changes)
        return Res(**data)


def is_default_provider(urn: str) -> bool:
    # providers.IsDefaultProvider: a provider resource whose name starts with "default".
    return qualified_type(urn).startswith(PROVIDER_PREFIX) and urn.rsplit("::", 1)[-1].startswith(
        "default"
    )


def _deps(res: Res) -> list[str]:
    """GetAllDependencies: parent, dependencies, property dependencies and the provider."""
    out = [res.parent] if res.parent else []
    out += res.dependencies
    for urns in res.property_dependencies.values():
        out += urns
    if res.provider:
        out.append(res.provider.rsplit("::", 1)[0])
    return out


@dataclass
class Step:
    """A step: its op, the resource, its old and new states, and for a diff the replace keys and
    the changed paths (pkg/resource/deploy/step.go). Create-replacement and delete-replaced are
    not logical: they are counted once, as the replace."""

    op: str
    urn: str
    type: str
    old: Res | None
    new: Res | None
    keys: list[str] | None = None
    diffs: list[str] | None = None
    logical: bool = True


class StepFailed(Exception):
    """A provider failed the step of the resource at `urn`."""

    urn = ""


class Abort(Exception):
    """The registration cannot be served: the monitor answers UNAVAILABLE (shut down)."""


@dataclass
class Options:
    kind: str  # update | preview | refresh | destroy
    preview: bool
    stack: str
    project: str
    org: str
    targets: list[str] = field(default_factory=list)
    replaces: list[str] = field(default_factory=list)
    config: dict[str, tuple[str, bool]] = field(default_factory=dict)
    knob_op: str = "up"  # the control knobs' key: up | preview | refresh | destroy
    knobs: dict[str, Any] = field(default_factory=dict)
    leak: str = ""


class Deployment:
    def __init__(
        self,
        opts: Options,
        olds: list[Res],
        pending: list[dict[str, Any]],
        events: Events,
        persist: Callable[[list[Res], list[dict[str, Any]]], None] | None,
    ) -> None:
        self.o = opts
        self.olds = olds
        self.old_by_urn = {r.urn: r for r in olds if not r.delete}
        self.pending = list(pending)
        self.events = events
        self._persist = persist
        self.mu = threading.RLock()
        self.news: dict[str, Res] = {}
        self.handled: set[str] = set()  # old URNs a step took care of
        self.gone: set[int] = set()  # id() of old states deleted
        self.urns: set[str] = set()
        self.skipped_creates: set[str] = set()
        self.provider_refs: set[str] = set()
        self.default_refs: dict[str, str] = {}
        self.changes: Counter[str] = Counter()
        self.failed = False
        self.canceled = threading.Event()
        self.stopped = False  # the monitor is shut down: registrations are refused
        self.stack_outputs: dict[str, Any] | None = None
        self.stack_urn = make_urn(
            opts.stack, opts.project, "", STACK_TYPE, f"{opts.project}-{opts.stack}"
        )
        self.slept = False
        self.rejected = False
        self.failed_once = False
        self.readonly = False
        self.servers: Any = None  # the gRPC servers, kept alive with the deployment

    # -- state

    def snapshot(self) -> list[Res]:
        untouched = [
            r
            for r in self.olds
            if id(r) not in self.gone and (r.urn not in self.handled or r.delete)
        ]
        return list(self.news.values()) + untouched

    def persist(self) -> None:
        if self._persist is not None and not self.o.preview:
            self._persist(self.snapshot(), self.pending)

    def _pending(self, op: str, res: Res) -> dict[str, Any]:
        entry = {"resource": res, "type": op}
        self.pending.append(entry)
        self.persist()
        return entry

    def _done(self, entry: dict[str, Any] | None) -> None:
        if entry is not None and entry in self.pending:
            self.pending.remove(entry)

    # -- events

    def _meta(self, step: Step) -> dict[str, Any]:
        """pkg/engine/events.go makeStepEventMetadata."""
        op, urn, typ, old, new = step.op, step.urn, step.type, step.old, step.new
        keys, diffs, logical = step.keys, step.diffs, step.logical
        meta: dict[str, Any] = {
            "op": op,
            "urn": urn,
            "type": typ,
            "old": _state_meta(old),
            "new": _state_meta(new),
            "logical": logical,
            "provider": (new or old).provider if (new or old) else "",
        }
        if diffs:
            meta["diffs"] = sorted({d.split(".")[0].split("[")[0] for d in diffs})
            meta["detailedDiff"] = {
                p: {
                    "diffKind": kind_of(old.inputs if old else {}, new.inputs if new else {}, p)
                    + ("-replace" if keys and p in keys else ""),
                    "inputDiff": True,
                }
                for p in diffs
            }
        if keys:
            meta["keys"] = keys
        return meta

    def diag(self, severity: str, message: str, urn: str = "") -> None:
        self.events.diag(severity, message, urn)

    # -- steps

    def _knob_failure(self, urn: str, op: str, custom: bool) -> str | None:
        """The `fail` knob: the provider's error for this step, if it is the one to fail."""
        if not custom or qualified_type(urn).startswith(PROVIDER_PREFIX) or op == "same":
            return None
        spec = (self.o.knobs.get("fail") or {}).get(self.o.knob_op)
        if not spec:
            return None
        if isinstance(spec, str):
            if self.failed_once:
                return None
            self.failed_once = True
            return spec + self.o.leak
        for pattern, reason in spec.items():
            if pattern in urn:
                return str(reason) + self.o.leak
        return None

    def _knob_unready(self, urn: str, op: str, custom: bool) -> dict[str, Any] | None:
        """The `unready` knob: {"reason", "status"} for this create or update, if it is one the
        provider makes but whose await fails."""
        if not custom or op not in ("create", "update", "create-replacement") or self.o.preview:
            return None
        spec = (self.o.knobs.get("unready") or {}).get(self.o.knob_op) or {}
        for pattern, answer in spec.items():
            if pattern in urn:
                return dict(answer)
        return None

    def _sleep(self, urn: str, custom: bool, op: str) -> None:
        """The `sleep` knob: the first changing custom step of an update takes this long (the
        lock is held meanwhile); a Ctrl-C cuts the wait short, as a provider honours the
        engine's cancellation."""
        seconds = self.o.knobs.get("sleep")
        if not seconds or self.slept or self.o.kind != "update" or self.o.preview:
            return
        if not custom or qualified_type(urn).startswith(PROVIDER_PREFIX) or op == "same":
            return
        self.slept = True
        self.mu.release()
        try:
            canceled = self.canceled.wait(float(seconds))
        finally:
            self.mu.acquire()
        if canceled:
            # The knob `cancel_delay`: how long the step in flight still takes once the update
            # is cancelled. It holds the deployment's lock meanwhile, so the update ends only
            # after it: the engine waits for in-flight steps (pkg/resource/deploy/
            # step_executor.go, WaitForCompletion).
            time.sleep(float(self.o.knobs.get("cancel_delay") or 0))

    def run_step(self, step: Step) -> None:
        """Execute one step: events, pending operation, the provider's work, state, counts."""
        op, urn, old, new = step.op, step.urn, step.old, step.new
        internal = is_default_provider(urn)
        meta = self._meta(step)
        if not internal:
            self.events.step_pre(meta, self.o.preview)
        custom = (new or old).custom if (new or old) else False
        entry = None
        pending_type = {"create": "creating", "create-replacement": "creating",
                        "update": "updating",
                        "delete": "deleting", "delete-replaced": "deleting"}.get(op)  # fmt: skip
        if pending_type and not self.o.preview and custom:
            entry = self._pending(
                pending_type, new if new is not None and op != "delete-replaced" else old
            )  # type: ignore[arg-type]
        self._sleep(urn, custom, op)
        unready = self._knob_unready(urn, op, custom)
        if unready is not None and new is not None:
            # step.go: the provider returned an InitError with the object it made; the step
            # stores the new state with the reasons (initErrors) and still fails the update.
            # The next update steps it again whatever its diff (step_generator.go, "it has
            # initialization errors"): not played here.
            reason = str(unready.get("reason", "timed out waiting for the condition"))
            metadata = {**(new.outputs.get("metadata") or {}), **(unready.get("metadata") or {})}
            new.outputs = {
                **new.outputs,
                "metadata": metadata,
                "status": unready.get("status") or {},
            }
            new.init_errors = [reason]
            self.news[urn] = new
            if old is not None:
                self.handled.add(old.urn)
            self._done(entry)
            self.persist()
            self.diag("error", reason + self.o.leak, urn)
            self.events.step_failed(meta)
            self.failed = True
            raise StepFailed(reason)
        failure = self._knob_failure(urn, op, custom)
        if failure is not None:
            self._done(entry)
            self.persist()
            self.diag("error", failure, urn)
            self.events.step_failed(meta)
            self.failed = True
            raise StepFailed(failure)
        if op in ("delete", "delete-replaced"):
            assert old is not None
            self.gone.add(id(old))
        elif new is not None and op != "replace":
            self.news[urn] = new
        if old is not None and op not in ("delete-replaced",):
            self.handled.add(old.urn)
        self._done(entry)
        self.persist()
        if step.logical and not internal:
            self.changes[op] += 1
        if not internal:
            meta = self._meta(step)
            self.events.step_done(meta, self.o.preview)

    # -- registrations

    def check_open(self) -> None:
        if self.stopped or self.canceled.is_set() or self.failed:
            raise Abort()

    def register(self, goal: dict[str, Any]) -> tuple[Res, bool]:
        """A RegisterResource goal -> (state to answer with, outputs unknown?).

        Raises Abort when the monitor cannot serve it any more, StepFailed (with the URN) when
        the provider failed the resource's step."""
        with self.mu:
            self.check_open()
            typ, name, custom = goal["type"], goal["name"], goal["custom"]
            parent = goal.get("parent", "")
            parent_type = (
                "" if not parent or qualified_type(parent) == STACK_TYPE else qualified_type(parent)
            )
            urn = make_urn(self.o.stack, self.o.project, parent_type, typ, name)
            if urn in self.urns:
                # diag/errors.go 2001 (step_generator.go generateURN)
                self.diag(
                    "error", f"Duplicate resource URN '{urn}'; try giving it a unique name", urn
                )
                self.failed = True
                raise Abort()
            self.urns.add(urn)
            old = self.old_by_urn.get(urn)
            if self.readonly:
                # refresh/destroy --run-program: the program's registrations are answered from
                # the state; nothing is created or changed before the refresh or the deletes.
                return (old, False) if old is not None else (Res(urn, typ, custom), True)
            try:
                return self._register(urn, typ, name, custom, parent, old, goal)
            except StepError as e:
                self.diag("error", str(e), urn)
                self.failed = True
                raise Abort() from None
            except StepFailed as e:
                e.urn = urn
                raise

    def _register(
        self,
        urn: str,
        typ: str,
        name: str,
        custom: bool,
        parent: str,
        old: Res | None,
        goal: dict[str, Any],
    ) -> tuple[Res, bool]:
        is_provider = typ.startswith(PROVIDER_PREFIX)
        provider_ref = ""
        if custom and not is_provider:
            provider_ref = goal.get("provider") or self.default_provider(
                providers.package(typ), goal.get("version") or None
            )
        inputs = goal.get("inputs", {})
        if old is not None and goal.get("ignoreChanges"):
            inputs = _ignore_changes(inputs, old.inputs, goal["ignoreChanges"])
        if custom:
            inputs = providers.check(typ, name, inputs, old.inputs if old else None)
        new = Res(
            urn=urn,
            type=typ,
            custom=custom,
            inputs=inputs,
            parent=parent,
            provider=provider_ref,
            dependencies=list(goal.get("dependencies", [])),
            property_dependencies=dict(goal.get("propertyDependencies", {})),
            protect=bool(goal.get("protect")),
            created=old.created if old else now(),
            modified=old.modified if old else now(),
        )
        if is_provider:
            version = goal.get("version") or plain(inputs.get("version")) or None
            error = providers.plugin_error(providers.package(typ), version)
            if error is not None:
                # registry.go Check fails to load the plugin; the executor reports the error
                # against the provider's URN and the deployment bails.
                raise StepError(error)
        state, unknown = self._steps(urn, typ, name, old, new, goal)
        if is_provider and not unknown:
            self.provider_refs.add(f"{urn}::{state.id or UNKNOWN_ID}")
        return state, unknown

    def read(self, goal: dict[str, Any]) -> Res:
        """ReadResource: an external resource read by id (step_generator.go GenerateReadSteps);
        the stand-in's provider reads back what the state holds, else the given properties."""
        with self.mu:
            self.check_open()
            parent = goal.get("parent", "")
            parent_type = (
                "" if not parent or qualified_type(parent) == STACK_TYPE else qualified_type(parent)
            )
            urn = make_urn(self.o.stack, self.o.project, parent_type, goal["type"], goal["name"])
            self.urns.add(urn)
            old = self.old_by_urn.get(urn)
            outputs = (
                old.outputs if old is not None and old.id == goal["id"] else goal.get("inputs", {})
            )
            provider = goal.get("provider") or self.default_provider(
                providers.package(goal["type"]), goal.get("version") or None
            )
            new = Res(urn, goal["type"], True, id=goal["id"], inputs=goal.get("inputs", {}),
                      outputs=outputs, parent=parent, provider=provider, external=True)  # fmt: skip
            self.run_step(Step("read", urn, goal["type"], old, new))
            return new

    def default_provider(self, pkg: str, version: str | None) -> str:
        """source_eval.go defaultProviders: one `pulumi:providers:PKG` per requested version, named
        by providers/provider.go ProviderRequest.Name (`default_4_34_2`), configured from the
        stack's `PKG:*` config."""
        key = f"{pkg}-{version or ''}"
        if key in self.default_refs:
            return self.default_refs[key]
        name = "default" + (
            "_" + version.replace(".", "_").replace("-", "_").replace("+", "_") if version else ""
        )
        inputs: dict[str, Any] = {}
        for k, (value, is_secret) in self.o.config.items():
            ns, _, rest = k.partition(":")
            if ns == pkg and rest:
                inputs[rest] = secret(value) if is_secret else value
        if version:
            inputs["version"] = version
        state, _ = self.register(
            {
                "type": PROVIDER_PREFIX + pkg,
                "name": name,
                "custom": True,
                "inputs": inputs,
                "version": version or "",
            }
        )
        ref = f"{state.urn}::{state.id or UNKNOWN_ID}"
        self.default_refs[key] = ref
        return ref

    def _targeted(self, urn: str) -> bool:
        if not self.o.targets:
            return True
        # step_generator.go: providers and the root stack are implicitly targeted.
        return (
            urn in self.o.targets
            or qualified_type(urn).startswith(PROVIDER_PREFIX)
            or (qualified_type(urn) == STACK_TYPE)
        )

    def _steps(
        self, urn: str, typ: str, name: str, old: Res | None, new: Res, goal: dict[str, Any]
    ) -> tuple[Res, bool]:
        targeted = self._targeted(urn)
        if old is None:
            if not targeted:
                # A skipped create: a same step, nothing stored, outputs unknown to the program.
                self.skipped_creates.add(urn)
                self.run_step(Step("same", urn, typ, None, new, logical=False))
                self.news.pop(urn, None)
                return new, True
            self._check_skipped_dependencies(new)
            new.id, new.outputs = self._create(typ, name, new)
            self.run_step(Step("create", urn, typ, None, new))
            return new, False
        if not targeted:
            if old.provider and old.provider not in self.provider_refs:
                # step_generator.go: a default provider whose version changed is not registered
                # (pulumi/pulumi#15704).
                raise StepError(
                    f"provider {old.provider} for resource {urn} has not been registered yet, this "
                    "is due to a change of providers mixed with --target. Change your program back "
                    "to the original providers"
                )
            self._same_dependencies(old)
            self.run_step(Step("same", urn, typ, old, old))
            return old, False
        self._check_skipped_dependencies(new)
        changed = diff_paths(old.inputs, new.inputs)
        replace_keys: list[str] = []
        dbr = False
        if urn in self.o.replaces:
            replace_keys = ["id"]
        elif old.provider != new.provider and self._provider_replaces(old.provider, new.provider):
            replace_keys = ["provider"]
        elif changed:
            replace_keys, dbr = providers.replacement(typ, old.inputs, new.inputs, changed)
            # step_generator.go applyReplaceOnChanges: the program's replaceOnChanges paths too.
            for pattern in goal.get("replaceOnChanges", []):
                replace_keys += [
                    p for p in changed
                    if p not in replace_keys
                    and (pattern in ("*", p) or p.startswith((pattern + ".", pattern + "[")))
                ]  # fmt: skip
        if goal.get("deleteBeforeReplace") is not None:
            dbr = bool(goal["deleteBeforeReplace"])  # the program's option wins (step_generator.go)
        if replace_keys:
            return self._replace(urn, typ, name, old, new, replace_keys, changed, dbr)
        if changed:
            new.id = old.id
            new.outputs = (
                providers.outputs(typ, new.inputs, self.o.preview, old.outputs)
                if new.custom
                else new.inputs
            )
            new.created, new.modified = old.created, now()
            self.run_step(Step("update", urn, typ, old, new, diffs=changed))
            return new, False
        same = new.copy(id=old.id, outputs=old.outputs, created=old.created, modified=old.modified)
        self.run_step(Step("same", urn, typ, old, same))
        return same, False

    def _same_dependencies(self, old: Res) -> None:
        """step_generator.go, an untargeted resource's SameStep (`getDependencySteps`): its old
        dependencies that have no step yet get SameSteps of their old states first, depth first,
        and their URNs count as seen, so the program registering one of them later is a
        duplicate URN (`generateURN`). Only the recorded dependencies are followed here, not
        parents or providers."""
        for dep in old.dependencies:
            dep_old = self.old_by_urn.get(dep)
            if dep_old is None or dep in self.urns or dep in self.handled:
                continue
            self.urns.add(dep)
            self._same_dependencies(dep_old)
            self.run_step(Step("same", dep, dep_old.type, dep_old, dep_old))

    def _provider_replaces(self, old_ref: str, new_ref: str) -> bool:
        """step_generator.go providerChanged: the new provider's DiffConfig decides. The stand-in's
        providers never ask for a replacement on a config change, so only a provider moved
        from/to none (a component turning custom) replaces."""
        return not old_ref or not new_ref

    def _check_skipped_dependencies(self, new: Res) -> None:
        for dep in _deps(new):
            if dep in self.skipped_creates:
                # diag/errors.go 2013 (step_generator.go validateSteps)
                self.diag(
                    "error",
                    f"Resource '{new.urn}' depends on '{dep}' which was was not specified in "
                    "--target list.",
                    new.urn,
                )
                self.failed = True
                if not self.o.preview:
                    raise Abort()

    def _create(self, typ: str, name: str, new: Res) -> tuple[str, dict[str, Any]]:
        """The provider's Create: the inputs come back as outputs. In a preview the id stays
        unknown (step.go CreateStep: an empty id), and so does every output that depends on it."""
        if not new.custom:
            return "", dict(new.inputs)
        outputs = providers.outputs(typ, new.inputs, self.o.preview)
        return ("" if self.o.preview else providers.new_id(typ, name, new.inputs)), outputs

    def _replace(
        self,
        urn: str,
        typ: str,
        name: str,
        old: Res,
        new: Res,
        keys: list[str],
        changed: list[str],
        dbr: bool,
    ) -> tuple[Res, bool]:
        new.id, new.outputs = self._create(typ, name, new)
        new.created = new.modified = now()
        replace = Step("replace", urn, typ, old, new, keys, changed)
        create = Step("create-replacement", urn, typ, old, new, keys, changed, logical=False)
        if dbr:
            # step_generator.go: delete-replaced, replace, create-replacement.
            self.run_step(
                Step("delete-replaced", urn, typ, old, None, keys, changed, logical=False)
            )
            self.handled.add(urn)
            self.run_step(replace)
            self.run_step(create)
        else:
            # create-replacement, replace; the old one is deleted after everything else.
            self.run_step(create)
            self.run_step(replace)
            old.delete = True
        return new, False

    def register_outputs(self, urn: str, outputs: dict[str, Any]) -> None:
        with self.mu:
            self.check_open()
            if urn == self.stack_urn:
                # step_executor.go: the stack's outputs wait for the end of the deployment
                # (pulumi/pulumi#15754) to know whether it ran to completion.
                self.stack_outputs = outputs
                return
            res = self.news.get(urn)
            if res is not None:
                res.outputs = outputs
                self.persist()
                meta = self._meta(Step("same", urn, res.type, res, res))
                self.events.step_done(meta, self.o.preview)

    # -- the end of a deployment

    def check_targets(self) -> bool:
        """deployment_executor.go checkTargets: each target was in the old state or registered."""
        ok = True
        for target in self.o.targets:
            if target not in self.old_by_urn and target not in self.urns:
                # diag/errors.go: 2010 for a URN with `$`, else 2011.
                text = f"Target '{target}' could not be found in the stack."
                if "$" not in target:
                    text += " Did you forget to escape $ in your shell?"
                self.diag("error", text)
                ok = False
        return ok

    def delete_leftovers(self) -> None:
        """GenerateDeletes + ScheduleDeletes: old resources no step took care of, and replaced
        ones, deleted in reverse dependency order (the state lists dependencies first). With
        --target only targeted resources are deleted."""
        for old in reversed(self.olds):
            if id(old) in self.gone:
                continue
            if old.delete:
                if self.canceled.is_set():
                    return
                self.run_step(Step("delete-replaced", old.urn, old.type, old, None, logical=False))
                continue
            if old.urn in self.handled or old.urn in self.urns:
                continue
            if self.o.targets and old.urn not in self.o.targets:
                continue
            if self.canceled.is_set():
                return
            self.run_step(Step("delete", old.urn, old.type, old, None))

    def finalize_outputs(self) -> None:
        """deployment_executor.go: stack outputs registered during the run replace the old ones
        when the run completed; after a failure they are merged over the old ones instead, so
        none is deleted (pulumi/pulumi#15754, fixing #14621)."""
        if self.stack_outputs is None:
            return
        stack = self.news.get(self.stack_urn)
        if stack is None:
            return
        old = self.old_by_urn.get(self.stack_urn)
        if self.failed or self.canceled.is_set():
            stack.outputs = {**(old.outputs if old else {}), **self.stack_outputs}
        else:
            stack.outputs = self.stack_outputs
        self.persist()
        self.events.step_done(
            self._meta(Step("same", self.stack_urn, STACK_TYPE, stack, stack)), self.o.preview
        )

    def refresh(self, drift: int, clear_pending_creates: bool) -> None:
        """deployment_executor.go refresh: a refresh step per resource in the state; the provider
        reads each back. No cluster exists here, so a resource reads back unchanged unless the
        `drift` knob says the first N custom resources were changed by hand (their outputs gain
        an annotation), which the step reports as an update (RefreshStep.ResultOp). The real
        Kubernetes provider (v4.34) also writes what it read into the resource's inputs, so a
        weight edited with kubectl is in the state's inputs after a refresh: that runs on the
        real stack (tests/test_real_state_edits.py), not here.

        Pending operations are cleared, except creates, which only --clear-pending-creates drops
        (printPendingOperationsWarning; PR #10394): a pending create may have made an object the
        state never recorded, which a refresh cannot find by id."""
        with self.mu:
            for old in self.olds:
                if old.delete or (self.o.targets and old.urn not in self.o.targets):
                    continue
                if self.canceled.is_set():
                    break
                internal = is_default_provider(old.urn)
                pre = self._meta(Step("refresh", old.urn, old.type, old, old))
                if not internal:
                    self.events.step_pre(pre, self.o.preview)
                failure = self._knob_failure(old.urn, "refresh", old.custom)
                if failure is not None:
                    self.diag("error", failure, old.urn)
                    self.events.step_failed(pre)
                    self.failed = True
                    break
                new = old
                if drift > 0 and old.custom and not old.type.startswith(PROVIDER_PREFIX):
                    drift -= 1
                    new = old.copy(outputs=_drifted(old.outputs), modified=now())
                op = "same" if new is old else "update"
                self.news[old.urn] = new
                self.handled.add(old.urn)
                if not internal:
                    self.changes[op] += 1
                    self.events.step_done(
                        self._meta(Step(op, old.urn, old.type, old, new)), self.o.preview
                    )
            self.pending = [
                p for p in self.pending if p["type"] == "creating" and not clear_pending_creates
            ]
            self.persist()

    def destroy(self) -> None:
        """Every resource deleted in reverse dependency order (pkg/engine/destroy.go, the step
        generator in destroy mode); with --target only the targets."""
        with self.mu:
            for old in reversed(self.olds):
                if self.o.targets and old.urn not in self.o.targets:
                    continue
                if self.canceled.is_set():
                    break
                self.run_step(
                    Step(
                        "delete-replaced" if old.delete else "delete",
                        old.urn,
                        old.type,
                        old,
                        None,
                        logical=not old.delete,
                    )
                )

    def outputs(self) -> dict[str, Any]:
        stack = self.news.get(self.stack_urn) or self.old_by_urn.get(self.stack_urn)
        return dict(stack.outputs) if stack else {}


class StepError(Exception):
    """An error the step generator reports against the registration's URN (bails)."""


def _ignore_changes(
    inputs: dict[str, Any], olds: dict[str, Any], paths: list[str]
) -> dict[str, Any]:
    """step_generator.go processIgnoreChanges: ignored paths keep their old values (dotted paths
    into objects; list indexes and wildcards are not modelled)."""
    import copy

    result = copy.deepcopy(inputs)
    for path in paths:
        parts = path.split(".")
        src: Any = olds
        dst: Any = result
        for part in parts[:-1]:
            src = src.get(part) if isinstance(src, dict) else None
            if not isinstance(dst, dict):
                break
            dst = dst.setdefault(part, {})
        else:
            if isinstance(dst, dict):
                if isinstance(src, dict) and parts[-1] in src:
                    dst[parts[-1]] = copy.deepcopy(src[parts[-1]])
                else:
                    dst.pop(parts[-1], None)
    return result


def _drifted(outputs: dict[str, Any]) -> dict[str, Any]:
    """Outputs as a hand edit left them: an annotation added (or a top-level marker)."""
    import copy

    out = copy.deepcopy(outputs)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        meta["annotations"] = {**(meta.get("annotations") or {}), "edited-by": "kubectl"}
    else:
        out["editedOutsidePulumi"] = True
    return out


def _state_meta(res: Res | None) -> dict[str, Any] | None:
    if res is None:
        return None
    out: dict[str, Any] = {
        "type": res.type,
        "urn": res.urn,
        "custom": res.custom,
        "id": res.id,
        "parent": res.parent,
        "provider": res.provider,
        "inputs": masked(res.inputs),
        "outputs": masked(res.outputs),
    }
    if res.delete:
        out["delete"] = True
    if res.protect:
        out["protect"] = True
    return out
