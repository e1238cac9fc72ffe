"""Prometheus over its HTTP API (https://prometheus.io/docs/prometheus/latest/querying/api/).

Instant queries only (`GET /api/v1/query`), with the standard library. Credentials come from the
environment, never from the spec, and never appear in a message. `check_query` is what can be
checked of a query offline; the PromQL grammar itself is Prometheus's to judge.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import math
import os
import re
import socket
import threading
import time
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlserve import redact
from mlserve.errors import UsageError

TOKEN_ENV = "MLSERVE_PROMETHEUS_TOKEN"
USER_ENV = "MLSERVE_PROMETHEUS_USER"
PASSWORD_ENV = "MLSERVE_PROMETHEUS_PASSWORD"
TIMEOUT_ENV = "MLSERVE_PROMETHEUS_TIMEOUT"
PLACEHOLDERS = ("name", "namespace", "stable", "canary", "stable_re", "canary_re")
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_CLOSING = {")": "(", "]": "[", "}": "{"}
_KNOWN = (
    "use {{name}}, {{namespace}}, {{stable}} or {{canary}} ({{stable_re}} or {{canary_re}} in a "
    "regular expression)"
)


# --- what can be checked offline -------------------------------------------------------------


def check_query(query: str) -> list[str]:
    """Problems a query has before any Prometheus sees it.

    Checked: placeholders are the known ones, and every '{{' or '}}' belongs to one; quotes are
    closed; brackets pair up; no ';' (PromQL has no statement separator: a query is one
    expression). Not checked here: the grammar (function and metric names, operators, two
    expressions side by side, durations); Prometheus rejects those with HTTP 400, which
    `rollout --dry-run` and the check before a rollout's first step report.
    """
    problems = []
    for m in _PLACEHOLDER.finditer(query):
        if m.group(1) not in PLACEHOLDERS:
            problems.append(f"unknown placeholder {m.group(0)}: {_KNOWN}")
        elif query[m.start() - 1 : m.start()] == "{" or query[m.end() : m.end() + 1] == "}":
            problems.append(
                f"{_at(query, m.start())}: {m.group(0)} stands inside more braces; write it "
                "with two on each side"
            )
    # Placeholders become as many letters: positions stay those of the query as written.
    text = _PLACEHOLDER.sub(lambda m: "x" * len(m.group(0)), query)
    problems += [
        f"{_at(text, m.start())}: '{m.group(0)}' is not part of a placeholder: {_KNOWN}"
        for m in re.finditer(r"\{\{|\}\}", text)
    ]
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


def regex_placeholders(query: str) -> list[str]:
    """The version placeholders ({{stable}}, {{canary}}) that stand in a regular expression
    matcher's string (`=~`, `!~`), where a version name's '.' matches any character."""
    found = []
    i = 0
    while i < len(query):
        c = query[i]
        if c == "#":
            end = query.find("\n", i)
            i = len(query) if end < 0 else end
            continue
        if c in "\"'`":
            end = _string_end(query, i)
            if end < 0:
                break
            if query[:i].rstrip().endswith(("=~", "!~")):
                found += [
                    m.group(0)
                    for m in _PLACEHOLDER.finditer(query, i, end)
                    if m.group(1) in ("stable", "canary")
                ]
            i = end
            continue
        i += 1
    return list(dict.fromkeys(found))


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
    """Replace the placeholders; `values` holds name, namespace, stable and canary. A `_re`
    placeholder is the version name with each '.' as `[.]`, which matches a dot only and needs
    no backslash in any kind of PromQL string (a version name has no other regex character)."""

    def value(m: re.Match[str]) -> str:
        key = m.group(1)
        if key.endswith("_re"):
            return values[key.removesuffix("_re")].replace(".", "[.]")
        return values[key]

    return _PLACEHOLDER.sub(value, query)


# --- the client ------------------------------------------------------------------------------

TIMEOUT = 10.0  # seconds for one query: connecting, the answer's headers and its body;
# MLSERVE_PROMETHEUS_TIMEOUT sets another (a slow Prometheus; the tests, to run fast)
MAX_ANSWER = 1 << 20  # bytes: one series is a few hundred
MAX_REDIRECTS = 3  # within the configured origin
_TEXT = 200  # characters of a text from Prometheus (an error, a reason) that mlserve shows
# A sample value as Prometheus writes it (strconv.FormatFloat(v, 'f', -1, 64), web/api/v1;
# "NaN", "+Inf", "-Inf"), ASCII digits only; an exponent is accepted, Go's 'e' format.
_VALUE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?Inf|NaN")
_LATEST = 253402300800  # 10000-01-01T00:00:00Z: the first time a datetime cannot hold
_REDIRECTS = (301, 302, 303, 307, 308)


class PrometheusError(Exception):
    """A query that produced no result. `rejected`: the query itself is at fault (Prometheus
    refused it with HTTP 400 or 422, or it returns a range vector or a string), so asking again
    will not help; otherwise Prometheus was unreachable, failing, slow or not Prometheus."""

    def __init__(self, message: str, rejected: bool = False) -> None:
        super().__init__(message)
        self.rejected = rejected


@dataclass(frozen=True)
class Result:
    """One instant query's answer: a number, or None with the reason it is inconclusive."""

    value: float | None
    time: datetime
    note: str = ""  # why there is no value: "no data", "NaN", "3 series"


