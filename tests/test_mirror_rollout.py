"""A rollout with a shadow phase, end to end: the analysis against a REAL Prometheus (Debian's
package, tests/prometheus_fixture.py), the engine side through the stand-in Pulumi CLI. Nothing
here ran against a real Pulumi CLI or a cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fake_pulumi import fixture
from tests.fake_pulumi.fixture import Fake
from tests.helpers import run_cli as mlserve
from tests.prometheus_fixture import Prometheus
from tests.test_rollout_cli import healthy, prom, write_spec

pytestmark = pytest.mark.waits
fake = fixture.fake
__all__ = ["prom"]  # the fixture, from the rollout tests


def updates(name: str) -> list[dict[str, Any]]:
    """Oldest first: each update's command, canary weight and mirror, from `history --json`."""
    result = mlserve("history", "--project", name, "--json")
    assert result.returncode == 0, result.stderr
    return [
        {k: r[k] for k in ("command", "weight", "mirror")}
        for r in reversed(json.loads(result.stdout))
    ]


def test_a_shadow_phase_mirrors_the_canary_then_the_first_weight_step_ends_it(
    fake: Fake, prom: Prometheus, tmp_path: Path
) -> None:
    name = "shadow-healthy"
    healthy(prom, name)
    steps = [{"mirror": 100, "pause": "2s"}, {"weight": 50, "pause": "2s"}]
    result = mlserve("rollout", str(write_spec(tmp_path, prom, name, steps)), "--yes", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "completed"
    assert {m["step"] for m in report["measurements"]} == {1, 2}  # the shadow step was measured
    assert updates(name) == [
        {"command": "mlserve deploy", "weight": 0, "mirror": None},
        {
            "command": "mlserve rollout: step 1/2, mirror 100%, pause 2s",
            "weight": 0,
            "mirror": {"version": "v2", "percent": 100},
        },
        {"command": "mlserve rollout: step 2/2, weight 50, pause 2s", "weight": 50, "mirror": None},
        {
            "command": "mlserve rollout: completed, v2 promoted to stable",
            "weight": 0,
            "mirror": None,
        },
    ]


def test_a_failing_shadow_aborts_and_the_abort_ends_the_mirror(
    fake: Fake, prom: Prometheus, tmp_path: Path
) -> None:
    name = "shadow-failing"
    prom.metrics.set(name, "v2", requests=20, errors=10)
    prom.wait_for(f'rate(http_requests_total{{service="{name}", version="v2"}}[5s])')
    steps = [{"mirror": 20, "pause": "5m"}, {"weight": 50, "pause": "1s"}]
    result = mlserve("rollout", str(write_spec(tmp_path, prom, name, steps)), "--yes")
    assert result.returncode == 7, result.stdout + result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        "error: rollout aborted, v2 sent back to 0%: error-rate 0."
    )
    assert updates(name)[-2:] == [
        {
            "command": "mlserve rollout: step 1/2, mirror 20%, pause 5m",
            "weight": 0,
            "mirror": {"version": "v2", "percent": 20},
        },
        {"command": "mlserve rollout: aborted (error-rate)", "weight": 0, "mirror": None},
    ]
