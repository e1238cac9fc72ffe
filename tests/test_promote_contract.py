"""Contract test against a REAL Pulumi CLI (skipped without one): the guard promote and rollback
run reads the stack's history from inside the running update's program, while the update holds
the lock, and numbers the update it lets through.

Written where no Pulumi CLI can be installed: on the first machine with one, run `pytest -m engine`.
"""

from __future__ import annotations

import pytest

from mlserve.engine import Engine, Mark, Target
from mlserve.errors import PreconditionError
from tests.helpers import real_engine_only, real_target

pytestmark = real_engine_only
target = real_target
CONFIG = {"mlserve:traffic": '{"stable": "v1"}'}


def program() -> None:
    import pulumi

    pulumi.export("routing", ["urn:example"])


def test_the_guard_reads_history_inside_a_running_update(target: Target) -> None:
    eng = Engine(target)
    eng.stack(create=True)
    first = eng.up(program, message="first", config=CONFIG, expect=Mark.of([]), since="start")
    assert first.revision == 1
    read = Mark.of(eng.history())
    # The running update is not listed by the file backend (its entry is written when it ends):
    # the guard sees revision 1, lets it run, and numbers it 2.
    second = eng.up(program, message="second", config=CONFIG, expect=read, since="the read")
    assert second.revision == 2
    assert eng.history()[0].revision == 2
    # Read before revision 2: the guard stops the program, and the update changes nothing.
    with pytest.raises(PreconditionError, match="changed since the read: revision 2"):
        eng.up(program, message="stale", config=CONFIG, expect=read, since="the read")
    entries = eng.history()
    assert [(e.revision, e.result) for e in entries] == [
        (3, "failed"),
        (2, "succeeded"),
        (1, "succeeded"),
    ]
    assert Mark.of(entries) == Mark.of(entries[1:])
