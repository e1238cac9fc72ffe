"""The commands the automation API runs: version, plugin, stack, config, cancel, whoami, and the
operations preview/up/refresh/destroy (in operation.py)."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from . import control
from .argv import Argv
from .backend import Backend, StackRef, open_backend
from .control import EXIT_CONFIGURATION, Fail
from .project import Crypter, Project, StackSettings, config_values, crypter, qualify


def cli_version() -> str:
    """FAKE_PULUMI_VERSION, else the version of the Pulumi SDK installed next to the stand-in:
    the one in the name of its `pulumi-VERSION.dist-info` directory (installers name it so:
    packaging.python.org, "Recording installed projects"), without importlib.metadata's import."""
    if os.environ.get("FAKE_PULUMI_VERSION"):
        return os.environ["FAKE_PULUMI_VERSION"]
    for folder in sys.path:
        with contextlib.suppress(OSError):
            for name in os.listdir(folder or "."):
                if name.startswith("pulumi-") and name.endswith(".dist-info"):
                    return name[len("pulumi-") : -len(".dist-info")]
    raise Fail("error: the stand-in finds no installed Pulumi SDK to take its version from")


def dumps(data: Any) -> str:
    # pkg/cmd/pulumi/ui PrintJSON: indented with two spaces.
    return json.dumps(data, indent=2)


def format_time(seconds: int | float) -> str:
    """pkg/cmd/pulumi/cmd FormatTime: RFC 5424 with millisecond precision (UTC: `Z`)."""
    t = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


# --- version, plugin ------------------------------------------------------------------------


def version(a: Argv) -> str:
    if control.control().get("broken_version"):
        raise Fail("panic: broken install", code=1)
    return "v" + cli_version()


def plugin(a: Argv) -> str:
    from .providers import plugins_dir

    sub = a.words[1] if len(a.words) > 1 else ""
    home = plugins_dir()
    if sub == "ls":
        out = []
        for d in sorted(home.glob("*-*-v*")) if home.exists() else []:
            if not d.is_dir():
                continue
            kind, rest = d.name.split("-", 1)
            name, _, ver = rest.rpartition("-v")
            stamp = dt.datetime.fromtimestamp(d.stat().st_mtime, dt.UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ"
            )
            out.append({"name": name, "kind": kind, "version": ver, "size": 0,
                        "installTime": stamp, "lastUsedTime": stamp})  # fmt: skip
        return dumps(out)
    if sub == "install":
        reason = control.control().get("plugin_install_fails")
        if reason:
            raise Fail(f"error: {reason}")
        kind, name, ver = a.words[2], a.words[3], a.words[4].lstrip("v")
        (home / f"{kind}-{name}-v{ver}").mkdir(parents=True, exist_ok=True)
        return f"[{kind} plugin {name}-{ver}] installing"
    if sub == "rm":
        import shutil

        for d in home.glob(f"{a.words[2]}-{a.words[3]}-v*"):
            shutil.rmtree(d)
        return ""
    raise Fail(f'error: unknown command "{sub}" for "pulumi plugin"', code=EXIT_CONFIGURATION)


# --- the stack the command is about ---------------------------------------------------------


class Stack:
    """The project, backend and stack a command addresses (--stack, else the selected one)."""

    def __init__(self, a: Argv, name: str | None = None, must_exist: bool = True) -> None:
        self.project = Project.load(Path(a.get("--cwd") or os.getcwd()))
        self.backend: Backend = open_backend(self.project.backend_url)
        name = name or a.get("--stack") or self.selected()
        if not name:
            raise Fail(
                "error: no stack selected; please use `pulumi stack select` or "
                "`pulumi stack init` to select or create one"
            )
        self.ref: StackRef = self.backend.ref(name, self.project.name)
        if must_exist:
            self.backend.require(self.ref)
        self.config_file = a.get("--config-file")

    def _workspace_file(self) -> Path:
        # sdk/go/common/workspace/workspace.go: the selected stack lives in
        # $PULUMI_HOME/workspaces/<project>-<sha1 of the Pulumi.yaml path>-workspace.json.
        home = Path(os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi")
        digest = hashlib.sha1(str(self.project.dir / "Pulumi.yaml").encode()).hexdigest()
        return home / "workspaces" / f"{self.project.name}-{digest}-workspace.json"

    def selected(self) -> str | None:
        path = self._workspace_file()
        if not path.exists():
            return None
        value: str | None = json.loads(path.read_text()).get("stack")
        return value

    def select(self) -> None:
        path = self._workspace_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"stack": self.ref.name}))

    def settings(self, use_config_file: bool = True) -> StackSettings:
        return StackSettings.load(
            self.project, self.ref.name, self.config_file if use_config_file else None
        )

    def crypter(self, settings: StackSettings) -> Crypter:
        if self.backend.cloud:
            # Pulumi Cloud encrypts with the service's key: no passphrase.
            return Crypter("pulumi-service", b"service")
        return crypter(settings)

    def state_crypter(self, latest: dict[str, Any] | None, settings: StackSettings) -> Crypter:
        """The crypter of the checkpoint's own secrets provider state (its salt)."""
        state = ((latest or {}).get("secrets_providers") or {}).get("state") or {}
        if self.backend.cloud or not state.get("salt"):
            return self.crypter(settings)
        tmp = StackSettings(settings.path, {"encryptionsalt": state["salt"]})
        return crypter(tmp)


