"""`mlserve rollout` end to end: the analysis against a REAL Prometheus (Debian's package, see
tests/prometheus_fixture.py), the engine side through the stand-in Pulumi CLI (`fake` fixture).

Nothing here ran against a real Pulumi CLI or a cluster: the routing updates are the stand-in's.
The stack's state is read back through mlserve's own `history --json` and `status --json`.
Commands run in this process (`run_cli`), except where a process is stopped or killed mid-rollout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import prometheus_fixture
from tests.fake_pulumi import fixture
from tests.fake_pulumi.fixture import Fake
from tests.helpers import REPO
from tests.helpers import run_cli as mlserve
from tests.prometheus_fixture import Prometheus

pytestmark = pytest.mark.waits  # for Prometheus's scrapes and the rollouts' pauses
fake = fixture.fake
ERROR_RATE = (
    'sum(rate(http_requests_total{service="{{name}}", version="{{canary}}", code=~"5.."}[5s]))\n'
    '/ sum(rate(http_requests_total{service="{{name}}", version="{{canary}}"}[5s]))'
)


@pytest.fixture
def prom(prometheus: Prometheus, monkeypatch: pytest.MonkeyPatch) -> Prometheus:
    """The session's Prometheus, with its credentials in the environment as CI would set them."""
    for key, value in prometheus_fixture.AUTH.items():
        monkeypatch.setenv(key, value)
    return prometheus


