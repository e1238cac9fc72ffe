"""What must never reach a terminal, a log or recorded state: credential values, and terminal
control characters in text that comes from another program (Pulumi, Prometheus).

Shared by engine.py (the Pulumi CLI's messages) and prometheus.py (Prometheus's answers); light
on purpose, so that `validate`, which reads queries with prometheus.py, never imports Pulumi.
"""

from __future__ import annotations

import contextlib
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping

# Environment variables holding the credentials of a backend, a gateway or the CLI itself: their
# values are scrubbed from every message. Beside this list, any variable whose name says it
# holds a credential is scrubbed too (a Prometheus bearer token or password, a provider's key).
CREDENTIAL_VARS = (
    "PULUMI_CONFIG_PASSPHRASE",
    "PULUMI_ACCESS_TOKEN",  # Pulumi Cloud
    "AWS_SECRET_ACCESS_KEY",  # s3:// backend
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_KEY",  # azblob:// backend (gocloud.dev/blob/azureblob)
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "ARM_CLIENT_SECRET",  # azure-native provider (azure-apim gateway)
    "ARM_CLIENT_CERTIFICATE_PASSWORD",
    "GOOGLE_CREDENTIALS",  # gs:// backend: the service account's JSON key itself
    "GOOGLE_OAUTH_ACCESS_TOKEN",
    "KONG_ADMIN_TOKEN",  # kong provider
    "KONG_ADMIN_PASSWORD",
    "KONG_API_KEY",
)
_CREDENTIAL_NAME = re.compile(
    r"SECRET|TOKEN|PASSWORD|PASSPHRASE|ACCESS_KEY|API_KEY|PRIVATE_KEY|CREDENTIALS", re.IGNORECASE
)
# Names that match but hold a path to a credential, not the credential.
_CREDENTIAL_PATH = re.compile(r"_(FILE|PATH|DIR)$|^GOOGLE_APPLICATION_CREDENTIALS$", re.IGNORECASE)
# Fields of a JSON credential (a Google service-account key) that are secret on their own.
_JSON_SECRET_FIELDS = ("private_key", "private_key_id", "client_secret", "refresh_token")
# A secret shorter than this is masked only where it stands as a whole token: a passphrase `te`
# must not turn every "test" into "[secret]st". Longer ones are masked wherever they appear.
WHOLE_TOKEN_BELOW = 8
MASK = "[secret]"


def secret_forms(value: str) -> set[str]:
    """What to mask for one secret value: itself, each line of a multi-line one (a PEM key's
    lines), and the secret fields of a JSON credential."""
    forms = {value} if value else set()
    lines = [x.strip() for x in value.splitlines()]
    forms.update(x for x in lines if len(x) >= 16 and not x.startswith("-----"))
    if value.lstrip().startswith("{"):
        with contextlib.suppress(ValueError):
            data = json.loads(value)
            if isinstance(data, dict):
                for key in _JSON_SECRET_FIELDS:
                    if isinstance(data.get(key), str):
                        forms.update(secret_forms(data[key]))
    return forms


def credentials(environ: Mapping[str, str]) -> set[str]:
    """The credential values in an environment (CREDENTIAL_VARS and credential-like names)."""
    found: set[str] = set()
    for name, value in environ.items():
        if name in CREDENTIAL_VARS or (
            _CREDENTIAL_NAME.search(name) and not _CREDENTIAL_PATH.search(name)
        ):
            found.update(secret_forms(value))
    return found


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret masked, the longest first (one may contain another)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= WHOLE_TOKEN_BELOW:
            text = text.replace(secret, MASK)
        else:
            text = re.sub(rf"(?<!\w){re.escape(secret)}(?!\w)", MASK, text)
    return text


def printable(text: str) -> str:
    """`text` with control and format characters written as escapes (`\\x1b`, `\\n`,
    `\\u202e`): an ESC sequence, a bell, a carriage return or a line break from another program
    can neither drive the terminal nor fake a line of mlserve's own output."""
    return "".join(
        c.encode("unicode_escape").decode("ascii")
        if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")
        else c
        for c in text
    )


def capped(text: str, limit: int) -> str:
    """At most `limit` characters; a longer text is cut and says so."""
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def untrusted(text: str, secrets: Iterable[str], limit: int = 300) -> str:
    """Text another program wrote, as mlserve may print and record it: credentials masked,
    control characters escaped, the length capped."""
    return capped(printable(scrub(text, secrets)), limit)
