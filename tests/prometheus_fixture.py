"""A REAL Prometheus server (Debian's `prometheus` package) scraping counters this test process
serves, for the rollout analysis tests.

One server per test process: it listens on a free loopback port, keeps its data in a temporary
directory and scrapes `/metrics` of a small HTTP server here every second. It starts as soon as
the tests are collected if any will use it (tests/conftest.py): a new Prometheus scrapes nothing
for its first 5 s, since its discovery manager sends the first targets on its first 5-second tick
(discovery/manager.go, updatert and sender), and that wait then passes while other tests run.
Tests set each (service, version)'s request and error rates; the counters grow accordingly, so
`rate()` in a query sees a healthy or a failing canary a scrape or two later. Tests use their own
service names, so they never see each other's series.

Without the binary the tests skip, except under CI=true, where they fail: CI installs it.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

BINARY = shutil.which("prometheus")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")  # before any fixture sets CI
SCRAPE_SECONDS = 1
# Prometheus asks for basic auth (its --web.config.file), so every test also sends credentials
# from the environment. The hash is bcrypt of PASSWORD, made once with Python's
# crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)).
USER, PASSWORD = "mlserve", "s3cret-pw"
PASSWORD_HASH = "$2b$04$lJvELqcWPqOT5T0orYuoBeXRyNY14xEMJ5oLzhRxW6uEFrVyb1grK"
AUTH = {"MLSERVE_PROMETHEUS_USER": USER, "MLSERVE_PROMETHEUS_PASSWORD": PASSWORD}


@dataclass
class _Counter:
    rate: float  # per second
    base: float = 0.0
    since: float = field(default_factory=time.monotonic)

    def value(self, now: float) -> float:
        return self.base + self.rate * (now - self.since)

    def set_rate(self, rate: float) -> None:
        now = time.monotonic()
        self.base, self.since, self.rate = self.value(now), now, rate


# vLLM's time-to-first-token histogram buckets (vllm/v1/metrics/loggers.py,
# histogram_time_to_first_token).
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip


class Metrics:
    """Counters served in the text format: `http_requests_total{service, version, code}`, and
    what a vLLM server exposes (`set_vllm`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (family, type, sample name, labels) -> counter
        self._counters: dict[tuple[str, str, str, str], _Counter] = {}

    def _set(self, family: str, kind: str, sample: str, labels: str, rate: float) -> None:
        key = (family, kind, sample, labels)
        if key in self._counters:
            self._counters[key].set_rate(rate)
        else:
            self._counters[key] = _Counter(rate)

    def set(self, service: str, version: str, requests: float, errors: float = 0.0) -> None:
        """`requests` per second, of which `errors` answer 500 (both series always exist)."""
        with self._lock:
            for code, rate in (("200", requests - errors), ("500", errors)):
                labels = f'service="{service}",version="{version}",code="{code}"'
                self._set("http_requests_total", "counter", "http_requests_total", labels, rate)

    def set_vllm(
        self, name: str, version: str, requests: float, errors: float = 0.0, ttft: float = 0.2
    ) -> None:
        """The pods of one version of a vLLM deployment, as a scrape that maps pod labels
        (`labelmap` of `__meta_kubernetes_pod_label_(.+)`) would store them: `requests` per
        second to /v1/chat/completions, of which `errors` answer 5xx
        (prometheus_fastapi_instrumentator's `http_requests_total{handler, method, status}`,
        vllm docs/design/metrics.md), and each other request's first token after `ttft`
        seconds (`vllm:time_to_first_token_seconds`, labels model_name and engine)."""
        target = f'app_kubernetes_io_name="{name}",app_kubernetes_io_version="{version}"'
        with self._lock:
            for status, rate in (("2xx", requests - errors), ("5xx", errors)):
                labels = f'{target},handler="/v1/chat/completions",method="POST",status="{status}"'
                self._set("http_requests_total", "counter", "http_requests_total", labels, rate)
            ok = requests - errors
            family = "vllm:time_to_first_token_seconds"
            model = f'{target},engine="0",model_name="qwen3-8b"'
            for le in (*TTFT_BUCKETS, float("inf")):
                bound = "+Inf" if le == float("inf") else repr(le)
                rate = ok if ttft <= le else 0.0
                self._set(family, "histogram", f"{family}_bucket", f'{model},le="{bound}"', rate)
            self._set(family, "histogram", f"{family}_sum", model, ok * ttft)
            self._set(family, "histogram", f"{family}_count", model, ok)

    def text(self) -> str:
        now = time.monotonic()
        lines = []
        typed = set()
        with self._lock:
            for (family, kind, sample, labels), c in sorted(self._counters.items()):
                if family not in typed:
                    typed.add(family)
                    lines.append(f"# TYPE {family} {kind}")
                lines.append(f"{sample}{{{labels}}} {c.value(now):.3f}")
        return "\n".join(lines) + "\n"


def _serve(metrics: Metrics) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = metrics.text().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Prometheus:
    url: str
    metrics: Metrics

    def query(self, promql: str) -> list[dict[str, object]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(_authorized(url), timeout=5) as r:
            result: list[dict[str, object]] = json.load(r)["data"]["result"]
            return result

    def wait_for(self, promql: str, timeout: float = 30) -> None:
        """Until the query returns a series: the scrapes this test needs have happened."""
        deadline = time.monotonic() + timeout
        while not self.query(promql):
            if time.monotonic() > deadline:
                raise TimeoutError(f"Prometheus never answered {promql!r}")
            time.sleep(0.2)


def _authorized(url: str) -> urllib.request.Request:
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})


