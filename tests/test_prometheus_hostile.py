"""mlserve.prometheus against a hostile server posing as Prometheus (tests/hostile_server.py,
127.0.0.1 only): odd answers, slow ones, huge ones, redirects, echoed credentials and control
characters (issue 20 items 2, 3, 6, 7, 8, 9 and 15). Every answer ends as a value, an
inconclusive result or a PrometheusError with a clear message; nothing else escapes."""

from __future__ import annotations

import base64
import json
import math
import time
import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlserve.errors import UsageError
from mlserve.prometheus import MAX_ANSWER, Client, PrometheusError, Result, credentials
from tests import hostile_server as hs
from tests.hostile_server import Conn, Server
from tests.probe_servers import Pki, make_pki

TOKEN = "tok-0123456789abcdef"
BEARER = {"MLSERVE_PROMETHEUS_TOKEN": TOKEN}
USER, PASSWORD = "mlserve", "pw-0123456789"
BASIC = {"MLSERVE_PROMETHEUS_USER": USER, "MLSERVE_PROMETHEUS_PASSWORD": PASSWORD}
PROMETHEUS_RESULT = {"status": "success", "data": {"resultType": "scalar", "result": []}}


@pytest.fixture
def server() -> Iterator[Server]:
    with hs.serve() as s:
        yield s


def ask(server: Server, env: dict[str, str] | None = None, timeout: float = 5) -> Result:
    return Client(server.url, env=BEARER if env is None else env, timeout=timeout).query("up")


def refused(server: Server, env: dict[str, str] | None = None, timeout: float = 5) -> str:
    """The message of the PrometheusError the query ends with, without the address."""
    with pytest.raises(PrometheusError) as e:
        ask(server, env, timeout)
    message = str(e.value)
    prefix = f"Prometheus at {server.url} "
    assert message.startswith(prefix)
    return message.removeprefix(prefix)


def scalar_with(raw_pair: str) -> hs.Answer:
    body = '{"status":"success","data":{"resultType":"scalar","result":' + raw_pair + "}}"
    return lambda conn: conn.respond(body)


