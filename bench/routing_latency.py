"""How long `mlserve deploy`, `promote` and `rollback` take to change the routing object in the
API server, on the real stack, beside `kubectl patch` of the same object (the floor).

Needs a running real stack: `scripts/realstack start DIR`, then `. DIR/env.sh` (the Pulumi CLI,
the Kubernetes provider plugin, KUBECONFIG). Each run deploys the Istio spec below into a
namespace of its own, with a MLSERVE_HOME, file backend and passphrase of its own, and runs each
command as a fresh process without a terminal, as a CI step runs it. A watch of the
VirtualService (`kubectl get --watch`, started before the command) stamps the moment the API
server shows the change the command makes (created; weights 50/50; weights 100/0), so "to the
route" is from the command's start to that event, and "took" is the whole command, exit
included. A `pulumi` wrapper first on PATH logs every Pulumi CLI process (its arguments, start
and end), so the table also counts them.

`promote --dry-run` is the Pulumi preview of the same routing update, which changes nothing: what
a preview before each routing update would add to it.

"cpu" is the CPU time of the command and every process it waited for (the Pulumi CLI, the
provider plugin), which a loaded machine changes less than the wall times.

`--phases` runs once through a wrapper interpreter that stamps where the time goes inside
mlserve (imports, each Pulumi process, the routing targets, the update). `--tree DIR` (given
twice, or once beside this checkout) runs another checkout of mlserve in turn with this one,
interleaved, so that two versions meet the same load.

Usage: python bench/routing_latency.py [--runs N] [--phases] [--tree DIR ...]

Figures: CONTRIBUTING.md ("How fast an emergency rollback is").
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PROJECT = "bench-route"
VS = "virtualservices.networking.istio.io"
SPEC = """\
apiVersion: mlserve/v1
name: bench-route
namespace: {namespace}
gateway:
  type: istio
  host: bench.example.com
  istio: {{gateways: [istio-system/public]}}
versions:
  - {{name: v1, image: "ghcr.io/acme/bench:1", replicas: 2}}
  - {{name: v2, image: "ghcr.io/acme/bench:2", replicas: 1}}
traffic: {{stable: v1, canary: v2, weight: 10}}
"""
# A `pulumi` first on PATH that logs each process: start, end, exit status, arguments.
WRAPPER = """\
#!/bin/sh
start=$(date +%s.%N)
"{real}" "$@"
rc=$?
printf '%s %s %s %s\\n' "$start" "$(date +%s.%N)" "$rc" "$*" >> "{log}"
exit $rc
"""
# Stamps where the time goes inside one mlserve process (--phases): wall time since the
# interpreter started, at the entry and exit of the engine's calls and the routing update's steps.
PHASES = """\
import functools, sys, time
T0 = time.time()
def stamp(what):
    print(f"phase {time.time():.4f} {what}", file=sys.stderr, flush=True)
stamp("interpreter up")
import mlserve.cli
from mlserve import engine, live, ops
stamp("imports done")
def wrap(owner, name):
    f = getattr(owner, name)
    @functools.wraps(f)
    def w(*a, **k):
        stamp("> " + name)
        try:
            return f(*a, **k)
        finally:
            stamp("< " + name)
    setattr(owner, name, w)
for n in ("stack", "history", "state", "up", "preview", "ensure_plugins"):
    wrap(engine.Engine, n)
for n in ("read_live", "_routing_targets", "_declared_routing", "capacity_targets"):
    if hasattr(live, n):
        wrap(live, n)
sys.argv = ["mlserve", *sys.argv[1:]]
try:
    mlserve.cli.main()
finally:
    stamp("main returned")
