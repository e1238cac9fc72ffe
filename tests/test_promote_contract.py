"""Contract test against a REAL Pulumi CLI (skipped without one): the promote/rollback guard reads
the stack's history from inside the running update's program, while the update holds the lock.

Written where no Pulumi CLI can be installed: on the first machine with one, run `pytest -m engine`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mlserve import ops
from mlserve.engine import Engine, Target
from mlserve.errors import PreconditionError

REAL = shutil.which("pulumi")
pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(
        REAL is None or "fake_pulumi" in REAL, reason="needs a real Pulumi CLI on PATH"
    ),
]


def program() -> None:
    import pulumi

    pulumi.export("routing", ["urn:example"])


@pytest.fixture
def target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Target:
    monkeypatch.setenv("MLSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "contract-passphrase")
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    monkeypatch.delenv("MLSERVE_BACKEND_URL", raising=False)
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    return Target("mlserve-contract", "dev", backend=(tmp_path / "state").as_uri())


def test_the_guard_reads_history_inside_a_running_update(target: Target) -> None:
    eng = Engine(target)
    eng.stack(create=True)
    eng.set_config({"mlserve:traffic": json.dumps({"stable": "v1"})})
    first = eng.up(program, message="first")
    # The running update is not a finished one: the guard sees revision 1 and lets it run.
    guard = ops._unchanged_since(eng, first.version)
    second = eng.up(lambda: guard(program), message="second")
    assert second.version == 2
    # Computed before revision 2: the guard stops the program, and the update changes nothing.
    stale = ops._unchanged_since(eng, first.version)
    with pytest.raises(PreconditionError, match="changed while this command waited"):
        eng.up(lambda: stale(program), message="stale")
    assert [e.result for e in eng.history()][:2] == ["failed", "succeeded"]
