"""The `fake` fixture: the stand-in Pulumi CLI first on PATH, every side effect under tmp_path."""

from __future__ import annotations

import atexit
import importlib.metadata
import json
import os
import shutil
import site
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

FAKE_DIR = Path(__file__).resolve().parent
PASSPHRASE_VARS = ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE")
CLEARED = (
    *PASSPHRASE_VARS,
    "PULUMI_BACKEND_URL",
    "MLSERVE_BACKEND_URL",
    "MLSERVE_STACK",
    "MLSERVE_PROJECT",
    "MLSERVE_DEBUG",
    "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK",
    "FAKE_PULUMI_VERSION",
    "KUBECONFIG",
)


@dataclass
class Fake:
    root: Path
    home: Path  # MLSERVE_HOME
    pulumi_home: Path
    log: Path
    control: Path
    temp: pytest.TempPathFactory  # where the deployed stacks `deployed` copies are kept

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def argvs(self) -> list[list[str]]:
        """Each call's argv without the global --non-interactive flag."""
        return [[a for a in c["argv"] if a != "--non-interactive"] for c in self.calls()]

    def commands(self) -> list[str]:
        """Each call as its command words: 'version', 'stack select', 'up', ..."""
        out = []
        for argv in self.argvs():
            words = []
            for a in argv:
                if a.startswith("-"):
                    break
                words.append(a)
            out.append(
                " ".join(words[:2] if words[0] in ("stack", "config", "plugin") else words[:1])
            )
        return out

    def clear_log(self) -> None:
        self.log.unlink(missing_ok=True)

    def set(self, **control: Any) -> None:
        self.control.write_text(json.dumps(control))

    def get_control(self) -> dict[str, Any]:
        return json.loads(self.control.read_text()) if self.control.exists() else {}

    def install_plugin(self, name: str, version: str) -> Path:
        return install_plugin(self.pulumi_home, name, version)

    def workspace(self, project: str) -> Path:
        return self.home / "workspaces" / project

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def deployed(self, spec: Path, passphrase: str | None = None) -> None:
        """The stack as `mlserve deploy SPEC --yes` leaves it on this test's fresh MLSERVE_HOME
        (state, history, workspace, passphrase), without deploying again: each spec is deployed
        once per test process, in a real process through the stand-in, and each test gets a
        copy of the files. The call log stays empty: it holds this test's calls only.
        `passphrase`: the deploy ran with PULUMI_CONFIG_PASSPHRASE set to it (the test sets it
        too), instead of the passphrase mlserve keeps in MLSERVE_HOME."""
        snapshot = _snapshot(spec, self.temp, passphrase)
        shutil.copytree(snapshot / HOME, self.home)
        # Pulumi.yaml names the backend and the workspace by absolute path: here, this test's.
        old, new = str(snapshot).encode(), str(self.root).encode()
        for path in self.home.rglob("*"):
            if path.is_file() and old in (data := path.read_bytes()):
                path.write_bytes(data.replace(old, new))


HOME = "mlserve-home"
KUBERNETES = importlib.metadata.version("pulumi-kubernetes")
# (spec text, passphrase) -> the root its deploy ran under, per process
_snapshots: dict[tuple[bytes, str | None], Path] = {}
# The environment the session started in: a snapshot must not depend on which test (and which
# of its monkeypatched variables) happened to ask for it first.
_SESSION_ENV = {k: v for k, v in os.environ.items() if k not in CLEARED}


