"""doctor and setup: what is checked, what each failure says to do, and installing offline."""

from __future__ import annotations

import importlib.metadata
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from mlserve import engine, ops
from mlserve.errors import EngineUnavailableError
from mlserve.spec import Spec
from tests.fake_pulumi import fixture
from tests.fake_pulumi.fixture import Fake

fake = fixture.fake
no_pulumi = fixture.no_pulumi
K8S = importlib.metadata.version("pulumi-kubernetes")
KONG = importlib.metadata.version("pulumi-kong")
AZURE = importlib.metadata.version("pulumi-azure-native")


def kong_spec(admin_url: str | None = None) -> Spec:
    gateway: dict[str, Any] = {"type": "kong"}
    if admin_url:
        gateway["kong"] = {"adminUrl": admin_url}
    return Spec.from_dict(
        {
            "apiVersion": "mlserve/v1",
            "name": "fraud",
            "gateway": gateway,
            "versions": [{"name": "v1", "image": "ghcr.io/acme/fraud:1"}],
            "traffic": {"stable": "v1"},
        }
    )


def apim_spec() -> Spec:
    return Spec.from_dict(
        {
            "apiVersion": "mlserve/v1",
            "name": "fraud",
            "gateway": {
                "type": "azure-apim",
                "azureApim": {"resourceGroup": "rg-ml", "serviceName": "acme-ml"},
            },
            "versions": [{"name": "v1", "url": "https://fraud-v1.internal.example.com"}],
            "traffic": {"stable": "v1"},
        }
    )


def by_name(checks: list[ops.Check]) -> dict[str, ops.Check]:
    return {c.name: c for c in checks}


def test_doctor_without_pulumi_says_how_to_install_and_creates_nothing(no_pulumi: Path) -> None:
    checks = by_name(ops.doctor(None))
    cli = checks["pulumi CLI"]
    assert not cli.ok
    assert cli.detail == "the Pulumi CLI was not found (`pulumi` on PATH)"
    assert cli.fix == (
        "run `mlserve setup`, or install Pulumi from https://www.pulumi.com/docs/install/"
    )
    assert checks["passphrase"].ok
    assert checks["passphrase"].detail.endswith("passphrase is created on first use")
    assert checks["backend"].ok
    assert not (no_pulumi / "mlserve-home").exists()


def test_doctor_with_everything_in_place_passes(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\n")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    fake.install_plugin("kong", KONG)
    checks = ops.doctor(kong_spec("http://kong-admin.kong:8001"))
    assert [(c.name, c.ok) for c in checks] == [
        ("pulumi CLI", True),
        ("Python SDK for kong", True),
        ("plugin kubernetes", True),
        ("plugin kong", True),
        ("backend", True),
        ("passphrase", True),
        ("kubernetes context", True),
        ("kong admin API", True),
    ]
    assert by_name(checks)["pulumi CLI"].detail.startswith("v3.272.0 (pulumi); needs >= 3.181.0")


def test_doctor_names_the_fix_for_each_missing_piece(
    fake: Fake, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "empty-home"))
    checks = by_name(ops.doctor(kong_spec(), backend="s3://team-state"))
    assert (checks["plugin kong"].ok, checks["plugin kong"].fix) == (
        False,
        "run `mlserve setup` (needs network once)",
    )
    assert (checks["passphrase"].ok, checks["passphrase"].fix) == (
        False,
        "export PULUMI_CONFIG_PASSPHRASE_FILE=<file holding the team's passphrase> "
        "(or PULUMI_CONFIG_PASSPHRASE)",
    )
    assert (checks["kubernetes context"].ok, checks["kubernetes context"].fix) == (
        False,
        "export KUBECONFIG, or create ~/.kube/config",
    )
    assert (checks["kong admin API"].ok, checks["kong admin API"].fix) == (
        False,
        "export KONG_ADMIN_ADDR or set gateway.kong.adminUrl",
    )
    assert checks["backend"].ok  # s3 is not contacted


def test_doctor_checks_azure_credentials_for_apim(
    fake: Fake, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for var in [v for v in list(os.environ) if v.startswith(("AZURE_", "ARM_"))]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("PATH", str(fixture.FAKE_DIR))  # no `az`
    checks = by_name(ops.doctor(apim_spec()))
    assert "kubernetes context" not in checks
    assert not checks["azure credentials"].ok
    monkeypatch.setenv("ARM_CLIENT_ID", "00000000-0000-0000-0000-000000000000")
    assert by_name(ops.doctor(apim_spec()))["azure credentials"].ok


def test_setup_uses_the_cli_under_mlserve_home_and_installs_the_specs_plugins(fake: Fake) -> None:
    bin_dir = engine.cli_root(fake.home) / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "pulumi").symlink_to(fixture.FAKE_DIR / "pulumi")
    report = ops.setup(kong_spec())
    assert report.cli == str(bin_dir / "pulumi")
    assert report.version == "3.272.0"
    assert report.plugins_installed == [f"kong v{KONG}"]
    assert report.plugins == [f"kubernetes v{K8S}", f"kong v{KONG}"]
    assert ["plugin", "install", "resource", "kong", f"v{KONG}"] in fake.argvs()


def test_setup_without_a_spec_installs_every_installed_sdks_plugin(fake: Fake) -> None:
    bin_dir = engine.cli_root(fake.home) / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "pulumi").symlink_to(fixture.FAKE_DIR / "pulumi")
    report = ops.setup(None)
    assert report.plugins_installed == [f"kong v{KONG}", f"azure-native v{AZURE}"]


def test_setup_offline_is_a_clear_error(no_pulumi: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(EngineUnavailableError) as e:
        ops.setup(None)
    root = no_pulumi / "mlserve-home" / "pulumi"
    assert str(e.value) == (
        "no network ([Errno -3] Temporary failure in name resolution): install Pulumi "
        f"{importlib.metadata.version('pulumi')} by hand from https://www.pulumi.com/docs/install/ "
        f"(or copy its `pulumi` binaries into {root / 'bin'}), then run `mlserve setup` again for "
        "the plugins"
    )
