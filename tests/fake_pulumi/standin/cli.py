"""Entry point: log the call, parse argv, run the command, print as the CLI does."""

from __future__ import annotations

import json
import os
import sys

from .argv import parse
from .control import EXIT_CONFIGURATION, Fail

LOGGED_ENV = (
    "PULUMI_BACKEND_URL",
    "PULUMI_CONFIG_PASSPHRASE",
    "PULUMI_CONFIG_PASSPHRASE_FILE",
    "PULUMI_SKIP_UPDATE_CHECK",
    "PULUMI_HOME",
    "PULUMI_AUTOMATION_API",
    "PULUMI_DEBUG_COMMANDS",
)


def _log(argv: list[str]) -> None:
    path = os.environ.get("FAKE_PULUMI_LOG")
    if not path:
        return
    entry = {
        "argv": argv,
        "cwd": os.getcwd(),
        "env": {k: os.environ[k] for k in LOGGED_ENV if k in os.environ},
        "pid": os.getpid(),
    }
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def dispatch(argv: list[str]) -> str:
    a = parse(argv)
    if a.get("--cwd"):
        os.chdir(a.get("--cwd") or ".")
    word = a.words[0] if a.words else ""
    if a.has("--help"):
        return f"Usage:\n  pulumi {word} [flags]\n"
    if word == "version":
        from .commands import version

        return version(a)
    if word == "plugin":
        from .commands import plugin

        return plugin(a)
    if word in ("preview", "up", "update", "refresh", "destroy"):
        from .operation import operation

        return operation(a)
    if word in ("stack", "config", "cancel", "whoami"):
        from . import commands

        handler = {"stack": commands.stack, "config": commands.config,
                   "cancel": commands.cancel, "whoami": commands.whoami}[word]  # fmt: skip
        return handler(a)
    raise Fail(f'error: unknown command "{word}" for "pulumi"', code=EXIT_CONFIGURATION)


def main(argv: list[str]) -> int:
    # gRPC's C core logs connection teardown at INFO; the real CLI (Go) prints nothing of it.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    _log(argv)
    try:
        out = dispatch(argv)
    except Fail as e:
        if e.stdout:
            sys.stdout.write(e.stdout if e.stdout.endswith("\n") else e.stdout + "\n")
        if e.stderr:
            sys.stderr.write(e.stderr + "\n")
        return e.code
    if out:
        sys.stdout.write(out if out.endswith("\n") else out + "\n")
    return 0
