"""Time and memory of `mlserve render` (targets: under 2 s and 150 MB for any spec `validate`
accepts, YAML output included).

    .venv/bin/python bench/render.py [--repeat N]

A script, not a test: timings depend on the machine (on a busy one, compare CPU time rather than
wall time). First the in-process render time of 1..10-version specs per Kubernetes gateway (the
one-off import of pulumi is not counted), then fresh `mlserve render` processes, as a user runs
them, on the largest spec the loader accepts: 1 MiB with 2,725 labels and 10 versions, whose
labels go on every one of its ~30 Kubernetes objects (about 30 MB of YAML). Exit status 1 when a
fresh process misses a target.

Where the time and memory go (pyinstrument, py-spy): the Pulumi SDK serializes every resource's
inputs to protobuf and back (pulumi/runtime/rpc.py serialize_properties, resolve_outputs), and
holds all of them at once while the registrations are in flight: that is the floor. mlserve's own
share was the pure-Python YAML emitter (now libyaml's), echoing every input back as an output
(now none: the SDK falls back to the inputs), and one copy of every label string per object (now
interned).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlserve.render import render  # noqa: E402
from mlserve.spec import Spec, load_spec  # noqa: E402

GATEWAYS = ("istio", "gateway-api", "ingress-nginx")
TARGET_SECONDS = 2.0
TARGET_MB = 150


def spec(gateway: str, versions: int) -> Spec:
    vs = [
        {
            "name": f"v{i}",
            "image": f"ghcr.io/acme/fraud:1.{i}.0",
            "replicas": 2,
            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
            "env": {"MODEL_URI": f"s3://models/fraud/1.{i}.0"},
            "healthPath": "/healthz",
        }
        for i in range(1, versions + 1)
    ]
    traffic = {"stable": "v1"}
    if versions > 1:
        traffic.update(canary=f"v{versions}", weight=10)
    return Spec.from_dict(
        {
            "apiVersion": "mlserve/v1",
            "name": "fraud-detector",
            "namespace": "ml",
            "labels": {"team": "risk"},
            "gateway": {
                "type": gateway,
                "host": "models.example.com",
                "path": "/fraud",
                "versionHeader": "x-model-version",
                "istio": {"gateways": ["istio-system/public"]},
                "gatewayApi": {"parentRefs": [{"name": "public", "namespace": "infra"}]},
            },
            "versions": vs,
            "traffic": traffic,
        }
    )


def largest_spec(path: Path) -> None:
    """A valid spec just under 1 MiB: 2,725 labels (317-character keys at most) and 10 versions."""
    lines = ["apiVersion: mlserve/v1", "name: fraud", "namespace: ml", "labels:"]
    prefix = ".".join(["p" * 60] * 4)  # a DNS prefix of 243 characters
    for i in range(2725):
        lines.append(f"  {prefix}/label-{i:05d}-{'k' * 48}: value-{i:05d}-{'v' * 51}")
    lines += ["gateway:", "  type: istio", "  host: models.example.com", "versions:"]
    for v in range(1, 11):
        lines += [f"  - name: v{v}", f"    image: ghcr.io/acme/fraud:1.{v}.0", "    env:"]
        lines += [f"      VAR_{e}: '{'x' * 60}'" for e in range(8)]
    lines += ["traffic:", "  stable: v1", "  canary: v2", "  weight: 10"]
    path.write_text("\n".join(lines) + "\n")


def fresh(argv: list[str]) -> tuple[float, float, float]:
    """(wall s, CPU s, peak MB) of one `mlserve` process writing to /dev/null."""
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(os.devnull, "w") as sink:
        subprocess.run([sys.executable, "-m", "mlserve", *argv], stdout=sink, check=True, cwd=ROOT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, after.ru_maxrss / 1024  # ru_maxrss: the largest child so far, in KiB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    render(spec("istio", 1))
    print(f"{'gateway':<14} {'versions':>8} {'seconds':>8} {'resources':>9}")
    for gateway in GATEWAYS:
        top = 2 if gateway == "ingress-nginx" else 10  # ingress-nginx: stable + canary only
        for n in (1, top):
            s = spec(gateway, n)
            best, count = float("inf"), 0
            for _ in range(args.repeat):
                start = time.perf_counter()
                count = len(render(s))
                best = min(best, time.perf_counter() - start)
            print(f"{gateway:<14} {n:>8} {best:>8.3f} {count:>9}")

    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "largest.yaml"
        largest_spec(big)
        load_spec(big)  # valid, or this raises
        size = big.stat().st_size
        print(f"\nfresh `mlserve render` of {size / 1024:.0f} KiB, 2,725 labels, 10 versions")
        print(
            f"{'output':<8} {'wall s':>7} {'cpu s':>7} {'peak MB':>8}  targets: "
            f"{TARGET_SECONDS:g} s, {TARGET_MB} MB"
        )
        for fmt in ("yaml", "json"):
            wall, cpu, peak = fresh(["render", str(big), "-o", fmt])
            missed = min(wall, cpu) > TARGET_SECONDS or peak > TARGET_MB
            ok = ok and not missed
            flag = "  MISSED" if missed else ""
            print(f"{fmt:<8} {wall:>7.2f} {cpu:>7.2f} {peak:>8.0f}{flag}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
