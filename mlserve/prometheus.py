"""Prometheus over its HTTP API (https://prometheus.io/docs/prometheus/latest/querying/api/).

Instant queries only (`GET /api/v1/query`), with the standard library. Credentials come from the
environment, never from the spec, and never appear in a message. `check_query` is what can be
checked of a query offline; the PromQL grammar itself is Prometheus's to judge.
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlserve.errors import UsageError

TOKEN_ENV = "MLSERVE_PROMETHEUS_TOKEN"
USER_ENV = "MLSERVE_PROMETHEUS_USER"
PASSWORD_ENV = "MLSERVE_PROMETHEUS_PASSWORD"
PLACEHOLDERS = ("name", "namespace", "stable", "canary")
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_CLOSING = {")": "(", "]": "[", "}": "{"}


# --- what can be checked offline -------------------------------------------------------------


def check_query(query: str) -> list[str]:
    """Problems a query has before any Prometheus sees it.

    Checked: placeholders are the four known ones; quotes are closed; brackets pair up; no ';'
    (PromQL has no statement separator: a query is one expression). Not checked here: the
    grammar (function and metric names, operators, two expressions side by side, durations);
    Prometheus rejects those with HTTP 400, which `rollout --dry-run` and the check before a
    rollout's first step report.
    """
    problems = [
        f"unknown placeholder {m.group(0)}: use {{{{name}}}}, {{{{namespace}}}}, {{{{stable}}}} "
        "or {{canary}}"
        for m in _PLACEHOLDER.finditer(query)
        if m.group(1) not in PLACEHOLDERS
    ]
    text = _PLACEHOLDER.sub("x", query)
    if not _strip(text).strip():
        return [*problems, "the query is empty (only comments or spaces)"]
    opened: list[tuple[str, int]] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        if c in "\"'`":
            end = _string_end(text, i)
            if end < 0:
                return [*problems, f"{_at(text, i)}: the string opened with {c} is not closed"]
            i = end
            continue
        if c in "([{":
            opened.append((c, i))
        elif c in ")]}":
            if not opened:
                return [*problems, f"{_at(text, i)}: '{c}' closes nothing"]
            o, at = opened.pop()
            if o != _CLOSING[c]:
                where = _at(text, at).removeprefix("query ")
                return [*problems, f"{_at(text, i)}: '{c}' does not match the '{o}' at {where}"]
        elif c == ";":
            return [*problems, f"{_at(text, i)}: ';' is not PromQL; a query is one expression"]
        i += 1
    return problems + [f"{_at(text, at)}: '{c}' is not closed" for c, at in opened]


def _at(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    return f"query line {line}, column {index - text.rfind(chr(10), 0, index)}"


def _string_end(text: str, start: int) -> int:
    """The index just past the string literal that starts at `start`; -1 if it is not closed.

    Backquoted strings are raw; the others take backslash escapes and end at a newline.
    """
    quote = text[start]
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == "\\" and quote != "`":
            i += 2
            continue
        if c == quote:
            return i + 1
        if c == "\n" and quote != "`":
            return -1
        i += 1
    return -1


def _strip(text: str) -> str:
    """The query without its comments."""
    return re.sub(r"#[^\n]*", "", text)


def render_query(query: str, values: Mapping[str, str]) -> str:
    """Replace the placeholders; `values` holds one value for each of PLACEHOLDERS."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], query)


# --- the client ------------------------------------------------------------------------------


class PrometheusError(Exception):
    """A query that produced no result. `rejected`: Prometheus refused the query itself (HTTP
    400 or 422), so asking again will not help; otherwise it was unreachable or failing."""

    def __init__(self, message: str, rejected: bool = False) -> None:
        super().__init__(message)
        self.rejected = rejected


@dataclass(frozen=True)
class Result:
    """One instant query's answer: a number, or None with the reason it is inconclusive."""

    value: float | None
    time: datetime
    note: str = ""  # why there is no value: "no data", "NaN", "3 series"


def credentials(env: Mapping[str, str] | None = None) -> str | None:
    """The Authorization header value from the environment, or None."""
    env = os.environ if env is None else env
    token, user, password = (env.get(k, "") for k in (TOKEN_ENV, USER_ENV, PASSWORD_ENV))
    if token and (user or password):
        raise UsageError(f"set {TOKEN_ENV} or {USER_ENV} and {PASSWORD_ENV}, not both")
    if token:
        return f"Bearer {token}"
    if user or password:
        if not (user and password):
            raise UsageError(f"{USER_ENV} and {PASSWORD_ENV} go together: set both")
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return None


class Client:
    def __init__(
        self, address: str, *, timeout: float = 10.0, env: Mapping[str, str] | None = None
    ) -> None:
        self.address = address.rstrip("/")
        self.timeout = timeout
        self._auth = credentials(env)

    def query(self, promql: str) -> Result:
        """Evaluate `promql` now. Raises PrometheusError when there is no answer at all."""
        url = f"{self.address}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        if self._auth:
            request.add_header("Authorization", self._auth)
        where = f"Prometheus at {self.address}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as e:
            raise self._http_error(e) from None
        except (OSError, http.client.HTTPException) as e:  # URLError and timeouts are OSErrors
            reason = getattr(e, "reason", e)
            raise PrometheusError(f"{where} is unreachable: {reason}") from None
        try:
            document = json.loads(body)
            data = document["data"]
            return _result(data["resultType"], data["result"])
        except (ValueError, KeyError, TypeError, IndexError):
            raise PrometheusError(f"{where} answered with something that is not its API") from None

    def _http_error(self, e: urllib.error.HTTPError) -> PrometheusError:
        where = f"Prometheus at {self.address}"
        if e.code in (401, 403):
            return PrometheusError(
                f"{where} refused the credentials (HTTP {e.code}): set {TOKEN_ENV}, or "
                f"{USER_ENV} and {PASSWORD_ENV}"
            )
        detail = ""
        try:
            document = json.loads(e.read())
            detail = f"{document.get('errorType', '')}: {document.get('error', '')}"
        except (ValueError, AttributeError, OSError):
            detail = str(e.reason)
        # 400: the query does not parse; 422: it cannot be executed (the API page, "Format
        # overview"). Both are the query's fault; 503 and others are the server's.
        rejected = e.code in (400, 422)
        what = "rejected the query" if rejected else "failed"
        return PrometheusError(f"{where} {what} (HTTP {e.code}): {detail[:300]}", rejected)


def _result(kind: str, result: Any) -> Result:
    """Interpret a `data` object: a scalar, or a vector of exactly one series."""
    if kind == "scalar":
        return _sample(result)
    if kind != "vector":
        raise ValueError(kind)
    if not result:
        return Result(None, datetime.now(UTC), "no data")
    if len(result) > 1:
        return Result(
            None,
            _time(result[0]["value"][0]),
            f"{len(result)} series; the query must return one (aggregate it, e.g. with sum)",
        )
    return _sample(result[0]["value"])


def _sample(pair: list[Any]) -> Result:
    at, text = pair
    value = float(text)  # Prometheus writes "NaN", "+Inf" and "-Inf" as strings too
    if math.isnan(value):
        return Result(None, _time(at), "NaN")
    return Result(value, _time(at))


def _time(unix: float) -> datetime:
    return datetime.fromtimestamp(float(unix), UTC)