"""


class RouteWatch:
    """`kubectl get VS --watch`: each event stamped on arrival."""

    def __init__(self, namespace: str, env: dict[str, str]) -> None:
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            ["kubectl", "get", VS, "-n", namespace, "--watch", "-o", "json",
             "--output-watch-events"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()
        time.sleep(1.5)  # the watch is established and has listed what exists

    def _read(self) -> None:
        assert self.proc.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in self.proc.stdout:
            buffer += line
            while buffer.strip():
                try:
                    event, end = decoder.raw_decode(buffer.lstrip())
                except ValueError:
                    break
                buffer = buffer.lstrip()[end:]
                with self.lock:
                    self.events.append((time.time(), event["type"], event["object"]))

    def first(self, since: float, test: Callable[[str, dict[str, Any]], bool]) -> float | None:
        """When the first event after `since` passing `test` arrived."""
        with self.lock:
            return next((t for t, k, o in self.events if t >= since and test(k, o)), None)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def weights(obj: dict[str, Any]) -> dict[str, int]:
    route = obj["spec"]["http"][-1]["route"]
    return {r["destination"]["subset"]: r.get("weight", 100) for r in route}


def has_weights(want: dict[str, int]) -> Callable[[str, dict[str, Any]], bool]:
    return lambda kind, obj: kind in ("ADDED", "MODIFIED") and weights(obj) == want


class Bench:
    def __init__(self, root: Path, phases: bool, tree: Path) -> None:
        self.root = root
        self.phases = phases
        self.tree = tree
        real = shutil.which("pulumi")
        if real is None or shutil.which("kubectl") is None:
            raise SystemExit("no pulumi or kubectl on PATH: source the real stack's env.sh first")
        bin = root / "bin"
        bin.mkdir()
        self.log = root / "pulumi.log"
        (bin / "pulumi").write_text(WRAPPER.format(real=real, log=self.log))
        (bin / "pulumi").chmod(0o755)
        (root / "phases.py").write_text(PHASES)
        self.env = {
            **os.environ,
            "PATH": f"{bin}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(tree),
            "MLSERVE_HOME": str(root / "home"),
            "MLSERVE_BACKEND_URL": (root / "state").as_uri(),
            "PULUMI_CONFIG_PASSPHRASE": "bench",
            "CI": "true",
        }
        (root / "state").mkdir()

    def run(self, *args: str) -> tuple[float, float, float, list[str], list[str]]:
        """Run `mlserve ARGS`: its start (epoch), how long it took, its CPU time, its Pulumi
        processes (each "start+took args", relative to the command's start) and, with
        --phases, its stamps."""
        self.log.unlink(missing_ok=True)
        head = [str(self.root / "phases.py")] if self.phases else ["-m", "mlserve"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.time()
        result = subprocess.run(
            [sys.executable, *head, *args], env=self.env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, cwd=self.tree,
        )  # fmt: skip
        took = time.time() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if result.returncode != 0:
            raise SystemExit(f"mlserve {shlex.join(args)} failed:\n{result.stderr}")
        processes = []
        if self.log.exists():
            for line in self.log.read_text().splitlines():
                begin, end, _, words = line.split(" ", 3)
                shown = " ".join(w for w in words.split() if w != "--non-interactive")[:60]
                b = float(begin) - start
                processes.append(f"{b:5.2f}+{float(end) - float(begin):4.2f} {shown}")
        stamps = [
            f"{float(line.split()[1]) - start:5.2f} {' '.join(line.split()[2:])}"
            for line in result.stderr.splitlines()
            if line.startswith("phase ")
        ]
        return start, took, cpu, processes, stamps


Row = tuple[float, float, float, int]  # to the route, took, cpu, Pulumi processes


def one_run(index: int, tree: Path, phases: bool, out: dict[str, list[Row]]) -> None:
    namespace = f"bench-route-{index}-{len(out.get('rollback', []))}-{os.getpid()}"
    subprocess.run(["kubectl", "create", "namespace", namespace], check=True,
                   capture_output=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp), phases, tree)
        spec = Path(tmp) / "spec.yaml"
        spec.write_text(SPEC.format(namespace=namespace))
        watch = RouteWatch(namespace, bench.env)
        # A dry run is the preview a routing update would need to show what it will change
        # before changing it (None: it changes nothing, so there is no route to wait for).
        steps: list[tuple[str, tuple[str, ...], dict[str, int] | None]] = [
            ("deploy (new stack)", ("deploy", str(spec), "--yes"), {"v1": 90, "v2": 10}),
            ("promote --dry-run", ("promote", "--weight", "50", "--dry-run", "--project",
                                   PROJECT), None),
            ("promote --weight 50", ("promote", "--weight", "50", "--project", PROJECT),
             {"v1": 50, "v2": 50}),
            ("rollback", ("rollback", "--project", PROJECT), {"v1": 100, "v2": 0}),
        ]  # fmt: skip
        try:
            for label, args, want in steps:
                time.sleep(1)  # the previous command's processes are gone
                start, took, cpu, processes, stamps = bench.run(*args)
                time.sleep(0.5)
                seen = watch.first(start, has_weights(want)) if want is not None else None
                moved = (seen - start) if seen is not None else float("nan")
                out.setdefault(label, []).append((moved, took, cpu, len(processes)))
                if phases:
                    print(f"\n{label}: route changed at {moved:.2f} s, exit at {took:.2f} s")
                    for line in sorted(processes + stamps, key=_at):
                        print(f"  {line}")
            out.setdefault("kubectl patch (floor)", []).append(floor(namespace, watch, bench.env))
            bench.run("destroy", "--yes", "--project", PROJECT)
        finally:
            watch.stop()
    subprocess.run(["kubectl", "delete", "namespace", namespace, "--wait=false"],
                   capture_output=True)  # fmt: skip


def _at(line: str) -> float:
    return float(line.split()[0].split("+")[0])


def floor(namespace: str, watch: RouteWatch, env: dict[str, str]) -> Row:
    """The same change as the promote's, made directly by `kubectl patch` (a process too)."""
    got = subprocess.run(
        ["kubectl", "get", VS, PROJECT, "-n", namespace, "-o", "json"],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    last = len(json.loads(got.stdout)["spec"]["http"]) - 1
    patch = [
        {"op": "replace", "path": f"/spec/http/{last}/route/{i}/weight", "value": 50}
        for i in (0, 1)
    ]
    time.sleep(1)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    subprocess.run(
        ["kubectl", "patch", VS, PROJECT, "-n", namespace, "--type=json", "-p",
         json.dumps(patch)],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    took = time.time() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    time.sleep(0.5)
    seen = watch.first(start, has_weights({"v1": 50, "v2": 50}))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return ((seen - start) if seen is not None else float("nan"), took, cpu, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--phases", action="store_true", help="one run, showing where time goes")
    parser.add_argument("--tree", type=Path, action="append", default=[],
                        help="another mlserve checkout to run in turn with this one")  # fmt: skip
    args = parser.parse_args()
    trees = [t.resolve() for t in args.tree]
    if len(trees) < 2:
        trees.insert(0, REPO)
    results: dict[Path, dict[str, list[Row]]] = {t: {} for t in trees}
    for _ in range(1 if args.phases else args.runs):
        for tree in trees:  # interleaved, so that a busy moment weighs on each
            one_run(trees.index(tree), tree, args.phases, results[tree])
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    for tree, out in results.items():
        if len(trees) > 1:
            print(f"\n{tree}")
        print(
            f"{'command':<22} {'to the route: median (range)':<29} {'took':>6} {'cpu':>6}  pulumi"
        )
        for label, rows in out.items():
            moved = sorted(r[0] for r in rows)
            took = statistics.median(r[1] for r in rows)
            cpu = statistics.median(r[2] for r in rows)
            span = f"{statistics.median(moved):.2f} s ({moved[0]:.2f}-{moved[-1]:.2f})"
            if all(m != m for m in moved):  # NaN: a dry run changes no route
                span = "-"
            print(f"{label:<22} {span:<29} {took:5.2f}s {cpu:5.2f}s  {max(r[3] for r in rows)}")


if __name__ == "__main__":
    main()
