"""doctor and setup: what is checked, what each failure says to do, and installing offline.

The cluster, Kong and Entra are local servers (tests/probe_servers.py) that answer as the
upstream sources say; no real cluster, Kong or Azure tenant was contacted."""

from __future__ import annotations

import importlib.metadata
import json
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlserve import engine, ops, output, probes
from mlserve.errors import EngineUnavailableError
from mlserve.spec import Spec
from tests.fake_pulumi import fixture
from tests.fake_pulumi.fixture import Fake
from tests.probe_servers import Pki, entra, kong_admin, kube_apiserver, make_pki, serve

fake = fixture.fake
no_pulumi = fixture.no_pulumi
K8S = importlib.metadata.version("pulumi-kubernetes")
KONG = importlib.metadata.version("pulumi-kong")
SDK = importlib.metadata.version("pulumi")
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


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def kubeconfig(
    path: Path, server: str, user: dict[str, Any], cluster: dict[str, Any] | None = None
) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "test",
                "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u"}}],
                "clusters": [{"name": "c", "cluster": {"server": server, **(cluster or {})}}],
                "users": [{"name": "u", "user": user}],
            }
        )
    )
    return path


def test_doctor_with_everything_in_place_passes(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pki: Pki
) -> None:
    fake.install_plugin("kong", KONG)
    monkeypatch.setenv("KONG_ADMIN_TOKEN", "kong-rbac-token")
    with (
        serve(kube_apiserver(token="k8s-token"), pki) as api,
        serve(kong_admin(token="kong-rbac-token")) as kong_url,
    ):
        ca = {"certificate-authority-data": pki.data(pki.ca)}
        path = kubeconfig(tmp_path / "kubeconfig", api, {"token": "k8s-token"}, ca)
        monkeypatch.setenv("KUBECONFIG", str(path))
        checks = ops.doctor(kong_spec(kong_url))
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
    found = by_name(checks)
    assert found["pulumi CLI"].detail.startswith(f"v{SDK} (pulumi); needs >= 3.181.0")
    assert found["kubernetes context"].detail == (
        f"context 'test': {api} answers (Kubernetes v1.30.2) with a bearer token"
    )
    assert found["kong admin API"].detail == (
        f"{kong_url} (gateway.kong.adminUrl) answers (Kong 3.9.1) with KONG_ADMIN_TOKEN"
    )
    everything = json.dumps([c.to_json() for c in checks])
    assert "kong-rbac-token" not in everything and "k8s-token" not in everything


def test_doctor_names_the_fix_for_each_missing_piece(
    fake: Fake, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "empty-home"))
    monkeypatch.setenv("KONG_ADMIN_ADDR", f"http://127.0.0.1:{closed_port()}")
    checks = by_name(ops.doctor(kong_spec(), backend="s3://team-state"))
    assert (checks["plugin kong"].ok, checks["plugin kong"].fix) == (
        False,
        "run `mlserve setup` where there is network, or install it by hand: `pulumi plugin "
        f"install resource kong {KONG}` (add `--file PATH` to install it from a plugin binary, "
        "folder or tarball you downloaded)",
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
    kong_check = checks["kong admin API"]
    assert not kong_check.ok
    assert kong_check.detail == (
        f"{os.environ['KONG_ADMIN_ADDR']} (KONG_ADMIN_ADDR) does not answer: Connection refused"
    )
    assert kong_check.fix.startswith("check gateway.kong.adminUrl or KONG_ADMIN_ADDR")
    assert checks["backend"].ok  # s3 is not contacted


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the Kubernetes context: the current context's API server, with its credentials -----------


def test_a_rejected_token_says_to_renew_the_credentials(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve(kube_apiserver(token="right"), pki) as api:
        ca = {"certificate-authority": str(pki.ca)}
        monkeypatch.setenv(
            "KUBECONFIG", str(kubeconfig(tmp_path / "k", api, {"token": "wrong"}, ca))
        )
        result = probes.kubernetes()
    assert result == probes.Result(
        False,
        f"context 'test': {api} rejected the credentials (a bearer token): 401 Unauthorized",
        "renew the user's credentials in KUBECONFIG (for a cloud cluster, run its "
        "get-credentials command again)",
    )
    assert "wrong" not in repr(result)


def test_a_client_certificate_from_kubeconfig_data_is_presented(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = {
        "client-certificate-data": pki.data(pki.client_cert),
        "client-key-data": pki.data(pki.client_key),
    }
    with serve(kube_apiserver(), pki, client_certs=True) as api:
        ca = {"certificate-authority-data": pki.data(pki.ca)}
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "k", api, user, ca)))
        result = probes.kubernetes()
    assert result == probes.Result(
        True, f"context 'test': {api} answers (Kubernetes v1.30.2) with a client certificate"
    )


