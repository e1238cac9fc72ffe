"""The only door to `pulumi.automation`: workspace, stack, operations, events and error mapping.

One `Engine` serves one mlserve command: one `PulumiCommand` (one `pulumi version` check; two
when `mlserve setup` installed a CLI under MLSERVE_HOME and another is on PATH, since the newest
wins), one persistent workspace per project under MLSERVE_HOME, one `Stack` object reused by
every operation. Every failure of the Automation API is turned into an mlserve error in `map_error`,
with secret values scrubbed from the text.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.metadata
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TypeVar

import yaml
from pulumi import automation as auto
from pulumi.automation._server import LanguageServer
from pulumi.automation._stack import StackInitMode
from pulumi.automation.errors import create_command_error
from semver import VersionInfo

from mlserve import redact
from mlserve.errors import (
    EngineUnavailableError,
    Interrupted,
    MlserveError,
    OperationFailedError,
    PreconditionError,
    StackBusyError,
    UsageError,
)
from mlserve.redact import credentials, secret_forms

# refresh and destroy of an inline program need `--client`, added in 3.181 (_check_inline_support).
MIN_CLI_VERSION = "3.181.0"
INSTALL_HINT = "run `mlserve setup`, or install Pulumi from https://www.pulumi.com/docs/install/"
# Provider plugin -> the Python SDK whose version it must match.
PLUGIN_PACKAGES: Mapping[str, str] = {
    "kubernetes": "pulumi-kubernetes",
    "kong": "pulumi-kong",
    "azure-native": "pulumi-azure-native",
}
# The engine's own lines that follow a failed step: "Resource monitor has terminated" is the
# Python SDK's program finding the engine gone (sdk/python/lib/pulumi/runtime/settings.py).
_GENERIC_ERRORS = re.compile(
    r"^(update|preview|destroy|refresh) (failed|canceled)$|^an unhandled error occurred"
    r"|^Resource monitor has terminated"
    # A failed step's registration, as some SDKs (3.260) raise it in the program: the step's own
    # error says why.
    r"|failed to register\W*$"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m|<\{%[^%]*%\}>")
# InstallPluginError (pkg/workspace/plugins.go); "no resource plugin ... found" when automatic
# acquisition is off (PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION).
_MISSING_PLUGIN = re.compile(
    r"(?:Could not automatically download and install resource plugin|no resource plugin) "
    r"'pulumi-resource-([\w.-]+)'(?: found in the workspace)?,?(?: at version v([\w.+-]+))?"
)
# A --target URN neither in the stack nor registered (diag 2010/2011, deployment_executor.go
# `checkTargets`); a targeted resource that depends on a create that is not targeted, and a delete
# that is not targeted (diag 2013 and 2014, step_generator.go); and a provider version changed
# under --target (step_generator.go). The codes: sdk/go/common/diag/errors.go.
_TARGET_FAILURE = re.compile(
    r"could not be found in the stack|has not been registered yet|"
    r"was not specified in --target list"
)

T = TypeVar("T")


# --- settings: home, backend, passphrase, durations ---------------------------------------


def mlserve_home() -> Path:
    return Path(os.path.abspath(Path(os.environ.get("MLSERVE_HOME") or "~/.mlserve").expanduser()))


def pinned_cli_version() -> str:
    """The CLI version `mlserve setup` installs: the one the installed Pulumi SDK was built with."""
    return importlib.metadata.version("pulumi")


def parse_duration(text: str) -> float:
    """`0`, `45s`, `5m`, `1h` or plain seconds, as seconds; anything else is a usage error."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m:
        raise UsageError(
            f"--lock-timeout: {text!r} is not a duration (use 0, 45s, 5m or 1h; "
            "a plain number is seconds)"
        )
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def format_duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


