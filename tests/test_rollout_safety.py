"""`mlserve rollout` fails safe and keeps its secrets (issue 20): end to end, with the analysis
against a REAL Prometheus (tests/prometheus_fixture.py) or a hostile server posing as one
(tests/hostile_server.py, 127.0.0.1 only), the engine side through the stand-in Pulumi CLI.

Nothing here ran against a real Pulumi CLI or a cluster: the routing updates are the stand-in's.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from tests import hostile_server as hs
from tests import test_rollout_cli
from tests.fake_pulumi import fixture
from tests.fake_pulumi.fixture import Fake
from tests.helpers import REPO
from tests.helpers import run_cli as mlserve
from tests.hostile_server import Server
from tests.prometheus_fixture import Prometheus
from tests.test_prometheus_hostile import STATUSES, bodies
from tests.test_rollout_cli import commands, history, start_rollout, write_spec

pytestmark = pytest.mark.waits
fake = fixture.fake
TOKEN = "tok-0123456789abcdef"
prom = test_rollout_cli.prom  # the session's Prometheus, with its credentials in the environment


def failing(prom: Prometheus, name: str) -> None:
    prom.metrics.set(name, "v2", requests=20, errors=10)
    prom.wait_for(f'rate(http_requests_total{{service="{name}", code="500"}}[5s]) > 0')


def status(name: str) -> dict[str, Any]:
    result = mlserve("status", "--project", name, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


# --- item 1: a failed analysis with the canary at 0% aborts too ---------------------------------


@pytest.mark.parametrize("gateway", ["istio", "service"])
def test_a_failed_analysis_at_0_percent_aborts_exits_7_and_a_rerun_refuses(
    fake: Fake, prom: Prometheus, tmp_path: Path, gateway: str
) -> None:
    """A pause before the first weight (istio), or any step behind a Service, which cannot
    split: the canary is at 0%, and a failed analysis used to end in `nothing to roll back`
    (exit 6) with the record still `running`, so that a plain rerun promoted the canary."""
    name = f"roll-zero-{gateway}"
    failing(prom, name)
    steps: list[dict[str, Any]] = [{"pause": "8s"}, {"weight": 100}]
    if gateway == "istio":
        steps = [{"pause": "8s"}, {"weight": 50, "pause": "8s"}, {"weight": 100}]
    spec = write_spec(tmp_path, prom.url, name, steps, gateway=gateway)
    result = mlserve("rollout", str(spec), "--yes")
    assert result.returncode == 7, result.stdout + result.stderr
    error = result.stderr.splitlines()[-1]
    assert error.startswith("error: rollout aborted, v2 kept at 0%: error-rate 0.")
    assert error.endswith(" > max 0.05 (2 failed measurements; failureLimit 1)")
    assert history(name)[-2:] == [
        {"command": f"mlserve rollout: step 1/{len(steps)}, pause 8s", "stable": "v1",
         "canary": "v2", "weight": 0},
        {"command": "mlserve rollout: aborted (error-rate)", "stable": "v1", "canary": "v2",
         "weight": 0},
    ]  # fmt: skip
    assert status(name)["rollout"]["status"] == "aborted"

    prom.metrics.set(name, "v2", requests=20, errors=0)  # healthy again: still refused
    for retry in (mlserve("rollout", "--project", name), mlserve("rollout", str(spec), "--yes")):
        assert retry.returncode == 6, retry.stdout + retry.stderr
        assert retry.stderr.startswith("error: the rollout of v2 was aborted at ")
        assert retry.stderr.endswith(
            "Nothing was changed; to try v2 again, run `mlserve rollout --restart`\n"
        )
    assert commands(name)[-1] == "mlserve rollout: aborted (error-rate)"


def test_the_refusal_after_an_abort_gives_the_time_of_the_abort(
    fake: Fake, prom: Prometheus, tmp_path: Path
) -> None:
    """Item 15: not the time its step began."""
    name = "roll-abort-time"
    failing(prom, name)
    spec = write_spec(tmp_path, prom.url, name, [{"weight": 10, "pause": "1m"}])
    assert mlserve("rollout", str(spec), "--yes").returncode == 7
    record = status(name)["rollout"]
    retry = mlserve("rollout", "--project", name)
    when = re.match(r"error: the rollout of v2 was aborted at (\S+): ", retry.stderr)
    assert when is not None, retry.stderr
    assert when.group(1) > record["stepStarted"]  # ISO 8601 in UTC: ordered as text


# --- item 2: odd answers are inconclusive measurements, never exit 1 ----------------------------


@pytest.fixture
def hostile(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """A hostile server, a short query timeout, and a token in the environment."""
    monkeypatch.setenv("MLSERVE_PROMETHEUS_TIMEOUT", "1")
    monkeypatch.setenv("MLSERVE_PROMETHEUS_TOKEN", TOKEN)
    for key in ("MLSERVE_PROMETHEUS_USER", "MLSERVE_PROMETHEUS_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    with hs.serve(hs.good()) as server:
        yield server


ODD = {
    "time 1e20": (
        hs.json_body(hs.vector(at=1e20)),
        "answered with something that is not its API (a sample time out of range)",
    ),
    "value of 400 digits": (
        hs.json_body(hs.vector("9" * 400)),
        "answered with something that is not its API (a sample value beyond the range of a "
        "64-bit float)",
    ),
    "100,000 nested arrays": (
        lambda conn: conn.respond(b"[" * 100_000 + b"]" * 100_000),
        "answered with something that is not its API (JSON nested too deep)",
    ),
    "redirect to http://[::1": (
        hs.redirect("http://[::1"),
        "redirected the query to http://[::1: not followed",
    ),
    "a body dripped a byte every 2 s": (hs.drip(every=2), "did not answer within 1s"),
}


@pytest.mark.parametrize("case", list(ODD))
def test_an_odd_answer_mid_rollout_is_inconclusive_and_aborts_towards_stable(
    fake: Fake, hostile: Server, tmp_path: Path, case: str
) -> None:
    """Each used to end the rollout mid-step with exit 1, the canary left at its step's
    weight and the record `running`. Now: inconclusive, and past the limit the canary goes
    back to 0% (exit 7). The check before the rollout got a good answer; the rest are odd."""
    answer, why = ODD[case]
    hostile.answer = hs.sequence(hs.good(), answer)
    name = "roll-odd"
    spec = write_spec(tmp_path, hostile.url, name, [{"weight": 20, "pause": "1m"}], failure_limit=0)
    start = time.monotonic()
    result = mlserve("rollout", str(spec), "--yes", "--json")
    assert result.returncode == 7, result.stdout + result.stderr
    assert time.monotonic() - start < 60  # the one-minute pause ends at the first round
    report = json.loads(result.stdout)
    assert report["status"] == "aborted"
    assert report["weights"] == {"v1": 100, "v2": 0}
    [measured] = report["measurements"]
    assert measured["outcome"] == "inconclusive"
    assert measured["note"].startswith(f"Prometheus at {hostile.url} {why}")
    assert history(name)[-1]["command"] == "mlserve rollout: aborted (error-rate)"


@pytest.mark.parametrize("case", list(ODD))
def test_an_odd_answer_in_a_dry_run_or_before_a_rollout_exits_6_changing_nothing(
    fake: Fake, hostile: Server, tmp_path: Path, case: str
) -> None:
    answer, why = ODD[case]
    hostile.answer = answer
    spec = write_spec(tmp_path, hostile.url, "roll-odd-dry", [{"weight": 20, "pause": "1m"}])
    dry = mlserve("rollout", str(spec), "--dry-run")
    assert dry.returncode == 6, dry.stdout + dry.stderr
    assert f"ERROR: Prometheus at {hostile.url} {why}" in dry.stdout
    assert dry.stderr == "error: 1 of the queries got no answer\n"
    before = mlserve("rollout", str(spec), "--yes")
    assert before.returncode == 6, before.stdout + before.stderr
    assert before.stderr.startswith(f"error: Prometheus at {hostile.url} {why}")
    assert before.stderr.endswith(
        "; nothing was changed (checked rollout.analysis.metrics[0].query (error-rate) before "
        "the rollout)\n"
    )
    assert fake.commands() == []


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies(), status=STATUSES)
def test_a_dry_run_never_exits_1_whatever_prometheus_answers(
    hostile: Server, tmp_path: Path, body: bytes, status: str
) -> None:
    """The bounded fuzz of tests/test_prometheus_hostile.py, through the whole command: exit 0
    (a value or an inconclusive one), 2 (the query's fault) or 6 (no answer), never 1."""
    hostile.answer = lambda conn: conn.respond(body, status=status)
    spec = tmp_path / "fuzz.yaml"
    if not spec.exists():
        write_spec(tmp_path, hostile.url, "fuzz", [{"weight": 20, "pause": "1m"}])
    result = mlserve("rollout", str(spec), "--dry-run", "--json")
    assert result.returncode in (0, 2, 6), result.stdout + result.stderr
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr
    json.loads(result.stdout)  # one JSON document, whatever happened


# --- item 3: a round is bounded in time ---------------------------------------------------------


def test_twenty_metrics_against_a_silent_server_take_one_timeout(
    fake: Fake, hostile: Server, tmp_path: Path
) -> None:
    hostile.answer = hs.silent()
    metrics = [{"name": f"m{i}", "query": f"vector({i})", "max": 1} for i in range(20)]
    spec = write_spec(tmp_path, hostile.url, "roll-silent", [{"weight": 20, "pause": "1m"}],
                      metrics=metrics)  # fmt: skip
    start = time.monotonic()
    dry = mlserve("rollout", str(spec), "--dry-run")
    assert time.monotonic() - start < 5  # was 20 x 10 s
    assert dry.returncode == 6
    assert dry.stderr == "error: 20 of the queries got no answer\n"


# --- items 6 to 9: credentials and what Prometheus says -----------------------------------------


@pytest.mark.parametrize("json_out", [False, True])
def test_a_token_ending_in_a_newline_is_exit_2_naming_the_variable_not_the_value(
    fake: Fake, hostile: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, json_out: bool
) -> None:
    monkeypatch.setenv("MLSERVE_PROMETHEUS_TOKEN", TOKEN + "\n")
    spec = write_spec(tmp_path, hostile.url, "roll-token", [{"weight": 20, "pause": "1m"}])
    for args in (["--dry-run"], ["--yes"]):
        result = mlserve("rollout", str(spec), *args, *(["--json"] if json_out else []))
        assert result.returncode == 2
        message = (
            "MLSERVE_PROMETHEUS_TOKEN holds a line break at its end, which an Authorization "
            "header cannot carry; set it to the credential alone (its value is not shown here)"
        )
        assert result.stderr == f"error: {message}\n"
        if json_out:
            assert json.loads(result.stdout) == {
                "error": {"code": 2, "kind": "usage", "message": message}
            }
        assert TOKEN not in result.stdout + result.stderr
    assert hostile.requests == [] and fake.commands() == []


def test_a_redirect_to_another_origin_gets_neither_the_token_nor_a_verdict(
    fake: Fake, hostile: Server, tmp_path: Path
) -> None:
    """Item 6: the second server's answer used to be judged (`would pass`)."""
    with hs.serve(hs.good()) as elsewhere:
        hostile.answer = hs.redirect(f"{elsewhere.url}/api/v1/query")
        spec = write_spec(tmp_path, hostile.url, "roll-redirect", [{"weight": 20, "pause": "1m"}])
        dry = mlserve("rollout", str(spec), "--dry-run")
        assert dry.returncode == 6
        assert "would pass" not in dry.stdout
        assert f"redirected the query to {elsewhere.url}/api/v1/query: not followed" in dry.stdout
        assert elsewhere.requests == []


def echo_evil(conn: hs.Conn) -> None:
    """A 500 repeating the Authorization header, with an ESC sequence, a bell, a carriage return
    and a line break followed by a fake `error:` line, and 60 KB more."""
    sent = conn.request.headers.get("authorization", "")
    text = f"denied {sent}\x1b[2J\x07\r\nerror: all good, rollout completed " + "x" * 60_000
    conn.respond({"status": "error", "errorType": "internal", "error": text},
                 status="500 Internal Server Error")  # fmt: skip


def test_what_prometheus_says_is_scrubbed_escaped_and_capped_wherever_it_goes(
    fake: Fake, hostile: Server, tmp_path: Path
) -> None:
    """Items 8 and 9: the --json report, the stack's recorded `mlserve:rollout` and every later
    `status` used to carry the token, the raw control characters and all 60 KB."""
    hostile.answer = hs.sequence(hs.good(), echo_evil)
    name = "roll-echo"
    spec = write_spec(tmp_path, hostile.url, name, [{"weight": 20, "pause": "1m"}], failure_limit=0)
    result = mlserve("rollout", str(spec), "--yes", "--json")
    assert result.returncode == 7, result.stdout + result.stderr
    shown = mlserve("status", "--project", name)
    shown_json = mlserve("status", "--project", name, "--json")
    history_json = mlserve("history", "--project", name, "--json")
    outputs = [result.stdout, result.stderr, shown.stdout, shown_json.stdout, history_json.stdout]
    stored = "".join(
        p.read_text(errors="replace") for p in fake.home.rglob("*") if p.is_file()
    )  # the state backend, the workspace: everything mlserve wrote
    for text in [*outputs, stored]:
        assert TOKEN not in text
        assert "\x1b" not in text and "\x07" not in text and "\r" not in text
        assert "x" * 1000 not in text
    note = json.loads(result.stdout)["measurements"][0]["note"]
    assert note.startswith(
        f"Prometheus at {hostile.url} failed (HTTP 500): internal: denied [secret]"
        "\\x1b[2J\\x07\\r\\nerror: all good, rollout completed xxx"
    )
    assert not any(line.startswith("error: all good") for line in shown.stdout.splitlines())
    assert "denied [secret]\\x1b[2J" in shown.stdout


# --- item 14: SIGTERM and SIGHUP are Ctrl-C -----------------------------------------------------


def commands_so_far(name: str) -> list[str]:
    """The stack's update commands; none while the stack does not exist yet."""
    result = mlserve("history", "--project", name, "--json")
    return [r["command"] for r in json.loads(result.stdout)] if result.returncode == 0 else []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_a_pause_is_an_interrupt_with_its_json_document(
    fake: Fake, prom: Prometheus, tmp_path: Path, signum: int
) -> None:
    """Used to end silently with 143 or 129 and no JSON document under --json."""
    name = f"roll-signal-{signum}"
    prom.metrics.set(name, "v2", requests=20, errors=0)
    prom.wait_for(f'rate(http_requests_total{{service="{name}"}}[5s])')
    spec = write_spec(tmp_path, prom.url, name, [{"weight": 20, "pause": "10m"}])
    process = start_rollout(spec, "--json")
    deadline = time.monotonic() + 120
    while not any(c.startswith("mlserve rollout: step 1/1") for c in commands_so_far(name)):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.3)
    time.sleep(1.5)  # into the pause
    os.kill(process.pid, signum)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    message = "interrupted during step 1/1 (v1 80%, v2 20%); run `mlserve rollout` to resume it"
    assert err.splitlines()[-1] == f"error: {message}"
    assert json.loads(out) == {"error": {"code": 130, "kind": "interrupted", "message": message}}


