"""The REAL stack for tests marked `real`: the Pulumi CLI, the Kubernetes provider plugin and a
Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok in
place of a kubelet) with the Istio, Gateway API and Inference Extension CRDs, as
`scripts/realstack` builds and starts them (CONTRIBUTING.md).

One stack per test process: `real_stack` starts it in a temporary directory, as soon as the
tests are collected if any will use it (tests/conftest.py; starting takes some 20-40 s, which
then passes while other tests run), and stops it when the process ends. `real` gives each test
its own namespace, MLSERVE_HOME, file:// backend and passphrase, and runs `python -m mlserve` as
a fresh process with the stack's environment, as a user at a shell that sourced env.sh would.

What a controller would do in a cluster (a Gateway accepting a route, ingress-nginx or a cloud
giving an address) nothing here does: a test does it with `set_status`, as that controller would,
and says so.

Without the built binaries the tests skip with one line saying how to build them, except under
CI=true, where they fail: CI builds them (.ci/run).

MLSERVE_REALSTACK_DIR=DIR uses the stack already running in DIR (`scripts/realstack start DIR`)
instead, and leaves it running: for running a real test again and again while working on it.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.machinery
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "realstack"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")  # before any fixture sets CI
PASSPHRASE = "real-stack-passphrase"
REUSE = os.environ.get("MLSERVE_REALSTACK_DIR")  # a running stack's DIR: used, never stopped
# What the test process may have set that would point mlserve elsewhere than the test's own
# home, backend and cluster.
_CLEARED = (
    "PULUMI_CONFIG_PASSPHRASE_FILE",
    "PULUMI_BACKEND_URL",
    "MLSERVE_BACKEND_URL",
    "MLSERVE_STACK",
    "MLSERVE_PROJECT",
    "MLSERVE_DEBUG",
    "PULUMI_ACCESS_TOKEN",
    "KUBECONFIG",
    "PULUMI_K8S_AWAIT_ALL",
)


def _load_script() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("realstack_script", str(SCRIPT))
    spec = importlib.util.spec_from_loader("realstack_script", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["realstack_script"] = module  # dataclasses look their module up
    loader.exec_module(module)
    return module


script = _load_script()


def missing() -> list[str]:
    """What `scripts/realstack build` has not built yet."""
    return [c.describe for c in script.COMPONENTS if not c.built()]


def _not_available(message: str) -> None:
    if IN_CI:
        pytest.fail(f"CI must run the real-stack tests: {message}")
    pytest.skip(message)


@dataclass
class RealStack:
    """A running stack: its directory and the environment env.sh sets."""

    dir: Path
    env: dict[str, str]  # KUBECONFIG, PULUMI_HOME, ... and PATH with the built pulumi first

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", *args], env=self.env, input=input, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        """One object as the API server has it (kubectl get -o json)."""
        out = self.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout
        obj: dict[str, Any] = json.loads(out)
        return obj

    def items(self, kind: str, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        """Every object of a kind in a namespace (optionally by label selector), by name."""
        args = ["get", kind, "-n", namespace, "-o", "json"]
        if selector:
            args += ["-l", selector]
        items: list[dict[str, Any]] = json.loads(self.kubectl(*args).stdout)["items"]
        return sorted(items, key=lambda o: o["metadata"]["name"])

    def exists(self, kind: str, name: str, namespace: str) -> bool:
        result = self.kubectl("get", kind, name, "-n", namespace, "-o", "name", check=False)
        return result.returncode == 0


@dataclass
class _Started:
    dir: Path
    process: subprocess.Popen[str] | None  # `scripts/realstack start`, until it has finished
    log: Path
    stack: RealStack | None = None
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait(self) -> RealStack:
        with self.lock:
            if self.stack is None and self.error is None:
                assert self.process is not None
                try:
                    self.process.wait(timeout=script.START_TIMEOUT + 60)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
                if self.process.returncode == 0:
                    self.stack = _read(self.dir / "stack")
                else:
                    self.error = self.log.read_text(errors="replace").strip()
            if self.error is not None:
                pytest.fail(f"scripts/realstack start failed:\n{self.error}")
            assert self.stack is not None
            return self.stack


def _read(dir: Path) -> RealStack:
    record = json.loads((dir / "stack.json").read_text())
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.update(record["env"])
    env["PATH"] = f"{record['path']}{os.pathsep}{os.environ.get('PATH', '')}"
    return RealStack(dir, env)


_started: list[_Started] = []  # this process's stack, once started


def _launch() -> _Started:
    if not _started and REUSE:
        dir = Path(REUSE).resolve()
        if not (dir / "stack.json").exists():
            pytest.fail(f"MLSERVE_REALSTACK_DIR={REUSE}: no stack runs there")
        _started.append(_Started(dir, None, dir / "start.log", stack=_read(dir)))
    if not _started:
        dir = Path(tempfile.mkdtemp(prefix="realstack-"))
        log = dir / "start.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                [sys.executable, str(SCRIPT), "start", str(dir / "stack"),
                 "--stop-with", str(os.getpid())],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
        _started.append(_Started(dir, process, log))
        atexit.register(_stop)  # also when no test asked for it after all
    return _started[0]


def _stop() -> None:
    while _started:
        started = _started.pop()
        if REUSE:
            continue  # not ours to stop
        if started.process is not None and started.process.poll() is None:
            started.process.terminate()  # `start` stops what it started when interrupted
            started.process.wait()
        subprocess.run(
            [sys.executable, str(SCRIPT), "stop", str(started.dir / "stack")],
            capture_output=True, text=True,
        )  # fmt: skip
        shutil.rmtree(started.dir, ignore_errors=True)


def _usable() -> str | None:
    """Why the stack cannot run here, or None."""
    absent = missing()
    if len(absent) == len(script.COMPONENTS):
        return "the real stack is not built: run `scripts/realstack build` (most of an hour once)"
    if absent:
        return f"the real stack lacks {', '.join(absent)}: run `scripts/realstack build`"
    return None


def start_early(items: list[pytest.Item]) -> None:
    """Start this process's stack now if a collected test will use it."""
    if _usable() is None and any("real_stack" in getattr(i, "fixturenames", ()) for i in items):
        _launch()


