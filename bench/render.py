"""Time and memory of `mlserve render` (targets: under 2 s and 150 MB for any spec `validate`
accepts, YAML output included).

    .venv/bin/python bench/render.py [--repeat N]

A script, not a test: timings depend on the machine (on a busy one, compare CPU time rather than
wall time; each fresh process is run --repeat times and the fastest kept). First the in-process
render time of 1..10-version specs per Kubernetes gateway (the one-off import of pulumi is not
counted), then fresh `mlserve` processes, as a user runs them, on the largest spec the loader
accepts: 1 MiB with 2,725 labels and 10 versions, whose labels go on every one of its ~30
Kubernetes objects (about 35 MB of YAML). Beside them, two baselines: `validate` of the same file
(start-up and loading), and Pulumi alone: the same program, loop and mock monitor with mocks that
record nothing, and nothing printed. Exit status 1 when a render misses a target.

Where the time and memory go (pyinstrument, cProfile, py-spy; an RSS timeline; tracemalloc):
the Pulumi SDK serializes every resource's inputs to a protobuf Struct (and a copy of it in the
request) and, with no outputs from the monitor, deserializes them again as the resource's outputs
(pulumi/runtime/rpc.py serialize_properties, resolve_outputs), which it keeps to the end; the mock
monitor deserializes the request once more for render to record. mlserve's own share was the
pure-Python YAML emitter (now libyaml's), echoing every input back as an output (now none),
one copy of every label string per object (now interned), every resource's protobuf copies alive
at once (registrations now run one at a time: 236 -> 142 MB), and cyclic garbage collection
walking the process while the SDK ran and YAML nodes were built (now paused for those steps).
What is left above Pulumi alone is recording the inputs and writing the output.
"""

from __future__ import annotations

import argparse
import os
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


# The baseline "Pulumi alone": render's program, loop and mock monitor (MockMonitor still
# deserializes each request), with mocks that record nothing; nothing is printed.
PULUMI_ALONE = """
import sys
from pathlib import Path

import pulumi

import mlserve.cli  # the command's own start-up
from mlserve import render
from mlserve.spec import load_spec


class RecordNothing(pulumi.runtime.Mocks):
    resources = []

    def new_resource(self, args):
        return render.mock_id(args.name), {}

    def call(self, args):
        return {}, None


render._Recorder = RecordNothing
render.render(load_spec(Path(sys.argv[1])))
"""


def fresh(argv: list[str], repeat: int) -> tuple[float, float, float]:
    """(wall s, CPU s, peak MB) of a Python process writing to /dev/null, fastest of `repeat`."""
    best = (float("inf"), float("inf"), 0.0)
    for _ in range(repeat):
        start = time.perf_counter()
        with open(os.devnull, "w") as sink, tempfile.TemporaryFile() as err:
            child = subprocess.Popen([sys.executable, *argv], stdout=sink, stderr=err, cwd=ROOT)
            _, status, usage = os.wait4(child.pid, 0)
            if status != 0:
                err.seek(0)
                code = os.waitstatus_to_exitcode(status)
                raise SystemExit(f"{argv}: exit status {code}\n{err.read().decode()}")
        wall = time.perf_counter() - start
        cpu = usage.ru_utime + usage.ru_stime
        best = min(best, (wall, cpu, usage.ru_maxrss / 1024), key=lambda r: r[1])  # KiB -> MB
    return best


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
        print(f"\nfresh processes on a {size / 1024:.0f} KiB spec, 2,725 labels, 10 versions")
        print(
            f"{'':<26} {'wall s':>7} {'cpu s':>7} {'peak MB':>8}  targets: "
            f"{TARGET_SECONDS:g} s, {TARGET_MB} MB"
        )
        runs = [
            ("mlserve render -o yaml", ["-m", "mlserve", "render", str(big), "-o", "yaml"], True),
            ("mlserve render -o json", ["-m", "mlserve", "render", str(big), "-o", "json"], True),
            ("Pulumi alone (baseline)", ["-c", PULUMI_ALONE, str(big)], False),
            ("mlserve validate (baseline)", ["-m", "mlserve", "validate", str(big)], False),
        ]
        seconds = {}
        for label, argv, judged in runs:
            wall, cpu, peak = fresh(argv, args.repeat)
            seconds[label] = min(wall, cpu)
            missed = seconds[label] > TARGET_SECONDS or peak > TARGET_MB
            flag = ("  MISSED" if judged else "  (over the targets)") if missed else ""
            ok = ok and not (judged and missed)
            print(f"{label:<26} {wall:>7.2f} {cpu:>7.2f} {peak:>8.0f}{flag}")
    floor = seconds["Pulumi alone (baseline)"]
    print(
        f"Pulumi alone takes {floor:.2f} s of the {TARGET_SECONDS:g} s: recording the inputs and "
        f"writing the output have {max(0.0, TARGET_SECONDS - floor):.2f} s left"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
