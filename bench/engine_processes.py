"""Count the Pulumi CLI processes each mlserve engine command spawns.

Runs the real pulumi.automation code against the stand-in CLI (tests/fake_pulumi, which runs the
program as the real CLI does), which logs one line per process, in a temporary MLSERVE_HOME. Each
process is a start of the Go CLI (hundreds of milliseconds with a real one, seconds on a loaded CI
runner), so this count is what the engine keeps low: one version check per command (two when a
CLI from `mlserve setup` and another on PATH are both there: the newest wins), one stack
selection, the whole history in one call, and none of the SDK's follow-up reads after an
operation (`stack output` twice and `stack history` after `up`, `stack history` after refresh and
destroy).

Measured with pulumi 3.272.0 (provider plugins already installed; issue 9: promote and rollback
at most 7, 10 before; 6 until the real-stack bench, 5 since):

    command                      processes
    deploy (first, new stack)     8   version, stack select, stack init, stack history, preview,
                                      up, the guard's stack history inside it, stack export
    deploy (existing stack)       7   the same without stack init
    plan                          4   version, stack select, stack history, preview
    promote                       5   version, stack history and stack export side by side
                                      (no stack select: the history read says if there is no
                                      stack), up, the guard's stack history
    rollback                      5   the same
    rollback --to 2               5   without stack export (a full update)
    status                        4   version, stack select, stack history, stack export
    status --refresh              6   + refresh, and a second stack export (the replicas and
                                      Ready counts the refresh read; a spec with images)
    history                       3   version, stack select, stack history
    destroy                       4   version, stack select, stack export, destroy

A missing plugin adds `plugin ls` and one `plugin install` per plugin, once.

Usage: python bench/engine_processes.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAKE = REPO / "tests" / "fake_pulumi"


def command_words(argv: list[str]) -> str:
    args = [a for a in argv if a != "--non-interactive"]
    return " ".join(args[:2] if args[0] in ("stack", "config", "plugin") else args[:1])


def main() -> None:
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        log = root / "calls.jsonl"
        os.environ.update(
            PATH=f"{FAKE}{os.pathsep}{os.environ.get('PATH', '')}",
            FAKE_PULUMI_PYTHON=sys.executable,
            FAKE_PULUMI_LOG=str(log),
            FAKE_PULUMI_STATE=str(root / "state"),
            MLSERVE_HOME=str(root / "home"),
            PULUMI_HOME=str(root / "pulumi-home"),
        )
        for var in (
            "PULUMI_CONFIG_PASSPHRASE",
            "PULUMI_CONFIG_PASSPHRASE_FILE",
            "PULUMI_BACKEND_URL",
            "MLSERVE_BACKEND_URL",
        ):
            os.environ.pop(var, None)

        import importlib.metadata

        from mlserve import ops
        from mlserve.engine import Target
        from mlserve.spec import Spec

        version = importlib.metadata.version("pulumi-kubernetes")
        (root / "pulumi-home" / "plugins" / f"resource-kubernetes-v{version}").mkdir(parents=True)
        spec = Spec.from_dict(
            {
                "apiVersion": "mlserve/v1",
                "name": "fraud",
                "gateway": {"type": "istio", "host": "models.example.com"},
                "versions": [
                    {"name": "v1", "image": "ghcr.io/acme/fraud:1"},
                    {"name": "v2", "image": "ghcr.io/acme/fraud:2"},
                ],
                "traffic": {"stable": "v1", "canary": "v2", "weight": 10},
            }
        )
        target = Target("fraud", "dev")
        runs = [
            ("deploy (first, new stack)", lambda: ops.deploy(spec, target)),
            ("deploy (existing stack)", lambda: ops.deploy(spec, target)),
            ("plan", lambda: ops.plan(spec, target)),
            ("promote", lambda: ops.promote(target, weight=50, expect_weight=10)),
            ("rollback", lambda: ops.rollback(target)),
            ("rollback --to 2", lambda: ops.rollback(target, to=2)),
            ("status", lambda: ops.status(target)),
            ("status --refresh", lambda: ops.status(target, refresh=True)),
            ("history", lambda: ops.history(target)),
            ("destroy", lambda: ops.destroy(target)),
        ]
        print(f"{'command':<28} processes  commands")
        for name, run in runs:
            log.unlink(missing_ok=True)
            run()
            calls = [json.loads(line)["argv"] for line in log.read_text().splitlines()]
            words = Counter(command_words(argv) for argv in calls)
            summary = ", ".join(f"{w} x{n}" if n > 1 else w for w, n in words.items())
            print(f"{name:<28} {len(calls):>9}  {summary}")


if __name__ == "__main__":
    main()