NOT_API = "answered with something that is not its API"
# Item 2: each of these ended a rollout mid-step with exit 1 (OverflowError, RecursionError,
# ValueError, UnicodeError); now each is a PrometheusError (inconclusive, exit 6 in a dry run).
ODD_ANSWERS: dict[str, tuple[hs.Answer, str]] = {
    "time 1e20": (hs.json_body(hs.vector(at=1e20)), f"{NOT_API} (a sample time out of range)"),
    "time +Inf": (
        hs.json_body(hs.vector(at="+Inf")),
        f"{NOT_API} (a sample time that is not a number)",
    ),
    "time of 400 digits": (
        scalar_with(f'[{"1" * 400}, "1"]'),
        f"{NOT_API} (a sample time out of range)",
    ),
    "time of 5000 digits": (scalar_with(f'[{"1" * 5000}, "1"]'), f"{NOT_API} (not JSON)"),
    "time negative": (hs.json_body(hs.vector(at=-1)), f"{NOT_API} (a sample time out of range)"),
    "value of 400 digits": (
        hs.json_body(hs.vector("1" * 400)),
        f"{NOT_API} (a sample value beyond the range of a 64-bit float)",
    ),
    "value true": (
        hs.json_body(hs.vector(True)),  # type: ignore[arg-type]
        f"{NOT_API} (a sample value that is not a number as Prometheus writes one)",
    ),
    "value 1_000": (
        hs.json_body(hs.vector("1_000")),
        f"{NOT_API} (a sample value that is not a number as Prometheus writes one)",
    ),
    "value in Arabic-Indic digits": (
        hs.json_body(hs.vector("\u0663")),
        f"{NOT_API} (a sample value that is not a number as Prometheus writes one)",
    ),
    "value as a JSON number": (
        hs.json_body(hs.vector(0.5)),  # type: ignore[arg-type]
        f"{NOT_API} (a sample value that is not a number as Prometheus writes one)",
    ),
    "100,000 nested arrays": (
        lambda conn: conn.respond(b"[" * 100_000 + b"]" * 100_000),
        f"{NOT_API} (JSON nested too deep)",
    ),
    "HTML": (lambda conn: conn.respond(b"<html>login</html>"), f"{NOT_API} (not JSON)"),
    "a JSON list": (hs.json_body([1, 2]), f"{NOT_API} (no data object)"),
    "no resultType": (
        hs.json_body({"data": {"result": []}}),
        f"{NOT_API} (no scalar or vector result)",
    ),
    "a vector that is an object": (
        hs.json_body({"data": {"resultType": "vector", "result": {}}}),
        f"{NOT_API} (no scalar or vector result)",
    ),
    "a series that is a number": (
        hs.json_body({"data": {"resultType": "vector", "result": [7]}}),
        f"{NOT_API} (a series that is not an object)",
    ),
    "a sample of one": (scalar_with("[1]"), f"{NOT_API} (a sample that is not [time, value])"),
    "a status line that is not HTTP": (
        hs.raw(b"HELLO\r\n\r\n"),
        "answered with something that is not HTTP (BadStatusLine)",
    ),
    "a chunk size that is not hexadecimal": (
        hs.raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
        "broke off its answer (IncompleteRead)",
    ),
    "a header line of 70,000 bytes": (
        hs.raw(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000 + b"\r\n\r\n"),
        "answered with something that is not HTTP (LineTooLong)",
    ),
    "a closed connection": (lambda conn: None, "closed the connection without an answer"),
    "a redirect to http://[::1": (
        hs.redirect("http://[::1"),
        "redirected the query to http://[::1: not followed",
    ),
    "a redirect to a host label of 64 characters": (
        hs.redirect(f"http://{'a' * 64}.example:9090/"),
        f"redirected the query to http://{'a' * 64}.example:9090/: not followed",
    ),
    "a redirect to ftp://": (
        hs.redirect("ftp://127.0.0.1/api/v1/query"),
        "redirected the query to ftp://127.0.0.1/api/v1/query: not followed",
    ),
    "a redirect without a Location": (
        lambda conn: conn.respond(b"", status="302 Found"),
        "answered with a redirect that names no Location",
    ),
}


@pytest.mark.parametrize("case", list(ODD_ANSWERS))
def test_an_odd_answer_is_a_clear_prometheus_error(server: Server, case: str) -> None:
    server.answer, expected = ODD_ANSWERS[case]
    assert refused(server).startswith(expected)


def test_several_series_are_inconclusive_whatever_their_times(server: Server) -> None:
    """The time used to be read first, so `+Inf` there ended the rollout (OverflowError)."""
    series = [{"metric": {}, "value": ["+Inf", "1"]}, {"metric": {}, "value": [1e20, "2"]}]
    server.answer = hs.json_body({"status": "success", "data": {"resultType": "vector",
                                                                "result": series}})  # fmt: skip
    result = ask(server)
    assert (result.value, result.note) == (
        None,
        "2 series; the query must return one (aggregate it, e.g. with sum)",
    )


@pytest.mark.parametrize(("kind", "what"), [("matrix", "a range vector"), ("string", "a string")])
def test_a_range_vector_or_a_string_is_the_querys_fault(
    server: Server, kind: str, what: str
) -> None:
    """Item 15: blamed on the query (`rejected`: exit 2 before a rollout), not on Prometheus."""
    server.answer = hs.json_body({"status": "success", "data": {"resultType": kind, "result": []}})
    with pytest.raises(PrometheusError) as e:
        ask(server)
    assert e.value.rejected
    assert str(e.value) == (
        f"Prometheus at {server.url} answered the query with {what} (resultType {kind}): a "
        "query must return one number, a scalar or an instant vector of one series "
        "(e.g. sum(rate(x[1m])))"
    )


