"""The gateway's notes through the CLI: the REAL pulumi.automation code against the stand-in
`pulumi` (tests/fake_pulumi), never a cluster. (The stand-in does not model the service gateway
yet; its blue-green switch is checked on rendered resources in test_gateway_traffic.py.)"""

from __future__ import annotations

from tests.fake_pulumi import fixture
from tests.fake_pulumi.fixture import Fake
from tests.helpers import REPO
from tests.helpers import run_cli as mlserve

fake = fixture.fake


def test_plan_carries_the_gateways_notes_as_warnings(fake: Fake) -> None:
    result = mlserve("plan", str(REPO / "specs" / "ingress-nginx.yaml"))
    assert result.returncode == 0, result.stderr
    assert (
        "warning: ingress-nginx can pin only the canary: `x-model-version: v4` reaches it, and a "
        "request naming any other version follows the weights (canary-by-header-value)"
    ) in result.stdout + result.stderr


def test_plan_says_how_long_deploy_waits_for_a_slow_model(fake: Fake) -> None:
    result = mlserve("plan", str(REPO / "specs" / "vllm-gpu.yaml"))
    assert result.returncode == 0, result.stderr
    assert (
        "warning: the probes allow a pod of v0.8.5 20m05s to start: deploy waits up to 30m05s "
        "for it to become Ready, and up to 50m10s for an update, which replaces its 2 pods one "
        "at a time"
    ) in result.stdout + result.stderr
