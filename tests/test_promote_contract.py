"""Contract test against a REAL Pulumi CLI (skipped without one): the promote/rollback guard reads
the stack's history from inside the running update's program, while the update holds the lock.

Written where no Pulumi CLI can be installed: on the first machine with one, run `pytest -m engine`.
"""

from __future__ import annotations

import json

import pytest

from mlserve import ops
from mlserve.engine import Engine, Target
from mlserve.errors import PreconditionError
from tests.helpers import real_engine_only, real_target

pytestmark = real_engine_only
target = real_target


def program() -> None:
    import pulumi

    pulumi.export("routing", ["urn:example"])


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
