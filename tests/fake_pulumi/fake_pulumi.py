"""A stand-in for the Pulumi CLI, answering what pulumi.automation asks of it.

Tests put tests/fake_pulumi first on PATH and drive it through the REAL automation code, so the
argv, environment, JSON formats and error texts below follow what the installed SDK (3.272)
sends and parses. The stand-in never runs the inline program: it derives the resources of a stack
from the stack config that mlserve sets before every operation (`mlserve:spec`, `mlserve:traffic`),
so previews and updates show realistic creates, updates, deletes and weight changes.

Environment:
  FAKE_PULUMI_LOG      append one JSON line per invocation: {"argv", "cwd", "env"}
  FAKE_PULUMI_STATE    directory holding the stacks (per backend URL, project and stack)
  FAKE_PULUMI_CONTROL  optional JSON file of scripted behaviour (read, and updated, per call):
      "locked": N            the next N preview/up/refresh/destroy fail with the DIY lock error
                             (-1: until `pulumi cancel`)
      "fail": {"up": reason} the operation fails on its first changed resource with `error: reason`
      "program_error": msg   the inline program "raises": python inline source runtime error
      "pending": true        up warns about pending operations from an interrupted update
      "drift": N             refresh finds N resources changed
      "sleep": seconds       up sleeps after starting; the first SIGINT cancels it gracefully, a
                             second terminates it, like the real CLI; "sigints" counts them
      "cancel_delay": seconds how long a cancelled update takes to finish its steps in flight
      "lose_init_race": true the next `stack init` finds that another run created the stack
                             first ("already exists"), as when first runs race
      "leak": true           failure texts include the passphrase (to test scrubbing)
      "broken_version": true `pulumi version` exits 1
      "plugin_install_fails": reason
  FAKE_PULUMI_VERSION  what `pulumi version` prints (default 3.272.0). Above 3.205.0 the automation
                       code streams engine events over gRPC (`--event-log tcp://...`); at or below
                       it, it tails a file (`--event-log /tmp/.../eventlog.txt`). Both work here.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import queue
import signal
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

LOGGED_ENV = (
    "PULUMI_BACKEND_URL",
    "PULUMI_CONFIG_PASSPHRASE",
    "PULUMI_CONFIG_PASSPHRASE_FILE",
    "PULUMI_SKIP_UPDATE_CHECK",
    "PULUMI_HOME",
    "PULUMI_AUTOMATION_API",
    "PULUMI_DEBUG_COMMANDS",
)
VALUE_FLAGS = {
    "--stack",
    "-s",
    "--event-log",
    "--client",
    "--exec-kind",
    "--color",
    "--message",
    "-m",
    "--target",
    "--secrets-provider",
    "--page-size",
    "--page",
    "--plaintext",
    "--secret",
    "--parallel",
    "--cwd",
    "-C",
    "--server",
    "--json-input",
    "--config-file",
}
REPEATED = {"--target", "--plaintext", "--secret"}
LOCK_TEXT = (
    "error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) "
    "to end or delete the lock file with `pulumi cancel`.\n"
    "  {backend}/.pulumi/locks/organization/{project}/{stack}/1f2e.json: created by "
    "ci@runner-7 (pid 4242) at 2025-01-01T10:00:00Z"
)
NO_PASSPHRASE = (
    "error: getting secrets manager: passphrase must be set with PULUMI_CONFIG_PASSPHRASE or "
    "PULUMI_CONFIG_PASSPHRASE_FILE environment variables"
)
BAD_PASSPHRASE = (
    "error: getting secrets manager: incorrect passphrase, please set PULUMI_CONFIG_PASSPHRASE "
    "to the correct passphrase or set PULUMI_CONFIG_PASSPHRASE_FILE to a file containing the "
    "passphrase"
)


class Fail(Exception):
    def __init__(self, stderr: str, stdout: str = "", code: int = 255) -> None:
        super().__init__(stderr)
        self.stderr, self.stdout, self.code = stderr, stdout, code


# --- argv ----------------------------------------------------------------------------------


def parse(argv: list[str]) -> tuple[list[str], dict[str, Any], list[str]]:
    words: list[str] = []
    flags: dict[str, Any] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            rest = argv[i + 1 :]
            break
        if a.startswith("-"):
            name, eq, value = a.partition("=")
            if name in VALUE_FLAGS and not eq:
                i += 1
                value = argv[i]
            elif not eq:
                value = "true"
            if name in REPEATED:
                flags.setdefault(name, []).append(value)
            else:
                flags[name] = value
        else:
            words.append(a)
        i += 1
    return words, flags, rest


# --- control, state ------------------------------------------------------------------------


def control() -> dict[str, Any]:
    path = os.environ.get("FAKE_PULUMI_CONTROL")
    if not path or not os.path.exists(path):
        return {}
    return json.loads(Path(path).read_text() or "{}")


def save_control(data: dict[str, Any]) -> None:
    path = os.environ.get("FAKE_PULUMI_CONTROL")
    if path:
        Path(path).write_text(json.dumps(data))


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "000Z"


class Workspace:
    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        project_file = cwd / "Pulumi.yaml"
        self.settings = yaml.safe_load(project_file.read_text()) if project_file.exists() else {}
        self.project = self.settings.get("name", "")
        self.backend = os.environ.get("PULUMI_BACKEND_URL") or (
            self.settings.get("backend") or {}
        ).get("url")
        if not self.backend:
            raise Fail(
                "error: PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI "
                "sessions"
            )
        if self.backend.startswith("file://"):
            # The DIY backend's layout: <dir>/.pulumi/stacks/<project>/<stack>.json
            # (pulumi/pulumi pkg/backend/diy/store.go, projectReferenceStore.StackBasePath).
            root = Path(urllib.parse.unquote(urllib.parse.urlparse(self.backend).path))
            self.dir = root / ".pulumi" / "stacks" / self.project
        else:
            root = Path(os.environ["FAKE_PULUMI_STATE"])
            key = hashlib.sha256(self.backend.encode()).hexdigest()[:12]
            self.dir = root / "backends" / key / self.project

    def stack_path(self, stack: str) -> Path:
        return self.dir / f"{stack}.json"

    def load(self, stack: str) -> dict[str, Any]:
        path = self.stack_path(stack)
        if not path.exists():
            raise Fail(f"error: no stack named '{stack}' found")
        return json.loads(path.read_text())

    def save(self, stack: str, state: dict[str, Any]) -> None:
        # Written to a temporary file and renamed, as gocloud's fileblob writes blobs.
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{stack}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, self.stack_path(stack))

    # Stack config lives in the workspace (Pulumi.<stack>.yaml), as with the real CLI.
    def config_file(self, stack: str) -> Path:
        return self.cwd / f"Pulumi.{stack.split('/')[-1]}.yaml"

    def read_settings(self, stack: str) -> dict[str, Any]:
        f = self.config_file(stack)
        return (yaml.safe_load(f.read_text()) or {}) if f.exists() else {}

    def write_settings(self, stack: str, settings: dict[str, Any]) -> None:
        self.config_file(stack).write_text(yaml.safe_dump(settings))

    def config(self, stack: str) -> dict[str, tuple[str, bool]]:
        out: dict[str, tuple[str, bool]] = {}
        for key, value in (self.read_settings(stack).get("config") or {}).items():
            if isinstance(value, dict) and "secure" in value:
                out[key] = (base64.b64decode(value["secure"][3:]).decode(), True)
            else:
                out[key] = (str(value), False)
        return out


def passphrase() -> str | None:
    if "PULUMI_CONFIG_PASSPHRASE" in os.environ:
        return os.environ["PULUMI_CONFIG_PASSPHRASE"]
    path = os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    if path:
        try:
            return Path(path).read_text().rstrip("\n")
        except OSError:
            raise Fail(f"error: unable to read PULUMI_CONFIG_PASSPHRASE_FILE: {path}") from None
    return None


def check_passphrase(state: dict[str, Any]) -> None:
    if state.get("secrets_provider") != "passphrase":
        return
    given = passphrase()
    if given is None:
        raise Fail(NO_PASSPHRASE)
    if hashlib.sha256(given.encode()).hexdigest() != state["passphrase_sha"]:
        raise Fail(BAD_PASSPHRASE)


def check_lock(ws: Workspace, stack: str) -> None:
    ctl = control()
    locked = ctl.get("locked", 0)
    if locked:
        if locked > 0:
            ctl["locked"] = locked - 1
            save_control(ctl)
        raise Fail(LOCK_TEXT.format(backend=ws.backend, project=ws.project, stack=stack))


# --- events --------------------------------------------------------------------------------


class Events:
    """Writes engine events where `--event-log` says: a gRPC stream (tcp://) or a file."""

    def __init__(self, target: str | None) -> None:
        self.target = target
        self.seq = 0
        self.q: queue.Queue[str | None] = queue.Queue()
        self.future: Any = None
        if target and target.startswith("tcp://"):
            import grpc

            channel = grpc.insecure_channel(target[len("tcp://") :])
            call = channel.stream_unary(
                "/pulumirpc.Events/StreamEvents",
                request_serializer=_event_request,
                response_deserializer=lambda b: b,
            )
            self.future = call.future(iter(self.q.get, None))

    def emit(self, **event: Any) -> None:
        if not self.target:
            return
        self.seq += 1
        line = json.dumps({"sequence": self.seq, "timestamp": int(time.time()), **event})
        if self.future is not None:
            self.q.put(line)
        else:
            with open(self.target, "a", encoding="utf-8") as f:
                f.write(line + "\n")

    def close(self) -> None:
        self.emit(cancelEvent={})
        if self.future is not None:
            self.q.put(None)
            self.future.result(timeout=10)


def _event_request(event: str) -> bytes:
    """EventRequest{event: string = 1} encoded by hand, so the fake needs no generated code."""
    data = event.encode()
    size, varint = len(data), bytearray()
    while True:
        byte = size & 0x7F
        size >>= 7
        varint.append(byte | (0x80 if size else 0))
        if not size:
            break
    return b"\x0a" + bytes(varint) + data


# --- the "program": resources derived from mlserve's stack config ---------------------------


def desired(
    ws: Workspace, stack: str, config: dict[str, tuple[str, bool]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(resources by URN, outputs) the program would declare for this config."""
    urn = lambda t, n: f"urn:pulumi:{stack}::{ws.project}::{t}::{n}"  # noqa: E731
    stack_urn = urn("pulumi:pulumi:Stack", f"{ws.project}-{stack}")
    resources: dict[str, Any] = {
        stack_urn: {"type": "pulumi:pulumi:Stack", "name": f"{ws.project}-{stack}", "inputs": {}}
    }
    if "mlserve:spec" not in config or "mlserve:traffic" not in config:
        return resources, {}
    spec = json.loads(config["mlserve:spec"][0])
    traffic = json.loads(config["mlserve:traffic"][0])
    name, ns = spec["name"], spec.get("namespace", "default")
    weights = {traffic["stable"]: 100 - traffic.get("weight", 0)}
    if traffic.get("canary"):
        weights[traffic["canary"]] = traffic.get("weight", 0)
    for v in spec["versions"]:
        if not v.get("image"):
            continue
        n = f"{name}-{v['name']}"
        meta = {"name": n, "namespace": ns}
        resources[urn("kubernetes:apps/v1:Deployment", n)] = {
            "type": "kubernetes:apps/v1:Deployment",
            "name": n,
            "inputs": {
                "metadata": meta,
                "spec": {"replicas": v.get("replicas", 1), "image": v["image"]},
            },
        }
        resources[urn("kubernetes:core/v1:Service", n)] = {
            "type": "kubernetes:core/v1:Service",
            "name": n,
            "inputs": {"metadata": meta, "spec": {"ports": [{"port": v.get("port", 8080)}]}},
        }
    route_type = {
        "istio": "kubernetes:networking.istio.io/v1:VirtualService",
        "gateway-api": "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute",
        "ingress-nginx": "kubernetes:networking.k8s.io/v1:Ingress",
        "kong": "kong:index/upstream:Upstream",
        "azure-apim": "azure-native:apimanagement:Backend",
    }[spec["gateway"]["type"]]
    routes = [{"destination": {"subset": v}, "weight": w} for v, w in weights.items()]
    route_urn = urn(route_type, name)
    resources[route_urn] = {
        "type": route_type,
        "name": name,
        "inputs": {"metadata": {"name": name}, "spec": {"http": [{"route": routes}]}},
    }
    gw = spec["gateway"]
    endpoint = f"http://{gw.get('host', name)}{gw.get('path', '/')}"
    outputs = {"endpoint": endpoint, "traffic": traffic, "weights": weights, "routing": [route_urn]}
    return resources, outputs


def plan_steps(
    old: dict[str, Any], new: dict[str, Any], targets: list[str] | None
) -> list[tuple[str, str, Any, Any]]:
    steps = []
    for u, res in new.items():
        if targets and u not in targets:
            if u in old:
                steps.append(("same", u, old[u], old[u]))
            continue
        if u not in old:
            steps.append(("create", u, None, res))
        elif old[u]["inputs"] != res["inputs"]:
            steps.append(("update", u, old[u], res))
        else:
            steps.append(("same", u, old[u], res))
    for u, res in old.items():
        if u not in new and not (targets and u not in targets):
            steps.append(("delete", u, res, None))
        elif u not in new:
            steps.append(("same", u, res, res))
    # deletes run last, in reverse
    return [s for s in steps if s[0] != "delete"] + [s for s in steps if s[0] == "delete"][::-1]


def diff_paths(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += diff_paths(a.get(k), b.get(k), f"{path}.{k}" if path else k)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out += diff_paths(x, y, f"{path}[{i}]")
        return out
    return [] if a == b else [path]


def state_meta(u: str, res: dict[str, Any] | None) -> dict[str, Any] | None:
    if res is None:
        return None
    return {
        "type": res["type"],
        "urn": u,
        "id": res["name"],
        "parent": "",
        "provider": "",
        "custom": res["type"] != "pulumi:pulumi:Stack",
        "inputs": res["inputs"],
        "outputs": res["inputs"],
    }


def metadata(op: str, u: str, old: Any, new: Any) -> dict[str, Any]:
    res = new or old
    m: dict[str, Any] = {
        "op": op,
        "urn": u,
        "type": res["type"],
        "provider": "",
        "old": state_meta(u, old),
        "new": state_meta(u, new),
    }
    if op == "update":
        paths = diff_paths(old["inputs"], new["inputs"])
        m["diffs"] = sorted({p.split(".")[0].split("[")[0] for p in paths})
        m["detailedDiff"] = {p: {"diffKind": "update", "inputDiff": True} for p in paths}
    return m


# --- commands ------------------------------------------------------------------------------


class Result:
    def __init__(self) -> None:
        self.out: list[str] = []

    def print(self, line: str = "") -> None:
        self.out.append(line)


def cmd_version(r: Result) -> None:
    if control().get("broken_version"):
        raise Fail("panic: broken install", code=1)
    r.print("v" + os.environ.get("FAKE_PULUMI_VERSION", "3.272.0"))


def cmd_stack(ws: Workspace, sub: str, flags: dict[str, Any], args: list[str], r: Result) -> None:
    stack = flags.get("--stack") or (args[0] if args else "")
    if sub == "select":
        ws.load(stack)
        # The CLI records the selected stack under PULUMI_HOME, not in the project directory
        # (pulumi/pulumi sdk/go/common/workspace/workspace.go, projectWorkspace.settingsPath).
        selected = Path(os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi") / "workspaces"
        selected.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha1(str(ws.cwd / "Pulumi.yaml").encode()).hexdigest()
        (selected / f"{ws.project}-{key}-workspace.json").write_text(json.dumps({"stack": stack}))
    elif sub == "init":
        ctl = control()
        if ctl.pop("lose_init_race", False):
            save_control(ctl)
            ws.save(
                stack,
                {
                    "secrets_provider": "service",
                    "resources": {},
                    "outputs": {},
                    "history": [],
                    "pending": [],
                },
            )
        if ws.stack_path(stack).exists():
            # pkg/backend/diy/backend.go CreateStack: backenderr.StackAlreadyExistsError
            raise Fail(f"error: stack '{stack}' already exists")
        state: dict[str, Any] = {
            "secrets_provider": flags.get("--secrets-provider", "service"),
            "resources": {},
            "outputs": {},
            "history": [],
            "pending": [],
        }
        if state["secrets_provider"] == "passphrase":
            given = passphrase()
            if given is None:
                raise Fail(NO_PASSPHRASE)
            state["passphrase_sha"] = hashlib.sha256(given.encode()).hexdigest()
            settings = ws.read_settings(stack)
            settings["encryptionsalt"] = "v1:ZmFrZXNhbHQ=:v1:ZmFrZQ==:ZmFrZQ=="
            ws.write_settings(stack, settings)
        ws.save(stack, state)
        r.print(f"Created stack '{stack}'")
    elif sub == "rm":
        state = ws.load(stack)
        if state["resources"] and "--force" not in flags:
            raise Fail(
                f"error: '{stack}' still has resources; removal rejected. Possible actions:\n"
                "- Make sure that '{stack}' is the stack that you want to destroy"
            )
        ws.stack_path(stack).unlink()
        ws.config_file(stack).unlink(missing_ok=True)
    elif sub == "output":
        state = ws.load(stack)
        show = "--show-secrets" in flags
        if show:
            check_passphrase(state)
        secret = set(state.get("secret_outputs", []))
        r.print(
            json.dumps(
                {
                    k: (v if show or k not in secret else "[secret]")
                    for k, v in state["outputs"].items()
                }
            )
        )
    elif sub == "history":
        state = ws.load(stack)
        show = "--show-secrets" in flags
        entries = list(reversed(state["history"]))
        if "--page-size" in flags:
            size, page = int(flags["--page-size"]), int(flags.get("--page", 1))
            entries = entries[(page - 1) * size : page * size]
        out = []
        for e in entries:
            e = dict(e)
            e["config"] = {
                k: ({"value": v["value"], "secret": True} if show else {"secret": True})
                if v["secret"]
                else v
                for k, v in e["config"].items()
            }
            out.append(e)
        r.print(json.dumps(out))
    else:
        raise Fail(f"error: unknown command 'stack {sub}'")


def cmd_config(ws: Workspace, sub: str, flags: dict[str, Any], args: list[str], r: Result) -> None:
    stack = flags["--stack"]
    state = ws.load(stack)
    settings = ws.read_settings(stack)
    cfg = settings.setdefault("config", {})
    if sub == "set-all":
        for item in flags.get("--plaintext", []):
            k, _, v = item.partition("=")
            cfg[k] = v
        for item in flags.get("--secret", []):
            check_passphrase(state)
            k, _, v = item.partition("=")
            cfg[k] = {"secure": "v1:" + base64.b64encode(v.encode()).decode()}
        ws.write_settings(stack, settings)
    elif sub == "set":
        key, value = args[0], rest_value(flags)
        if "--secret" in flags:
            check_passphrase(state)
            cfg[key] = {"secure": "v1:" + base64.b64encode(value.encode()).decode()}
        else:
            cfg[key] = value
        ws.write_settings(stack, settings)
    elif sub == "get":
        values = ws.config(stack)
        if args[0] not in values:
            raise Fail(f"error: configuration key '{args[0]}' not found for stack '{stack}'")
        value, secret = values[args[0]]
        r.print(json.dumps({"value": value, "secret": secret}))
    elif sub == "rm":
        cfg.pop(args[0], None)
        ws.write_settings(stack, settings)
    elif sub == "":
        if "--show-secrets" in flags:
            check_passphrase(state)
        r.print(
            json.dumps({k: {"value": v, "secret": s} for k, (v, s) in ws.config(stack).items()})
        )
    else:
        raise Fail(f"error: unknown command 'config {sub}'")


REST: list[str] = []


def rest_value(flags: dict[str, Any]) -> str:
    return REST[0] if REST else ""


def cmd_plugin(sub: str, args: list[str], flags: dict[str, Any], r: Result) -> None:
    home = Path(os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi") / "plugins"
    if sub == "ls":
        out = []
        for d in sorted(home.glob("*-*-v*")) if home.exists() else []:
            if not d.is_dir():
                continue
            kind, rest = d.name.split("-", 1)
            name, _, version = rest.rpartition("-v")
            stamp = now()
            out.append(
                {
                    "name": name,
                    "kind": kind,
                    "version": version,
                    "size": 1024,
                    "installTime": stamp,
                    "lastUsedTime": stamp,
                }
            )
        r.print(json.dumps(out))
    elif sub == "install":
        reason = control().get("plugin_install_fails")
        if reason:
            raise Fail(f"error: {reason}")
        kind, name, version = args[0], args[1], args[2].lstrip("v")
        (home / f"{kind}-{name}-v{version}").mkdir(parents=True, exist_ok=True)
        r.print(f"[{kind} plugin {name}-{version}] installing")
    else:
        raise Fail(f"error: unknown command 'plugin {sub}'")


def cmd_cancel(ws: Workspace, flags: dict[str, Any], r: Result) -> None:
    stack = flags.get("--stack") or REST[0]
    ws.load(stack)
    ctl = control()
    ctl["locked"] = 0
    save_control(ctl)
    r.print(f"The currently running update for '{stack}' has been canceled!")


def history_entry(
    state: dict[str, Any], kind: str, message: str, config: Any, result: str, changes: Any
) -> None:
    state["history"].append(
        {
            "version": len(state["history"]) + 1,
            "kind": kind,
            "startTime": now(),
            "endTime": now(),
            "message": message,
            "environment": {"exec.kind": "auto.inline"},
            "config": {k: {"value": v, "secret": s} for k, (v, s) in config.items()},
            "result": result,
            "resourceChanges": changes,
        }
    )


def operation(ws: Workspace, op: str, flags: dict[str, Any], r: Result) -> None:
    """preview, up, refresh and destroy: events, state, history, scripted failures."""
    stack = flags["--stack"]
    state = ws.load(stack)
    check_passphrase(state)
    check_lock(ws, stack)
    ctl = control()
    config = ws.config(stack)
    events = Events(flags.get("--event-log"))
    preview = op == "preview" or "--preview-only" in flags
    verb = {"preview": "Previewing update", "up": "Updating", "refresh": "Refreshing"}.get(
        op, "Destroying"
    )
    r.print(f"{verb} ({stack}):")
    events.emit(
        preludeEvent={"config": {k: ("[secret]" if s else v) for k, (v, s) in config.items()}}
    )
    old = state["resources"]
    if op == "destroy":
        new, outputs = {}, {}
    elif op == "refresh":
        new, outputs = old, state["outputs"]
    else:
        new, outputs = desired(ws, stack, config)
    steps = plan_steps(old, new, flags.get("--target"))
    if op == "refresh":
        drift = int(ctl.get("drift", 0))
        steps = [
            ("update" if i < drift else "same", u, a, b) for i, (_, u, a, b) in enumerate(steps)
        ]
    changes: dict[str, int] = {}
    failure = (ctl.get("fail") or {}).get(op)
    leak = f" (passphrase was {passphrase()})" if ctl.get("leak") else ""
    stack_urn = f"urn:pulumi:{stack}::{ws.project}::pulumi:pulumi:Stack::{ws.project}-{stack}"

    def finish(result: str, err: str | None = None, stdout_extra: list[str] = ()) -> None:
        if not preview and op != "preview":
            history_entry(
                state,
                "update" if op == "up" else op,
                flags.get("--message", ""),
                config,
                result,
                changes,
            )
        events.emit(
            summaryEvent={
                "maybeCorrupt": False,
                "durationSeconds": 1,
                "resourceChanges": changes,
                "PolicyPacks": {},
            }
        )
        events.close()
        for line in stdout_extra:
            r.print(line)
        r.print("Resources:")
        for k, n in sorted(changes.items()):
            r.print(f"    {n} {k}")
        ws.save(stack, state)
        if err is not None:
            raise Fail(err, stdout="\n".join(r.out))

    if ctl.get("program_error") and op in ("preview", "up"):
        msg = ctl["program_error"] + leak
        events.emit(
            diagnosticEvent={
                "urn": stack_urn,
                "message": f"python inline source runtime error: {msg}\nTraceback (most recent "
                'call last):\n  File "program.py", line 1\n',
                "color": "never",
                "severity": "error",
            }
        )
        finish(
            "failed",
            f"error: {op} failed",
            [
                "Diagnostics:",
                f"  pulumi:pulumi:Stack ({ws.project}-{stack}):",
                f"    error: python inline source runtime error: {msg}",
                "    Traceback (most recent call last):",
                "    error: an unhandled error occurred: Program exited with non-zero exit code: 1",
            ],
        )
    if ctl.get("pending") and op == "up":
        r.print(
            "warning: Attempting to deploy or update resources with 1 pending operations from "
            "previous deployment."
        )
        events.emit(
            diagnosticEvent={
                "message": "Attempting to deploy or update resources with 1 pending operations "
                "from previous deployment.\n",
                "color": "never",
                "severity": "warning",
            }
        )
    canceled = threading.Event()
    if op == "up" and ctl.get("sleep"):
        # pkg/cmd/pulumi/operations (cancellationScopeSource.NewScope): the first SIGINT cancels
        # gracefully, the second terminates at once. Only os.Interrupt is caught: SIGTERM kills.
        def on_sigint(*_: Any) -> None:
            ctl["sigints"] = ctl.get("sigints", 0) + 1
            save_control(ctl)
            if canceled.is_set():
                print("^C received; terminating", flush=True)
                os._exit(255)
            canceled.set()

        signal.signal(signal.SIGINT, on_sigint)
    applied = dict(old)
    slept = False
    for i, (kind, u, a, b) in enumerate(steps):
        meta = metadata(kind, u, a, b)
        events.emit(resourcePreEvent={"metadata": meta, "planning": preview})
        custom = (b or a)["type"] != "pulumi:pulumi:Stack"
        if (
            kind != "same"
            and custom
            and failure
            and not any(
                k != "same" and (y or x)["type"] != "pulumi:pulumi:Stack"
                for k, _, x, y in steps[:i]
            )
        ):
            res = b or a
            reason = failure + leak
            events.emit(
                diagnosticEvent={
                    "urn": u,
                    "message": f"{reason}\n",
                    "color": "never",
                    "severity": "error",
                }
            )
            events.emit(resOpFailedEvent={"metadata": meta, "status": 1, "steps": 1})
            finish(
                "failed",
                f"error: {op} failed",
                [
                    "Diagnostics:",
                    f"  {res['type']} ({res['name']}):",
                    f"    error: {reason}",
                    "",
                    f"  pulumi:pulumi:Stack ({ws.project}-{stack}):",
                    f"    error: {op} failed",
                ],
            )
        if op == "up" and ctl.get("sleep") and custom and not slept:
            slept = True
            deadline = time.time() + float(ctl["sleep"])
            while time.time() < deadline and not canceled.is_set():
                time.sleep(0.02)
            if canceled.is_set():
                r.print(
                    "^C received; cancelling. If you would like to terminate immediately, "
                    "press ^C again."
                )
                # The steps in flight finish before the cancelled update ends.
                time.sleep(float(ctl.get("cancel_delay", 0)))
                finish("failed", "error: update canceled")
        if kind != "same":
            changes[kind] = changes.get(kind, 0) + 1
            if not preview:
                if kind == "delete":
                    applied.pop(u, None)
                else:
                    applied[u] = b
        else:
            changes["same"] = changes.get("same", 0) + 1
        r.print(f" {kind} {(b or a)['type']} {(b or a)['name']}")
        events.emit(resOutputsEvent={"metadata": meta, "planning": preview})
    if not preview:
        if op in ("up", "destroy"):
            state["resources"] = applied
            state["outputs"] = outputs if op == "up" else {}
        if op == "refresh" and "--clear-pending-creates" in flags:
            state["pending"] = []
    finish("succeeded")


def main(argv: list[str]) -> int:
    log = os.environ.get("FAKE_PULUMI_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            entry = {
                "argv": argv,
                "cwd": os.getcwd(),
                "env": {k: os.environ[k] for k in LOGGED_ENV if k in os.environ},
                "pid": os.getpid(),
            }
            f.write(json.dumps(entry) + "\n")
    words, flags, rest = parse(argv)
    REST[:] = rest
    r = Result()
    try:
        if words[:1] == ["version"]:
            cmd_version(r)
        elif words[:1] == ["plugin"]:
            cmd_plugin(words[1], words[2:], flags, r)
        else:
            ws = Workspace(Path(os.getcwd()))
            if words[:1] == ["stack"]:
                cmd_stack(ws, words[1] if len(words) > 1 else "", flags, words[2:] or rest, r)
            elif words[:1] == ["config"]:
                cmd_config(ws, words[1] if len(words) > 1 else "", flags, words[2:], r)
            elif words[:1] == ["cancel"]:
                cmd_cancel(ws, flags, r)
            elif words[:1] in (["preview"], ["up"], ["refresh"], ["destroy"]):
                operation(ws, words[0], flags, r)
            else:
                raise Fail(f'error: unknown command {" ".join(words)!r} for "pulumi"')
    except Fail as e:
        if e.stdout:
            print(e.stdout)
        print(e.stderr, file=sys.stderr)
        return e.code
    print("\n".join(r.out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