def test_infinity_nan_and_exponents_are_values_as_prometheus_writes_them(server: Server) -> None:
    for text, value in (("+Inf", math.inf), ("-Inf", -math.inf), ("1e-05", 1e-05), ("-0.5", -0.5)):
        server.answer = hs.json_body(hs.vector(text))
        assert ask(server).value == value
    server.answer = hs.json_body(hs.vector("NaN"))
    assert (ask(server).value, ask(server).note) == (None, "NaN")


# --- item 3: bounded in time and size ---------------------------------------------------------


@pytest.mark.parametrize("answer", ["drip", "silent"])
def test_a_query_is_bounded_in_total_time(server: Server, answer: str) -> None:
    """A body dripped a byte a second (each read within the socket's timeout) or no answer at
    all: the query gives up after its timeout, connection, headers and body together."""
    server.answer = hs.drip(every=0.3) if answer == "drip" else hs.silent()
    start = time.monotonic()
    assert refused(server, timeout=1.5) == "did not answer within 1.5s"
    assert time.monotonic() - start < 3


def test_twenty_queries_that_never_answer_take_one_timeout_not_twenty(server: Server) -> None:
    server.answer = hs.silent()
    client = Client(server.url, env={}, timeout=1.5)
    start = time.monotonic()
    answers = client.query_all({f"m{i}": f"vector({i})" for i in range(20)})
    assert time.monotonic() - start < 3.5
    assert {str(a) for a in answers.values()} == {
        f"Prometheus at {server.url} did not answer within 1.5s"
    }


def test_the_timeout_comes_from_the_environment(server: Server) -> None:
    server.answer = hs.silent()
    client = Client(server.url, env={"MLSERVE_PROMETHEUS_TIMEOUT": "0.5"})
    assert client.timeout == 0.5
    with pytest.raises(UsageError) as e:
        Client(server.url, env={"MLSERVE_PROMETHEUS_TIMEOUT": "soon"})
    assert str(e.value) == (
        "MLSERVE_PROMETHEUS_TIMEOUT is the seconds a query may take, more than 0 and at most "
        "600; not 'soon'"
    )


@pytest.mark.parametrize("how", ["chunked", "content-length"])
def test_an_answer_is_bounded_in_size(server: Server, how: str) -> None:
    """An endless body is cut after 1 MiB; a Content-Length past it is refused unread."""
    if how == "chunked":
        server.answer = hs.endless()
    else:
        server.answer = lambda conn: conn.respond(b"[", length=MAX_ANSWER + 1)
    assert refused(server) == (
        "answered with more than 1 MiB: a query must return one number (aggregate it, e.g. "
        "with sum)"
    )


# --- item 6: credentials go to the configured origin only --------------------------------------


@pytest.mark.parametrize("env", [BEARER, BASIC], ids=["token", "basic"])
def test_a_redirect_to_another_origin_is_not_followed(server: Server, env: dict[str, str]) -> None:
    with hs.serve(hs.good()) as elsewhere:
        server.answer = hs.redirect(f"{elsewhere.url}/api/v1/query?query=up")
        assert refused(server, env) == (
            f"redirected the query to {elsewhere.url}/api/v1/query?query=up: not followed, as "
            f"it leaves {server.url} (credentials go there only); if Prometheus lives there, "
            "set rollout.analysis.prometheus.address to it"
        )
        assert elsewhere.requests == []  # neither the credentials nor the query went there


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_https_never_follows_a_redirect_to_plain_http(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))
    with hs.serve(hs.good(), pki=pki) as secure, hs.serve(hs.good()) as plain:
        assert ask(secure).value == 0.001  # the CA is trusted: HTTPS works
        assert secure.requests[-1].headers["authorization"] == f"Bearer {TOKEN}"
        secure.answer = hs.redirect(f"http://127.0.0.1:{secure.port}/api/v1/query?query=up")
        assert refused(secure).startswith(
            f"redirected the query to http://127.0.0.1:{secure.port}/api/v1/query?query=up: "
            "not followed"
        )
        secure.answer = hs.redirect(f"{plain.url}/api/v1/query")
        assert refused(secure).startswith(f"redirected the query to {plain.url}/api/v1/query")
        assert plain.requests == []