def test_a_signal_during_a_query_is_an_interrupt(
    fake: Fake, hostile: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLSERVE_PROMETHEUS_TIMEOUT", "60")
    hostile.answer = hs.silent()
    spec = write_spec(tmp_path, hostile.url, "roll-signal-query", [{"weight": 20, "pause": "1m"}])
    process = start_rollout(spec, "--dry-run", "--json")
    deadline = time.monotonic() + 60
    while not hostile.requests:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGTERM)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 130, out + err
    assert err == "error: interrupted\n"
    assert json.loads(out) == {
        "error": {"code": 130, "kind": "interrupted", "message": "interrupted"}
    }


# --- item 15: the smaller ones -----------------------------------------------------------------


def test_a_range_vector_query_is_the_querys_fault_exit_2(
    fake: Fake, prom: Prometheus, tmp_path: Path
) -> None:
    """Against the real Prometheus: `x[1m]` answers a matrix; it was blamed on Prometheus."""
    metrics = [{"name": "raw", "query": 'http_requests_total{service="{{name}}"}[1m]', "max": 1}]
    spec = write_spec(tmp_path, prom.url, "roll-matrix", [{"weight": 20, "pause": "1m"}],
                      metrics=metrics)  # fmt: skip
    dry = mlserve("rollout", str(spec), "--dry-run")
    assert dry.returncode == 2, dry.stdout + dry.stderr
    assert dry.stderr == "error: Prometheus rejected 1 of the queries\n"
    assert "answered the query with a range vector (resultType matrix)" in dry.stdout
    before = mlserve("rollout", str(spec), "--yes")
    assert before.returncode == 2
    assert before.stderr.startswith(
        f"error: rollout.analysis.metrics[0].query (raw): Prometheus at {prom.url} answered the "
        "query with a range vector (resultType matrix): "
    )
    assert fake.commands() == []