# --- stack ----------------------------------------------------------------------------------


def stack(a: Argv) -> str:
    sub = a.words[1] if len(a.words) > 1 else ""
    args = a.words[2:]
    if sub == "select":
        s = Stack(a, must_exist=False)
        if not s.backend.exists(s.ref):
            if not a.has("--create"):
                s.backend.require(s.ref)
            _init(s, a)
        s.select()
        return ""
    if sub == "init":
        s = Stack(a, name=args[0] if args else None, must_exist=False)
        out = _init(s, a)
        if not a.has("--no-select"):
            s.select()
        return out
    if sub == "rm":
        s = Stack(a, name=args[0] if args else None)
        latest = s.backend.read(s.ref)
        if latest and latest.get("resources") and not a.has("--force"):
            # pkg/cmd/pulumi/stack/stack_rm.go
            raise Fail(
                f"error: '{s.ref.name}' still has resources; removal rejected. Possible actions:\n"
                f"- Make sure that '{s.ref.name}' is the stack that you want to destroy\n"
                f"- Run `pulumi destroy` to delete the resources, then run `pulumi stack rm`\n"
                "- Run `pulumi stack rm --force` to override this error"
            )
        s.backend.remove(s.ref)
        if not a.has("--preserve-config"):
            s.settings(use_config_file=False).path.unlink(missing_ok=True)
        return f"Stack '{s.ref.name}' has been removed!"
    if sub == "output":
        return _output(Stack(a), a)
    if sub == "history":
        return _history(Stack(a), a)
    if sub == "ls":
        return _ls(a)
    if sub == "export":
        s = Stack(a)
        latest = s.backend.read(s.ref) or {}
        if a.has("--show-secrets") and latest:
            from .props import unseal

            c = s.state_crypter(latest, s.settings(False))
            latest = unseal(latest, c.decrypt)
        return dumps({"version": 3, "deployment": latest})
    raise Fail(f'error: unknown command "{sub}" for "pulumi stack"', code=EXIT_CONFIGURATION)


def _init(s: Stack, a: Argv) -> str:
    provider = a.get("--secrets-provider", "default" if s.backend.cloud else "passphrase")
    settings = s.settings(use_config_file=False)
    if provider == "passphrase":
        # The passphrase manager writes encryptionsalt into Pulumi.<stack>.yaml at init.
        s.crypter(settings)
    if control.update(lambda knobs: knobs.pop("lose_init_race", False)):
        # Another first run created the stack between this run's `stack select` and its
        # `stack init` (the knob `lose_init_race`): the create below then finds it.
        s.backend.create(s.ref)
    try:
        s.backend.create(s.ref)
    except OSError as e:
        raise Fail(f"error: could not create stack: {e}") from None
    return f"Created stack '{s.ref.name}'"


def _stack_resource(latest: dict[str, Any] | None) -> dict[str, Any] | None:
    for res in (latest or {}).get("resources") or []:
        if res["type"] == "pulumi:pulumi:Stack":
            return dict(res)
    return None


def _output(s: Stack, a: Argv) -> str:
    from .props import masked, plain, unseal

    latest = s.backend.read(s.ref)
    res = _stack_resource(latest) or {}
    outputs = res.get("outputs") or {}
    if a.has("--show-secrets"):
        c = s.state_crypter(latest, s.settings(False))
        values = plain(unseal(outputs, c.decrypt))
    else:
        values = masked(unseal(outputs, lambda _: None))
    if a.words[2:]:
        key = a.words[2]
        if key not in values:
            raise Fail(f"error: current stack does not have output property '{key}'")
        return dumps(values[key]) if a.has("--json") else str(values[key])
    return dumps(values)