def test_a_redirect_within_the_origin_is_followed_with_the_credentials(server: Server) -> None:
    """A Prometheus behind a path prefix (its --web.route-prefix) may redirect within itself."""
    server.answer = hs.sequence(hs.redirect("/prom/api/v1/query?query=up"), hs.good("0.25"))
    assert ask(server).value == 0.25
    assert [r.path for r in server.requests] == [
        "/api/v1/query?query=up",
        "/prom/api/v1/query?query=up",
    ]
    assert {r.headers["authorization"] for r in server.requests} == {f"Bearer {TOKEN}"}


def test_redirects_within_the_origin_stop_after_three(server: Server) -> None:
    server.answer = hs.redirect("/api/v1/query?query=up")
    assert refused(server) == "redirected the query more than 3 times"
    assert len(server.requests) == 4


# --- item 7: a credential no header can carry ----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "flaw"),
    [
        ("MLSERVE_PROMETHEUS_TOKEN", "tok-secret-1\n", "a line break at its end"),
        ("MLSERVE_PROMETHEUS_TOKEN", "tok-secret-1\r\n", "a line break at its end"),
        ("MLSERVE_PROMETHEUS_TOKEN", "tok\x1bsecret", "a control character"),
        ("MLSERVE_PROMETHEUS_TOKEN", "tok secret", "a space or a character beyond ASCII"),
        ("MLSERVE_PROMETHEUS_TOKEN", "tok-s\u00e9cret", "a space or a character beyond ASCII"),
        ("MLSERVE_PROMETHEUS_TOKEN", "tok-\u20ac-secret", "a space or a character beyond ASCII"),
        ("MLSERVE_PROMETHEUS_PASSWORD", "pw-secret\n", "a line break at its end"),
        ("MLSERVE_PROMETHEUS_USER", "me:secret", "a ':'"),
    ],
)
def test_a_credential_no_header_can_carry_is_a_usage_error_naming_the_variable(
    name: str, value: str, flaw: str
) -> None:
    env = {**BASIC, name: value} if "TOKEN" not in name else {name: value}
    with pytest.raises(UsageError) as e:
        credentials(env)
    assert str(e.value) == (
        f"{name} holds {flaw}, which an Authorization header cannot carry; set it to the "
        "credential alone (its value is not shown here)"
    )
    assert "secret" not in str(e.value)


def test_a_non_ascii_password_is_sent_as_utf_8() -> None:
    """Basic credentials are base64 of UTF-8 (RFC 7617): any character but a control one."""
    header = credentials(
        {"MLSERVE_PROMETHEUS_USER": "me", "MLSERVE_PROMETHEUS_PASSWORD": "pässwörd"}
    )
    assert header == "Basic " + base64.b64encode("me:pässwörd".encode()).decode()


# --- items 8 and 9: what the answer says is scrubbed, escaped and capped ------------------------


def echo_headers(status: str = "500 Internal Server Error") -> hs.Answer:
    """An error whose message repeats the request's Authorization header, as a badly
    configured proxy does."""

    def answer(conn: Conn) -> None:
        sent = conn.request.headers.get("authorization", "")
        plain = base64.b64decode(sent.split()[-1]).decode() if sent.startswith("Basic") else ""
        conn.respond(
            {"status": "error", "errorType": "internal", "error": f"got {sent} ({plain})"},
            status=status,
        )

    return answer


@pytest.mark.parametrize("env", [BEARER, BASIC], ids=["token", "basic"])
def test_an_answer_that_echoes_the_credentials_is_scrubbed(
    server: Server, env: dict[str, str]
) -> None:
    server.answer = echo_headers()
    message = refused(server, env)
    assert message.startswith("failed (HTTP 500): internal: got [secret] (")
    for secret in (TOKEN, PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()):
        assert secret not in message


