"""Contract tests against a REAL Pulumi CLI: skipped unless `pulumi` is on PATH.

They run an inline program that only exports outputs, on a file backend under tmp_path with a
passphrase from the environment, so they need no cloud, no cluster and no login. They were
written where no Pulumi CLI can be installed: on the first machine with one, run
`pytest -m engine` and treat a failure as a finding about the engine, not as flakiness.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from mlserve.engine import Engine, Target
from mlserve.errors import PreconditionError, StackBusyError
from tests.helpers import real_engine_only, real_target

pytestmark = real_engine_only
target = real_target
TRAFFIC = {"stable": "v1", "canary": "v2", "weight": 10, "previous": None}


def program() -> None:
    import pulumi

    pulumi.export("endpoint", "http://models.example.test/fraud")
    pulumi.export("weights", {"v1": 90, "v2": 10})
    pulumi.export("token", pulumi.Output.secret("contract-secret-token"))


def slow_program() -> None:
    import pulumi

    time.sleep(8)
    pulumi.export("endpoint", "http://slow.example.test/")


def test_deploy_outputs_history_destroy_on_a_real_engine(target: Target) -> None:
    eng = Engine(target)
    eng.stack(create=True)
    eng.set_config({"mlserve:traffic": json.dumps(TRAFFIC)})

    preview = eng.preview(program)
    assert preview.changes.get("create") == 1  # the pulumi:pulumi:Stack

    up = eng.up(program, message="mlserve deploy")
    assert up.outputs["endpoint"] == "http://models.example.test/fraud"
    assert up.outputs["weights"] == {"v1": 90, "v2": 10}
    assert up.outputs["token"] == "[secret]"
    assert eng.scrub("leaked contract-secret-token") == "leaked [secret]"

    fresh = Engine(target)  # a new command: selects the existing stack
    entries = fresh.history()
    assert [(e.kind, e.result, e.message) for e in entries] == [
        ("update", "succeeded", "mlserve deploy")
    ]
    assert json.loads(entries[0].config["mlserve:traffic"]) == TRAFFIC
    deployed = fresh.deployed()
    assert deployed is not None and deployed.traffic == TRAFFIC
    assert fresh.outputs()["token"] == "[secret]"

    changes = fresh.destroy(message="mlserve destroy")
    assert changes.get("delete") == 1
    assert [e.kind for e in Engine(target).history()] == ["destroy", "update"]
    assert Engine(target).deployed() is None


def test_a_missing_stack_is_a_precondition_error_on_a_real_engine(target: Target) -> None:
    with pytest.raises(PreconditionError, match="no stack 'dev' of project 'mlserve-contract'"):
        Engine(target).history()


def test_a_held_lock_is_stack_busy_on_a_real_engine(target: Target) -> None:
    holder = Engine(target)
    holder.stack(create=True)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            holder.up(slow_program, message="holder")
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        time.sleep(4)  # the update has taken the DIY lock and is running the slow program
        waiter = Engine(target, lock_timeout=0)
        waiter.stack()
        with pytest.raises(StackBusyError, match="is locked by another update"):
            waiter.preview(program)
    finally:
        thread.join(120)
    assert errors == []