def _snapshot(spec: Path, temp: pytest.TempPathFactory, passphrase: str | None) -> Path:
    key = (spec.read_bytes(), passphrase)
    if key not in _snapshots:
        root = temp.mktemp(f"deployed-{spec.stem}")
        env = {**_SESSION_ENV, **_environ(root, _SESSION_ENV.get("PATH", ""))}
        if passphrase is not None:
            env["PULUMI_CONFIG_PASSPHRASE"] = passphrase
        install_plugin(root / "pulumi-home", "kubernetes", KUBERNETES)
        deploy = subprocess.run(
            [*mlserve_command(), "deploy", str(spec), "--yes"],
            cwd=FAKE_DIR.parents[1],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert deploy.returncode == 0, deploy.stderr
        _snapshots[key] = root
    return _snapshots[key]


def _environ(root: Path, path: str) -> dict[str, str]:
    """The variables that put the stand-in first on `path` and every side effect under `root`."""
    return {
        "PATH": f"{FAKE_DIR}{os.pathsep}{path}",
        "FAKE_PULUMI_PYTHON": sys.executable,
        "FAKE_PULUMI_ZYGOTE": _zygote(),
        "FAKE_PULUMI_SHIM": _shim() or "",
        "FAKE_PULUMI_LOG": str(root / "pulumi-calls.jsonl"),
        "FAKE_PULUMI_STATE": str(root / "fake-state"),
        "FAKE_PULUMI_CONTROL": str(root / "control.json"),
        "MLSERVE_HOME": str(root / HOME),
        "PULUMI_HOME": str(root / "pulumi-home"),
        "MLSERVE_LOCK_POLL_SECONDS": "0.01",
        "CI": "true",
    }


_servers: dict[str, str] = {}  # kind -> the socket of this test process's warm server
_shims: list[str | None] = []  # shim.c built for this test process, or None without a compiler


def _shim() -> str | None:
    """The `pulumi` (and `mlserve`) process that hands its call to a warm server: shim.c, built
    once per test process. None where it cannot be built (no C compiler): the tests then run
    without warm servers, each command in a fresh Python, only slower."""
    if not _shims:
        folder = tempfile.mkdtemp(prefix="warm-shim-")
        shim = os.path.join(folder, "shim")
        python, script = sys.executable, str(FAKE_DIR / "fake_pulumi.py")
        compiler = shutil.which("cc")
        built = (
            compiler is not None
            and '"' not in python + script
            and subprocess.run(
                [compiler, "-O", "-o", shim, str(FAKE_DIR / "shim.c"),
                 f'-DPYTHON="{python}"', f'-DFAKE_PULUMI="{script}"'],
                capture_output=True, check=False,
            ).returncode == 0
        )  # fmt: skip
        _shims.append(shim if built else None)
    return _shims[0]


def _zygote(kind: str = "pulumi") -> str:
    """The socket of this test process's warm server (zygote.py) of `kind`, started on first
    use, or "" without a shim. Every `pulumi` call (or `mlserve_command()` run) then costs a fork
    instead of a Python start and its imports. The server ends with this process (its stdin is
    a pipe from here)."""
    if _shim() is None:
        return ""
    if kind not in _servers:
        folder = tempfile.mkdtemp(prefix=f"warm-{kind}-")  # short: a socket path has 108 bytes
        path = os.path.join(folder, "zygote.sock")
        if kind == "pulumi":
            command = [sys.executable, "-S", str(FAKE_DIR / "zygote.py"), kind, path,
                       os.pathsep.join(site.getsitepackages())]  # fmt: skip
        else:
            command = [sys.executable, str(FAKE_DIR / "zygote.py"), kind, path, ""]
        with open(os.path.join(folder, "zygote.log"), "wb") as log:
            server = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                env=_SESSION_ENV, start_new_session=True,
            )  # fmt: skip

        def stop() -> None:  # waited for, so that its children's CPU time counts in this one's
            assert server.stdin is not None
            server.stdin.close()
            server.wait(timeout=60)
            shutil.rmtree(folder, ignore_errors=True)

        atexit.register(stop)
        deadline = time.monotonic() + 60
        while not os.path.exists(path):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(Path(folder, "zygote.log").read_text())
            time.sleep(0.01)
        _servers[kind] = path
    return _servers[kind]


def mlserve_command() -> list[str]:
    """What starts `mlserve ARGS` (append ARGS) as a process of its own that a warm server forks
    instead of a fresh `python -m mlserve`: the same code from `main()` on, in the caller's
    environment, directory, descriptors and signal state, without half a second of imports. For
    tests that start mlserve processes to check what they do (together, in a race, or one by one
    as CI steps: helpers.run_mlserve), not how a process starts, exits on a signal or finds a
    terminal: those keep `python -m mlserve`."""
    shim, socket = _shim(), _zygote("mlserve")
    if shim is None:
        return [sys.executable, "-m", "mlserve"]
    return [shim, "--mlserve", socket]


def install_plugin(pulumi_home: Path, name: str, version: str) -> Path:
    path = pulumi_home / "plugins" / f"resource-{name}-v{version}"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def fake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Fake:
    for var in CLEARED:
        monkeypatch.delenv(var, raising=False)
    for var, value in _environ(tmp_path, os.environ.get("PATH", "")).items():
        monkeypatch.setenv(var, value)
    f = Fake(
        root=tmp_path,
        home=tmp_path / HOME,
        pulumi_home=tmp_path / "pulumi-home",
        log=tmp_path / "pulumi-calls.jsonl",
        control=tmp_path / "control.json",
        temp=tmp_path_factory,
    )
    f.install_plugin("kubernetes", KUBERNETES)
    return f


@pytest.fixture
def no_pulumi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH with python but no `pulumi` anywhere, and an empty MLSERVE_HOME."""
    for var in CLEARED:
        monkeypatch.delenv(var, raising=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("MLSERVE_HOME", str(tmp_path / "mlserve-home"))
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))
    monkeypatch.setenv("CI", "true")
    return tmp_path
