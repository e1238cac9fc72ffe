"""Issue 11 item 8: secrets are scrubbed by name and value, short ones only as whole tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlserve import redact
from mlserve.engine import Engine, Target
from tests.fake_pulumi import fixture
from tests.fake_pulumi.fixture import Fake
from tests.helpers import run_cli as mlserve
from tests.test_engine_settings import SPEC

fake = fixture.fake


@pytest.mark.parametrize(
    ("name", "value", "text", "shown"),
    [
        (
            "PULUMI_CONFIG_PASSPHRASE",
            "te",
            "run pytest in /tmp/test-te/state: passphrase te",
            "run pytest in /tmp/test-[secret]/state: passphrase [secret]",
        ),
        (
            "KONG_ADMIN_TOKEN",
            "kpat-0123456789",
            "Authorization: Bearerkpat-0123456789x",
            "Authorization: Bearer[secret]x",
        ),
    ],
    ids=["short-as-whole-tokens", "long-anywhere"],
)
def test_a_short_secret_is_masked_where_it_stands_alone_a_long_one_anywhere(
    fake: Fake, monkeypatch: pytest.MonkeyPatch, name: str, value: str, text: str, shown: str
) -> None:
    monkeypatch.setenv(name, value)
    assert Engine(Target("fraud", "dev")).scrub(text) == shown


@pytest.mark.parametrize("name", redact.CREDENTIAL_VARS)
def test_every_backend_and_gateway_credential_is_scrubbed(
    fake: Fake, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, "c2VjcmV0LXZhbHVlLTQy")
    eng = Engine(Target("fraud", "dev"))
    assert eng.scrub("denied for c2VjcmV0LXZhbHVlLTQy") == "denied for [secret]"


def test_a_google_service_account_key_is_scrubbed_field_by_field(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_line = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"
    credentials = {
        "type": "service_account",
        "client_email": "ci@acme.iam.gserviceaccount.com",
        "private_key_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "private_key": f"-----BEGIN PRIVATE KEY-----\n{key_line}\n-----END PRIVATE KEY-----\n",
    }
    monkeypatch.setenv("GOOGLE_CREDENTIALS", json.dumps(credentials))
    monkeypatch.setenv("PROMETHEUS_BEARER_TOKEN", "prom-token-123")
    eng = Engine(Target("fraud", "dev"))
    assert eng.scrub(f"bad key {key_line} (id 0f1e2d3c4b5a69788796a5b4c3d2e1f0)") == (
        "bad key [secret] (id [secret])"
    )
    assert eng.scrub("query with prom-token-123") == "query with [secret]"
    assert eng.scrub("as ci@acme.iam.gserviceaccount.com") == "as ci@acme.iam.gserviceaccount.com"


def test_paths_to_credentials_are_not_masked(
    fake: Fake, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key = tmp_path / "gcp-key.json"
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE_FILE", str(tmp_path / "pass"))
    eng = Engine(Target("fraud", "dev"))
    assert eng.scrub(f"cannot read {key}") == f"cannot read {key}"


def test_a_password_in_the_backend_url_is_never_shown(fake: Fake) -> None:
    eng = Engine(Target("fraud", "dev", backend="postgres://ci:hunter2pw@db:5432/pulumi"))
    assert eng.describe() == (
        "stack 'dev' of project 'fraud' (backend postgres://ci:[secret]@db:5432/pulumi)"
    )


def test_a_leaked_short_passphrase_is_masked_in_a_failed_update(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "te")
    fake.set(fail={"up": "quota exceeded for the test namespace"}, leak=True)
    result = mlserve("deploy", SPEC, "--yes")
    assert result.returncode == 5
    assert "quota exceeded for the test namespace (passphrase was [secret])" in result.stderr, (
        result.stderr
    )