class SettingError(EngineUnavailableError):
    """A file, directory or passphrase mlserve needs is unusable: what is wrong and the fix."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}: {fix}")
        self.problem, self.fix = problem, fix


HOME_FIX = "make it writable, or set MLSERVE_HOME to a directory you can write"


def ensure_dir(path: Path, what: str, fix: str = HOME_FIX) -> None:
    """Create a directory mlserve keeps things in; a clear error naming it when that fails."""
    if path.is_dir():
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise SettingError(f"{what} {path} exists and is not a directory", fix) from None
    except OSError as e:
        raise SettingError(f"cannot create {what} {path} ({e.strerror})", fix) from None


# The backend URLs the Pulumi CLI accepts. It opens a DIY backend for the schemes of the blob
# drivers it links, file, s3, azblob and gs, and postgres (pkg/backend/diy/backend.go,
# IsDIYBackendURL and its imports); every other URL goes to the Pulumi Cloud backend
# (pkg/cmd/pulumi/backend: httpstate), which speaks HTTP(S).
DIY_SCHEMES = ("file", "s3", "azblob", "gs", "postgres")
CLOUD_SCHEMES = ("https", "http")
BACKEND_FORMS = (
    "file://DIR, s3://BUCKET, azblob://CONTAINER, gs://BUCKET, postgres://HOST/DB, "
    "or https://api.pulumi.com for Pulumi Cloud"
)


def default_backend(home: Path) -> str:
    return (home / "state").as_uri()


def resolve_backend(flag: str | None, home: Path) -> tuple[str, bool]:
    """(backend URL, whether it is the local default): --backend, env, then the default.

    A file URL is made absolute against the user's directory (the CLI would resolve it against
    the workspace it runs in) and the default is recognised however it is written.
    """
    given = [
        ("--backend", flag),
        ("MLSERVE_BACKEND_URL", os.environ.get("MLSERVE_BACKEND_URL")),
        ("PULUMI_BACKEND_URL", os.environ.get("PULUMI_BACKEND_URL")),
    ]
    source, url = next(((s, u) for s, u in given if u), ("", None))
    if url is None:
        return default_backend(home), True
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in DIY_SCHEMES + CLOUD_SCHEMES:
        raise UsageError(
            f"{source} {url!r} is not a backend URL the Pulumi CLI accepts: use {BACKEND_FORMS}"
        )
    location, _, query = rest.partition("?")
    if not location:
        raise UsageError(f"{source} {url!r} names no location: use {BACKEND_FORMS}")
    if scheme != "file":
        return url, False
    # pkg/backend/diy/backend.go massageBlobPath: `~` is the home directory, then filepath.Abs.
    path = Path(os.path.abspath(Path(urllib.parse.unquote(location)).expanduser()))
    default = home / "state"
    if not query and (path == default or path.resolve() == default.resolve()):
        return default_backend(home), True
    return path.as_uri() + (f"?{query}" if query else ""), False


def is_cloud_backend(url: str) -> bool:
    return url.startswith(("https://", "http://"))


def file_backend_dir(url: str) -> Path | None:
    if not url.startswith("file://"):
        return None
    return Path(urllib.parse.unquote(urllib.parse.urlparse(url).path))


def stored_stacks(backend_dir: Path) -> list[str]:
    """The stacks a file backend holds, as PROJECT/STACK (or STACK in the legacy layout).

    The DIY backend keeps each stack in .pulumi/stacks/<project>/<stack>.json, compressed as
    .json.gz (PULUMI_DIY_BACKEND_GZIP) or .json.zst (PULUMI_DIY_BACKEND_ZSTD)
    (pkg/backend/diy/store.go, projectReferenceStore.StackBasePath; state.go).
    """
    root = backend_dir / ".pulumi" / "stacks"
    try:
        files = [p for p in root.rglob("*.json*") if p.is_file()]
    except OSError:
        return []
    stacks = set()
    for p in files:
        name = str(p.relative_to(root))
        for suffix in (".json", ".json.gz", ".json.zst"):
            if name.endswith(suffix):
                stacks.add(name.removesuffix(suffix))
    return sorted(stacks)


def workspace_dir(home: Path, project: str, backend: str, is_default: bool) -> Path:
    # Pulumi.<stack>.yaml (config and the passphrase salt) lives here, so one per backend.
    suffix = "" if is_default else "." + hashlib.sha256(backend.encode()).hexdigest()[:8]
    return home / "workspaces" / f"{project}{suffix}"


@dataclass(frozen=True)
class Passphrase:
    env: Mapping[str, str]  # what to add to the CLI's environment
    secrets_provider: str | None  # for `stack init`; None: the backend's default
    secret: str | None  # the passphrase itself, to scrub from messages
    created: Path | None = None  # set when this call created the passphrase file


PASSPHRASE_VARS = "PULUMI_CONFIG_PASSPHRASE_FILE (or PULUMI_CONFIG_PASSPHRASE)"


def passphrase_path(home: Path) -> Path:
    return home / "passphrase"


def resolve_passphrase(
    home: Path, backend: str, is_default: bool, create: bool = True
) -> Passphrase:
    """Passphrase from the environment; for the local default backend, a generated 0600 file.

    The file is generated only while the backend holds no stack (a new one would not open
    them); with create=False nothing is written and a missing file gives secret None.
    """
    if "PULUMI_CONFIG_PASSPHRASE" in os.environ:
        # Inherited by the CLI from os.environ; never copied into env_vars (it shows in reprs).
        return Passphrase({}, "passphrase", os.environ["PULUMI_CONFIG_PASSPHRASE"])
    given = os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    if given:
        path = Path(given).expanduser().absolute()
        secret = _read_passphrase(
            path,
            f"PULUMI_CONFIG_PASSPHRASE_FILE={given}",
            "point PULUMI_CONFIG_PASSPHRASE_FILE at the file holding the passphrase",
        )
        return Passphrase({"PULUMI_CONFIG_PASSPHRASE_FILE": str(path)}, "passphrase", secret)
    if is_cloud_backend(backend):
        return Passphrase({}, None, None)
    if not is_default:
        raise SettingError(
            f"the backend {backend} keeps stack secrets with a passphrase and none is set",
            "export PULUMI_CONFIG_PASSPHRASE_FILE=<file holding the team's passphrase> "
            "(or PULUMI_CONFIG_PASSPHRASE)",
        )
    path = passphrase_path(home)
    env = {"PULUMI_CONFIG_PASSPHRASE_FILE": str(path)}
    created = None
    if not os.path.lexists(path):
        stacks = stored_stacks(home / "state")
        if stacks:
            shown = ", ".join(stacks[:3]) + (f" and {len(stacks) - 3} more" if stacks[3:] else "")
            raise SettingError(
                f"the passphrase file {path} is missing, but {default_backend(home)} holds "
                f"stacks encrypted with the passphrase it held ({shown}); mlserve will not make "
                "a new one, which could not open them",
                f"restore {path} from a backup, or export {PASSPHRASE_VARS} with that passphrase",
            )
        if not create:
            return Passphrase(env, "passphrase", None)
        created = _create_passphrase_file(path)
    secret = _read_passphrase(path, str(path), f"restore it, or export {PASSPHRASE_VARS}")
    if not secret:
        raise SettingError(
            f"the passphrase file {path} is empty", f"restore it, or export {PASSPHRASE_VARS}"
        )
    return Passphrase(env, "passphrase", secret, created)


# What Go's strings.TrimSpace removes from both ends of a passphrase file (the CLI reads it so:
# pkg/secrets/passphrase/manager.go `readPassphrase`): unicode.IsSpace, the Unicode White_Space
# characters. Python's str.strip() also removes U+001C-U+001F, which Go keeps.
GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _read_passphrase(path: Path, name: str, fix: str) -> str:
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        problem = f"{name} is a directory, not a file holding the passphrase"
        raise SettingError(problem, fix) from None
    except OSError as e:
        raise SettingError(f"{name}: cannot read it ({e.strerror})", fix) from None
    try:
        return data.decode("utf-8").strip(GO_SPACE)
    except UnicodeDecodeError:
        raise SettingError(f"{name} is not UTF-8 text", fix) from None


def _create_passphrase_file(path: Path) -> Path | None:
    """A new random passphrase at `path`; None when another run created the file first.

    Written to a private temporary file and linked into place, so a run racing this one finds
    either no file or the whole passphrase, never an empty file.
    """
    fix = f"{HOME_FIX} (or export {PASSPHRASE_VARS})"
    ensure_dir(path.parent, "MLSERVE_HOME", fix)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".passphrase-")  # mode 0600
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        os.link(tmp, path)
    except FileExistsError:
        return None
    except OSError as e:
        problem = f"cannot create the passphrase file {path} ({e.strerror})"
        raise SettingError(problem, fix) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return path


def plugin_dir(name: str, version: str) -> Path:
    home = Path(os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi")
    return home / "plugins" / f"resource-{name}-v{version}"


def plugin_installed(name: str, version: str) -> bool:
    """Whether the CLI counts the plugin as installed: its directory exists and no `.partial`
    file beside it says an installation is unfinished (sdk/go/common/workspace/plugins.go
    `PartialFilePath`; `getPlugins` skips such a directory)."""
    path = plugin_dir(name, version)
    return path.is_dir() and not path.with_name(path.name + ".partial").exists()


def sdk_version(plugin: str) -> str | None:
    try:
        return importlib.metadata.version(PLUGIN_PACKAGES[plugin])
    except importlib.metadata.PackageNotFoundError:
        return None


# --- the CLI --------------------------------------------------------------------------------


def cli_root(home: Path) -> Path:
    """Where `mlserve setup` installs the pinned CLI when no suitable one is found."""
    return home / "pulumi"


# The ldflag that stamps a Pulumi CLI build with its version (pulumi/pulumi .goreleaser.yml,
# scripts/go-wrapper.sh); a `go build` without it prints an empty `pulumi version`.
VERSION_LDFLAG = "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v3.N.M"


def _cli_candidates(home: Path) -> list[tuple[str | None, str]]:
    """(root for PulumiCommand, how to name it) of each Pulumi CLI to consider: the one
    `mlserve setup` installed under MLSERVE_HOME, and `pulumi` on PATH."""
    root = cli_root(home)
    pinned = root / "bin" / "pulumi"
    found: list[tuple[str | None, str]] = []
    if pinned.exists():
        found.append((str(root), str(pinned)))
    on_path = shutil.which("pulumi")
    same = False
    if found and on_path is not None:
        with contextlib.suppress(OSError):
            same = os.path.samefile(on_path, pinned)
    if not found or (on_path is not None and not same):
        found.append((None, "`pulumi` on PATH"))
    return found


def _unversioned(command: str, where: str) -> str:
    """What is wrong with a CLI whose `pulumi version` the SDK cannot parse."""
    try:
        env = {**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"}
        out = (
            subprocess.run(
                [command, "version"], capture_output=True, env=env, timeout=60, check=False
            )
            .stdout.decode("utf-8", "replace")
            .strip()
        )
    except (OSError, subprocess.SubprocessError):
        out = ""
    if out:
        return f"`pulumi version` printed {out[:60]!r}, not a version ({where})"
    return (
        f"`pulumi version` printed nothing ({where}): this Pulumi CLI was built without its "
        f"version, which the Automation API needs (a source build needs -ldflags "
        f'"{VERSION_LDFLAG}")'
    )


# A file:// backend's reader can find a stack's `.attrs` sidecar half-written by another process:
# gocloud.dev blob/fileblob attrs.go `setAttrs` truncates and rewrites it in place (the checkpoint
# itself is renamed into place), and `getAttrs` then decodes nothing. The CLI says "failed to load
# checkpoint: EOF" (pkg/backend/diy/state.go) before it has read or changed anything: seen with two
# promotes racing on the real CLI (tests/test_real_engine.py). Such a command is tried again.
TORN_READ = re.compile(r"failed to load checkpoint: (?:unexpected )?EOF\b")
TORN_READ_TRIES = 5
CREATE_RACE_TRIES = 8  # first runs at once: Engine._select_or_create


# The CLI commands that run an engine operation inside the CLI's cancellation scope
# (pkg/backend/diy/backend.go `apply` opens it, pkg/backend/cancellation_scope.go handles SIGINT
# and SIGTERM inside it).
OPERATIONS = frozenset({"up", "preview", "refresh", "destroy"})


class Command(auto.PulumiCommand):
    """The SDK's PulumiCommand, but the CLI of an operation runs in a process group of its own,
    with no terminal input, and is handed to `spawned` as it starts.

    Why: the CLI handles SIGINT and SIGTERM only inside its cancellation scope, the first as a
    clean cancel and any second one as a hard stop (cancellation_scope.go). Before the scope
    (start-up, taking the lock) and after it (writing the history entry, unlocking) it has no
    handler, so a signal there kills it and can leave the lock. In mlserve's process group it
    would also get every signal sent to the group (a terminal's Ctrl-C, a runner's SIGTERM to the
    group) besides the one mlserve passes on, and two are a hard stop. In a group of its own it
    gets exactly what mlserve sends, when mlserve sends it (Engine._pass_on). If mlserve itself
    is killed (SIGKILL), the CLI goes on until it next writes to its closed stdout, as it would
    after a SIGKILL to mlserve alone. Other commands (reads, `stack select`, plugins) run as the
    SDK runs them.
    """

    spawned: Callable[[subprocess.Popen[str]], None] | None = None

    def run(
        self,
        args: list[str],
        cwd: str,
        additional_env: Mapping[str, str],
        on_output: auto.OnOutput | None = None,
        on_error: auto.OnOutput | None = None,
    ) -> auto.CommandResult:
        words = [a for a in args if not a.startswith("-")]
        if not words or words[0] not in OPERATIONS:
            for attempt in range(1, TORN_READ_TRIES + 1):
                try:
                    return super().run(args, cwd, additional_env, on_output, on_error)
                except auto.CommandError as e:
                    if attempt == TORN_READ_TRIES or not TORN_READ.search(str(e)):
                        raise
                    time.sleep(0.1 * attempt)  # another process is writing the stack
        # As the SDK's run (pulumi/automation/_cmd.py): --non-interactive, its environment, the
        # CLI's own directory first on PATH, output read line by line.
        argv = [self.command, "--non-interactive", *[a for a in args if a != "--non-interactive"]]
        env = {**os.environ, **additional_env, "PULUMI_AUTOMATION_API": "true"}
        if os.path.isabs(self.command):
            env["PATH"] = os.pathsep.join([os.path.dirname(self.command), env.get("PATH", "")])
        with subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            process_group=0,
        ) as process:
            if self.spawned is not None:
                self.spawned(process)
            chunks: dict[str, list[str]] = {"stdout": [], "stderr": []}

            def read(name: str, stream: Any, callback: auto.OnOutput | None) -> None:
                for line in stream:
                    line = line.rstrip()
                    if callback is not None:
                        callback(line)
                    chunks[name].append(line)

            readers = [
                threading.Thread(target=read, args=("stdout", process.stdout, on_output)),
                threading.Thread(target=read, args=("stderr", process.stderr, on_error)),
            ]
            for reader in readers:
                reader.start()
            for reader in readers:
                reader.join()
            code = process.wait()
        result = auto.CommandResult(
            stdout="\n".join(chunks["stdout"]), stderr="\n".join(chunks["stderr"]), code=code
        )
        if code != 0:
            raise create_command_error(result)
        return result


def _load_one(root: str | None, where: str) -> auto.PulumiCommand | str:
    """The CLI at `root` (None: `pulumi` on PATH), version-checked; else what is wrong."""
    try:
        command = Command(root=root, version=VersionInfo.parse(MIN_CLI_VERSION))
    except FileNotFoundError:
        return f"the Pulumi CLI was not found ({where})"
    except PermissionError:
        return f"the Pulumi CLI ({where}) cannot be run"
    except subprocess.CalledProcessError as e:
        return f"`pulumi version` failed with exit code {e.returncode} ({where})"
    except auto.InvalidVersionError as e:
        if "Could not parse" in str(e):
            return _unversioned(os.path.join(root, "bin", "pulumi") if root else "pulumi", where)
        return f"{e} ({where})"
    if command.version is None:  # PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK let it through
        return _unversioned(command.command, where)
    return command


class NoCliError(EngineUnavailableError):
    """No suitable Pulumi CLI: what is wrong with each one found, and the fix."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"{'; '.join(problems)}: {INSTALL_HINT}")
        self.problems = problems