def _start(tmp: Path, target: str) -> tuple[subprocess.Popen[bytes], str]:
    assert BINARY is not None
    config = tmp / "prometheus.yml"
    config.write_text(
        f"global: {{scrape_interval: {SCRAPE_SECONDS}s, evaluation_interval: {SCRAPE_SECONDS}s}}\n"
        "scrape_configs:\n"
        f"  - job_name: canary\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    web = tmp / "web.yml"
    web.write_text(f"basic_auth_users:\n  {USER}: {PASSWORD_HASH}\n")
    port = free_port()
    log = (tmp / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            BINARY,
            f"--config.file={config}",
            f"--web.config.file={web}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return process, f"http://127.0.0.1:{port}"


@dataclass
class _Server:
    metrics: Metrics
    http: ThreadingHTTPServer
    process: subprocess.Popen[bytes]
    url: str
    tmp: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.http.shutdown()
        shutil.rmtree(self.tmp, ignore_errors=True)


_servers: list[_Server] = []  # this process's, once started


def _launch() -> _Server:
    if not _servers:
        metrics = Metrics()
        http = _serve(metrics)
        tmp = Path(tempfile.mkdtemp(prefix="prometheus-"))
        process, url = _start(tmp, f"127.0.0.1:{http.server_address[1]}")
        _servers.append(_Server(metrics, http, process, url, tmp))
        atexit.register(_stop)  # also when no test asked for it after all
    return _servers[0]


def _stop() -> None:
    while _servers:
        _servers.pop().stop()


def start_early(items: list[pytest.Item]) -> None:
    """Start the server now if a collected test will use it (see the module's docstring)."""
    if BINARY is not None and any("prometheus" in getattr(i, "fixturenames", ()) for i in items):
        _launch()


@pytest.fixture(scope="session")
def prometheus() -> Iterator[Prometheus]:
    if BINARY is None:
        message = "needs Debian's prometheus package (apt-get install -y prometheus)"
        if IN_CI:
            pytest.fail(f"CI must run the Prometheus tests: {message}")
        pytest.skip(message)
    started = _launch()
    process, url, tmp = started.process, started.url, started.tmp
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited: {(tmp / 'prometheus.log').read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(_authorized(f"{url}/-/ready"), timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("prometheus did not become ready")
            time.sleep(0.2)
        yield Prometheus(url, started.metrics)
    finally:
        _stop()
