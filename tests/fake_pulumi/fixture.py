"""The `fake` fixture: the stand-in Pulumi CLI first on PATH, every side effect under tmp_path."""

from __future__ import annotations

import json
import os
import sys
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
        path = self.pulumi_home / "plugins" / f"resource-{name}-v{version}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def workspace(self, project: str) -> Path:
        return self.home / "workspaces" / project

    def env(self) -> dict[str, str]:
        return dict(os.environ)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fake:
    for var in CLEARED:
        monkeypatch.delenv(var, raising=False)
    f = Fake(
        root=tmp_path,
        home=tmp_path / "mlserve-home",
        pulumi_home=tmp_path / "pulumi-home",
        log=tmp_path / "pulumi-calls.jsonl",
        control=tmp_path / "control.json",
    )
    monkeypatch.setenv("PATH", f"{FAKE_DIR}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_PULUMI_PYTHON", sys.executable)
    monkeypatch.setenv("FAKE_PULUMI_LOG", str(f.log))
    monkeypatch.setenv("FAKE_PULUMI_STATE", str(tmp_path / "fake-state"))
    monkeypatch.setenv("FAKE_PULUMI_CONTROL", str(f.control))
    monkeypatch.setenv("MLSERVE_HOME", str(f.home))
    monkeypatch.setenv("PULUMI_HOME", str(f.pulumi_home))
    monkeypatch.setenv("MLSERVE_LOCK_POLL_SECONDS", "0.01")
    monkeypatch.setenv("CI", "true")
    import importlib.metadata

    f.install_plugin("kubernetes", importlib.metadata.version("pulumi-kubernetes"))
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