def write_spec(
    tmp_path: Path,
    prom: Prometheus | str,
    name: str,
    steps: list[dict[str, Any]],
    *,
    failure_limit: int = 1,
    weight: int = 0,
    gateway: str = "istio",
    metrics: list[dict[str, Any]] | None = None,
) -> Path:
    """specs/istio.yaml under another name (its own series in Prometheus), with a rollout
    measured in `prom` (or at an address); `gateway: service` routes with a Service instead."""
    spec = yaml.safe_load((REPO / "specs" / "istio.yaml").read_text())
    spec["name"] = name
    spec["traffic"]["weight"] = weight
    if gateway == "service":
        spec["gateway"] = {"type": "service"}
    spec["rollout"] = {
        "steps": steps,
        "analysis": {
            "prometheus": {"address": prom if isinstance(prom, str) else prom.url},
            "interval": "1s",
            "failureLimit": failure_limit,
            "metrics": metrics or [{"name": "error-rate", "query": ERROR_RATE, "max": 0.05}],
        },
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def healthy(prom: Prometheus, name: str) -> None:
    prom.metrics.set(name, "v2", requests=20, errors=0)
    prom.wait_for(f'rate(http_requests_total{{service="{name}", version="v2"}}[5s])')


def start_rollout(spec: Path, *args: str) -> subprocess.Popen[str]:
    """`mlserve rollout SPEC --yes` as a CI job runs it, its output read line by line."""
    return subprocess.Popen(
        [sys.executable, "-m", "mlserve", "rollout", str(spec), "--yes", *args],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def history(name: str) -> list[dict[str, Any]]:
    """Oldest first: command, stable, canary and weight of each update."""
    result = mlserve("history", "--project", name, "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    return [{k: r[k] for k in ("command", "stable", "canary", "weight")} for r in reversed(rows)]


def commands(name: str) -> list[str]:
    return [r["command"] for r in history(name)]


def test_a_healthy_canary_walks_every_step_and_completes(
    fake: Fake, prom: Prometheus, tmp_path: Path
) -> None:
    name = "roll-healthy"
    healthy(prom, name)
    spec = write_spec(
        tmp_path, prom, name, [{"weight": 20, "pause": "2s"}, {"weight": 50, "pause": "2s"}]
    )
    result = mlserve("rollout", str(spec), "--yes", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["status"], report["step"], report["steps"]) == ("completed", 2, 2)
    assert report["weights"] == {"v2": 100}
    assert [u["command"] for u in report["updates"]] == [
        "mlserve rollout: step 1/2, weight 20, pause 2s",
        "mlserve rollout: step 2/2, weight 50, pause 2s",
        "mlserve rollout: completed, v2 promoted to stable",
    ]
    # Each pause measured at least once (how often depends on how long its update took: a
    # pause counts from the start of its step's update), every value within its bounds.
    measured = [(m["step"], m["metric"], m["outcome"], m["value"]) for m in report["measurements"]]
    assert {m[0] for m in measured} == {1, 2}
    assert {m[1:] for m in measured} == {("error-rate", "ok", 0.0)}
    assert history(name) == [
        {"command": "mlserve deploy", "stable": "v1", "canary": "v2", "weight": 0},
        {"command": report["updates"][0]["command"], "stable": "v1", "canary": "v2", "weight": 20},
        {"command": report["updates"][1]["command"], "stable": "v1", "canary": "v2", "weight": 50},
        {"command": report["updates"][2]["command"], "stable": "v2", "canary": None, "weight": 0},
    ]
    # The password came from the environment and went nowhere else.
    assert prometheus_fixture.PASSWORD not in result.stdout + result.stderr
    again = mlserve("rollout", "--project", name)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == ("The rollout of v2 is already completed: nothing to do")


def test_a_canary_whose_error_rate_rises_is_sent_back_to_0_and_exits_7(
    fake: Fake, prom: Prometheus, tmp_path: Path
) -> None:
    name = "roll-failing"
    healthy(prom, name)
    spec = write_spec(
        tmp_path, prom, name, [{"weight": 20, "pause": "1s"}, {"weight": 50, "pause": "5m"}]
    )
    process = start_rollout(spec)
    assert process.stdout is not None
    lines = []
    for line in process.stdout:  # the live output: each step as it is applied
        lines.append(line)
        if line.startswith("Step 2/2"):
            prom.metrics.set(name, "v2", requests=20, errors=10)
            break
    rest, stderr = process.communicate(timeout=180)
    output = "".join(lines) + rest
    assert process.returncode == 7, output + stderr
    # failureLimit 1: the second failed round aborts, long before the 5 minute pause ends.
    error = stderr.splitlines()[-1]
    assert error.startswith("error: rollout aborted, v2 sent back to 0%: error-rate 0.")
    assert error.endswith(" > max 0.05 (2 failed measurements; failureLimit 1)")
    print(output)
    failed = [line for line in output.splitlines() if "FAILED" in line]
    assert len(failed) == 4  # the two live rows, and the two again in the summary
    assert all(" error-rate " in line and "max 0.05" in line for line in failed)
    assert "Rollout of v2 aborted at step 2/2: error-rate 0." in output
    assert history(name)[-2:] == [
        {
            "command": "mlserve rollout: step 2/2, weight 50, pause 5m",
            "stable": "v1",
            "canary": "v2",
            "weight": 50,
        },
        {
            "command": "mlserve rollout: aborted (error-rate)",
            "stable": "v1",
            "canary": "v2",
            "weight": 0,
        },
    ]
    # A second run (a CI retry) does not send the canary out again by itself.
    retry = mlserve("rollout", str(spec), "--yes")
    assert retry.returncode == 6
    assert retry.stderr.startswith("error: the rollout of v2 was aborted at ")
    assert retry.stderr.endswith(
        "Nothing was changed; to try v2 again, run `mlserve rollout --restart`\n"
    )
    assert commands(name)[-1] == "mlserve rollout: aborted (error-rate)"


def test_a_killed_rollout_resumes_at_its_step(fake: Fake, prom: Prometheus, tmp_path: Path) -> None:
    name = "roll-killed"
    healthy(prom, name)
    spec = write_spec(
        tmp_path, prom, name, [{"weight": 20, "pause": "1s"}, {"weight": 40, "pause": "6s"}]
    )
    process = start_rollout(spec)
    assert process.stdout is not None
    in_step_2 = False
    for line in process.stdout:  # until the first measurement of step 2, mid-pause
        in_step_2 = in_step_2 or line.startswith("Step 2/2")
        if in_step_2 and " error-rate " in line:
            break
    # Killed as a cancelled CI job is: SIGKILL, no chance to clean up.
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    before = commands(name)
    assert before[-1] == "mlserve rollout: step 2/2, weight 40, pause 6s"

    resumed = mlserve("rollout", "--project", name, "--json")
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    # No step was applied again: the next update is the completion.
    assert [u["command"] for u in report["updates"]] == [
        "mlserve rollout: completed, v2 promoted to stable"
    ]
    assert {m["step"] for m in report["measurements"]} == {2}
    assert commands(name) == [*before, "mlserve rollout: completed, v2 promoted to stable"]


def test_a_manual_pause_waits_until_continue(fake: Fake, prom: Prometheus, tmp_path: Path) -> None:
    name = "roll-manual"
    healthy(prom, name)
    spec = write_spec(
        tmp_path,
        prom,
        name,
        [{"weight": 20, "pause": "1s"}, {"pause": "manual"}, {"weight": 60, "pause": "1s"}],
    )
    first = mlserve("rollout", str(spec), "--yes")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[-3:] == [
        "Rollout of v2 paused at step 2/3 (v1 80%, v2 20%): run `mlserve rollout --continue` "
        "to go on",
        "  v1  ########################......   80%",
        "  v2  ######........................   20%",
    ]
    status = json.loads(mlserve("status", "--project", name, "--json").stdout)
    assert {k: status["rollout"][k] for k in ("status", "step", "steps", "weight")} == {
        "status": "paused",
        "step": 2,
        "steps": 3,
        "weight": 20,
    }
    waiting = mlserve("rollout", "--project", name)
    assert waiting.returncode == 0, waiting.stderr
    assert waiting.stdout.startswith("Rollout of v2 paused at step 2/3")
    paused = commands(name)
    assert paused[-1] == "mlserve rollout: step 2/3, pause manual"
    dry = mlserve("rollout", "--dry-run", "--project", name)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[:5] == [
        "Dry run (nothing was changed): the rollout of v2 (stable v1) from v1 80%, v2 20%",
        "STEP       TRAFFIC                      PAUSE",
        "2/3 (now)  v1 80%, v2 20%               manual: until `mlserve rollout --continue`",
        "3/3        v1 40%, v2 60%               1s, measured every 1s",
        "then       v2 100% (previous v1 at 0%)  complete: the canary is stable",
    ]
    assert commands(name) == paused

    go_on = mlserve("rollout", "--continue", "--project", name, "--json")
    assert go_on.returncode == 0, go_on.stderr
    report = json.loads(go_on.stdout)
    assert report["status"] == "completed"
    assert commands(name) == [
        *paused,
        "mlserve rollout: step 3/3, weight 60, pause 1s",
        "mlserve rollout: completed, v2 promoted to stable",
    ]
    nothing = mlserve("rollout", "--continue", "--project", name)
    assert nothing.returncode == 6
    assert nothing.stderr == (
        "error: nothing to continue: the rollout of v2 is completed at step 3; run "
        "`mlserve rollout` without --continue\n"
    )


def test_dry_run_lists_the_steps_runs_each_query_once_and_changes_nothing(
    fake: Fake, prom: Prometheus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "roll-dry"
    prom.metrics.set(name, "v2", requests=20, errors=5)
    prom.wait_for(f'rate(http_requests_total{{service="{name}", code="500"}}[5s]) > 0')
    spec = write_spec(tmp_path, prom, name, [{"weight": 20, "pause": "1m"}])
    result = mlserve("rollout", str(spec), "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:6] == [
        "Dry run (nothing was changed): the rollout of v2 (stable v1) from v1 100%, v2 0%",
        "STEP  TRAFFIC                      PAUSE",
        "1/1   v1 80%, v2 20%               1m, measured every 1s",
        "then  v2 100% (previous v1 at 0%)  complete: the canary is stable",
        "",
        f"Every query once, at {prom.url}:",
    ]
    assert lines[6].split() == ["METRIC", "VALUE", "BOUNDS", "RESULT"]
    metric, value, *rest = lines[7].split()
    assert (metric, rest) == ("error-rate", ["max", "0.05", "would", "FAIL"])
    assert 0.05 < float(value) <= 1
    assert fake.commands() == []  # not even `pulumi version`: the engine was never asked

    # Prometheus unreachable: said plainly, exit 6.
    away = f"http://127.0.0.1:{unused_port()}"
    spec.write_text(spec.read_text().replace(prom.url, away))
    down = mlserve("rollout", str(spec), "--dry-run")
    assert down.returncode == 6
    assert "ERROR: Prometheus at http://127.0.0.1:" in down.stdout
    assert "is unreachable: [Errno 111] Connection refused" in down.stdout
    assert down.stderr == "error: 1 of the queries got no answer\n"

    # A port-forward from a laptop: --prometheus, or MLSERVE_PROMETHEUS_URL, replaces the address.
    forwarded = mlserve("rollout", str(spec), "--dry-run", "--prometheus", prom.url)
    assert forwarded.returncode == 0, forwarded.stderr
    assert f"Every query once, at {prom.url}:" in forwarded.stdout
    monkeypatch.setenv("MLSERVE_PROMETHEUS_URL", prom.url)
    from_env = mlserve("rollout", str(spec), "--dry-run")
    assert from_env.returncode == 0, from_env.stderr
    monkeypatch.delenv("MLSERVE_PROMETHEUS_URL")
    bad = mlserve("rollout", str(spec), "--dry-run", "--prometheus", "localhost:9090")
    assert (bad.returncode, bad.stderr) == (
        2,
        "error: --prometheus 'localhost:9090' is not a Prometheus URL: give "
        "http(s)://HOST[:PORT][/PATH], e.g. http://localhost:9090 for a port-forward\n",
    )


def unused_port() -> int:
    return prometheus_fixture.free_port()


def test_abort_by_hand_sends_the_canary_to_0_at_once(
    fake: Fake, prom: Prometheus, tmp_path: Path
) -> None:
    name = "roll-abort"
    healthy(prom, name)
    spec = write_spec(tmp_path, prom, name, [{"weight": 30, "pause": "1s"}, {"pause": "manual"}])
    assert mlserve("rollout", str(spec), "--yes").returncode == 0
    status = mlserve("status", "--project", name)
    assert status.returncode == 0, status.stderr
    assert "rollout      v2 paused, step 2 of 2, weight 30%" in status.stdout
    fake.clear_log()

    result = mlserve("rollout", "--abort", "--project", name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-3:] == [
        "  traffic: v1 100%, v2 0%",
        "  v1  ##############################  100%",
        "  v2  ..............................    0%",
    ]
    assert "Rollout of v2 aborted at step 2/2: aborted by hand (mlserve rollout --abort)" in (
        result.stdout
    )
    # One routing-only update, no deploy.
    assert [c for c in fake.commands() if c in ("up", "preview")] == ["up"]
    assert history(name)[-1] == {
        "command": "mlserve rollout --abort",
        "stable": "v1",
        "canary": "v2",
        "weight": 0,
    }
    again = mlserve("rollout", "--abort", "--project", name)
    assert again.returncode == 6
    assert again.stderr == (
        "error: the rollout of v2 is already aborted: nothing was changed (`mlserve rollback` "
        "sends traffic back after a completed rollout)\n"
    )


def test_a_query_prometheus_rejects_stops_the_rollout_before_anything_changes(
    fake: Fake, prom: Prometheus, tmp_path: Path
) -> None:
    name = "roll-badquery"
    spec = write_spec(tmp_path, prom, name, [{"weight": 30, "pause": "1m"}])
    # Brackets pair up and the placeholders are known: only Prometheus can tell it is not PromQL.
    spec.write_text(spec.read_text().replace("sum(rate(", "sum(rat e("))
    assert mlserve("validate", str(spec)).returncode == 0
    result = mlserve("rollout", str(spec), "--yes")
    assert result.returncode == 2
    assert result.stderr.startswith(  # before anything, even a passphrase file, was made
        "error: rollout.analysis.metrics[0].query (error-rate): Prometheus at "
        f'{prom.url} rejected the query (HTTP 400): bad_data: invalid parameter "query": '
    )
    assert result.stderr.endswith("; nothing was changed\n")
    assert fake.commands() == []


def test_a_promote_by_hand_during_a_pause_stops_the_rollout_without_a_change(
    fake: Fake, prom: Prometheus, tmp_path: Path
) -> None:
    name = "roll-racing"
    healthy(prom, name)
    spec = write_spec(
        tmp_path, prom, name, [{"weight": 20, "pause": "8s"}, {"weight": 50, "pause": "1s"}]
    )
    # On a loaded machine the promote by hand may still hold the stack's lock when the pause
    # ends: the rollout waits for it, as a CI job given --lock-timeout would.
    process = start_rollout(spec, "--lock-timeout", "2m")
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("Step 1/2"):
            break
    by_hand = mlserve("promote", "--weight", "70", "--project", name, "--lock-timeout", "2m")
    assert by_hand.returncode == 0, by_hand.stderr
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 6, stderr
    assert stderr.splitlines()[-1] == (
        "error: the traffic changed outside this rollout (v1 30%, v2 70%, the rollout set v1 80%, "
        "v2 20%): stopping without changing anything. Run `mlserve rollout` to walk on from the "
        "live traffic"
    )
    assert commands(name)[-2:] == [
        "mlserve rollout: step 1/2, weight 20, pause 8s",
        "mlserve promote --weight 70",
    ]