def _flaw(value: str) -> str | None:
    """What in a credential an HTTP header cannot carry, said without showing the value."""
    if value.endswith(("\n", "\r")):
        return "a line break at its end"
    if any(unicodedata.category(c) == "Cc" for c in value):
        return "a control character"
    return None


def credentials(env: Mapping[str, str] | None = None) -> str | None:
    """The Authorization header value from the environment, or None. A value no header can
    carry is a usage error naming the variable, never the value."""
    env = os.environ if env is None else env
    token, user, password = (env.get(k, "") for k in (TOKEN_ENV, USER_ENV, PASSWORD_ENV))
    if token and (user or password):
        raise UsageError(f"set {TOKEN_ENV} or {USER_ENV} and {PASSWORD_ENV}, not both")
    for name, value in ((TOKEN_ENV, token), (USER_ENV, user), (PASSWORD_ENV, password)):
        flaw = _flaw(value)
        if flaw is None and name == TOKEN_ENV and not re.fullmatch(r"[\x21-\x7e]*", value):
            flaw = "a space or a character beyond ASCII"  # RFC 6750: a token is ASCII
        if flaw is None and name == USER_ENV and ":" in value:
            flaw = "a ':'"  # RFC 7617: the user-id cannot contain one
        if flaw is not None:
            raise UsageError(
                f"{name} holds {flaw}, which an Authorization header cannot carry; set it to "
                "the credential alone (its value is not shown here)"
            )
    if token:
        return f"Bearer {token}"
    if user or password:
        if not (user and password):
            raise UsageError(f"{USER_ENV} and {PASSWORD_ENV} go together: set both")
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return None


def _timeout(env: Mapping[str, str]) -> float:
    text = env.get(TIMEOUT_ENV, "")
    if not text:
        return TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= 600:
        raise UsageError(
            f"{TIMEOUT_ENV} is the seconds a query may take, more than 0 and at most 600; "
            f"not {redact.capped(redact.printable(text), 40)!r}"
        )
    return seconds