def test_an_unknown_certificate_authority_is_a_tls_failure(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve(kube_apiserver(token="t"), pki) as api:
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "k", api, {"token": "t"})))
        result = probes.kubernetes()
    assert not result.ok
    assert result.detail.startswith(f"context 'test': {api} does not answer: TLS: ")
    assert "certificate" in result.detail


def test_a_cluster_that_does_not_answer_says_what_to_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = f"https://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "k", api, {"token": "t"})))
    assert probes.kubernetes() == probes.Result(
        False,
        f"context 'test': {api} does not answer: Connection refused",
        "check that the cluster runs and is reachable from here (VPN, proxy), or pick another "
        "context: kubectl config use-context NAME",
    )


def test_an_exec_plugin_is_not_run_and_the_server_is_still_contacted(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "aws"}}
    with serve(kube_apiserver(token="t"), pki) as api:
        ca = {"certificate-authority-data": pki.data(pki.ca)}
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "k", api, user, ca)))
        result = probes.kubernetes()
    assert result == probes.Result(
        True,
        f"context 'test': {api} answers (401 without credentials); credentials come from "
        "'aws', which doctor does not run",
    )


def test_a_missing_token_file_is_named_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = {"tokenFile": str(tmp_path / "no-such-token")}
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "k", "https://127.0.0.1:1", user)))
    assert probes.kubernetes() == probes.Result(
        False,
        "context 'test': cannot read the token file: No such file or directory",
        "fix KUBECONFIG",
    )


def test_kubeconfig_files_merge_as_kubectl_merges_them(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve(kube_apiserver(token="t"), pki) as api:
        ca = {"certificate-authority-data": pki.data(pki.ca)}
        full = kubeconfig(tmp_path / "full", api, {"token": "t"}, ca)
        first = tmp_path / "first"
        first.write_text("current-context: test\nusers: [{name: u, user: {token: t}}]\n")
        monkeypatch.setenv("KUBECONFIG", f"{first}{os.pathsep}{full}")
        assert probes.kubernetes().ok
        first.write_text("contexts: []\n")
        monkeypatch.setenv("KUBECONFIG", str(first))
        assert probes.kubernetes() == probes.Result(
            False, "no current-context", "kubectl config use-context NAME"
        )


# --- the InferencePool CRD, for a gateway-api spec with inferencePool -------------------------

POOLS = {"inference.networking.k8s.io/v1": {"inferencepools": "InferencePool"}}
INSTALL = (
    "install the Gateway API Inference Extension CRDs: kubectl apply -f "
    "https://github.com/kubernetes-sigs/gateway-api-inference-extension/releases/download/"
    "v1.6.0/manifests.yaml (InferencePool v1 is in GIE v1.0 and later)"
)


def pool_spec(pool: bool = True) -> Spec:
    gateway_api: dict[str, Any] = {"parentRefs": [{"name": "inference-gateway"}]}
    if pool:
        gateway_api["inferencePool"] = {}
    return Spec.from_dict(
        {
            "apiVersion": "mlserve/v1",
            "name": "llm",
            "gateway": {
                "type": "gateway-api",
                "host": "llm.example.com",
                "gatewayApi": gateway_api,
            },
            "versions": [{"name": "v1", "image": "vllm/vllm-openai:v0.11.0", "port": 8000}],
            "traffic": {"stable": "v1"},
        }
    )


def crd_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pki: Pki, served: Any, spec: Spec
) -> tuple[str, dict[str, ops.Check]]:
    with serve(kube_apiserver(token="t", served=served), pki) as api:
        ca = {"certificate-authority-data": pki.data(pki.ca)}
        path = kubeconfig(tmp_path / "kubeconfig", api, {"token": "t"}, ca)
        monkeypatch.setenv("KUBECONFIG", str(path))
        return api, by_name(ops.doctor(spec))


def test_doctor_finds_the_inferencepool_crd_served(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pki: Pki
) -> None:
    api, checks = crd_check(tmp_path, monkeypatch, pki, POOLS, pool_spec())
    assert list(checks)[-2:] == ["kubernetes context", "InferencePool CRD"]
    assert checks["InferencePool CRD"] == ops.Check(
        "InferencePool CRD",
        True,
        f"context 'test': {api} serves inferencepools.inference.networking.k8s.io/v1",
    )


def test_doctor_without_the_inferencepool_crd_says_how_to_install_it(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pki: Pki
) -> None:
    # A cluster with only the v1alpha2 pools of GIE before v1.0 (another group) serves no v1.
    older = {"inference.networking.x-k8s.io/v1alpha2": {"inferencepools": "InferencePool"}}
    api, checks = crd_check(tmp_path, monkeypatch, pki, older, pool_spec())
    assert checks["InferencePool CRD"] == ops.Check(
        "InferencePool CRD",
        False,
        f"context 'test': {api} does not serve inference.networking.k8s.io/v1",
        INSTALL,
    )


