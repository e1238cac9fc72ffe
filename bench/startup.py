"""Startup time of `mlserve --help` and `mlserve validate specs/*.yaml` (target: under 0.3 s).

A script, not a test: timings depend on the machine. Run from the repository root:

    .venv/bin/python bench/startup.py [--runs 20]

Each command runs in a fresh interpreter, as a user would run it. The table shows wall time over
the runs and whether any Pulumi module was imported (`-X importtime`); `--help` and `validate`
must never import Pulumi. Exit status 1 when a median misses the target or Pulumi was imported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.3
PULUMI = ("pulumi", "pulumi_kubernetes", "pulumi_kong", "pulumi_azure_native")


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    return time.perf_counter() - start, done


def imported_pulumi(argv: list[str], env: dict[str, str]) -> list[str]:
    _, done = timed([sys.executable, "-X", "importtime", *argv[1:]], env)
    found = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            module = line.rsplit("|", 1)[1].strip()
            if module.split(".")[0] in PULUMI:
                found.add(module.split(".")[0])
    return sorted(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    specs = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "specs").glob("*.yaml"))
    cases: list[tuple[str, list[str], float | None]] = [
        ("python -c pass (baseline)", [sys.executable, "-c", "pass"], None),
        ("mlserve --help", [sys.executable, "-m", "mlserve", "--help"], TARGET),
        (
            f"mlserve validate specs/*.yaml ({len(specs)} files)",
            [sys.executable, "-m", "mlserve", "validate", *specs],
            TARGET,
        ),
    ]

    ok = True
    header = (
        f"{'command':<42} {'runs':>4} {'min':>7} {'median':>7} {'max':>7} {'target':>7}  pulumi"
    )
    print(header)
    print("-" * len(header))
    for label, argv, target in cases:
        times = []
        for _ in range(args.runs):
            elapsed, done = timed(argv, env)
            if done.returncode != 0:
                print(
                    f"{label}: exit {done.returncode}\n{done.stdout}{done.stderr}", file=sys.stderr
                )
                return 1
            times.append(elapsed)
        median = statistics.median(times)
        pulumi = imported_pulumi(argv, env) if target is not None else []
        missed = target is not None and median > target
        ok = ok and not missed and not pulumi
        print(
            f"{label:<42} {args.runs:>4} {min(times):>6.3f}s {median:>6.3f}s {max(times):>6.3f}s "
            f"{(f'{target:.1f}s' if target else '-'):>7}  "
            f"{', '.join(pulumi) if pulumi else ('no' if target else '-')}"
            f"{'  MISSED' if missed else ''}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