def test_after_a_completed_rollout_dry_run_and_status_say_what_is_live(
    fake: Fake, prom: Prometheus, tmp_path: Path
) -> None:
    name = "roll-after"
    prom.metrics.set(name, "v2", requests=20, errors=0)
    prom.wait_for(f'rate(http_requests_total{{service="{name}"}}[5s])')
    spec = write_spec(tmp_path, prom.url, name, [{"weight": 50, "pause": "1s"}])
    assert mlserve("rollout", str(spec), "--yes").returncode == 0
    dry = mlserve("rollout", "--project", name, "--dry-run")
    assert dry.returncode == 6
    assert dry.stderr == "error: nothing to roll out: no canary is live (stable v2)\n"
    shown = mlserve("status", "--project", name)
    assert "rollout      v2 completed, step 1 of 1, weight 100%" in shown.stdout
    assert status(name)["rollout"]["weight"] == 100


# --- item 5: a gateway that cannot split never records a split ---------------------------------


def test_switching_to_the_service_gateway_under_a_live_split_is_refused_with_the_way_out(
    fake: Fake, tmp_path: Path
) -> None:
    """A deploy kept the live 50% and recorded it (`status` and `history` said v1 50%, v2 50%)
    while the Service selected v1 only. Now the deploy refuses, changing nothing, and says the
    two ways to one version: a rollback first, or --reset-traffic."""
    spec = yaml.safe_load((REPO / "specs" / "istio.yaml").read_text())
    spec["traffic"]["weight"] = 50
    istio = tmp_path / "istio.yaml"
    istio.write_text(yaml.safe_dump(spec))
    assert mlserve("deploy", str(istio), "--yes").returncode == 0
    spec["gateway"] = {"type": "service"}
    spec["traffic"]["weight"] = 0
    service = tmp_path / "service.yaml"
    service.write_text(yaml.safe_dump(spec))
    refused = mlserve("deploy", str(service), "--yes")
    assert refused.returncode == 6
    assert refused.stderr == (
        "error: gateway service cannot split traffic, and the live canary v2 is at 50%: run "
        "`mlserve rollback` first to send it to 0%, or deploy with --reset-traffic to apply the "
        "spec's traffic; nothing was changed\n"
    )
    assert [r["command"] for r in history("fraud-detector")] == ["mlserve deploy"]

    assert mlserve("rollback", "--project", "fraud-detector").returncode == 0
    assert mlserve("deploy", str(service), "--yes").returncode == 0
    shown = status("fraud-detector")
    assert shown["weights"] == {"v1": 100, "v2": 0}
    assert mlserve("rollback", "--project", "fraud-detector").stderr == (
        "error: nothing to roll back: v1 100%, v2 0%\n"
    )


