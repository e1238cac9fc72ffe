"""One error hierarchy; each class carries its exit code (DESIGN.md section 2).

Only cli.py turns these into exit codes and text; logic raises, never prints or exits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a spec file, pointing at the offending YAML node. Line 0: the file as
    a whole (missing, a directory, too big), with no position to point at."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.line:  # no position: null, not an invented 1:1
            data.update(line=None, column=None)
        return data


class MlserveError(Exception):
    """Base class: a failure the user can act on, printed without a traceback."""

    exit_code = 1


class UsageError(MlserveError):
    """Bad command-line usage: --weight 150, or deploy without --yes and no terminal."""

    exit_code = 2


class SpecError(MlserveError):
    """The spec is invalid; carries every problem found, sorted by position."""

    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class StackBusyError(MlserveError):
    """Another update holds the stack lock and it was not released within --lock-timeout."""

    exit_code = 3


class EngineUnavailableError(MlserveError):
    """The Pulumi CLI or a provider plugin is missing or too old."""

    exit_code = 4


class OperationFailedError(MlserveError):
    """The engine ran and the operation failed. `failed`: the engine's FailedStep of each
    resource whose step failed, when the engine reported any."""

    exit_code = 5
    failed: tuple[Any, ...] = ()


class PreconditionError(MlserveError):
    """A precondition failed: --expect-weight mismatch, nothing to promote or roll back."""

    exit_code = 6


class AnalysisFailedError(MlserveError):
    """A rollout's analysis failed and the canary was sent back to 0%."""

    exit_code = 7


class PendingChangesError(MlserveError):
    """`plan --exit-code` found changes."""

    exit_code = 10


class Interrupted(MlserveError):
    """Ctrl-C: the running operation was asked to cancel."""

    exit_code = 130
