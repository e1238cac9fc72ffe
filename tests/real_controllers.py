"""What a gateway controller or a cloud would write into the REAL stack's API server, for the
tests of tests/test_real_lifecycle.py: no Gateway API implementation, ingress-nginx or load
balancer runs there (scripts/realstack), and pulumi-kubernetes waits for what they would write.

`Controllers` watches kinds in one namespace (`kubectl get --watch`, one process a kind) and, for
each object it sees, writes the status such a controller would once it has reconciled the
object (`kubectl patch --subresource=status`), and writes it again when the object changes:
- an HTTPRoute: a RouteParentStatus per parentRef with Accepted (True, reason Accepted, or False
  with a refusal's reason), observedGeneration the route's generation (apis/v1/httproute_types.go,
  shared_types.go: RouteParentStatus, RouteConditionAccepted);
- an Ingress (ingress-nginx publishes the address it serves on) and a LoadBalancer Service (a
  cloud's load-balancer controller): status.loadBalancer.ingress with an IP from TEST-NET-1.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tests.realstack import Real

HTTPROUTES = "httproutes.gateway.networking.k8s.io"
INGRESSES = "ingresses.networking.k8s.io"
SERVICES = "services"
ADDRESS = {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}
CONTROLLER = "example.com/mlserve-test-controller"

# A refusal by parent name: (reason, message), as a Gateway whose listeners do not allow the
# route would answer (shared_types.go RouteReasonNotAllowedByListeners).
Refusals = dict[str, tuple[str, str]]


def route_status(route: dict[str, Any], refuse: Refusals) -> dict[str, Any] | None:
    """The status a Gateway controller writes for `route`, or None when it has written it for
    this generation already."""
    generation = route["metadata"].get("generation", 1)
    parents = []
    for ref in route["spec"].get("parentRefs", []):
        reason, message = refuse.get(ref["name"], ("Accepted", "accepted by the test's controller"))
        parents.append({
            "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", **ref},
            "controllerName": CONTROLLER,
            "conditions": [{
                "type": "Accepted", "status": "True" if reason == "Accepted" else "False",
                "reason": reason, "message": message, "observedGeneration": generation,
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }],
        })  # fmt: skip
    have = (route.get("status") or {}).get("parents") or []
    seen = [(p["parentRef"], [(c["status"], c.get("observedGeneration")) for c in p["conditions"]])
            for p in have]  # fmt: skip
    wanted = [(p["parentRef"], [(c["status"], c["observedGeneration"]) for c in p["conditions"]])
              for p in parents]  # fmt: skip
    return None if seen == wanted else {"parents": parents}


def address_status(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj["kind"] == "Service" and obj["spec"].get("type") != "LoadBalancer":
        return None
    if ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress"):
        return None
    return ADDRESS


class Controllers:
    """Status writers for one namespace, until stopped."""

    def __init__(self, real: Real, writers: dict[str, Callable[[dict[str, Any]], Any]]) -> None:
        self.real = real
        self.procs: list[subprocess.Popen[str]] = []
        self.threads: list[threading.Thread] = []
        self.patched: list[tuple[str, str, Any]] = []  # (kind, name, status) as written
        self.lock = threading.Lock()
        for kind, writer in writers.items():
            proc = subprocess.Popen(
                ["kubectl", "get", kind, "-n", real.namespace, "--watch", "-o", "json"],
                env=real.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            self.procs.append(proc)
            thread = threading.Thread(target=self._run, args=(kind, proc, writer), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(
        self, kind: str, proc: subprocess.Popen[str], writer: Callable[[dict[str, Any]], Any]
    ) -> None:
        assert proc.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in proc.stdout:
            buffer += line
            while buffer.strip():
                try:
                    obj, end = decoder.raw_decode(buffer.lstrip())
                except ValueError:
                    break
                buffer = buffer.lstrip()[end:]
                if obj["metadata"].get("deletionTimestamp"):
                    continue
                status = writer(obj)
                if status is None:
                    continue
                name = obj["metadata"]["name"]
                result = self.real.stack.kubectl(
                    "patch", kind, name, "-n", self.real.namespace, "--subresource=status",
                    "--type=merge", "-p", json.dumps({"status": status}), check=False,
                )  # fmt: skip
                if result.returncode == 0:
                    with self.lock:
                        self.patched.append((kind, name, status))

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait()
        for thread in self.threads:
            thread.join(timeout=10)


@contextmanager
def controllers(real: Real, refuse: Refusals | None = None) -> Iterator[Controllers]:
    """Every controller a test's objects wait for: Gateways (accepting each route, or refusing
    it for the parents in `refuse`), ingress-nginx and a load balancer."""
    running = Controllers(real, {
        HTTPROUTES: lambda route: route_status(route, refuse or {}),
        INGRESSES: address_status,
        SERVICES: address_status,
    })  # fmt: skip
    try:
        yield running
    finally:
        running.stop()
