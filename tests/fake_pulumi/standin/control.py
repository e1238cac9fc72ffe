"""Errors with the CLI's exit codes, and the test's control knobs (FAKE_PULUMI_CONTROL)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Exit codes: pkg/cmd/pulumi/cmd/exit_codes.go (ExitCodeFor). A failed or cancelled operation is a
# "bail" (result.BailError), which maps to ExitCodeError before CancelledError is looked at.
EXIT_ERROR = 1
EXIT_CONFIGURATION = 2
EXIT_STACK_NOT_FOUND = 6


class Fail(Exception):
    """Ends the command: `stderr` is printed as the CLI's error line(s), `stdout` first."""

    def __init__(self, stderr: str, stdout: str = "", code: int = EXIT_ERROR) -> None:
        super().__init__(stderr)
        self.stderr, self.stdout, self.code = stderr, stdout, code


def _path() -> Path | None:
    path = os.environ.get("FAKE_PULUMI_CONTROL")
    return Path(path) if path else None


def control() -> dict[str, Any]:
    path = _path()
    if path is None or not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text() or "{}")
    return data


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Several stand-in processes may race on a counter (e.g. `locked`): update under flock.
    with open(str(path) + ".flock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def update(change: Callable[[dict[str, Any]], Any]) -> Any:
    """Apply `change` to the knobs atomically; returns what `change` returns."""
    path = _path()
    if path is None:
        return change({})
    with _locked(path):
        data = control()
        result = change(data)
        # Replaced whole, so that a test polling the knobs never reads half a file.
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
        return result