def load_command(home: Path, passed_over: list[str] | None = None) -> auto.PulumiCommand:
    """The newest suitable Pulumi CLI: the one `mlserve setup` installed under MLSERVE_HOME or
    `pulumi` on PATH (the first of the two at the same version), version-checked once each.
    What is wrong with a CLI passed over is added to `passed_over`."""
    usable: list[auto.PulumiCommand] = []
    problems: list[str] = []
    for root, where in _cli_candidates(home):
        loaded = _load_one(root, where)
        if isinstance(loaded, str):
            problems.append(loaded)
        else:
            usable.append(loaded)
    if not usable:
        raise NoCliError(problems)
    if passed_over is not None:
        passed_over.extend(problems)
    return max(usable, key=lambda c: c.version or VersionInfo(0))


def install_cli(home: Path, version: str | None = None, why: str = "") -> auto.PulumiCommand:
    """Install the pinned CLI under MLSERVE_HOME/pulumi (kept if already there). `why`: what
    was wrong with the CLIs found, for the message when the download fails."""
    version = version or pinned_cli_version()
    root = cli_root(home)
    by_hand = (
        f"Install Pulumi {MIN_CLI_VERSION} or newer by hand "
        "(https://www.pulumi.com/docs/install/) and put it on PATH, or copy its `pulumi` "
        f"binaries into {root / 'bin'}; `mlserve setup` then uses it and installs only the "
        "plugins"
    )
    found = f"{why}; " if why else ""
    try:
        auto.PulumiCommand.install(root=str(root), version=VersionInfo.parse(version))
        return Command(root=str(root), version=VersionInfo.parse(MIN_CLI_VERSION))
    except urllib.error.URLError as e:
        raise EngineUnavailableError(
            f"{found}downloading Pulumi {version} failed: no network ({e.reason}). {by_hand}"
        ) from None
    except (subprocess.CalledProcessError, OSError, auto.InvalidVersionError) as e:
        raise EngineUnavailableError(
            f"{found}installing Pulumi {version} into {root} failed: {e}. {by_hand}"
        ) from None


def plugin_fix(name: str, version: str | None) -> str:
    """How to get a missing provider plugin, with network or without."""
    v = version or sdk_version(name) or "VERSION"
    return (
        "run `mlserve setup` where there is network, or install it by hand: "
        f"`pulumi plugin install resource {name} {v}` (add `--file PATH` to install it from a "
        "plugin binary, folder or tarball you downloaded)"
    )


def plugin_workspace(home: Path, command: auto.PulumiCommand) -> auto.LocalWorkspace:
    """A workspace without a project, for plugin commands (`mlserve setup`, `doctor`)."""
    workdir = home / "workspaces"
    ensure_dir(workdir, "the workspace directory")
    return auto.LocalWorkspace(
        work_dir=str(workdir),
        env_vars={"PULUMI_SKIP_UPDATE_CHECK": "true"},
        pulumi_command=command,
    )


def installed_plugins(ws: auto.LocalWorkspace) -> set[tuple[str, str]]:
    return {(p.name, p.version or "") for p in ws.list_plugins() if p.kind == "resource"}


def ensure_plugins(ws: auto.LocalWorkspace, names: Iterable[str], sink: Sink) -> list[str]:
    """Install each plugin at its SDK's version unless present; returns what it installed."""
    wanted = {n: v for n in names if (v := sdk_version(n)) is not None}
    missing = {n: v for n, v in wanted.items() if not plugin_installed(n, v)}
    if not missing:
        return []
    try:
        listed = installed_plugins(ws)
    except auto.CommandError as e:
        raise EngineUnavailableError(f"`pulumi plugin ls` failed: {_first_error(str(e))}") from None
    installed = []
    for name, version in missing.items():
        if (name, version) in listed:
            continue
        sink.note(f"installing the {name} plugin v{version}")
        try:
            ws.install_plugin(name, f"v{version}")
        except auto.CommandError as e:
            raise EngineUnavailableError(
                f"could not install the {name} plugin v{version}: {_first_error(str(e))}; "
                + plugin_fix(name, version)
            ) from None
        installed.append(f"{name} v{version}")
    return installed


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """An engine event, reduced to what the progress display and the plan need."""

    kind: str  # start | done | failed | diag | summary
    op: str = ""
    urn: str = ""
    type: str = ""
    name: str = ""
    weights: tuple[tuple[str, Any, Any], ...] = ()  # (input path, old, new)
    severity: str = ""
    message: str = ""
    changes: Mapping[str, int] = field(default_factory=dict)
    planning: bool = False

    def step_json(self) -> dict[str, Any]:
        """A step as plan and dry-run documents list it."""
        return {
            "op": self.op,
            "type": self.type,
            "name": self.name,
            "urn": self.urn,
            "weights": [{"path": p, "old": o, "new": n} for p, o, n in self.weights],
        }


@dataclass(frozen=True)
class FailedStep:
    """A resource whose step failed in an operation: what an explanation starts from."""

    type: str
    name: str
    op: str  # create, update, ...


class Sink(Protocol):
    """Receives engine events (from another thread) and notes for the user."""

    def event(self, event: Event) -> None: ...

    def note(self, text: str) -> None: ...


class NullSink:
    def event(self, event: Event) -> None:
        pass

    def note(self, text: str) -> None:
        pass


def _pinned(rule: Mapping[Any, Any]) -> bool:
    """A rule matched on a header: an Istio http route (`match`) or a Gateway API rule
    (`matches`) that pins requests to one version. Its weight is not part of the split."""
    for key in ("match", "matches"):
        found = rule.get(key)
        if isinstance(found, list) and any(
            isinstance(m, Mapping) and m.get("headers") for m in found
        ):
            return True
    return False


