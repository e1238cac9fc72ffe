"""Time and memory of `mlserve render` (targets: under 2 s and 150 MB for any spec `validate`
accepts, YAML output included).

    .venv/bin/python bench/render.py [--repeat N]

A script, not a test: timings depend on the machine (on a busy one, compare CPU time rather than
wall time; each fresh process runs --repeat times and the fastest is kept). First the in-process
render time of 1..10-version specs per Kubernetes gateway (the one-off import of pulumi is not
counted), then fresh `mlserve` processes, as a user runs them, on the heaviest specs `validate`
accepts: the most values (64 labels of the longest kind on every one of istio's 33 objects, and
ten versions with as many environment variables as the loader's 10,000 values allow) and the
longest strings (the same labels, environment values of up to 32 KiB filling 1 MiB). Beside the
renders, two baselines: `validate` of the same file (start-up and loading), and Pulumi alone: the
same `mlserve render` with render's program and Pulumi's mock monitor, but mocks that record
nothing, so nothing is printed.
Exit status 1 when a render misses a target.

Where the time goes: the Pulumi SDK serializes every input value to protobuf and back (twice:
the mock monitor, then the resource's outputs; pulumi/runtime/rpc.py serialize_properties,
resolve_outputs), so render's time grows with the number of values, most of all the labels,
which every object carries. Before labels were capped at 64, a valid 1 MiB spec with 2,725 labels
took 2.8-3.2 s and 143 MB however render was tuned: Pulumi alone took 2.2-2.6 s of it.
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


def _labels() -> list[str]:
    """64 labels (the most allowed) with 317-character keys and 63-character values."""
    prefix = ".".join(["p" * 60] * 4)  # a DNS prefix of 243 characters
    return [f"  {prefix}/label-{i:02d}-{'k' * 51}: value-{i:02d}-{'v' * 54}" for i in range(64)]


def _write(path: Path, env: list[str]) -> None:
    lines = ["apiVersion: mlserve/v1", "name: fraud", "namespace: ml", "labels:", *_labels()]
    lines += ["gateway:", "  type: istio", "  host: models.example.com", "versions:"]
    for v in range(1, 11):
        lines += [f"  - name: v{v}", f"    image: ghcr.io/acme/fraud:1.{v}.0", "    env:", *env]
    lines += ["traffic:", "  stable: v1", "  canary: v2", "  weight: 10"]
    path.write_text("\n".join(lines) + "\n")


def most_values_spec(path: Path) -> None:
    """488 environment variables per version: the loader's 10,000 values, 0.5 MiB."""
    _write(path, [f"      V{e:04d}_{'x' * 40}: '{'y' * 40}'" for e in range(488)])


def longest_strings_spec(path: Path) -> None:
    """Three environment values of 32 KiB per version: just under 1 MiB."""
    _write(path, [f"      VAR_{e}: '{'x' * 32000}'" for e in range(3)])


SPECS = (
    ("the most values: 64 labels, 10 versions of 488 variables", most_values_spec),
    ("the longest strings: 64 labels, 10 versions of 3 x 32 KiB", longest_strings_spec),
)

# The baseline "Pulumi alone": `mlserve render -o json` with render's program, loop and mock
# monitor (MockMonitor still deserializes each request), but mocks that record nothing, so
# nothing is printed but `{"resources": []}`.
PULUMI_ALONE = """
import sys

import pulumi

from mlserve import cli, render


class RecordNothing(pulumi.runtime.Mocks):
    resources = []

    def new_resource(self, args):
        return render.mock_id(args.name), {}

    def call(self, args):
        return {}, None


render._Recorder = RecordNothing
sys.argv = ["mlserve", "render", sys.argv[1], "-o", "json"]
cli.main()
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
    for title, write_spec in SPECS:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "spec.yaml"
            write_spec(path)
            load_spec(path)  # valid, or this raises
            ok = judge(title, path, args.repeat) and ok
    return 0 if ok else 1


def judge(title: str, path: Path, repeat: int) -> bool:
    """Print the fresh processes' rows for one spec; False if a render misses a target."""
    print(f"\nfresh processes on {title} ({path.stat().st_size / 1024:.0f} KiB)")
    print(
        f"{'':<28} {'wall s':>7} {'cpu s':>7} {'peak MB':>8}  targets: "
        f"{TARGET_SECONDS:g} s, {TARGET_MB} MB"
    )
    renders = {
        f"mlserve render -o {fmt}": ["-m", "mlserve", "render", str(path), "-o", fmt]
        for fmt in ("yaml", "json")
    }
    baselines = {
        "Pulumi alone (baseline)": ["-c", PULUMI_ALONE, str(path)],
        "mlserve validate (baseline)": ["-m", "mlserve", "validate", str(path)],
    }
    ok, seconds, peaks = True, {}, {}
    for label, argv in {**renders, **baselines}.items():
        wall, cpu, peaks[label] = fresh(argv, repeat)
        seconds[label] = min(wall, cpu)
        missed = seconds[label] > TARGET_SECONDS or peaks[label] > TARGET_MB
        ok = ok and not (missed and label in renders)
        flag = ("  MISSED" if label in renders else "  (over a target)") if missed else ""
        print(f"{label:<28} {wall:>7.2f} {cpu:>7.2f} {peaks[label]:>8.0f}{flag}")
    alone = "Pulumi alone (baseline)"
    print(
        f"Pulumi alone takes {seconds[alone]:.2f} s and {peaks[alone]:.0f} MB: recording the "
        f"inputs and writing the output have {max(0.0, TARGET_SECONDS - seconds[alone]):.2f} s "
        f"and {max(0.0, TARGET_MB - peaks[alone]):.0f} MB left"
    )
    return ok


if __name__ == "__main__":
    sys.exit(main())
