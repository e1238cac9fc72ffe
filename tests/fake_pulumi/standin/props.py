"""Property values as they cross the wire and sit in state (sdk/go/common/resource/properties.go,
sdk/python/lib/pulumi/runtime/rpc.py): secrets are objects tagged with the secret signature,
unknowns are a sentinel string. Inside the stand-in values keep that wire form; state files
carry secrets as ciphertext (sdk/go/common/resource/stack: the `ciphertext` field)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

SIG = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
OUTPUT_SIG = "d0e6a833031e9bbcd3f4e8bde6ca49a4"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def is_secret(v: Any) -> bool:
    return isinstance(v, dict) and v.get(SIG) == SECRET_SIG


def secret(v: Any) -> dict[str, Any]:
    return {SIG: SECRET_SIG, "value": v}


def from_struct(struct: Any) -> dict[str, Any]:
    from google.protobuf import json_format

    return normalize(json_format.MessageToDict(struct)) if struct is not None else {}


def normalize(v: Any) -> Any:
    """Struct numbers are doubles: integral ones become ints, as Go's JSON encoder prints them.
    Output values (the outputValues feature, declined here) collapse to their value."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, list):
        return [normalize(x) for x in v]
    if isinstance(v, dict):
        if v.get(SIG) == OUTPUT_SIG:
            inner = normalize(v["value"]) if "value" in v else UNKNOWN
            return secret(inner) if v.get("secret") else inner
        return {k: normalize(x) for k, x in v.items()}
    return v


def to_struct(value: dict[str, Any]) -> Any:
    from google.protobuf import struct_pb2

    s = struct_pb2.Struct()
    s.update(value)
    return s


def _on_secrets(v: Any, change: Callable[[dict[str, Any]], Any]) -> Any:
    """`v` with every secret object replaced by `change(secret)`."""
    if isinstance(v, dict) and v.get(SIG) == SECRET_SIG:
        return change(v)
    if isinstance(v, list):
        return [_on_secrets(x, change) for x in v]
    if isinstance(v, dict):
        return {k: _on_secrets(x, change) for k, x in v.items()}
    return v


def plain(v: Any) -> Any:
    """Secrets unwrapped (for diffs and provider logic)."""
    return _on_secrets(v, lambda s: plain(s.get("value")))


def masked(v: Any) -> Any:
    """Secrets shown as "[secret]", as engine events show them without --show-secrets."""
    return _on_secrets(v, lambda s: "[secret]")


def seal(v: Any, encrypt: Callable[[str], str]) -> Any:
    """Wire form -> state form: each secret's value encrypted into `ciphertext`."""
    return _on_secrets(
        v, lambda s: {SIG: SECRET_SIG, "ciphertext": encrypt(json.dumps(s.get("value")))}
    )


def unseal(v: Any, decrypt: Callable[[str], str | None]) -> Any:
    """State form -> wire form; `decrypt` returns None for a passphrase that cannot open it."""

    def open_secret(s: dict[str, Any]) -> Any:
        if "ciphertext" not in s:
            return s
        text = decrypt(s["ciphertext"])
        return secret(json.loads(text) if text is not None else None)

    return _on_secrets(v, open_secret)


def diff_paths(old: Any, new: Any, path: str = "") -> list[str]:
    """Property paths whose values differ (sdk/go/common/resource/properties_diff.go ObjectDiff,
    printed as the engine's detailed-diff keys: `spec.http[0].route[1].weight`)."""
    old, new = plain(old), plain(new)
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new)):
            out += diff_paths(old.get(k), new.get(k), f"{path}.{k}" if path else k)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out += diff_paths(a, b, f"{path}[{i}]")
        return out
    return [] if old == new and old != UNKNOWN else [path]


def kind_of(old: Any, new: Any, path: str) -> str:
    """add / delete / update for one detailed-diff path."""

    def get(v: Any) -> Any:
        for part in path.replace("[", ".[").split("."):
            if part.startswith("["):
                i = int(part[1:-1])
                v = v[i] if isinstance(v, list) and i < len(v) else None
            else:
                v = v.get(part) if isinstance(v, dict) else None
        return v

    before, after = get(plain(old)), get(plain(new))
    if before is None:
        return "add"
    if after is None:
        return "delete"
    return "update"