def _find_weights(obj: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(obj, Mapping):
        if _pinned(obj):
            return
        for key, value in obj.items():
            p = f"{path}.{key}" if path else str(key)
            if str(key).lower() == "weight" or str(key).endswith("canary-weight"):
                if isinstance(value, int | str):
                    yield p, value
            else:
                yield from _find_weights(value, p)
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _find_weights(value, f"{path}[{i}]")


def weights_of(inputs: Any) -> dict[str, Any]:
    """Every weight in a resource's inputs (as `weight_changes` finds them), by input path."""
    return dict(_find_weights(inputs or {}))


def weight_changes(old: Any, new: Any) -> tuple[tuple[str, Any, Any], ...]:
    """The weights a step sets: every `weight` (or nginx canary-weight) in its inputs, but for
    those of header-pinned rules, so an HTTPRoute shows its split (95/5) as Istio's does."""
    before, after = dict(_find_weights(old or {})), dict(_find_weights(new or {}))
    paths = list(before) + [p for p in after if p not in before]
    if all(before.get(p) == after.get(p) for p in paths):
        return ()
    return tuple((p, before.get(p), after.get(p)) for p in paths)


def _name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def clean(text: str) -> str:
    return _ANSI.sub("", text).strip()


# --- outcomes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    """An operation's resource counts, of the resources mlserve lists.

    The engine's summary counts every logical step but internal ones, the default providers'
    (pkg/engine/update.go, OnResourceStepPost and isInternalStep), so it also counts the stack
    resource and any explicit provider, which mlserve does not list: they are counted apart.
    """

    changes: Mapping[str, int]  # op -> listed resources
    ops: Mapping[str, str] = field(default_factory=dict)  # urn -> op of each listed resource
    extras: Mapping[str, str] = field(default_factory=dict)  # "the stack itself" -> its op
    engine: Mapping[str, int] = field(default_factory=dict)  # the engine's own summary

    def among(self, urns: Iterable[str]) -> dict[str, int]:
        """op -> how many of `urns` had it."""
        found: dict[str, int] = {}
        for urn in urns:
            if urn in self.ops:
                found[self.ops[urn]] = found.get(self.ops[urn], 0) + 1
        return found


# Steps that are halves of a replace: the summary counts the replace once (they are not logical).
_REPLACE_HALVES = {"create-replacement": "replace", "delete-replaced": "replace"}


def _extra_name(type_token: str) -> str:
    if type_token == "pulumi:pulumi:Stack":
        return "the stack itself"
    return f"the {type_token.split(':', 2)[2]} provider"


@dataclass(frozen=True)
class PreviewOutcome:
    changes: Mapping[str, int]  # as listed (tally.changes)
    steps: list[Event]
    warnings: list[str]
    tally: Tally = field(default_factory=lambda: Tally({}))


@dataclass(frozen=True)
class UpOutcome:
    changes: Mapping[str, int]  # as listed (tally.changes)
    revision: int  # the history entry this update wrote
    warnings: list[str]
    tally: Tally = field(default_factory=lambda: Tally({}))


@dataclass(frozen=True)
class HistoryEntry:
    revision: int  # 1, 2, 3, ...: the backend's own version, or the position (see `_numbered`)
    kind: str
    result: str  # succeeded | failed | in-progress
    start: datetime
    end: datetime | None
    message: str
    config: Mapping[str, str]  # non-secret config values at that update
    changes: Mapping[str, int]

    @property
    def sequence(self) -> int | None:
        """The number mlserve recorded with this entry (`SEQUENCE_KEY`); None for entries made
        by an older mlserve or by other tools."""
        return _sequence_of(self.config.get(SEQUENCE_KEY))

    @property
    def counts(self) -> bool:
        """Whether the stack may have changed with this entry: a finished operation that did
        not fail without changing anything (a refused promote writes such an entry)."""
        if self.result == "in-progress":
            return False
        return self.result != "failed" or any(n for op, n in self.changes.items() if op != "same")

    def describe(self) -> str:
        return f"revision {self.revision} (`{self.message or self.kind}`, {self.result})"


@dataclass(frozen=True)
class Mark:
    """Where a stack's history stood when a command read it; the update's guard compares."""

    count: int
    newest: HistoryEntry | None
    sequence: int = 0  # the highest `SEQUENCE_KEY` any entry recorded; the next update's is +1

    @classmethod
    def of(cls, entries: list[HistoryEntry]) -> Mark:
        counted = [e for e in entries if e.counts]
        # The service lists the running update (in-progress) with its config: the guard's own.
        recorded = [
            e.sequence for e in entries if e.sequence is not None and e.result != "in-progress"
        ]
        return cls(len(counted), counted[0] if counted else None, max(recorded, default=0))


@dataclass(frozen=True)
class StackState:
    """What `pulumi stack export` shows of a stack's state, secrets still encrypted."""

    urns: frozenset[str]
    outputs: Mapping[str, Any]  # the root stack's outputs; secret values read "[secret]"
    providers: Mapping[str, str]  # package -> version of its default provider
    plugins: frozenset[str]  # every provider package the state uses (default or explicit)
    pending_creates: tuple[tuple[str, str], ...]  # (type, name) of creates left pending
    dependencies: Mapping[str, frozenset[str]] = field(default_factory=dict)  # urn -> its deps
    # (type, name) -> outputs of each Deployment and HorizontalPodAutoscaler: what status shows
    workloads: Mapping[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    # urn -> the weights in each resource's inputs (weights_of: input path -> value), for
    # comparing what the stack holds with what an update recorded
    weights: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    pending: tuple[str, ...] = ()  # "creating Service fraud" for each pending operation
    # (type, name) -> outputs of each resource whose last step failed after the provider had
    # made it (its `initErrors`, pkg/resource/deploy/step.go): the object as the provider last
    # saw it, e.g. a route's status when its await timed out
    unready: Mapping[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    # (type, name) -> inputs of every resource (a refresh sets them from what it read)
    inputs: Mapping[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)


# The resource types whose outputs StackState keeps (status reads their replica counts).
WORKLOAD_TYPES = (
    "kubernetes:apps/v1:Deployment",
    "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
)


# A secret in a checkpoint: {SECRET_SIG: SECRET_VALUE, "ciphertext": ...}
# (sdk/go/common/resource/sig/sig.go).
_SECRET_SIG = "4dabf18193072939515e22adb298388d"
_MASK = "[secret]"


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        if _SECRET_SIG in value:
            return _MASK
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def kind_name(urn: str) -> str:
    """`VirtualService fraud-detector` of a URN, as a user reads it."""
    type_, name = urn_name(urn)
    return f"{type_.rsplit(':', 1)[-1]} {name}"


def urn_name(urn: str) -> tuple[str, str]:
    """(type, name) of a URN `urn:pulumi:STACK::PROJECT::[PARENT$]TYPE::NAME`."""
    parts = urn.split("::")
    return parts[-2].rsplit("$", 1)[-1], parts[-1]


def stack_state(exported: Mapping[str, Any]) -> StackState:
    """Read `pulumi stack export` output (apitype.UntypedDeployment holding a DeploymentV3)."""
    deployment = exported.get("deployment") or {}
    resources = deployment.get("resources") or []
    outputs: Mapping[str, Any] = {}
    providers: dict[str, str] = {}
    plugins: set[str] = set()
    for r in resources:
        if r.get("type", "").startswith("pulumi:providers:"):
            plugins.add(r["type"].split(":", 2)[2])
        if r.get("type") == "pulumi:pulumi:Stack" and not r.get("parent"):
            outputs = _masked(r.get("outputs") or {})
        elif r.get("type", "").startswith("pulumi:providers:") and urn_name(r.get("urn", ""))[
            1
        ].startswith("default"):
            # Default providers are named default_<version> (pkg/resource/deploy/providers).
            version = (r.get("inputs") or {}).get("version")
            if isinstance(version, str):
                providers[r["type"].split(":", 2)[2]] = version
    pending = tuple(
        urn_name(op.get("resource", {}).get("urn", ""))
        for op in deployment.get("pending_operations") or []
        if op.get("type") == "creating"
    )
    return StackState(
        urns=frozenset(r["urn"] for r in resources if "urn" in r),
        outputs=outputs,
        providers=providers,
        plugins=frozenset(plugins),
        pending_creates=pending,
        dependencies={
            r["urn"]: frozenset(r.get("dependencies") or ())
            for r in resources
            if "urn" in r and r.get("dependencies")
        },
        workloads={
            urn_name(r["urn"]): _masked(r.get("outputs") or {})
            for r in resources
            if r.get("type") in WORKLOAD_TYPES and "urn" in r and not r.get("delete")
        },
        weights={
            r["urn"]: weights_of(r.get("inputs"))
            for r in resources
            if "urn" in r and not r.get("delete") and weights_of(r.get("inputs"))
        },
        pending=tuple(
            f"{op.get('type', '?')} {kind_name(op.get('resource', {}).get('urn', '::'))}"
            for op in deployment.get("pending_operations") or []
        ),
        unready={
            urn_name(r["urn"]): _masked(r.get("outputs") or {})
            for r in resources
            if r.get("initErrors") and "urn" in r and not r.get("delete")
        },
        inputs={
            urn_name(r["urn"]): _masked(r.get("inputs") or {})
            for r in resources
            if r.get("custom") and "urn" in r and not r.get("delete")
        },
    )


# Each update and destroy mlserve makes records this in its config: one more than the highest any
# entry of the history recorded when the command read it (see `_in_sequence`).
SEQUENCE_KEY = "mlserve:sequence"


def _sequence_of(raw: object) -> int | None:
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and int(raw) > 0:
        return int(raw)
    return None


def _summary_sequence(s: auto.UpdateSummary) -> int | None:
    value = s.config.get(SEQUENCE_KEY)
    return _sequence_of(value.value) if value is not None and not value.secret else None


def _in_sequence(summaries: list[auto.UpdateSummary]) -> list[auto.UpdateSummary]:
    """The history newest first in the order mlserve's commands ran, not the writers' clocks.

    The DIY backends (file, S3, GCS, Azure Blob) name each history file after the clock of the
    machine that wrote it, `<stack>-<time.Now().UnixNano()>.history.json`
    (pkg/backend/diy/state.go `addToHistory`), and list the history by file name, newest name
    first (state.go `getHistory`: "listBucket returns the array sorted by file name"). Nothing in
    an entry is monotonic: `version` is 0 and startTime/endTime come from the same clock
    (pkg/backend/diy/backend.go `apply`). So when two CI runners whose clocks differ write one
    bucket, a later update can be listed below an earlier one, and the position would make the
    earlier update's record the live one.

    mlserve's own number fixes that: every update and destroy records `SEQUENCE_KEY`, one more
    than the highest in the history its command read. An update's guard runs under the stack's
    lock and refuses unless the history is still what the command read (`Engine.up`), so the
    numbers of the updates that ran follow the order they ran in. Here the entries carrying a
    number are put back in that order, in the places such entries hold in the listing; entries
    without one (made before mlserve recorded numbers, or by other tools) keep their places, so
    an old stack reads as before. Equal numbers (a destroy, which has no guard, racing an update)
    keep the backend's order. Pulumi Cloud numbers its updates itself and is left as listed.
    """
    if summaries and all((s.version or 0) > 0 for s in summaries):
        return summaries
    slots = [i for i, s in enumerate(summaries) if _summary_sequence(s) is not None]
    ordered = sorted(
        (summaries[i] for i in slots), key=lambda s: _summary_sequence(s) or 0, reverse=True
    )
    result = list(summaries)
    for i, s in zip(slots, ordered, strict=True):
        result[i] = s
    return result


def _numbered(summaries: list[auto.UpdateSummary]) -> list[HistoryEntry]:
    """Entries newest first, each with a revision number a user can rely on.

    Pulumi Cloud numbers its updates; the file, S3, Azure Blob and GCS backends report version 0
    for every entry (pkg/backend/diy/backend.go `apply` builds UpdateInfo without a Version), and
    list them oldest to newest by file name (pkg/backend/diy/state.go `getHistory`), so there the
    position is the revision: the oldest is 1, and entries are only ever appended.
    """
    own = bool(summaries) and all((s.version or 0) > 0 for s in summaries)
    return [
        HistoryEntry(
            revision=int(s.version) if own and s.version else len(summaries) - i,
            kind=s.kind,
            result=s.result,
            start=s.start_time,
            end=s.end_time,
            message=s.message or "",
            config={k: v.value for k, v in s.config.items() if not v.secret},
            changes=_op_counts(s.resource_changes or {}),
        )
        for i, s in enumerate(summaries)
    ]


# --- the engine -----------------------------------------------------------------------------


def _noop_program() -> None:
    """refresh and destroy never run the program; inline mode only needs one to exist."""


_NO_SUMMARY = auto.UpdateSummary(
    kind="", start_time=datetime.min, message="", environment={}, config={}, result=""
)


class _Stack(auto.Stack):
    """A Stack whose operations spawn no follow-up reads.

    The SDK's up() runs `stack output` twice and `stack history --page-size 1` after the update,
    refresh() and destroy() the history read: three and one more starts of the Go CLI. mlserve
    knows the revision from its guard, takes the counts from the engine's summary event, and reads
    outputs (masked) only where a report shows them.
    """

    def outputs(self) -> auto.OutputMap:
        return {}

    def info(self, show_secrets: bool = True) -> auto.UpdateSummary | None:
        return _NO_SUMMARY

    @classmethod
    def named(cls, name: str, workspace: auto.LocalWorkspace) -> _Stack:
        """The stack, without `pulumi stack select`: what auto.Stack's constructor sets, and no
        process. Every command the SDK runs on a stack names it (`--stack`), and the first one
        fails with "no stack named ... found" when there is none, which the SDK raises as
        StackNotFoundError, as the select would have (pkg/cmd/pulumi/stack RequireStack)."""
        stack = cls.__new__(cls)
        stack.name, stack.workspace, stack._mode = name, workspace, StackInitMode.SELECT
        return stack


@dataclass(frozen=True)
class Target:
    project: str
    stack: str
    backend: str | None = None  # --backend; None: environment, then the local default


class Engine:
    def __init__(
        self,
        target: Target,
        *,
        sink: Sink | None = None,
        lock_timeout: float = 0.0,
        debug: bool = False,
    ) -> None:
        self.target = target
        self.sink: Sink = sink or NullSink()
        self.lock_timeout = lock_timeout
        self.debug = debug
        self.poll = float(os.environ.get("MLSERVE_LOCK_POLL_SECONDS", "2"))  # tests shorten it
        self.home = mlserve_home()
        self.backend, self.default_backend = resolve_backend(target.backend, self.home)
        self.workdir = workspace_dir(self.home, target.project, self.backend, self.default_backend)
        self._secrets = credentials(os.environ)
        password = urllib.parse.urlparse(self.backend).password  # postgres://user:PASS@host/db
        if password:
            self._secrets.update(secret_forms(urllib.parse.unquote(password)))
        self._pass: Passphrase | None = None
        self._cmd: auto.PulumiCommand | None = None
        self._ws: auto.LocalWorkspace | None = None
        self._stack: auto.Stack | None = None
        self._program_error: BaseException | None = None
        self._errors: list[str] = []  # error diagnostics of the running operation
        self._warnings: list[str] = []
        # Whether the last history() read put entries back in mlserve's order (_in_sequence)
        self.reordered = False
        self._changes: dict[str, int] = {}  # the running operation's summary event
        self._ops: dict[str, str] = {}  # urn -> op of each listed resource it stepped
        self._extras: dict[str, tuple[str, str]] = {}  # urn -> (type, op): the stack, providers
        self._lock = threading.RLock()  # also taken by the signal handler, on the main thread
        # Interrupts of the running operation (_interruptible), and how far they got: the CLI
        # running it, how many SIGINTs it was sent, and where it stands in its cancellation
        # scope: "before" its first engine event, "open", "over" once its summary came.
        self._signals = 0
        self._sent = 0
        self._cli: subprocess.Popen[str] | None = None
        self._scope = "before"
        self._failed: list[FailedStep] = []  # the resources whose step failed

    # -- secrets

    def scrub(self, text: str) -> str:
        return redact.scrub(text, self._secrets)

    # -- workspace and stack

    def passphrase(self) -> Passphrase:
        if self._pass is None:
            self._pass = resolve_passphrase(self.home, self.backend, self.default_backend)
            if self._pass.secret:
                self._secrets.update(secret_forms(self._pass.secret))
            if self._pass.created:
                self.sink.note(
                    f"created a passphrase for stack secrets in {self._pass.created} (mode 0600); "
                    "keep it: every later command on this backend needs it"
                )
        return self._pass

    def command(self) -> auto.PulumiCommand:
        if self._cmd is None:
            passed_over: list[str] = []
            self._cmd = load_command(self.home, passed_over)
            for problem in passed_over:
                # A `pulumi` on PATH built without its version ldflag is newer than the CLI
                # `mlserve setup` installed, as likely as not: say which one runs.
                self.sink.note(
                    f"note: {problem}; using {self._cmd.command} v{self._cmd.version} instead"
                )
            if isinstance(self._cmd, Command):
                self._cmd.spawned = self._spawned
        return self._cmd

    @property
    def interrupted(self) -> bool:
        return self._signals > 0

    def workspace(self) -> auto.LocalWorkspace:
        if self._ws is None:
            command = self.command()  # a missing CLI is the first thing to fix
            pp = self.passphrase()
            backend_dir = file_backend_dir(self.backend)
            if backend_dir is not None:
                ensure_dir(
                    backend_dir,
                    f"the backend directory ({self.backend})",
                    "pass --backend file://DIR with a directory you can write",
                )
            ensure_dir(self.workdir, "the workspace directory")
            self._write_project_file()
            env = {
                "PULUMI_SKIP_UPDATE_CHECK": "true",
                "PULUMI_BACKEND_URL": self.backend,
                # A fresh CI workspace has no Pulumi.<stack>.yaml: use the salt the stack's state
                # holds instead of making a new one (pkg/cmd/pulumi/stack/secrets.go
                # GetSecretsManager, env.FallbackToStateSecretsManager).
                "PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER": "true",
                **pp.env,
            }
            self._ws = auto.LocalWorkspace(
                work_dir=str(self.workdir),
                program=_noop_program,
                env_vars=env,
                secrets_provider=pp.secrets_provider,
                pulumi_command=command,
            )
        return self._ws

    def _write_project_file(self) -> None:
        """Pulumi.yaml, written only when it changes and then atomically: concurrent runs never
        read a half-written file, and a read-only workspace that has it still works."""
        settings = auto.ProjectSettings(
            name=self.target.project,
            runtime="python",
            main=str(self.workdir),
            backend=auto.ProjectBackend(url=self.backend),
        )
        text = yaml.safe_dump(settings.to_dict())
        path = self.workdir / "Pulumi.yaml"
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if path.read_text(encoding="utf-8") == text:
                return
        tmp = path.with_name(f".Pulumi.yaml.{os.getpid()}")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise SettingError(f"cannot write {path} ({e.strerror})", HOME_FIX) from None

    def _require_writable_backend(self, what: str) -> None:
        """A file backend that cannot be written fails here, not halfway through the CLI."""
        backend_dir = file_backend_dir(self.backend)
        if backend_dir is not None and backend_dir.is_dir() and not os.access(backend_dir, os.W_OK):
            raise SettingError(
                f"the backend directory {backend_dir} is not writable, and {what} writes the "
                "stack's state and lock there",
                "make it writable, or pass --backend file://DIR with a directory you can write",
            )

    def stack(self, create: bool = False, select: bool = True) -> auto.Stack:
        """Select the stack (or create it); one process, then reused by every operation. With
        `select` False, no process: a missing stack fails the first command run on it instead
        (a routing update reads its history first, so it fails as before, and sooner)."""
        if self._stack is None:
            ws = self.workspace()
            if not select and not create:
                self._stack = _Stack.named(self.target.stack, ws)
                return self._stack
            try:
                self._stack = self._select_or_create(ws, create)
            except Exception as e:
                raise self.map_error(e, "selecting the stack") from None
        return self._stack

    def _select_or_create(self, ws: auto.LocalWorkspace, create: bool) -> auto.Stack:
        """Select the stack, or create it if `create` and there is none.

        First runs started together race to create it. The DIY backend's CreateStack takes the
        stack's lock (pkg/backend/diy/backend.go `CreateStack` calls `b.Lock`), and lock.go
        writes its lock, then checks for others: of two creates at once both may fail "the
        stack is currently locked" and neither creates it. So a create that finds the stack
        made (StackAlreadyExistsError) selects it, and one refused by the lock tries again,
        after a short random pause, up to a few times."""
        for tries in range(1, CREATE_RACE_TRIES + 1):
            try:
                return _Stack(self.target.stack, ws, StackInitMode.SELECT)
            except auto.StackNotFoundError:
                if not create:
                    raise
            self._require_writable_backend("creating the stack")
            try:
                return _Stack(self.target.stack, ws, StackInitMode.CREATE)
            except auto.StackAlreadyExistsError:
                continue  # another first run created it since our select: use theirs
            except auto.ConcurrentUpdateError:
                if tries == CREATE_RACE_TRIES:
                    raise
                time.sleep(random.uniform(0.05, 0.3) * tries)
        return _Stack(self.target.stack, ws, StackInitMode.SELECT)

    @property
    def stack_name(self) -> str:
        """The stack's own name, as URNs hold it (not `org/project/stack`: deployment.go
        `generateURN`)."""
        return self.target.stack.rsplit("/", 1)[-1]

    def describe(self) -> str:
        return (
            f"stack '{self.target.stack}' of project '{self.target.project}' "
            f"(backend {self.scrub(self.backend)})"
        )

    # -- plugins

    def ensure_plugins(self, names: Iterable[str]) -> list[str]:
        """Install plugins at the installed SDKs' versions; returns what it installed."""
        names = list(names)
        if all(plugin_installed(n, v) for n in names if (v := sdk_version(n)) is not None):
            return []  # the usual case costs no process
        try:
            return ensure_plugins(self.workspace(), names, self.sink)
        except auto.CommandError as e:
            raise self.map_error(e, "listing plugins") from None

    # -- config, history and state

    def _settings_file(self) -> Path | None:
        short = self.target.stack.rsplit("/", 1)[-1]
        for ext in (".yaml", ".yml", ".json"):  # LocalWorkspace._stack_settings_extensions
            path = self.workdir / f"Pulumi.{short}{ext}"
            if path.exists():
                return path
        return None

    @contextlib.contextmanager
    def _config_file(self, values: Mapping[str, str]) -> Iterator[str]:
        """A private copy of the stack's settings with this command's config, for --config-file.

        Config never goes on argv (`config set-all` puts every value there: 128 KiB at most, and
        visible in `ps`), and the workspace's Pulumi.<stack>.yaml is never rewritten, since another
        mlserve process may be waiting for the lock with its own values. The CLI records this file's
        config in the update's history entry (pkg/backend/diy/backend.go `apply`: Config:
        update.Target.Config); a passphrase salt it has to add lands here, not in the workspace
        (pkg/cmd/pulumi/stack/io.go `SaveProjectStack` writes to --config-file when given).
        """
        settings: dict[str, Any] = {}
        source = self._settings_file()
        if source is not None:
            try:
                loaded = yaml.safe_load(source.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError) as e:
                raise PreconditionError(
                    f"{source} cannot be read ({e}): fix it, or move it away to start from the "
                    "stack's own settings"
                ) from None
            settings = dict(loaded) if isinstance(loaded, Mapping) else {}
        config = settings.get("config")
        kept = {
            k: v
            for k, v in (config.items() if isinstance(config, Mapping) else ())
            if not str(k).startswith("mlserve:")  # only this command's record is recorded
        }
        settings["config"] = {**kept, **values}
        fd, path = tempfile.mkstemp(prefix=".mlserve-config-", suffix=".yaml", dir=self.workdir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                yaml.safe_dump(settings, f, allow_unicode=True, width=2**31)
            yield path
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def history(self) -> list[HistoryEntry]:
        """The whole history in one call, newest first; secret config values are never fetched.

        `--page-size 0` means every entry on every backend (pkg/backend/diy/state.go `getHistory`
        pages only when pageSize > 0; the service client sends no paging then); without it the CLI
        returns the newest 10 (pkg/cmd/pulumi/stack/stack_history.go, default --page-size 10).
        `stack history` takes no lock (RequireStack with LoadOnly), so it works while an update
        runs.
        """
        stack = self.stack()
        try:
            summaries = stack.history(page_size=0, show_secrets=False)
        except Exception as e:
            raise self.map_error(e, "reading the stack history") from None
        ordered = _in_sequence(summaries)
        self.reordered = any(a is not b for a, b in zip(ordered, summaries, strict=True))
        return _numbered(ordered)

    def state(self) -> StackState:
        """The stack's state as `pulumi stack export` shows it (no --show-secrets: nothing is
        decrypted, so no passphrase is needed), in one process."""
        stack = self.stack()
        ws = self.workspace()
        try:
            result = ws.pulumi_command.run(
                ["stack", "export", "--stack", stack.name],
                ws.work_dir,
                {**ws.env_vars},
            )
            exported = json.loads(result.stdout)
        except Exception as e:
            raise self.map_error(e, "reading the stack's state") from None
        return stack_state(exported if isinstance(exported, Mapping) else {})

    # -- operations

    def preview(
        self,
        program: Callable[[], None],
        config: Mapping[str, str],
        target: list[str] | None = None,
    ) -> PreviewOutcome:
        """Preview; with `target`, of an update of those URNs only, as `up` would make it."""
        steps: list[Event] = []
        stack = self.stack()
        with self._config_file(config) as config_file:
            result = self._operation(
                "preview",
                lambda on_event: stack.preview(
                    program=self._keep_error(program),
                    on_event=on_event,
                    target=target,
                    color="never",
                    config_file=config_file,
                ),
                steps,
            )
        tally = self._tally(self._changes or _op_counts(result.change_summary))
        return PreviewOutcome(tally.changes, steps, self._warning_lines(), tally)

    def up(
        self,
        program: Callable[[], None],
        *,
        message: str,
        config: Mapping[str, str],
        expect: Mark,
        since: str,
        target: list[str] | None = None,
    ) -> UpOutcome:
        """Update, running `program` only if the stack's history still stands at `expect`.

        The program runs after the update has taken the stack's lock (pkg/backend/diy/backend.go
        `Update` locks before `apply` runs the program), so of two commands computed from the
        same history exactly one changes the stack, whichever waited. `since` names what
        `expect` was read at, for the refusal. The update records `SEQUENCE_KEY`, one more than
        `expect`'s: the guard makes it one more than any entry under the lock (`_in_sequence`).
        """
        stack = self.stack()
        revision: list[int] = []
        config = {**config, SEQUENCE_KEY: str(expect.sequence + 1)}

        def guarded() -> None:
            entries = self.history()
            now = Mark.of(entries)
            if now != expect:
                newest = f": {now.newest.describe()}" if now.newest else ""
                raise PreconditionError(
                    f"{self.describe()} changed since {since}{newest}. Nothing was changed: "
                    "check `mlserve status`, then run the command again"
                )
            # The service lists the running update (in-progress); the file backends write its
            # entry when it ends, after every entry seen here.
            running = [e.revision for e in entries if e.result == "in-progress"]
            revision.append(running[0] if running else (entries[0].revision + 1 if entries else 1))
            program()

        with self._config_file(config) as config_file:
            self._operation(
                "update",
                lambda on_event: stack.up(
                    program=self._keep_error(guarded),
                    on_event=on_event,
                    message=message,
                    target=target,
                    color="never",
                    config_file=config_file,
                ),
            )
        tally = self._tally(self._changes)
        return UpOutcome(tally.changes, revision[0], self._warning_lines(), tally)

    def refresh(self) -> dict[str, int]:
        """Refresh; pending creates from an interrupted update are dropped from the state."""
        stack = self.stack()
        with self._config_file({}) as config_file:
            self._operation(
                "refresh",
                lambda on_event: stack.refresh(
                    on_event=on_event,
                    color="never",
                    clear_pending_creates=True,
                    message="mlserve status --refresh",
                    config_file=config_file,
                ),
            )
        return dict(self._changes)

    def destroy(self, message: str, sequence: int | None = None) -> dict[str, int]:
        """Destroy; `sequence` (one more than the history's highest) is recorded so that a
        destroy is ordered among mlserve's updates (`_in_sequence`)."""
        stack = self.stack()
        recorded = {SEQUENCE_KEY: str(sequence)} if sequence is not None else {}
        with self._config_file(recorded) as config_file:
            self._operation(
                "destroy",
                lambda on_event: stack.destroy(
                    on_event=on_event, color="never", message=message, config_file=config_file
                ),
            )
        return dict(self._tally(self._changes).changes)

    def _tally(self, summary: Mapping[str, int]) -> Tally:
        """The summary less what mlserve does not list (Tally)."""
        extra: dict[str, int] = {}
        for _, op in self._extras.values():
            extra[op] = extra.get(op, 0) + 1
        listed = {op: n - extra.get(op, 0) for op, n in summary.items()}
        return Tally(
            changes={op: n for op, n in listed.items() if n > 0},
            ops=dict(self._ops),
            extras={_extra_name(t): op for t, op in self._extras.values()},
            engine=dict(summary),
        )

    def pending_hint(self) -> str:
        return (
            "an interrupted update left pending operations: run "
            f"`mlserve status --refresh --stack {self.target.stack}` to reconcile them"
        )

    def _warning_lines(self) -> list[str]:
        """The engine's warnings, one line each; pending operations get the way out."""
        lines = []
        for w in dict.fromkeys(self._warnings):
            line = summarize(w)
            if "pending operations" in line:
                line = f"{line} ({self.pending_hint()})"
            lines.append(line)
        return lines

    def _keep_error(self, program: Callable[[], None]) -> Callable[[], None]:
        """Keep the program's own exception: its message beats the engine's log of it. Also note
        the loop the SDK runs it on, for _finishing."""

        def guarded() -> None:
            _program_loops[threading.get_ident()] = asyncio.get_running_loop()
            try:
                program()
            except BaseException as e:
                self._program_error = e
                raise

        return guarded

    def _operation(
        self,
        what: str,
        run: Callable[[Callable[[auto.EngineEvent], None]], T],
        steps: list[Event] | None = None,
    ) -> T:
        """Run one engine operation: events, Ctrl-C, lock retries and error mapping."""

        def on_event(raw: auto.EngineEvent) -> None:
            # Called on a gRPC or log-watcher thread.
            try:
                self._scope_event(raw)
                event = self._convert(raw)
                if event is None:
                    return
                with self._lock:
                    if self._sent > 1:
                        # Stopped at once: what the CLI reports of the steps it cut off (the
                        # provider "exited prematurely", the monitor "has terminated") is the
                        # stop itself, which the command's error says.
                        return
                    if event.kind == "diag" and event.severity == "error":
                        prefix = f"{event.name}: " if event.name else ""
                        self._errors.append(prefix + summarize(event.message))
                        if isinstance(self._program_error, MlserveError):
                            # The program's own refusal (the race guard's): the command's
                            # error says it once, without the language host's traceback.
                            return
                    elif event.kind == "diag" and event.severity == "warning":
                        self._warnings.append(event.message)
                    if event.kind == "start":
                        self._ops[event.urn] = _REPLACE_HALVES.get(event.op, event.op)
                    if event.kind == "failed":
                        op = self._ops.get(event.urn, event.op)
                        self._failed.append(FailedStep(event.type, event.name, op))
                    if steps is not None and event.kind == "start" and event.op != "same":
                        steps.append(event)
                    if event.kind == "summary":
                        self._changes = dict(event.changes)
                    self.sink.event(event)
            except Exception:  # a display bug must not break the deployment
                pass

        deadline = time.monotonic() + self.lock_timeout
        delay, waited, torn = self.poll, False, 0
        self._program_error = None
        if what != "preview":  # a DIY preview takes no lock and writes no state
            self._require_writable_backend(f"the {what}")
        self._signals = 0
        with self._interruptible():
            while True:
                self._errors, self._warnings, self._changes = [], [], {}
                self._ops, self._extras = {}, {}
                with self._lock:
                    self._cli, self._sent, self._scope = None, 0, "before"
                self._ops, self._extras, self._failed = {}, {}, []
                try:
                    result = _in_worker(lambda: run(on_event))
                except auto.ConcurrentUpdateError as e:
                    remaining = deadline - time.monotonic()
                    if self.interrupted:
                        raise self._interrupted_waiting(what) from None
                    if remaining <= 0:
                        raise self.map_error(e, what) from None
                    if not waited:
                        self.sink.note(
                            f"{self.describe()} is locked by another update; waiting up to "
                            f"{format_duration(self.lock_timeout)}"
                        )
                        waited = True
                    self._pause(min(delay, remaining))
                    if self.interrupted:
                        raise self._interrupted_waiting(what) from None
                    delay = min(delay * 2, 15.0)
                    continue
                except KeyboardInterrupt:  # a third interrupt: mlserve stopped waiting
                    raise self._interrupted(what, gave_up=True) from None
                except auto.CommandError as e:
                    if (
                        torn < TORN_READ_TRIES
                        and TORN_READ.search(str(e))
                        and self._scope == "before"  # the engine never started
                        and not self.interrupted
                    ):
                        torn += 1
                        self._pause(0.1 * torn)  # another process is writing the stack
                        continue
                    raise self._failed_error(e, what) from None
                except Exception as e:
                    raise self._failed_error(e, what) from None
                if self.interrupted:
                    raise self._interrupted(what, finished=True)
                return result

    def _failed_error(self, e: Exception, what: str) -> MlserveError:
        """map_error's error, with the steps that failed when the operation failed."""
        error = self.map_error(e, what)
        if isinstance(error, OperationFailedError):
            error.failed = tuple(self._failed)
        return error

    # -- interrupts

    def _spawned(self, process: subprocess.Popen[str]) -> None:
        """Command.run started the operation's CLI (on the operation's worker thread)."""
        with self._lock:
            self._cli = process

    def _scope_event(self, raw: auto.EngineEvent) -> None:
        """Where the CLI stands in its cancellation scope, from its engine events: every event
        passes through the scope (backend.go `apply` opens it before the engine starts and closes
        it after the display has shown the last event), and the summary is the engine's last."""
        with self._lock:
            if raw.summary_event is not None or raw.cancel_event is not None:
                self._scope = "over"
            elif self._scope == "before":
                self._scope = "open"
                self._pass_on()

    def _pass_on(self) -> None:
        """Send the operation's CLI the SIGINTs it is owed (one per interrupt, two at most), while
        it is inside its cancellation scope; an interrupt that came before it was is passed on
        with its first event, and none after its summary (the engine is done, and the scope ends
        at any moment: a signal after it kills the CLI before it unlocks)."""
        with self._lock:
            cli = self._cli
            while (
                self._sent < min(self._signals, 2)
                and self._scope == "open"
                and cli is not None
                and cli.poll() is None
            ):
                if self._sent:
                    time.sleep(0.2)  # two signals at once are one (POSIX does not queue them)
                with contextlib.suppress(OSError):
                    os.kill(cli.pid, signal.SIGINT)
                self._sent += 1

    def _pause(self, seconds: float) -> None:
        """Sleep, but wake within a tenth of a second of an interrupt."""
        end = time.monotonic() + seconds
        while not self.interrupted and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))

    def _convert(self, raw: auto.EngineEvent) -> Event | None:
        if raw.resource_pre_event or raw.res_outputs_event or raw.res_op_failed_event:
            if raw.resource_pre_event:
                kind, meta = "start", raw.resource_pre_event.metadata
                planning = bool(raw.resource_pre_event.planning)
            elif raw.res_outputs_event:
                kind, meta = "done", raw.res_outputs_event.metadata
                planning = bool(raw.res_outputs_event.planning)
            else:
                assert raw.res_op_failed_event is not None
                kind, meta, planning = "failed", raw.res_op_failed_event.metadata, False
            if meta.type == "pulumi:pulumi:Stack" or meta.type.startswith("pulumi:providers:"):
                # Not listed; counted by the engine unless a default provider (Tally).
                if kind == "start" and not _name(meta.urn).startswith("default"):
                    op = meta.op.value if hasattr(meta.op, "value") else str(meta.op)
                    with self._lock:
                        self._extras[meta.urn] = (meta.type, _REPLACE_HALVES.get(op, op))
                return None
            op = meta.op.value if hasattr(meta.op, "value") else str(meta.op)
            return Event(
                kind=kind,
                op=op,
                urn=meta.urn,
                type=meta.type,
                name=_name(meta.urn),
                weights=weight_changes(
                    meta.old.inputs if meta.old else None, meta.new.inputs if meta.new else None
                ),
                planning=planning,
            )
        if raw.diagnostic_event:
            d = raw.diagnostic_event
            if d.severity not in ("warning", "error") or d.ephemeral:
                return None
            return Event(
                kind="diag",
                severity=d.severity,
                urn=d.urn or "",
                name=_name(d.urn) if d.urn and "pulumi:pulumi:Stack" not in d.urn else "",
                message=self.scrub(clean(d.message if self.debug else _no_traceback(d.message))),
            )
        if raw.summary_event:
            return Event(kind="summary", changes=_op_counts(raw.summary_event.resource_changes))
        return None

    @contextlib.contextmanager
    def _interruptible(self) -> Iterator[None]:
        """Ctrl-C, SIGTERM and SIGHUP while an operation runs reach its CLI as SIGINT, once per
        interrupt, from mlserve alone (Command: the CLI has a process group of its own).

        The Pulumi CLI handles SIGINT and SIGTERM alike (pkg/backend/cancellation_scope.go): the
        first cancels cleanly (the steps running finish; a failed history entry is written and
        the lock released), any second one stops the engine at once, leaving the steps that were
        running pending in the state, and the CLI still writes its failed entry, releases the
        lock and exits 8. So the first interrupt cancels, and a second stops the operation at
        once, and either way mlserve waits for the CLI to finish unlocking; a third stops
        waiting (the CLI's pipes then close, and it may die before it unlocks). SIGHUP, which the
        CLI does not catch, is passed on as SIGINT too.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self._signals += 1
            if self._signals > 2:
                raise KeyboardInterrupt
            if self._signals == 1:
                self.sink.note(
                    "interrupted: letting Pulumi cancel the operation cleanly "
                    "(interrupt again to stop it at once)"
                )
            else:
                self.sink.note(
                    "interrupted again: Pulumi stops the operation at once; waiting for it to "
                    "release the stack's lock (interrupt again to stop waiting)"
                )
            self._pass_on()

        caught = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {s: signal.signal(s, on_signal) for s in caught}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    # -- errors

    def _interrupted(self, what: str, finished: bool = False, gave_up: bool = False) -> Interrupted:
        """What an interrupt left behind, by what was running and how far it got."""
        refresh = f"mlserve status --refresh --stack {self.target.stack}"
        if gave_up:
            return Interrupted(
                f"interrupted three times: mlserve stopped waiting for Pulumi in the middle of "
                f"the {what}, so {self.describe()} may still be locked and hold pending "
                f"operations. Run `{refresh}`: if the stack is locked, it says how to remove the "
                "lock"
            )
        if finished:
            return Interrupted(f"interrupted; the {what} had already finished")
        if what == "preview":
            return Interrupted("interrupted: the preview was cancelled; nothing was changed")
        if self._sent > 1:
            return Interrupted(
                f"interrupted twice: Pulumi stopped the {what} at once and released the stack's "
                "lock, but the steps that were running were cut off and may be left pending in "
                f"its state. Run `{refresh}` to reconcile them before running it again"
            )
        return Interrupted(
            f"interrupted: Pulumi cancelled the {what} cleanly: the steps already running "
            "finished and the stack's lock was released. Run "
            f"`{refresh}` to see what it changed before running it again"
        )

    def _interrupted_waiting(self, what: str) -> Interrupted:
        return Interrupted(
            f"interrupted while waiting for the lock on {self.describe()}: the {what} had not "
            "started; nothing was changed"
        )

    def busy_message(self, detail: str = "") -> str:
        stack = self.target.stack
        waited = (
            f" within --lock-timeout {format_duration(self.lock_timeout)}"
            if self.lock_timeout
            else ""
        )
        return (
            f"{self.describe()} is locked by another update and was not released{waited}"
            f"{': ' + detail if detail else ''}. Wait for that update to finish, or retry with "
            f"--lock-timeout 5m. If no update is running (an interrupted one left its lock), "
            f"remove the lock with: pulumi cancel --yes --stack {stack} --cwd {self.workdir}"
        )

    def map_error(self, e: BaseException, what: str) -> MlserveError:
        """Every Automation API failure -> an mlserve error with a short, scrubbed message."""
        if isinstance(e, MlserveError):
            return e
        if self.interrupted and self._sent:
            return self._interrupted(what)
        # Interrupted before the CLI took the signal (before its first event, or after its
        # summary): its own result stands.
        text = str(e)
        if isinstance(e, auto.ConcurrentUpdateError):
            holder = next(
                (clean(line) for line in _stderr(text).splitlines() if "created by" in line), ""
            )
            holder = holder.split(": ", 1)[-1] if holder else ""
            return StackBusyError(self.scrub(self.busy_message(holder)))
        if isinstance(e, auto.StackNotFoundError):
            return PreconditionError(
                f"no {self.describe()}: deploy it first, or check --stack, --project and --backend"
            )
        if isinstance(e, FileNotFoundError | PermissionError | auto.InvalidVersionError):
            return EngineUnavailableError(self.scrub(f"{e}: {INSTALL_HINT}"))
        if isinstance(e, auto.CommandError):
            if "passphrase must be set" in text:
                return EngineUnavailableError(
                    f"{self.describe()} needs its passphrase: export PULUMI_CONFIG_PASSPHRASE_FILE "
                    "(or PULUMI_CONFIG_PASSPHRASE)"
                )
            if "incorrect passphrase" in text:
                return EngineUnavailableError(
                    f"the passphrase does not open {self.describe()}: set "
                    "PULUMI_CONFIG_PASSPHRASE_FILE (or PULUMI_CONFIG_PASSPHRASE) to the one it "
                    "was created with"
                )
            missing = _MISSING_PLUGIN.search(text)
            if missing:
                name, version = missing.groups()
                return EngineUnavailableError(
                    f"the {name} provider plugin{f' v{version}' if version else ''} is missing and "
                    f"could not be installed automatically: {plugin_fix(name, version)}"
                )
            if _TARGET_FAILURE.search(text):
                # checkTargets runs after the targeted steps (deployment_executor.go), and the
                # provider check fails mid-way (step_generator.go): some routing may have changed.
                return PreconditionError(
                    self._with_debug(
                        f"the routing-only {what} failed: {self._reasons(text).rstrip('.')}. "
                        "Part of the routing may have changed: run `mlserve deploy` first, "
                        "then check `mlserve status`",
                        text,
                    )
                )
            stepped = self._program_error is None and bool(self._failed)  # a step failed first
            if (
                isinstance(e, auto.InlineSourceRuntimeError) and not stepped
            ) or self._program_error is not None:
                err = self._program_error
                if isinstance(err, MlserveError):
                    return err
                reason = f"{type(err).__name__}: {err}" if err is not None else self._reasons(text)
                return OperationFailedError(
                    self._with_debug(f"the program failed during the {what}: {reason}", text)
                )
            killed = _KILLED.match(text)
            if killed:  # the CLI died by a signal (subprocess: code -N): it said nothing itself
                name = _signal_name(-int(killed[1]))
                return OperationFailedError(
                    self.scrub(
                        f"the {what} failed: the Pulumi CLI was killed ({name}) in the middle of "
                        f"it, so {self.describe()} may still be locked and hold pending "
                        f"operations. Run `mlserve status --refresh --stack {self.target.stack}`: "
                        "if the stack is locked, it says how to remove the lock"
                    )
                )
            message = f"the {what} failed: {self._reasons(text)}"
            if "pending operations" in text or any(
                "pending operations" in w for w in self._warnings
            ):
                message += "\n" + self.pending_hint()
            return OperationFailedError(self._with_debug(message, text))
        if isinstance(e, RuntimeError) and "summary event never found" in text:
            return OperationFailedError(
                self._with_debug(f"the {what} ended without a summary from the engine", text)
            )
        if isinstance(e, OSError):
            return EngineUnavailableError(self.scrub(f"{what}: {e}"))
        return OperationFailedError(
            self._with_debug(f"the {what} failed: {type(e).__name__}", text)
        )

    def _reasons(self, text: str) -> str:
        """The engine's own reason in a line or two: its error diagnostics or `error:` lines."""
        found = list(dict.fromkeys(self._errors)) or _error_lines(text)
        specific = [r for r in found if not _GENERIC_ERRORS.search(r)]
        chosen = (specific or found)[:2]
        if not chosen:
            last = [x for x in _lines(_stderr(text)) if x]
            chosen = last[-1:] or ["no reason given"]
        return self.scrub("; ".join(_unready(r)[:400] for r in chosen))

    def _with_debug(self, message: str, text: str) -> str:
        if self.debug:
            return self.scrub(f"{message}\n--- engine output ---{text}")
        return self.scrub(message) + " (run with --debug for the engine's full output)"


# pulumi-kubernetes' errors for an object it created or updated whose await failed
# (provider/pkg/provider/provider.go Create and Update, partialError): the URN or the object's
# name say nothing the resource name before them does not.
_UNREADY = (
    (
        re.compile(
            r'resource "urn:[^"]*" was successfully created, but the Kubernetes API server '
            r"reported that it failed to fully initialize or become live: "
        ),
        "created, but ",
    ),
    (
        re.compile(
            r'the Kubernetes API server reported that "[^"]*" failed to fully initialize or '
            r"become live: "
        ),
        "updated, but ",
    ),
)


def _unready(reason: str) -> str:
    for pattern, short in _UNREADY:
        reason = pattern.sub(short, reason)
    return reason


# A CommandError's text starts "\n code: N"; a negative N is the signal that killed the CLI.
_KILLED = re.compile(r"\s*code: (-\d+)\b")


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


# A CLI that is stopped at once (a second interrupt) or killed does not close its event stream;
# the SDK would warn of that on stderr after mlserve's own message, which says what happened.
warnings.filterwarnings("ignore", "Error in event stream", UserWarning)


def _lines(text: str) -> Iterator[str]:
    """The lines of a CommandError's text ("\n code: N\n stdout: ...\n stderr: ..."), cleaned."""
    for line in text.splitlines():
        line = clean(line)
        for prefix in ("stdout:", "stderr:"):
            if line.startswith(prefix):
                line = line[len(prefix) :].strip()
        yield line


def _no_traceback(message: str) -> str:
    """A diagnostic without the Python traceback the language host appends to a program's
    exception (pulumi/runtime/stack.py): that is for --debug, not for a user."""
    head, found, _ = message.partition("Traceback (most recent call last):")
    return head.rstrip() if found else message


def summarize(message: str) -> str:
    """One line from an engine message; "N errors occurred:" lists expand to their items."""
    lines = [clean(x) for x in message.splitlines() if clean(x)]
    if not lines:
        return ""
    if re.fullmatch(r"\d+ errors? occurred:?", lines[0]):
        items = [x.lstrip("*").strip() for x in lines[1:] if x.startswith("*")]
        return "; ".join(items) or lines[0]
    return lines[0]


def _error_lines(text: str) -> list[str]:
    """`error:` lines of the CLI's output, each with the resource its Diagnostics block names."""
    lines = list(_lines(text))
    found = []
    resource = ""
    for i, line in enumerate(lines):
        header = re.fullmatch(r"([\w.-]+:[\w./-]*:[\w.]+) \((.+)\):", line)
        if header:
            resource = "" if header.group(1) == "pulumi:pulumi:Stack" else header.group(2)
            continue
        m = re.match(r"error:\s*(.+)", line)
        if m:
            following = [m.group(1)] + [x for x in lines[i + 1 : i + 20] if x.startswith("*")]
            reason = summarize("\n".join(following))
            found.append(f"{resource}: {reason}" if resource else reason)
    return list(dict.fromkeys(found))


def _first_error(text: str) -> str:
    return next(iter(_error_lines(text)), "the CLI gave no reason")


def _op_counts(changes: Mapping[Any, int]) -> dict[str, int]:
    """OpType keys (a str Enum whose str() is 'OpType.CREATE') as plain op names."""
    return {getattr(k, "value", k): n for k, n in changes.items()}


def _stderr(text: str) -> str:
    return text.rsplit("\n stderr: ", 1)[-1] if "\n stderr: " in text else text


# The event loop the SDK runs the program on, by the thread of its language server's Run.
_program_loops: dict[int, asyncio.AbstractEventLoop] = {}


def _finishing(run: Callable[..., Any]) -> Callable[..., Any]:
    """The SDK's LanguageServer.Run, then the end of its program's loop if Run's own was cut short.

    When the CLI goes away mid-program (killed, or stopped by a second Ctrl-C), the program's
    pending RPCs fail, and Run's cleanup (pulumi/automation/_server.py: cancel each pending
    task, run it to its end, close the loop) suppresses only CancelledError: the first task
    that ends in a gRPC error stops it, and the remaining tasks stay suspended on a loop no one
    runs. Whenever the garbage collector later finds them, in whatever thread and code, Python
    prints "Exception ignored in: <coroutine object run_in_stack ...>" with a traceback (their
    cleanup asks for a running loop), and inside CPython 3.11's `ast` module that print can
    even turn into a SystemError. Here, on Run's own thread once it returns, the rest of that
    cleanup is done: the tasks are cancelled and run to their end, and the loop is closed.
    """

    def run_then_finish(self: Any, request: Any, context: Any) -> Any:
        try:
            return run(self, request, context)
        finally:
            loop = _program_loops.pop(threading.get_ident(), None)
            if loop is not None and not loop.is_closed() and not loop.is_running():
                _finish_loop(loop)

    return run_then_finish


def _finish_loop(loop: asyncio.AbstractEventLoop) -> None:
    for _ in range(10):  # a task's cleanup may start another; the SDK's handler may stop the loop
        pending = asyncio.all_tasks(loop)
        if not pending:
            break
        for task in pending:
            task.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                loop.run_until_complete(task)
    loop.close()


LanguageServer.Run = _finishing(LanguageServer.Run)  # type: ignore[method-assign]


def _in_worker(call: Callable[[], T]) -> T:
    """Run `call` on a worker thread while the main thread waits in short timed joins.

    The kernel may deliver a process-directed signal to any thread; CPython then runs the Python
    handler on the main thread only when that thread next runs bytecode. Blocked in an untimed
    join (the SDK joins its output readers while the CLI runs), it would not until the operation
    ended, so a Ctrl-C or SIGTERM would reach the CLI only after the update had finished.
    """
    if threading.current_thread() is not threading.main_thread():
        return call()
    outcome: list[T] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            outcome.append(call())
        except BaseException as e:  # handed to the main thread below
            failure.append(e)

    worker = threading.Thread(target=work, name="mlserve-operation", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.1)  # a KeyboardInterrupt here (a third interrupt) stops waiting at once
    if failure:
        raise failure[0]
    return outcome[0]
