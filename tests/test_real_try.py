"""The README's "Try it locally" walk-through against the REAL stack (tests/realstack.py) instead
of kind: the Pulumi CLI, the Kubernetes provider plugin and an API server with Istio's CRDs, kwok
making the pods Ready (no nginx runs, no Istio proxy reads the VirtualService).

The spec and the steps are read from the README itself; only the namespace becomes the test's own
(the README's `default` is shared by every test on the stack), and `kubectl` gets `-n`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.realstack import Real
from tests.test_engine_cli import readme_block

# `waits`: about a minute, mostly the provider waiting on Deployments (tests/conftest.py).
pytestmark = [pytest.mark.real, pytest.mark.waits]

VS = "virtualservices.networking.istio.io"


def selector(real: Real) -> dict[str, str]:
    found: dict[str, str] = real.get("services", "try-model")["spec"]["selector"]
    return found


def test_the_readme_try_it_locally_walk_through_runs_as_written(real: Real) -> None:
    text = readme_block("## Try it locally", "yaml")
    text, n = re.subn(r"(?m)^namespace: default$", f"namespace: {real.namespace}", text)
    assert n == 1
    spec = real.tmp / "try.yaml"
    spec.write_text(text, encoding="utf-8")
    lines = [
        line.split("  #", 1)[0].split()
        for line in readme_block("## Try it locally", "sh").splitlines()
        if line.startswith(("mlserve ", "kubectl get "))
    ]
    want = {  # after each step, what the Service `try-model` selects (None: not there)
        "setup": None,
        "plan": None,
        "deploy": "v1",
        "promote": "v2",
        "rollback": "v1",
        "history": "v1",
        "destroy": None,
    }
    done = []
    for words in lines:
        if words[0] == "kubectl":
            listed = real.stack.kubectl(*words[1:], "-n", real.namespace).stdout
            assert re.findall(r"(?m)^(\S+/try-model\S*)", listed) == [
                "deployment.apps/try-model-v1",
                "deployment.apps/try-model-v2",
                "service/try-model",
                "service/try-model-v1",
                "service/try-model-v2",
            ], listed
            continue
        args = [str(spec) if w == "try.yaml" else w for w in words[1:]]
        result = real.mlserve(*args)
        assert result.returncode == 0, (words, result.stdout + result.stderr)
        done.append(words[1])
        if "--dry-run" in args:
            assert selector(real)["app.kubernetes.io/version"] == "v1"  # nothing changed
            continue
        version = want[words[1]]
        if version is None:
            assert not real.stack.exists("services", "try-model", real.namespace)
        else:
            assert selector(real) == {
                "app.kubernetes.io/name": "try-model",
                "app.kubernetes.io/version": version,
            }
        if words[1] == "deploy":  # it waited until both Deployments were Ready
            for v in ("v1", "v2"):
                assert (
                    real.get("deployments.apps", f"try-model-{v}")["status"]["readyReplicas"] == 1
                )
    assert done == ["setup", "plan", "deploy", "promote", "promote", "rollback", "history",
                    "destroy"]  # fmt: skip

    # The weighted variant the README describes: gateway istio with a host, weight 10, then
    # `promote --weight 50`, and the VirtualService carries the weights.
    text = re.sub(r"  type: service.*\n  service: .*\n", "  type: istio\n  host: try.example.com\n",
                  text)  # fmt: skip
    spec.write_text(text.replace("  canary: v2", "  canary: v2\n  weight: 10"), encoding="utf-8")
    for args in (("deploy", str(spec), "--stack", "try", "--yes"),
                 ("promote", str(spec), "--stack", "try", "--weight", "50")):  # fmt: skip
        result = real.mlserve(*args)
        assert result.returncode == 0, result.stdout + result.stderr
    vs: dict[str, Any] = real.get(VS, "try-model")
    route = vs["spec"]["http"][-1]["route"]
    assert {r["destination"]["subset"]: r["weight"] for r in route} == {"v1": 50, "v2": 50}
    status = json.loads(real.mlserve("status", str(spec), "--stack", "try", "--json").stdout)
    assert status["traffic"]["weight"] == 50
