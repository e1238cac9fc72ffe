"""`mlserve render FILE [-o yaml|json] [--out DIR]` end to end, in a subprocess without Pulumi."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.k8s_helpers import K8S_GATEWAYS, REPO, validate_manifest

GOLDEN = REPO / "tests" / "specs"


def _no_pulumi_path(tmp_path: Path) -> str:
    """An empty PATH directory: no `pulumi` CLI to find (Python is run by its full path)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    return str(bin_dir)


def mlserve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI", "MLSERVE", "KUBE"))}
    env.update(PATH=_no_pulumi_path(tmp_path), PYTHONPATH=str(REPO), HOME=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "mlserve", "render", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert shutil.which("pulumi", path=env["PATH"]) is None
    return result


def _k8s_specs() -> list[Path]:
    """Every example and golden valid spec of a Kubernetes gateway."""
    return [
        p
        for p in [*sorted((REPO / "specs").glob("*.yaml")), *sorted(GOLDEN.glob("valid-*.yaml"))]
        if (yaml.safe_load(p.read_text()) or {}).get("gateway", {}).get("type") in K8S_GATEWAYS
    ]


@pytest.mark.parametrize("path", _k8s_specs(), ids=lambda p: str(p.relative_to(REPO)))
def test_render_yaml_of_every_k8s_spec_passes_the_upstream_schemas(
    tmp_path: Path, path: Path
) -> None:
    result = mlserve(tmp_path, str(path), "-o", "yaml")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # nothing from the SDK's event loops at exit either
    docs = list(yaml.safe_load_all(result.stdout))
    assert docs
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service"} <= kinds
    for doc in docs:
        validate_manifest(doc)


def test_every_k8s_gateway_has_an_example_spec() -> None:
    for gw in K8S_GATEWAYS:
        assert (REPO / "specs" / f"{gw}.yaml").is_file(), gw


def test_render_defaults_to_yaml(tmp_path: Path) -> None:
    result = mlserve(tmp_path, str(REPO / "specs" / "istio.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("---\napiVersion: apps/v1\nkind: Deployment\n")


def test_render_json_lists_type_name_and_inputs(tmp_path: Path) -> None:
    result = mlserve(tmp_path, str(REPO / "specs" / "gateway-api.yaml"), "-o", "json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    types = [r["type"] for r in body["resources"]]
    assert "kubernetes:apps/v1:Deployment" in types
    assert types[-1] == "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
    assert all(set(r) == {"type", "name", "inputs"} for r in body["resources"])


def test_render_out_writes_one_file_per_resource_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "manifests"
    result = mlserve(tmp_path, str(REPO / "specs" / "ingress-nginx.yaml"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    files = sorted(out.iterdir())
    assert result.stdout.splitlines() == [f"wrote {p}" for p in files]
    assert files[0].name.startswith("01-deployment-")
    for f in files:
        [doc] = yaml.safe_load_all(f.read_text())
        validate_manifest(doc)


def test_render_with_a_bad_output_format_is_a_usage_error(tmp_path: Path) -> None:
    result = mlserve(tmp_path, str(REPO / "specs" / "istio.yaml"), "-o", "xml")
    assert result.returncode == 2
    assert result.stderr == "error: -o must be yaml or json, not 'xml'\n"
    assert result.stdout == ""


def test_render_of_an_invalid_spec_reports_it_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: mlserve/v1\nname: x\n")
    result = mlserve(tmp_path, str(bad))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert str(bad) in result.stderr
    assert "Traceback" not in result.stderr
