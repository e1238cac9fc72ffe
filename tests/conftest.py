"""Set-up shared by the whole test session.

The tests start some 2,000 Python processes (xdist's workers, mlserve, the stand-in `pulumi`).
Where PYTHONDONTWRITEBYTECODE is set, as on the project's machines, none of them may keep the
bytecode it compiles, so each compiled mlserve, the stand-in and (in every worker) the test
modules with pytest's assertion rewriting again: 40-70 ms of CPU a process, 1.5 s a worker.
The tests keep their bytecode whatever that variable says; it goes where Python puts it by
default (`__pycache__`, which git ignores). Read here, before xdist starts its workers.

Python's cyclic garbage collector walks every object it tracks in a full collection, and a test
process holds hundreds of thousands: the SDK, the provider packages, kubernetes-validate's
schemas, the shared renders. perf, sampling 20 s of a run, found 12% of all CPU in
gc_collect_main, half of one worker's. So after collection and after each test, what is still
alive is collected once and frozen (gc.freeze): later collections walk only what the running
test made. Cycles that were garbage then are freed first; a frozen object is still freed when
its count drops to zero. Within a test, full collections come ten times less often than by
default: a test that renders hundreds of times keeps what it rendered, and each full collection
walked all of it again (another 15% of the render-heavy files' CPU; some 7 MB more memory at
the peak).

Under xdist, tests marked `slow` (seconds of CPU) or `waits` (seconds of real time, mostly
asleep) start first, spread over the workers, so that the run does not end with one worker on a
15-second test while the others are done, and a worker that sleeps leaves its core to one that
computes.
"""

from __future__ import annotations

import gc
import itertools
import os
import sys

import pytest

# The one Prometheus server of a test process. Defined here, not imported into each test module:
# a session fixture imported into two modules is two fixtures, and so two servers, each of
# which scrapes nothing for its first 5 s (discovery/manager.go: updatert).
from tests import prometheus_fixture, realstack
from tests.prometheus_fixture import prometheus  # noqa: F401
from tests.realstack import real, real_cli, real_stack  # noqa: F401

os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False
gc.set_threshold(700, 10, 100)  # CPython's default: 700, 10, 10


def pytest_collection_finish(session: pytest.Session) -> None:
    # After `-m` has deselected (pytest_collection_modifyitems): `-m "not real"` starts no stack.
    realstack.start_early(session.items)
    gc.collect()
    gc.freeze()


@pytest.hookimpl(trylast=True)  # after the test's fixtures are torn down
def pytest_runtest_teardown() -> None:
    gc.collect()
    gc.freeze()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    prometheus_fixture.start_early(items)
    workers = getattr(config, "workerinput", {}).get("workercount", 0)
    if workers > 1:
        items[:] = _long_ones_first(items, workers)


def _long_ones_first(items: list[pytest.Item], workers: int) -> list[pytest.Item]:
    """The same tests, so ordered that each worker starts with its share of the long ones.

    The README's `--dist worksteal` first hands each worker a run of consecutive tests: worker k
    gets len(pending) // (workers - k) of those left (xdist/scheduler/worksteal.py,
    check_schedule). The long tests go round-robin to the heads of those runs: those taking
    minutes first (a 10-minute provider time-out started last would end the run alone), then
    slow and waiting ones in turn; the rest keep their order, so a worker still runs a module's
    tests together (their imports and shared renders are per process). Another order costs
    time, never a result: every worker collects this same list."""
    minutes = [item for item in items if item.get_closest_marker("minutes")]
    slow = [item for item in items if item.get_closest_marker("slow") and item not in minutes]
    waits = [
        item
        for item in items
        if item.get_closest_marker("waits") and item not in slow and item not in minutes
    ]
    long = minutes + [item for pair in itertools.zip_longest(slow, waits) for item in pair if item]
    rest = iter([item for item in items if item not in long])
    ordered: list[pytest.Item] = []
    left = len(items)
    for k in range(workers):
        size = left // (workers - k)
        heads = long[k::workers]
        ordered += [*heads, *itertools.islice(rest, max(0, size - len(heads)))]
        left -= size
    return ordered + list(rest)