def test_doctor_checks_the_crd_only_when_the_spec_uses_pools(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pki: Pki
) -> None:
    _, checks = crd_check(tmp_path, monkeypatch, pki, {}, pool_spec(pool=False))
    assert checks["kubernetes context"].ok
    assert "InferencePool CRD" not in checks


def test_the_crd_is_not_checked_when_the_cluster_cannot_be_reached(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = f"https://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "k", api, {"token": "t"})))
    checks = by_name(ops.doctor(pool_spec()))
    assert not checks["kubernetes context"].ok
    assert checks["InferencePool CRD"] == ops.Check(
        "InferencePool CRD", False, "not checked: the kubernetes context check failed"
    )


def test_a_group_version_served_without_the_resource_is_reported(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = {"inference.networking.k8s.io/v1": {"inferencepoolimports": "InferencePoolImport"}}
    with serve(kube_apiserver(token="t", served=served), pki) as api:
        ca = {"certificate-authority-data": pki.data(pki.ca)}
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "k", api, {"token": "t"}, ca)))
        result = probes.kubernetes_serves("inference.networking.k8s.io/v1", "inferencepools", "x")
    assert result == probes.Result(
        False,
        f"context 'test': {api} serves inference.networking.k8s.io/v1 without inferencepools",
        "x",
    )


def test_discovery_behind_an_exec_plugin_is_not_checked(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "aws"}}
    with serve(kube_apiserver(token="t", served=POOLS), pki) as api:
        ca = {"certificate-authority-data": pki.data(pki.ca)}
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "k", api, user, ca)))
        result = probes.kubernetes_serves("inference.networking.k8s.io/v1", "inferencepools", "x")
    assert result == probes.Result(
        True,
        "inferencepools.inference.networking.k8s.io/v1 not checked (401 without credentials); "
        "credentials come from 'aws', which doctor does not run",
    )


# --- Kong's Admin API ---------------------------------------------------------------------------


def test_kong_without_the_rbac_token_is_refused_and_the_fix_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KONG_ADMIN_TOKEN", raising=False)
    with serve(kong_admin(token="secret-token")) as url:
        result = probes.kong_admin(url)
        monkeypatch.setenv("KONG_ADMIN_TOKEN", "not-it")
        wrong = probes.kong_admin(url)
    assert result == probes.Result(
        False,
        f"{url} refused the request (401) with no credentials",
        "export KONG_ADMIN_TOKEN (an RBAC token), or KONG_API_KEY for a key-auth protected "
        "Admin API (the stack secret mlserve:kongAdminToken also works for deploys)",
    )
    assert wrong.detail == f"{url} refused the request (401) with KONG_ADMIN_TOKEN"
    assert "not-it" not in repr(wrong)


def test_kong_address_from_the_spec_wins_over_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KONG_ADMIN_ADDR", f"http://127.0.0.1:{closed_port()}")
    with serve(kong_admin(token=None)) as url:
        assert probes.kong_admin(url).ok
        assert probes.kong_admin(None).detail.endswith("does not answer: Connection refused")


# --- Azure: what can be checked offline, then the tenant online ---------------------------------


def _no_azure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in [v for v in list(os.environ) if v.startswith(("AZURE_", "ARM_"))]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("PATH", str(fixture.FAKE_DIR))  # no `az`
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(tmp_path / "no-azure"))