def _history(s: Stack, a: Argv) -> str:
    """pkg/cmd/pulumi/stack/stack_history.go: --page-size defaults to 10 and --page to 1; the
    JSON is updateInfoJSON (times at one-second resolution, secrets `{"secret": true}` unless
    --show-secrets, which decrypts with the stack's current settings file)."""
    page_size = int(a.get("--page-size", "10") or 10)
    page = int(a.get("--page", "1") or 1)
    entries = s.backend.history(s.ref, page_size, page)
    c = s.crypter(s.settings(False)) if a.has("--show-secrets") else None
    out = []
    for e in entries:
        config: dict[str, Any] = {}
        for key, value in (e.get("config") or {}).items():
            if isinstance(value, dict) and "secure" in value:
                item: dict[str, Any] = {"secret": True}
                if c is not None:
                    plain = c.decrypt(value["secure"])
                    item = {
                        "value": plain if plain is not None else "ERROR_UNABLE_TO_DECRYPT",
                        "secret": True,
                    }
                config[key] = item
            else:
                config[key] = {
                    "value": value if isinstance(value, str) else json.dumps(value),
                    "secret": False,
                }
        info: dict[str, Any] = {
            "version": e.get("version", 0),
            "kind": e["kind"],
            "startTime": format_time(e["startTime"]),
            "message": e.get("message", ""),
            "environment": e.get("environment") or {},
            "config": config,
        }
        if e.get("result"):
            info["result"] = e["result"]
        if e.get("result") != "in-progress":
            info["endTime"] = format_time(e.get("endTime") or e["startTime"])
            info["resourceChanges"] = e.get("resourceChanges") or {}
        out.append(info)
    return dumps(out)


def _ls(a: Argv) -> str:
    project = Project.load(Path(a.get("--cwd") or os.getcwd()))
    backend = open_backend(project.backend_url)
    current = Stack(a, name="_", must_exist=False).selected()
    out = []
    for ref in backend.stacks(project.name):
        latest = backend.read(ref)
        history = backend.history(ref, 1, 1)
        entry: dict[str, Any] = {
            "name": ref.name,
            "current": ref.name == current,
            "updateInProgress": bool(history and history[0].get("result") == "in-progress"),
            "resourceCount": len((latest or {}).get("resources") or []),
        }
        if history:
            entry["lastUpdate"] = format_time(history[0].get("endTime") or history[0]["startTime"])
        out.append(entry)
    return dumps(out)


# --- config ---------------------------------------------------------------------------------


def config(a: Argv) -> str:
    sub = a.words[1] if len(a.words) > 1 else ""
    s = Stack(a)
    settings = s.settings()
    cfg = settings.config
    name = s.project.name
    if sub == "set-all":
        if a.get("--json-input"):
            raise Fail("error: --json input is not supported by the stand-in")
        for item in a.many("--plaintext"):
            key, _, value = item.partition("=")
            cfg[qualify(key, name)] = value
        secret_items = a.many("--secret")
        if secret_items:
            c = s.crypter(settings)
            for item in secret_items:
                key, _, value = item.partition("=")
                cfg[qualify(key, name)] = {"secure": c.encrypt(value)}
        settings.save()
        return ""
    if sub == "set":
        key = qualify(a.words[2], name)
        value = a.words[3] if len(a.words) > 3 else (a.rest[0] if a.rest else "")
        if a.has("--secret"):
            cfg[key] = {"secure": s.crypter(settings).encrypt(value)}
        else:
            cfg[key] = value
        settings.save()
        return ""
    if sub == "get":
        key = qualify(a.words[2], name)
        raw = cfg.get(key)
        if raw is None:
            raise Fail(
                f"error: configuration key '{a.words[2]}' not found for stack '{s.ref.name}'"
            )
        secret = isinstance(raw, dict) and "secure" in raw
        value = config_values(settings, s.crypter(settings) if secret else None)[key][0]
        return dumps({"value": value, "secret": secret}) if a.has("--json") else value
    if sub == "rm":
        cfg.pop(qualify(a.words[2], name), None)
        settings.save()
        return ""
    if sub == "rm-all":
        settings.data["config"] = {}
        settings.save()
        return ""
    if sub == "refresh":
        # `config refresh`: the config of the last deployment (diy GetLatestConfiguration).
        last = s.backend.history(s.ref, 1, 1)
        if not last:
            raise Fail("error: no previous deployment")
        settings.data["config"] = last[0].get("config") or {}
        settings.save()
        return ""
    if sub == "":
        show = a.has("--show-secrets")
        has_secret = any(isinstance(v, dict) and "secure" in v for v in cfg.values())
        values = config_values(settings, s.crypter(settings) if show and has_secret else None)
        out: dict[str, Any] = {}
        for key, (value, secret) in values.items():
            out[key] = (
                {"value": value, "secret": secret} if show or not secret else {"secret": True}
            )
        return dumps(out)
    raise Fail(f'error: unknown command "{sub}" for "pulumi config"', code=EXIT_CONFIGURATION)


# --- cancel, whoami -------------------------------------------------------------------------


def cancel(a: Argv) -> str:
    s = Stack(a, name=a.get("--stack") or (a.words[1] if len(a.words) > 1 else None))
    s.backend.cancel(s.ref)
    return f"The currently running update for '{s.ref.name}' has been canceled!"


def whoami(a: Argv) -> str:
    import getpass

    project = Project.load(Path(a.get("--cwd") or os.getcwd()))
    user = getpass.getuser()
    if a.has("--json"):
        return dumps({"user": user, "organizations": [], "url": project.backend_url})
    return user