def built_cli() -> Path | None:
    """The Pulumi CLI `scripts/realstack build` made, if it has."""
    (cli,) = [c for c in script.COMPONENTS if c.name == "pulumi"]
    return cli.path("pulumi") if cli.built() else None


@pytest.fixture
def real_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The real Pulumi CLI that `scripts/realstack build` made, first on PATH, with a PULUMI_HOME
    of the test's own and nothing downloaded: for the engine contract tests (marked `engine`),
    whose programs use no provider, so they need no cluster and no stack started."""
    cli = built_cli()
    if cli is None:
        _not_available("the Pulumi CLI is not built: run `scripts/realstack build`")
    assert cli is not None
    monkeypatch.setenv("PATH", f"{cli.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))
    monkeypatch.setenv("PULUMI_SKIP_UPDATE_CHECK", "true")
    monkeypatch.setenv("PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION", "true")
    for name in ("PULUMI_BACKEND_URL", "PULUMI_ACCESS_TOKEN", "FAKE_PULUMI_VERSION"):
        monkeypatch.delenv(name, raising=False)
    return cli


@pytest.fixture(scope="session")
def real_stack() -> Iterator[RealStack]:
    reason = _usable()
    if reason:
        _not_available(reason)
    sdk = importlib.metadata.version("pulumi_kubernetes")
    if sdk != script.K8S_PLUGIN_VERSION:
        pytest.fail(
            f"scripts/realstack installs the Kubernetes plugin as {script.K8S_PLUGIN_VERSION}, "
            f"but the installed pulumi_kubernetes SDK asks for {sdk}: set K8S_PLUGIN_VERSION "
            "in scripts/realstack to it and run `scripts/realstack build`"
        )
    try:
        yield _launch().wait()
    finally:
        _stop()


@dataclass
class Real:
    """One test's view of the stack: its own namespace, MLSERVE_HOME, backend and passphrase."""

    stack: RealStack
    tmp: Path
    namespace: str
    _threads: list[threading.Thread] = field(default_factory=list)
    _done: threading.Event = field(default_factory=threading.Event)
    _nodes: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)  # more for mlserve (credentials)

    @property
    def env(self) -> dict[str, str]:
        return {
            **self.stack.env,
            "MLSERVE_HOME": str(self.tmp / "home"),
            "MLSERVE_BACKEND_URL": (self.tmp / "state").as_uri(),
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            **self.extra_env,
        }

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "mlserve", *args]

    def mlserve(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """`mlserve ARGS` as a fresh process without a terminal, as a CI step runs it."""
        return subprocess.run(
            self.command(*args), cwd=REPO, env=self.env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def mlserve_background(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args), cwd=REPO, env=self.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def spec(self, name: str) -> Path:
        """specs/NAME with this test's namespace; every other line as written."""
        text = (REPO / "specs" / name).read_text()
        text, n = re.subn(r"(?m)^namespace: \S+", f"namespace: {self.namespace}", text)
        assert n == 1, f"specs/{name} has no top-level namespace line"
        path = self.tmp / name
        path.write_text(text)
        return path

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        return self.stack.get(kind, name, namespace or self.namespace)

    def items(self, kind: str, selector: str | None = None) -> list[dict[str, Any]]:
        return self.stack.items(kind, self.namespace, selector)

    def create_namespace(self, name: str) -> None:
        self.stack.kubectl("create", "namespace", name)

    def node(
        self,
        labels: dict[str, str],
        taints: list[dict[str, str]] | None = None,
        allocatable: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> str:
        """A Node of this test's own, Ready, that kwok runs pods on (`--manage-all-nodes`, as
        for the stack's own Node): with `labels` (a spec's nodeSelector), `taints` (what its
        tolerations allow) and `allocatable` (added to room for 100 pods, such as
        `{"nvidia.com/gpu": "8"}`). Its name is returned; it is deleted when the test ends. A
        tainted Node takes only pods that tolerate the taint, so other tests' pods stay off it."""
        name = f"{self.namespace}-node-{len(self._nodes)}"
        room = {"cpu": "64", "memory": "512Gi", "pods": "100", **(allocatable or {})}
        manifest = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {"kwok.x-k8s.io/node": "fake"},
                "labels": {"kubernetes.io/hostname": name, "type": "kwok", **labels},
            },
            "spec": {"taints": taints or []},
            "status": {"allocatable": room, "capacity": room},
        }
        self.stack.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        self._nodes.append(name)
        ready = "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
        deadline = time.monotonic() + timeout
        while self.stack.kubectl("get", "node", name, "-o", ready).stdout.strip() != "True":
            if time.monotonic() > deadline:
                raise AssertionError(f"node {name} was not Ready within {timeout:.0f} s")
            time.sleep(0.3)
        return name

    def set_status(
        self, kind: str, name: str, status: dict[str, Any], namespace: str | None = None,
        timeout: float = 300,
    ) -> None:  # fmt: skip
        """Once the object exists, set its status as its controller would (kubectl patch
        --subresource=status), from a thread, so that a command waiting for it can go on."""
        namespace = namespace or self.namespace
        patch = json.dumps({"status": status})

        def run() -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not self._done.is_set():
                if self.stack.exists(kind, name, namespace):
                    self.stack.kubectl(
                        "patch", kind, name, "-n", namespace, "--subresource=status",
                        "--type=merge", "-p", patch,
                    )  # fmt: skip
                    return
                time.sleep(0.3)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self._threads.append(thread)

    def join(self) -> None:
        """End the status writers still waiting (the test is over)."""
        self._done.set()
        for thread in self._threads:
            thread.join(timeout=60)


@pytest.fixture
def real(real_stack: RealStack, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Real]:
    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:8]
    namespace = f"t-{digest}"
    if REUSE:  # the last run's namespace there may still be going
        namespace += f"-{os.getpid()}"
    view = Real(real_stack, tmp_path, namespace)
    view.create_namespace(namespace)
    try:
        yield view
    finally:
        view.join()
        # Whatever a failing test left behind goes with its namespace, in the background.
        real_stack.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        for node in view._nodes:
            real_stack.kubectl("delete", "node", node, "--wait=false", check=False)


def missing_from(live: Any, want: Any, path: str = "") -> list[str]:
    """Where `want` (as rendered) is not in `live` (as the API server has it): every key of a
    rendered mapping must be there with the same value; lists match item by item."""
    if isinstance(want, dict):
        if not isinstance(live, dict):
            return [f"{path}: {live!r} is not a mapping"]
        return [p for k, v in want.items() for p in missing_from(live.get(k), v, f"{path}.{k}")]
    if isinstance(want, list):
        if not isinstance(live, list) or len(live) != len(want):
            return [f"{path}: {live!r} != {want!r}"]
        return [p for i, (a, b) in enumerate(zip(live, want, strict=True))
                for p in missing_from(a, b, f"{path}[{i}]")]  # fmt: skip
    return [] if live == want else [f"{path}: {live!r} != {want!r}"]
