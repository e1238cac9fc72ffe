"""Set-up shared by the whole test session."""

from __future__ import annotations

import compileall
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """Compile mlserve and the stand-in CLI once, before any test starts a process.

    The tests start some 2,000 `python` processes (mlserve, the stand-in `pulumi`). Where
    PYTHONDONTWRITEBYTECODE is set, as on the project's machines, none of them may write the
    bytecode it compiles, so each compiled these sources again: 40-70 ms of CPU a process.
    Processes still read bytecode that exists, and py_compile writes it whatever that variable
    says. Done by the xdist controller (or the only process), not by each worker."""
    if hasattr(config, "workerinput"):
        return
    for folder in (REPO / "mlserve", REPO / "tests" / "fake_pulumi"):
        compileall.compile_dir(folder, quiet=1)
