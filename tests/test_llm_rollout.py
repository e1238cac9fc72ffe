"""specs/llm-gateway-api.yaml's rollout analysis (vLLM's time to first token and 5xx share) asked
of a REAL Prometheus (tests/prometheus_fixture.py), which scrapes series named and labelled as vLLM
exposes them (`set_vllm`, after vLLM's source); the engine side is the stand-in Pulumi CLI.

No vLLM, gateway or cluster ran here: the series imitate vLLM's exposition, and the routing updates
are the stand-in's.
"""

from __future__ import annotations

import json
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

pytestmark = pytest.mark.waits  # for Prometheus's scrapes and the rollout's pauses
fake = fixture.fake
CANARY = "qwen3-8b-v2"


@pytest.fixture
def prom(prometheus: Prometheus, monkeypatch: pytest.MonkeyPatch) -> Prometheus:
    for key, value in prometheus_fixture.AUTH.items():
        monkeypatch.setenv(key, value)
    return prometheus


def example(tmp_path: Path, prom: Prometheus, name: str, **changes: Any) -> Path:
    """The example under another name (series of its own), asking the test's Prometheus."""
    spec = yaml.safe_load((REPO / "specs" / "llm-gateway-api.yaml").read_text())
    spec["name"] = name
    spec["rollout"]["analysis"]["prometheus"]["address"] = prom.url
    spec["rollout"].update(changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def scraped(prom: Prometheus, name: str) -> None:
    target = f'app_kubernetes_io_name="{name}", app_kubernetes_io_version="{CANARY}"'
    prom.wait_for(f"rate(vllm:time_to_first_token_seconds_count{{{target}}}[5m]) > 0")
    prom.wait_for(f"rate(http_requests_total{{{target}}}[5m]) > 0")


def dry_run(spec: Path) -> dict[str, tuple[float, str]]:
    """`rollout --dry-run`'s measurements: metric -> (value, result)."""
    result = mlserve("rollout", str(spec), "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"Dry run (nothing was changed): the rollout of {CANARY} ")
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["METRIC"])
    assert lines[header].split() == ["METRIC", "VALUE", "BOUNDS", "RESULT"]
    out = {}
    for line in lines[header + 1 : header + 3]:
        metric, value, _, _, *result_ = line.split()
        out[metric] = (float(value), " ".join(result_))
    return out


def test_the_examples_analysis_passes_a_good_canary_and_fails_a_slow_or_failing_one(
    fake: Fake, prom: Prometheus, tmp_path: Path
) -> None:
    m = prom.metrics
    m.set_vllm("chat-good", CANARY, requests=20, ttft=0.3)
    m.set_vllm("chat-good", "qwen3-8b-v1", requests=20, errors=10, ttft=30)  # not the canary
    m.set_vllm("chat-slow", CANARY, requests=20, ttft=4)
    m.set_vllm("chat-failing", CANARY, requests=20, errors=2, ttft=0.3)
    for name in ("chat-good", "chat-slow", "chat-failing"):
        scraped(prom, name)

    good = dry_run(example(tmp_path, prom, "chat-good"))
    # Every first token in the (0.25, 0.5] bucket: the 95th percentile interpolates in it.
    assert 0.25 < good["ttft-p95"][0] <= 0.5
    assert good == {
        "ttft-p95": (good["ttft-p95"][0], "would pass"),
        "error-rate": (0.0, "would pass"),
    }

    slow = dry_run(example(tmp_path, prom, "chat-slow"))
    assert 2.5 < slow["ttft-p95"][0] <= 5 and slow["ttft-p95"][1] == "would FAIL"
    assert slow["error-rate"] == (0.0, "would pass")

    failing = dry_run(example(tmp_path, prom, "chat-failing"))
    assert failing["error-rate"][1] == "would FAIL"
    assert failing["error-rate"][0] == pytest.approx(0.1, rel=0.05)
    assert fake.commands() == []


def test_the_example_rolls_out_through_its_pools_and_completes(
    fake: Fake, prom: Prometheus, tmp_path: Path
) -> None:
    name = "chat-rollout"
    prom.metrics.set_vllm(name, CANARY, requests=20, ttft=0.3)
    scraped(prom, name)
    steps = [{"weight": 1, "pause": "2s"}, {"weight": 10, "pause": "2s"}]
    spec = example(tmp_path, prom, name, steps=steps)
    result = mlserve("rollout", str(spec), "--yes", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["status"], report["weights"]) == ("completed", {CANARY: 100})
    assert {(m["metric"], m["outcome"]) for m in report["measurements"]} == {
        ("ttft-p95", "ok"),
        ("error-rate", "ok"),
    }
    rows = json.loads(mlserve("history", "--project", name, "--json").stdout)
    assert [(r["stable"], r["canary"], r["weight"]) for r in reversed(rows)] == [
        ("qwen3-8b-v1", CANARY, 0),
        ("qwen3-8b-v1", CANARY, 1),
        ("qwen3-8b-v1", CANARY, 10),
        (CANARY, None, 0),
    ]
