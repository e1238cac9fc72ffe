"""`mlserve render FILE [-o yaml|json] [--out DIR]` end to end, without a Pulumi CLI.

Most tests run the command in this process (`tests.helpers.run_cli`, in the environment a
process here gets: no `pulumi` on PATH, no PULUMI_*, MLSERVE_* or KUBE* variables): the same
parsing, output and exit codes, without a second of CPU a process spends importing Pulumi. The
tests that start a real process say why: reading stdin, a closed pipe, what the SDK prints at
interpreter exit (signals: tests/test_render_interrupts.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import run_cli
from tests.k8s_helpers import K8S_GATEWAYS, REPO, validate_manifest

GOLDEN = REPO / "tests" / "specs"


def _no_pulumi_path(tmp_path: Path) -> str:
    """An empty PATH directory: no `pulumi` CLI to find (Python is run by its full path)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    return str(bin_dir)


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI", "MLSERVE", "KUBE"))}
    env.update(PATH=_no_pulumi_path(tmp_path), PYTHONPATH=str(REPO), HOME=str(tmp_path))
    assert shutil.which("pulumi", path=env["PATH"]) is None
    return env


@pytest.fixture(autouse=True)
def _no_pulumi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's environment as `_env` makes a child's, for the in-process runs."""
    for name in [k for k in os.environ if k.startswith(("PULUMI", "MLSERVE", "KUBE"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PATH", _no_pulumi_path(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))


def mlserve(*args: str) -> subprocess.CompletedProcess[str]:
    """`mlserve render ARGS` in this process."""
    return run_cli("render", *args)


def mlserve_process(
    tmp_path: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlserve", "render", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=_env(tmp_path),
        cwd=tmp_path,
        timeout=60,
    )


def _k8s_specs() -> list[Path]:
    """Every example and golden valid spec of a Kubernetes gateway."""
    return [
        p
        for p in [*sorted((REPO / "specs").glob("*.yaml")), *sorted(GOLDEN.glob("valid-*.yaml"))]
        if (yaml.safe_load(p.read_text()) or {}).get("gateway", {}).get("type") in K8S_GATEWAYS
    ]


@pytest.mark.parametrize("path", _k8s_specs(), ids=lambda p: str(p.relative_to(REPO)))
def test_render_yaml_of_every_k8s_spec_passes_the_upstream_schemas(path: Path) -> None:
    result = mlserve(str(path), "-o", "yaml")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    docs = list(yaml.safe_load_all(result.stdout))
    assert docs
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service"} <= kinds
    for doc in docs:
        validate_manifest(doc)


def test_every_k8s_gateway_has_an_example_spec() -> None:
    for gw in K8S_GATEWAYS:
        assert (REPO / "specs" / f"{gw}.yaml").is_file(), gw


def test_render_defaults_to_yaml() -> None:
    result = mlserve(str(REPO / "specs" / "istio.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("---\napiVersion: apps/v1\nkind: Deployment\n")


def test_render_json_lists_type_name_and_inputs() -> None:
    result = mlserve(str(REPO / "specs" / "gateway-api.yaml"), "-o", "json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    types = [r["type"] for r in body["resources"]]
    assert "kubernetes:apps/v1:Deployment" in types
    assert types[-1] == "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
    assert all(set(r) == {"type", "name", "inputs"} for r in body["resources"])


def test_render_out_writes_one_file_per_resource_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "manifests"
    result = mlserve(str(REPO / "specs" / "ingress-nginx.yaml"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    files = sorted(out.iterdir())
    assert result.stdout.splitlines() == [f"wrote {p}" for p in files]
    assert files[0].name.startswith("01-deployment-")
    for f in files:
        [doc] = yaml.safe_load_all(f.read_text())
        validate_manifest(doc)


def test_render_with_a_bad_output_format_is_a_usage_error() -> None:
    result = mlserve(str(REPO / "specs" / "istio.yaml"), "-o", "xml")
    assert result.returncode == 2
    assert result.stderr == "error: -o must be yaml, json or kong, not 'xml'\n"
    assert result.stdout == ""


def test_render_of_an_invalid_spec_reports_it_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: mlserve/v1\nname: x\n")
    result = mlserve(str(bad))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert str(bad) in result.stderr
    assert "Traceback" not in result.stderr


def test_render_yaml_of_kong_is_kubernetes_only_and_names_the_rest_on_stderr() -> None:
    result = mlserve(str(REPO / "specs" / "kong.yaml"))
    assert result.returncode == 0, result.stderr
    assert [d["kind"] for d in yaml.safe_load_all(result.stdout)] == ["Deployment", "Service"]
    assert result.stderr == (
        "note: -o yaml prints Kubernetes objects only; left out 9 Kong resources (1 Upstream, "
        "2 Target, 3 Service, 3 Route): see them with -o kong (decK) or -o json\n"
    )


def test_render_kong_prints_a_deck_file_and_names_the_kubernetes_objects_left_out() -> None:
    result = mlserve(str(REPO / "specs" / "kong.yaml"), "-o", "kong")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["_format_version"] == "3.0"
    assert result.stderr == (
        "note: -o kong prints Kong resources only; left out 2 Kubernetes resources "
        "(1 Deployment, 1 Service): see them with -o yaml\n"
    )


def test_render_json_flag_is_json_output_and_refuses_another_format() -> None:
    spec = str(REPO / "specs" / "istio.yaml")
    assert json.loads(mlserve(spec, "--json").stdout) == json.loads(
        mlserve(spec, "-o", "json").stdout
    )
    result = mlserve(spec, "--json", "-o", "yaml")
    assert result.returncode == 2
    assert result.stderr == "error: --json prints JSON: drop -o yaml, or drop --json\n"
    assert json.loads(result.stdout) == {
        "error": {
            "code": 2,
            "kind": "usage",
            "message": "--json prints JSON: drop -o yaml, or drop --json",
        }
    }


def test_render_reads_the_spec_from_stdin(tmp_path: Path) -> None:
    """A process: what it reads is its real stdin. It is also the render end to end in a process
    with no `pulumi` on PATH, where what the SDK's event loops might print at interpreter exit
    would show on stderr."""
    text = (REPO / "specs" / "istio.yaml").read_text()
    result = mlserve_process(tmp_path, "-", stdin=text)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # nothing from the SDK's event loops at exit either
    assert result.stdout == mlserve(str(REPO / "specs" / "istio.yaml")).stdout
    bad = mlserve_process(tmp_path, "-", stdin="apiVersion: mlserve/v1\nname: x\nfoo: 1\n")
    assert bad.returncode == 2
    assert "<stdin>:3:1: unknown key 'foo'" in bad.stderr


def test_render_out_into_proc_exits_2_with_the_path() -> None:
    result = mlserve(str(REPO / "specs" / "istio.yaml"), "--out", "/proc/mlserve-out")
    assert result.returncode == 2
    assert result.stderr.startswith("error: --out /proc/mlserve-out: cannot write there (")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_render_out_with_an_empty_name_is_a_usage_error(tmp_path: Path) -> None:
    """`--out ""` used to write into the current directory (typer reads "" as a Path ".")."""
    result = mlserve_process(tmp_path, str(REPO / "specs" / "istio.yaml"), "--out", "")
    assert result.returncode == 2
    assert result.stderr == (
        "error: --out needs a directory name (--out . for the current directory)\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin"]


@pytest.mark.parametrize("args", [(), ("-o", "json"), ("--json",)])
def test_render_to_a_full_disk_is_a_clear_error_exit_2(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """`render > /dev/full` used to exit 1 (OSError: No space left on device). A process: what
    Python flushes at exit is part of the subject."""
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "mlserve", "render", str(REPO / "specs" / "istio.yaml"), *args],
            stdout=full, stderr=subprocess.PIPE, text=True, env=_env(tmp_path), cwd=tmp_path,
            timeout=60,
        )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == "error: cannot write to standard output (No space left on device)\n"


def test_render_stops_quietly_when_the_reader_goes_away(tmp_path: Path) -> None:
    """`mlserve render spec.yaml | head -1`: no BrokenPipeError, exit 141 as `cat` would
    (the output is larger than a pipe's buffer). A process: the pipe and the exit status at
    interpreter exit are the subject."""
    process = _render_big(tmp_path)
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline() == b"---\n"
    process.stdout.close()
    assert process.wait(timeout=60) == 141
    assert process.stderr.read() == b""


def _big_spec(path: Path) -> Path:
    """Near the most a valid spec holds: 64 labels on every object and ten versions of 400
    environment variables each. Render runs for a second or so and prints more than a pipe holds,
    so a signal lands mid-run."""
    labels = "".join(f"  example.com/label-{i:02d}: {'v' * 60}\n" for i in range(64))
    env = "".join(f"      VAR_{e:03d}: '{'x' * 40}'\n" for e in range(400))
    versions = "".join(
        f"  - name: v{i}\n    image: ghcr.io/acme/fraud:1.{i}.0\n    env:\n{env}"
        for i in range(1, 11)
    )
    path.write_text(
        "apiVersion: mlserve/v1\nname: fraud\nlabels:\n"
        + labels
        + "gateway:\n  type: istio\n  host: models.example.com\nversions:\n"
        + versions
        + "traffic:\n  stable: v1\n  canary: v2\n  weight: 10\n"
    )
    return path


def _render_big(tmp_path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mlserve", "render", str(_big_spec(tmp_path / "big.yaml"))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(tmp_path),
        cwd=tmp_path,
    )