def test_doctor_checks_azure_credentials_for_apim(
    fake: Fake, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_azure(monkeypatch, tmp_path)
    checks = by_name(ops.doctor(apim_spec()))
    assert "kubernetes context" not in checks
    assert checks["azure credentials"] == ops.Check(
        "azure credentials",
        False,
        "no ARM_* credentials and no `az login`",
        "run `az login`, or export ARM_CLIENT_ID, ARM_CLIENT_SECRET, ARM_TENANT_ID and "
        "ARM_SUBSCRIPTION_ID",
    )


def test_an_incomplete_service_principal_names_what_is_missing_offline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_azure(monkeypatch, tmp_path)
    monkeypatch.setenv("ARM_CLIENT_ID", "00000000-0000-0000-0000-000000000001")
    assert probes.azure() == probes.Result(
        False,
        "a service principal (ARM_CLIENT_ID): ARM_TENANT_ID, ARM_CLIENT_SECRET (or "
        "ARM_CLIENT_CERTIFICATE_PATH), ARM_SUBSCRIPTION_ID not set",
        "export ARM_TENANT_ID, ARM_CLIENT_SECRET (or ARM_CLIENT_CERTIFICATE_PATH), "
        "ARM_SUBSCRIPTION_ID",
    )


def test_a_complete_service_principal_has_its_tenant_checked_online_without_the_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_azure(monkeypatch, tmp_path)
    tenant = "11111111-1111-1111-1111-111111111111"
    monkeypatch.setenv("ARM_CLIENT_ID", "00000000-0000-0000-0000-000000000001")
    monkeypatch.setenv("ARM_CLIENT_SECRET", "sp-secret-value")
    monkeypatch.setenv("ARM_SUBSCRIPTION_ID", "sub-1")
    with serve(entra({tenant})) as authority:
        monkeypatch.setenv("AZURE_AUTHORITY_HOST", authority)
        monkeypatch.setenv("ARM_TENANT_ID", tenant)
        known = probes.azure()
        monkeypatch.setenv("ARM_TENANT_ID", "22222222-2222-2222-2222-222222222222")
        unknown = probes.azure()
    where = "a service principal (ARM_CLIENT_ID); tenant"
    assert known == probes.Result(
        True, f"{where} {tenant}, subscription sub-1: the tenant is known to {authority}"
    )
    assert not unknown.ok
    assert unknown.detail.endswith(f"{authority} does not know the tenant (invalid_tenant)")
    assert unknown.fix == "check ARM_TENANT_ID (or `az account show`) and ARM_ENVIRONMENT"
    assert "sp-secret-value" not in repr((known, unknown))


def test_an_az_cli_login_is_read_from_its_profile(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_azure(monkeypatch, tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "az").write_text("#!/bin/sh\nexit 99\n")  # never run: the profile is read
    (bin_dir / "az").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    config = tmp_path / "azure"
    config.mkdir()
    tenant = "33333333-3333-3333-3333-333333333333"
    # az writes azureProfile.json with a UTF-8 byte-order mark (azure-cli core/_profile.py)
    profile = {"subscriptions": [{"id": "sub-az", "tenantId": tenant, "isDefault": True}]}
    (config / "azureProfile.json").write_text(json.dumps(profile), encoding="utf-8-sig")
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(config))
    with serve(entra({tenant})) as authority:
        monkeypatch.setenv("AZURE_AUTHORITY_HOST", authority)
        result = probes.azure()
    assert result == probes.Result(
        True,
        f"the az CLI's login; tenant {tenant}, subscription sub-az: the tenant is known to "
        f"{authority}",
    )


def test_setup_uses_the_cli_under_mlserve_home_and_installs_the_specs_plugins(fake: Fake) -> None:
    bin_dir = engine.cli_root(fake.home) / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "pulumi").symlink_to(fixture.FAKE_DIR / "pulumi")
    report = ops.setup(kong_spec())
    assert report.cli == str(bin_dir / "pulumi")
    assert report.version == SDK  # the stand-in reports the SDK's version as its own
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
        "the Pulumi CLI was not found (`pulumi` on PATH); downloading Pulumi "
        f"{importlib.metadata.version('pulumi')} failed: no network ([Errno -3] Temporary failure "
        "in name resolution). Install Pulumi 3.181.0 or newer by hand "
        "(https://www.pulumi.com/docs/install/) and put it on PATH, or copy its `pulumi` binaries "
        f"into {root / 'bin'}; `mlserve setup` then uses it and installs only the plugins"
    )


def test_setup_uses_a_suitable_cli_on_path_and_downloads_nothing(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise AssertionError("setup downloaded something")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    report = ops.setup(kong_spec())
    assert (report.cli, report.cli_installed) == (str(fixture.FAKE_DIR / "pulumi"), False)
    assert report.plugins_installed == [f"kong v{KONG}"]
    assert not engine.cli_root(fake.home).exists()
    assert output.render_setup(report) == (
        f"Pulumi CLI v{SDK}: {fixture.FAKE_DIR / 'pulumi'} (found, already suitable)\n"
        f"plugin kubernetes v{K8S}: present\n"
        f"plugin kong v{KONG}: installed"
    )


def test_setup_with_a_cli_too_old_on_path_installs_the_pinned_one(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_PULUMI_VERSION", "3.150.0")
    installed: list[str] = []

    def install(root: str | None = None, version: object = None) -> object:
        installed.append(str(root))
        bin_dir = Path(str(root)) / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "pulumi").write_text(f'#!/bin/sh\nexec {fixture.FAKE_DIR / "pulumi"} "$@"\n')
        (bin_dir / "pulumi").chmod(0o755)
        monkeypatch.delenv("FAKE_PULUMI_VERSION")
        return engine.auto.PulumiCommand(root=str(root))

    monkeypatch.setattr(engine.auto.PulumiCommand, "install", install)
    report = ops.setup(None)
    assert installed == [str(engine.cli_root(fake.home))]
    assert report.cli_installed
    assert report.cli == str(engine.cli_root(fake.home) / "bin" / "pulumi")
