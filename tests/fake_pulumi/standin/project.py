"""The workspace the CLI runs in: Pulumi.yaml, the stack's settings file (config and the passphrase
salt) and the passphrase secrets manager.

Sources: sdk/go/common/workspace (project and project-stack files), pkg/secrets/passphrase
(manager, error texts), pkg/cmd/pulumi/stack (`--config-file` replaces Pulumi.<stack>.yaml).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .control import Fail

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: some 2 ms less a call

NO_PASSPHRASE = (
    "error: getting secrets manager: passphrase must be set with PULUMI_CONFIG_PASSPHRASE or "
    "PULUMI_CONFIG_PASSPHRASE_FILE environment variables"
)
BAD_PASSPHRASE = (
    "error: getting secrets manager: incorrect passphrase, please set PULUMI_CONFIG_PASSPHRASE "
    "to the correct passphrase or set PULUMI_CONFIG_PASSPHRASE_FILE to a file containing the "
    "passphrase"
)
NO_LOGIN = "error: PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI sessions"


@dataclass
class Project:
    dir: Path
    name: str
    backend_url: str

    @classmethod
    def load(cls, cwd: Path) -> Project:
        for name in ("Pulumi.yaml", "Pulumi.yml", "Pulumi.json"):
            path = cwd / name
            if path.exists():
                settings = yaml.load(path.read_text(), Loader=_Loader) or {}
                break
        else:
            raise Fail(
                "error: no Pulumi.yaml project file found (searching upwards from "
                f"{cwd}). If you have not created a project yet, use `pulumi new` to do so"
            )
        # Backend URL order: PULUMI_BACKEND_URL, then backend.url in Pulumi.yaml, then the login
        # in ~/.pulumi/credentials.json (pkg/cmd/pulumi/backend: GetCurrentCloudURL).
        url = os.environ.get("PULUMI_BACKEND_URL") or (settings.get("backend") or {}).get("url")
        if not url:
            raise Fail(NO_LOGIN)
        return cls(cwd, str(settings.get("name", "")), url)


@dataclass
class StackSettings:
    """Pulumi.<stack>.yaml, or the file given with --config-file."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, project: Project, stack: str, config_file: str | None = None) -> StackSettings:
        if config_file:
            path = Path(config_file)
            if not path.is_absolute():
                path = project.dir / path
        else:
            path = project.dir / f"Pulumi.{stack.split('/')[-1]}.yaml"
        data = (yaml.load(path.read_text(), Loader=_Loader) or {}) if path.exists() else {}
        return cls(path, data)

    def save(self) -> None:
        self.path.write_text(yaml.safe_dump(self.data, sort_keys=True))

    @property
    def config(self) -> dict[str, Any]:
        cfg = self.data.get("config")
        if cfg is None:
            cfg = self.data["config"] = {}
        return cfg  # type: ignore[no-any-return]


def passphrase() -> str | None:
    """PULUMI_CONFIG_PASSPHRASE (an empty one counts), else PULUMI_CONFIG_PASSPHRASE_FILE."""
    if "PULUMI_CONFIG_PASSPHRASE" in os.environ:
        return os.environ["PULUMI_CONFIG_PASSPHRASE"]
    path = os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    if path:
        try:
            return Path(path).read_text().rstrip("\r\n")
        except OSError:
            raise Fail(f"error: unable to read PULUMI_CONFIG_PASSPHRASE_FILE: {path}") from None
    return None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Crypter:
    """The passphrase secrets manager's shape, not its cipher.

    The real one derives an AES-256-GCM key with PBKDF2 (1,000,000 rounds of SHA-256) from the
    passphrase and the salt in `encryptionsalt: v1:<salt>:v1:<nonce>:<ciphertext of "pulumi">`
    (pkg/secrets/passphrase/manager.go). This stand-in keeps that layout and the failure modes
    (a wrong passphrase cannot decrypt) with a cheap keyed stream cipher: a test CLI call must
    not spend half a second deriving a key.
    """

    def __init__(self, secret: str, salt: bytes) -> None:
        self.key = hashlib.sha256(salt + secret.encode()).digest()
        self.salt = salt

    def _stream(self, nonce: bytes, size: int) -> bytes:
        out = b""
        counter = 0
        while len(out) < size:
            out += hashlib.sha256(self.key + nonce + counter.to_bytes(4, "big")).digest()
            counter += 1
        return out[:size]

    def encrypt(self, plaintext: str) -> str:
        nonce = secrets.token_bytes(12)
        data = plaintext.encode()
        ct = bytes(a ^ b for a, b in zip(data, self._stream(nonce, len(data)), strict=True))
        tag = hmac.new(self.key, nonce + ct, hashlib.sha256).digest()[:16]
        return f"v1:{_b64(nonce)}:{_b64(ct + tag)}"

    def decrypt(self, ciphertext: str) -> str | None:
        """The plaintext, or None if this passphrase did not encrypt it."""
        try:
            _, nonce_b64, body_b64 = ciphertext.split(":", 2)
            nonce, body = base64.b64decode(nonce_b64), base64.b64decode(body_b64)
        except ValueError:
            return None
        ct, tag = body[:-16], body[-16:]
        if not hmac.compare_digest(
            hmac.new(self.key, nonce + ct, hashlib.sha256).digest()[:16], tag
        ):
            return None
        return bytes(a ^ b for a, b in zip(ct, self._stream(nonce, len(ct)), strict=True)).decode()

    def state(self) -> str:
        return f"v1:{_b64(self.salt)}:{self.encrypt('pulumi')}"


def crypter(settings: StackSettings, create: bool = False) -> Crypter:
    """The stack's passphrase crypter, checking the passphrase against `encryptionsalt`.

    With no salt in the settings file (a fresh stack, or a --config-file without one) a new salt
    is made and saved into that file, as the CLI does when the secrets manager state changes
    (SaveProjectStack after GetDecrypter in pkg/cmd/pulumi/stack).
    """
    given = passphrase()
    if given is None:
        raise Fail(NO_PASSPHRASE)
    salt_text = settings.data.get("encryptionsalt")
    if not salt_text:
        c = Crypter(given, secrets.token_bytes(8))
        settings.data["encryptionsalt"] = c.state()
        settings.save()
        return c
    try:
        _, salt_b64, check = str(salt_text).split(":", 2)
        c = Crypter(given, base64.b64decode(salt_b64))
    except ValueError:
        raise Fail(
            f"error: getting secrets manager: bad encryption salt in {settings.path}"
        ) from None
    if c.decrypt(check) != "pulumi":
        raise Fail(BAD_PASSPHRASE)
    return c


def config_values(settings: StackSettings, c: Crypter | None) -> dict[str, tuple[str, bool]]:
    """Config as {key: (value, secret)}; secret values need the crypter (None: left encrypted)."""
    out: dict[str, tuple[str, bool]] = {}
    for key, value in settings.config.items():
        if isinstance(value, dict) and "secure" in value:
            plain = c.decrypt(value["secure"]) if c is not None else None
            if c is not None and plain is None:
                raise Fail(f"error: failed to decrypt config value {key}: {BAD_PASSPHRASE[7:]}")
            out[key] = (plain if plain is not None else value["secure"], True)
        elif isinstance(value, bool):
            out[key] = ("true" if value else "false", False)
        else:
            out[key] = (str(value), False)
    return out


def qualify(key: str, project: str) -> str:
    """`replicas` -> `proj:replicas` (sdk/go/common/resource/config/key.go ParseKey)."""
    return key if ":" in key else f"{project}:{key}"