def test_control_characters_are_escaped_and_long_texts_capped(server: Server) -> None:
    """Item 9: ESC sequences, BEL, CR and a line break with a fake `error:` after it; item 8:
    a 60 KB text is cut to a few hundred characters."""
    evil = "\x1b[2J\x1b[31mboom\x07\r\nerror: rollout completed, all good" + "x" * 60_000
    server.answer = lambda conn: conn.respond(
        {"status": "error", "errorType": "exec", "error": evil}, status="503 Unavailable"
    )
    message = refused(server)
    assert message.startswith(
        "failed (HTTP 503): exec: \\x1b[2J\\x1b[31mboom\\x07\\r\\nerror: rollout completed"
    )
    assert message.endswith("xxx...")
    assert len(message) < 250
    assert not any(unicodedata.category(c) == "Cc" for c in message)
    server.answer = lambda conn: conn.respond(
        b"", status="503 " + "\x1b]0;title\x07" + "y" * 60_000
    )
    message = refused(server)
    assert message.startswith("failed (HTTP 503): \\x1b]0;title\\x07yyy")
    assert len(message) < 250


def test_a_location_with_control_characters_is_escaped(server: Server) -> None:
    server.answer = hs.redirect("http://evil.example/\x1b[31m")
    assert refused(server).startswith(
        "redirected the query to http://evil.example/\\x1b[31m: not followed"
    )


# --- a bounded fuzz: whatever the body, a Result or a PrometheusError ---------------------------

KEYS = st.sampled_from(["status", "data", "resultType", "result", "value", "metric", "error",
                        "errorType", "warnings"])  # fmt: skip
ODD_TEXTS = ["NaN", "+Inf", "-Inf", "1e400", "0x10", "1_0", "\u0663", "vector", "scalar",
             "matrix", "string", "success", "error", ""]  # fmt: skip
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(ODD_TEXTS)
    | st.text(max_size=20)
)
DOCUMENTS = st.recursive(
    LEAVES,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(KEYS | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)
SAMPLES = st.lists(LEAVES, min_size=0, max_size=3)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Prometheus-shaped answers with anything where a time, a value or a type goes; any JSON;
    any bytes."""
    kind = draw(st.sampled_from(["shaped", "document", "bytes"]))
    if kind == "shaped":
        result_type = draw(st.sampled_from(["vector", "scalar", "matrix", "string"]) | LEAVES)
        sample = draw(SAMPLES)
        result = (
            [{"metric": draw(DOCUMENTS), "value": sample} for _ in range(draw(st.integers(0, 3)))]
            if result_type == "vector"
            else sample
        )
        document: Any = {"status": "success", "data": {"resultType": result_type,
                                                       "result": result}}  # fmt: skip
        return json.dumps(document).encode()
    if kind == "document":
        return json.dumps(draw(DOCUMENTS)).encode()
    return draw(st.binary(max_size=200))


STATUSES = st.sampled_from(["200 OK"] * 6 + ["400 Bad Request", "422 Unprocessable Entity",
                                             "500 Internal Server Error", "503 Unavailable",
                                             "401 Unauthorized", "302 Found"])  # fmt: skip


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[Server]:
    with hs.serve() as s:
        yield s


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies(), status=STATUSES, location=st.text(max_size=30))
def test_any_answer_is_a_result_or_a_prometheus_error(
    fuzz_server: Server, body: bytes, status: str, location: str
) -> None:
    headers = {"Location": location.encode("utf-8", "replace").decode("latin-1")}
    fuzz_server.answer = lambda conn: conn.respond(body, status=status, headers=headers)
    client = Client(fuzz_server.url, env=BEARER, timeout=5)
    try:
        result = client.query("up")
    except PrometheusError as e:
        message = str(e)
        assert message.startswith(f"Prometheus at {fuzz_server.url} ")
        assert "cannot read" not in message  # the worker's last resort: a bug if reached
        assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in message)
        assert len(message) < 800
        assert TOKEN not in message
    else:
        assert result.value is None or isinstance(result.value, float)
        assert result.value is None or not math.isnan(result.value)


def test_the_hostile_server_listens_on_loopback_only(server: Server) -> None:
    assert server.url.startswith("http://127.0.0.1:")
