"""How long `mlserve rollback` takes to move traffic back to a previous stable, kept at all its
pods (the default) or at none (`traffic.previousReplicas: 0`), on the real stack.

Needs a running real stack: `scripts/realstack start DIR`, then `. DIR/env.sh` (the Pulumi CLI,
the Kubernetes provider plugin, KUBECONFIG). For each case it deploys a 4-replica stable and a
canary into a namespace of its own, completes the promotion, and times `mlserve rollback` (a
fresh process, as a CI step runs it): the whole command, and the moment the API server saw the
VirtualService change, read from a watch started before the command (`kubectl get --watch`,
stamped when each event arrives). Pods there are kwok's: Ready as soon as they are scheduled, so
the difference is mlserve's and Kubernetes' work to start 4 pods; a real model adds its image
pull and its start-up (loading weights) to it.

Measured on the real stack of scripts/realstack (Kubernetes 1.37.2, pulumi-kubernetes at the
v4.25.0 commit, Pulumi CLI 3.277.0) on 2 cores shared with other work (load average 5-6),
5 runs each, interleaved:

    previous stable    traffic moved after (median, range)   command took (median)
    kept at 4 pods     2.8 s (2.7-2.9)                       3.4 s
    kept at 0 pods     3.4 s (2.8-3.6)                       3.8 s

Usage: python bench/capacity_rollback.py [RUNS]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SPEC = """\
apiVersion: mlserve/v1
name: bench-rollback
namespace: {namespace}
gateway:
  type: istio
  host: bench.example.com
  istio: {{gateways: [istio-system/public]}}
versions:
  - {{name: v1, image: "ghcr.io/acme/bench:1", replicas: 4}}
  - {{name: v2, image: "ghcr.io/acme/bench:2", replicas: 4}}
traffic: {{stable: v1, canary: v2, weight: 10{previous}}}
"""


def mlserve(*args: str, env: dict[str, str]) -> float:
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "mlserve", *args], env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"mlserve {' '.join(args)} failed:\n{result.stderr}")
    return time.monotonic() - start


def watch_route(namespace: str, seen: list[float], stop: threading.Event) -> subprocess.Popen[str]:
    """Stamp each VirtualService event whose routes send v1 all the traffic."""
    proc = subprocess.Popen(
        ["kubectl", "get", "virtualservices.networking.istio.io", "-n", namespace, "--watch",
         "-o", "json", "--output-watch-events"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip

    def read() -> None:
        assert proc.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in proc.stdout:
            buffer += line
            try:
                event, end = decoder.raw_decode(buffer.lstrip())
            except ValueError:
                continue
            buffer = buffer.lstrip()[end:]
            routes = event["object"]["spec"]["http"][-1]["route"]
            if event["type"] == "MODIFIED" and [r["destination"]["subset"] for r in routes] == [
                "v1"
            ]:
                seen.append(time.monotonic())
            if stop.is_set():
                break

    threading.Thread(target=read, daemon=True).start()
    return proc


def run(previous: str, index: int) -> tuple[float, float]:
    namespace = f"bench-rollback-{'zero' if previous else 'kept'}-{index}-{os.getpid()}"
    subprocess.run(["kubectl", "create", "namespace", namespace], check=True,
                   capture_output=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.yaml"
        spec.write_text(SPEC.format(namespace=namespace, previous=previous))
        env = {
            **os.environ,
            "MLSERVE_HOME": f"{tmp}/home",
            "MLSERVE_BACKEND_URL": Path(tmp, "state").as_uri(),
            "PULUMI_CONFIG_PASSPHRASE": "bench",
            "CI": "true",
        }
        Path(tmp, "state").mkdir()
        mlserve("deploy", str(spec), "--yes", env=env)
        mlserve("promote", "--complete", "--project", "bench-rollback", env=env)
        seen: list[float] = []
        stop = threading.Event()
        watcher = watch_route(namespace, seen, stop)
        time.sleep(1.5)  # the watch's initial list is in
        start = time.monotonic()
        took = mlserve("rollback", "--project", "bench-rollback", env=env)
        time.sleep(1)
        stop.set()
        watcher.terminate()
        mlserve("destroy", "--yes", "--project", "bench-rollback", env=env)
    subprocess.run(["kubectl", "delete", "namespace", namespace, "--wait=false"],
                   capture_output=True)  # fmt: skip
    return (seen[0] - start if seen else float("nan")), took


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    cases = (("kept at 4 pods", ""), ("kept at 0 pods", ", previousReplicas: 0"))
    results: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in cases}
    for i in range(runs):  # interleaved, so that a busy moment weighs on both cases
        for label, previous in cases:
            results[label].append(run(previous, i))
    print("previous stable    traffic moved after (median, range)   command took (median)")
    for label, _ in cases:
        moved = sorted(m for m, _ in results[label])
        took = sorted(t for _, t in results[label])
        print(
            f"{label:<18} {statistics.median(moved):.1f} s ({moved[0]:.1f}-{moved[-1]:.1f})"
            f"{'':<20}{statistics.median(took):.1f} s"
        )


if __name__ == "__main__":
    main()