def _origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL; ValueError for anything else."""
    parts = urllib.parse.urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host:
        raise ValueError(url)
    return scheme, host, parts.port or (443 if scheme == "https" else 80)


class _Sockets:
    """The sockets one query opened, so that its deadline can cut them off from another thread:
    a shut-down socket ends a blocked connect, TLS handshake or read at once. Each is kept as a
    duplicate descriptor, as TLS takes over (detaches) the socket object it wraps."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: list[socket.socket] = []
        self._shut = False

    def add(self, sock: socket.socket) -> socket.socket:
        copy = sock.dup()
        with self._lock:
            self._held.append(copy)
            if self._shut:
                self._cut(copy)
        return sock

    def shut(self) -> None:
        with self._lock:
            self._shut = True
            for sock in self._held:
                self._cut(sock)

    def close(self) -> None:
        with self._lock:
            for sock in self._held:
                sock.close()
            self._held.clear()

    @staticmethod
    def _cut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _opener(sockets: _Sockets) -> urllib.request.OpenerDirector:
    """urllib (so HTTP(S)_PROXY and NO_PROXY still apply) that registers every socket it opens
    and follows no redirect: the client decides which to follow."""

    def watched(base: type[http.client.HTTPConnection]) -> type[http.client.HTTPConnection]:
        class Watched(base):  # type: ignore[valid-type,misc]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                connect: Callable[..., socket.socket] = self._create_connection  # type: ignore[has-type]
                self._create_connection = lambda *a, **k: sockets.add(connect(*a, **k))

        return Watched

    class Http(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(watched(http.client.HTTPConnection), req)

    class Https(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(
                watched(http.client.HTTPSConnection),
                req,
                context=self._context,  # type: ignore[attr-defined]
            )

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def http_error_302(self, req: Any, fp: Any, code: int, msg: str, headers: Any) -> None:
            return None  # the 3xx goes on as an HTTPError

        http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    return urllib.request.build_opener(Http, Https, NoRedirect)


class Client:
    """Instant queries against one Prometheus, each bounded in time (TIMEOUT, from the
    connection to the last byte) and in size (MAX_ANSWER). Credentials go to the configured
    origin only: a redirect elsewhere is not followed. Every text from the answer is shown with
    the credentials masked, control characters escaped and its length capped."""

    def __init__(
        self, address: str, *, timeout: float | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        self.address = address.rstrip("/")
        env = os.environ if env is None else env
        self.timeout = _timeout(env) if timeout is None else timeout
        self._auth = credentials(env)
        self._secrets = redact.credentials(env)
        if self._auth is not None:
            self._secrets |= {self._auth, self._auth.split(" ", 1)[1]}
        self._where = f"Prometheus at {self.address}"

    def query(self, promql: str) -> Result:
        """Evaluate `promql` now. Raises PrometheusError when there is no answer at all."""
        answer = self.query_all({"": promql})[""]
        if isinstance(answer, PrometheusError):
            raise answer
        return answer

    def query_all(self, queries: Mapping[str, str]) -> dict[str, Result | PrometheusError]:
        """Every query at once, each on a thread of its own; all are answered (or given up)
        within TIMEOUT and a second. This thread only waits, so Ctrl-C and SIGTERM stop it."""
        jobs = []
        for key, promql in queries.items():
            sockets, box = _Sockets(), list[Result | PrometheusError]()
            thread = threading.Thread(
                target=self._work, args=(promql, sockets, box), daemon=True,
                name="mlserve-prometheus",
            )  # fmt: skip
            thread.start()
            jobs.append((key, thread, sockets, box))
        deadline = time.monotonic() + self.timeout
        for _, thread, _, _ in jobs:
            thread.join(max(0.0, deadline - time.monotonic()))
        late = {key for key, thread, _, _ in jobs if thread.is_alive()}
        for key, _, sockets, _ in jobs:
            if key in late:
                sockets.shut()  # the worker's blocked call returns at once
        for key, thread, _, _ in jobs:
            if key in late:
                thread.join(1.0)  # a name lookup cannot be cut off: it is left behind
        slow = PrometheusError(f"{self._where} did not answer within {self.timeout:g}s")
        return {key: box[0] if box and key not in late else slow for key, _, _, box in jobs}

    def _work(self, promql: str, sockets: _Sockets, box: list[Result | PrometheusError]) -> None:
        try:
            box.append(self._ask(promql, sockets))
        except PrometheusError as e:
            box.append(e)
        except Exception as e:  # a bug here must not end a rollout halfway: inconclusive
            box.append(self._error(f"answered in a way mlserve cannot read ({type(e).__name__})"))
        finally:
            sockets.close()

    def _error(self, what: str, rejected: bool = False) -> PrometheusError:
        return PrometheusError(f"{self._where} {what}", rejected)

    def _text(self, text: object) -> str:
        """A text from the answer, as mlserve may print and record it."""
        return redact.untrusted(str(text), self._secrets, _TEXT)

    def _ask(self, promql: str, sockets: _Sockets) -> Result:
        url = f"{self.address}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        opener = _opener(sockets)
        for _ in range(MAX_REDIRECTS + 1):
            status, reason, location, body = self._get(opener, url)
            if status not in _REDIRECTS:
                break
            url = self._redirect(url, location)
        else:
            raise self._error(f"redirected the query more than {MAX_REDIRECTS} times")
        if status == 200:
            return self._answer(body)
        raise self._status(status, reason, body)

    def _get(
        self, opener: urllib.request.OpenerDirector, url: str
    ) -> tuple[int, str, str | None, bytes]:
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        if self._auth:
            request.add_header("Authorization", self._auth)
        try:
            try:
                response: Any = opener.open(request, timeout=self.timeout)
            except urllib.error.HTTPError as e:
                response = e  # any other status than 2xx: its body says why
            with response:
                location = response.headers.get("Location") if response.headers else None
                return response.status, str(response.reason), location, self._read(response)
        except urllib.error.URLError as e:  # connecting failed
            raise self._error(f"is unreachable: {self._text(e.reason)}") from None
        except http.client.RemoteDisconnected:
            raise self._error("closed the connection without an answer") from None
        except TimeoutError:
            raise self._error(f"did not answer within {self.timeout:g}s") from None
        except (OSError, http.client.IncompleteRead) as e:
            raise self._error(f"broke off its answer ({type(e).__name__})") from None
        except (http.client.HTTPException, ValueError) as e:
            # a malformed status line, header or chunk size; a host name IDNA cannot encode
            # (UnicodeError is a ValueError)
            what = f"answered with something that is not HTTP ({type(e).__name__})"
            raise self._error(what) from None

    def _read(self, response: Any) -> bytes:
        """The body, refused past MAX_ANSWER bytes without reading the rest."""
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > MAX_ANSWER:
            raise self._too_big()
        body = bytearray()
        while chunk := response.read(min(65536, MAX_ANSWER + 1 - len(body))):
            body += chunk
            if len(body) > MAX_ANSWER:
                raise self._too_big()
        return bytes(body)

    def _too_big(self) -> PrometheusError:
        return self._error(
            f"answered with more than {MAX_ANSWER >> 20} MiB: a query must return one number "
            "(aggregate it, e.g. with sum)"
        )

    def _redirect(self, url: str, location: str | None) -> str:
        """The URL a redirect leads to, if it stays in the configured origin."""
        if not location:
            raise self._error("answered with a redirect that names no Location")
        try:
            target = urllib.parse.urljoin(url, location)
            same = _origin(target) == _origin(self.address)
        except ValueError:
            same = False
        if not same:
            raise self._error(
                f"redirected the query to {self._text(location)}: not followed, as it leaves "
                f"{self.address} (credentials go there only); if Prometheus lives there, set "
                "rollout.analysis.prometheus.address to it"
            )
        return target

    def _status(self, status: int, reason: str, body: bytes) -> PrometheusError:
        if status in (401, 403):
            return self._error(
                f"refused the credentials (HTTP {status}): set {TOKEN_ENV}, or "
                f"{USER_ENV} and {PASSWORD_ENV}"
            )
        detail = self._text(reason)
        with contextlib.suppress(ValueError, RecursionError):
            document = json.loads(body)
            if isinstance(document, dict) and "error" in document:
                detail = self._text(f"{document.get('errorType', '')}: {document['error']}")
        # 400: the query does not parse; 422: it cannot be executed (the API page, "Format
        # overview"). Both are the query's fault; 503 and others are the server's.
        rejected = status in (400, 422)
        what = "rejected the query" if rejected else "failed"
        return self._error(f"{what} (HTTP {status}): {detail}", rejected)

    def _answer(self, body: bytes) -> Result:
        try:
            document = json.loads(body)
        except RecursionError:
            raise self._not_api("JSON nested too deep") from None
        except ValueError:
            raise self._not_api("not JSON") from None
        data = document.get("data") if isinstance(document, dict) else None
        if not isinstance(data, dict):
            raise self._not_api("no data object")
        kind, result = data.get("resultType"), data.get("result")
        if kind in ("matrix", "string"):
            what = "a range vector" if kind == "matrix" else "a string"
            raise self._error(
                f"answered the query with {what} (resultType {kind}): a query must return one "
                "number, a scalar or an instant vector of one series (e.g. sum(rate(x[1m])))",
                rejected=True,
            )
        if kind == "scalar":
            return self._sample(result)
        if kind != "vector" or not isinstance(result, list):
            raise self._not_api("no scalar or vector result")
        if not result:
            return Result(None, datetime.now(UTC), "no data")
        if len(result) > 1:
            return Result(
                None,
                datetime.now(UTC),
                f"{len(result)} series; the query must return one (aggregate it, e.g. with sum)",
            )
        if not isinstance(result[0], dict):
            raise self._not_api("a series that is not an object")
        return self._sample(result[0].get("value"))

    def _sample(self, pair: Any) -> Result:
        """`[<unix time>, "<value>"]`; Prometheus writes "NaN", "+Inf" and "-Inf" as strings."""
        if not isinstance(pair, list) or len(pair) != 2:
            raise self._not_api("a sample that is not [time, value]")
        at, text = pair
        if isinstance(at, bool) or not isinstance(at, int | float):
            raise self._not_api("a sample time that is not a number")
        try:
            unix = float(at)
        except OverflowError:
            unix = math.inf
        if not 0 <= unix < _LATEST:
            raise self._not_api("a sample time out of range")
        if not isinstance(text, str) or not _VALUE.fullmatch(text):
            raise self._not_api("a sample value that is not a number as Prometheus writes one")
        value = float(text)
        if math.isinf(value) and not text.endswith("Inf"):
            raise self._not_api("a sample value beyond the range of a 64-bit float")
        moment = datetime.fromtimestamp(unix, UTC)
        if math.isnan(value):
            return Result(None, moment, "NaN")
        return Result(value, moment)

    def _not_api(self, why: str) -> PrometheusError:
        return self._error(f"answered with something that is not its API ({why})")