def test_reset_traffic_switches_to_the_service_gateway_with_the_specs_traffic(
    fake: Fake, tmp_path: Path
) -> None:
    spec = yaml.safe_load((REPO / "specs" / "istio.yaml").read_text())
    spec["traffic"]["weight"] = 50
    istio = tmp_path / "istio.yaml"
    istio.write_text(yaml.safe_dump(spec))
    assert mlserve("deploy", str(istio), "--yes").returncode == 0
    spec["gateway"] = {"type": "service"}
    spec["traffic"]["weight"] = 0
    service = tmp_path / "service.yaml"
    service.write_text(yaml.safe_dump(spec))
    result = mlserve("deploy", str(service), "--yes", "--reset-traffic")
    assert result.returncode == 0, result.stderr
    assert status("fraud-detector")["weights"] == {"v1": 100, "v2": 0}


# --- item 13: the losing racer prints no traceback ------------------------------------------------


def test_the_losing_racer_prints_its_refusal_once_without_a_traceback(fake: Fake) -> None:
    """Two promotes read the same live state; the one that waited for the lock finds the stack
    changed inside its program (the race guard). The language host's diagnostic of that
    exception, two Python tracebacks, used to be printed on stdout before the exit 6."""
    fake.deployed(REPO / "specs" / "istio.yaml")
    fake.set(sleep=6)  # the first update holds the lock: the second reads the same history

    def racer(weight: int) -> subprocess.Popen[str]:
        args = ["--weight", str(weight), "--expect-weight", "10", "--lock-timeout", "2m"]
        return subprocess.Popen(
            [*fixture.mlserve_command(), "promote", "--project", "fraud-detector", *args],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip

    jobs = [racer(w) for w in (30, 60)]
    outcomes = [job.communicate(timeout=180) for job in jobs]
    codes = [job.returncode for job in jobs]
    assert sorted(codes) == [0, 6], outcomes
    out, err = outcomes[codes.index(6)]
    assert "changed since this command read it" in err, err
    assert "Traceback" not in out + err
    assert err.count("changed since this command read it") == 1
    assert [line for line in out.splitlines() if "error" in line] == []
