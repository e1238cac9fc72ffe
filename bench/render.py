"""Time `render` of 1..10-version specs for each Kubernetes gateway (target: < 2 s at 10).

    python bench/render.py [--repeat N]

Prints one row per gateway and version count: the best of N in-process runs (after a warm-up,
so the one-off import of pulumi and pulumi_kubernetes is not counted), then the wall time of a
fresh Python process that imports everything and renders 10 versions, as `mlserve render` does.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlserve.render import render
from mlserve.spec import Spec

GATEWAYS = ("istio", "gateway-api", "ingress-nginx")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--once", nargs=2, metavar=("GATEWAY", "VERSIONS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.once:
        render(spec(args.once[0], int(args.once[1])))
        return
    t0 = time.perf_counter()
    render(spec("istio", 1))
    print(f"first render (imports included): {time.perf_counter() - t0:.3f} s\n")
    print(f"{'gateway':<14} {'versions':>8} {'seconds':>8} {'resources':>9}")
    for gateway in GATEWAYS:
        # ingress-nginx routes at most stable + canary (the loader rejects more).
        top = 2 if gateway == "ingress-nginx" else 10
        for n in range(1, top + 1):
            s = spec(gateway, n)
            best = float("inf")
            count = 0
            for _ in range(args.repeat):
                start = time.perf_counter()
                count = len(render(s))
                best = min(best, time.perf_counter() - start)
            print(f"{gateway:<14} {n:>8} {best:>8.3f} {count:>9}")
    print(f"\n{'fresh process':<24} {'seconds':>8}")
    for gateway in ("istio", "gateway-api"):
        start = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--once", gateway, "10"], check=True)
        print(f"{gateway + ', 10 versions':<24} {time.perf_counter() - start:>8.3f}")


if __name__ == "__main__":
    main()
