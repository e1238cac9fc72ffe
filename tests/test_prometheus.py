"""mlserve.prometheus against a REAL Prometheus server (tests/prometheus_fixture.py)."""

from __future__ import annotations

import base64

import pytest

from mlserve.errors import UsageError
from mlserve.prometheus import (
    Client,
    PrometheusError,
    check_query,
    credentials,
    regex_placeholders,
    render_query,
)
from tests import prometheus_fixture
from tests.prometheus_fixture import AUTH, PASSWORD, Prometheus


@pytest.fixture(scope="module")
def client(prometheus: Prometheus) -> Client:
    prometheus.metrics.set("prom-client", "v2", requests=10, errors=1)
    prometheus.metrics.set("prom-client", "v3", requests=10, errors=1)
    prometheus.wait_for('rate(http_requests_total{service="prom-client"}[5s])')
    return Client(prometheus.url, env=AUTH)


def test_a_scalar_and_a_vector_of_one_series_are_values(client: Client) -> None:
    assert client.query("scalar(vector(0.25))").value == 0.25
    ratio = client.query(
        'sum(rate(http_requests_total{service="prom-client", version="v2", code="500"}[5s]))'
        ' / sum(rate(http_requests_total{service="prom-client", version="v2"}[5s]))'
    )
    assert ratio.value is not None and 0.05 < ratio.value < 0.15  # 1 error in 10 requests


def test_an_empty_result_nan_and_several_series_are_inconclusive(client: Client) -> None:
    empty = client.query('http_requests_total{service="no-such-service"}')
    nan = client.query("vector(0) / vector(0)")
    several = client.query('sum by (version) (http_requests_total{service="prom-client"})')
    assert (empty.value, empty.note) == (None, "no data")
    assert (nan.value, nan.note) == (None, "NaN")
    assert (several.value, several.note) == (
        None,
        "2 series; the query must return one (aggregate it, e.g. with sum)",
    )


def test_infinity_is_a_value(client: Client) -> None:
    assert client.query("vector(1) / vector(0)").value == float("inf")


def test_a_query_prometheus_cannot_parse_is_rejected_with_its_reason(client: Client) -> None:
    with pytest.raises(PrometheusError) as e:
        client.query("sum(rate(x[1m])")
    assert e.value.rejected
    assert str(e.value) == (
        f"Prometheus at {client.address} rejected the query (HTTP 400): bad_data: invalid "
        'parameter "query": 1:16: parse error: unclosed left parenthesis'
    )


def test_an_unreachable_prometheus_says_so() -> None:
    address = f"http://127.0.0.1:{prometheus_fixture.free_port()}"
    with pytest.raises(PrometheusError) as e:
        Client(address, env={}).query("1")
    assert not e.value.rejected
    assert str(e.value) == f"Prometheus at {address} is unreachable: [Errno 111] Connection refused"


def test_wrong_credentials_are_refused_and_never_shown(prometheus: Prometheus) -> None:
    wrong = {**AUTH, "MLSERVE_PROMETHEUS_PASSWORD": "not-it"}
    for env in ({}, wrong):
        with pytest.raises(PrometheusError) as e:
            Client(prometheus.url, env=env).query("1")
        assert str(e.value) == (
            f"Prometheus at {prometheus.url} refused the credentials (HTTP 401): set "
            "MLSERVE_PROMETHEUS_TOKEN, or MLSERVE_PROMETHEUS_USER and MLSERVE_PROMETHEUS_PASSWORD"
        )
        assert PASSWORD not in str(e.value) and "not-it" not in str(e.value)


def test_credentials_come_from_the_environment() -> None:
    basic = base64.b64encode(b"u:p").decode()
    assert credentials({}) is None
    assert credentials({"MLSERVE_PROMETHEUS_TOKEN": "t0k"}) == "Bearer t0k"
    user_password = {"MLSERVE_PROMETHEUS_USER": "u", "MLSERVE_PROMETHEUS_PASSWORD": "p"}
    assert credentials(user_password) == f"Basic {basic}"
    with pytest.raises(UsageError) as half:
        credentials({"MLSERVE_PROMETHEUS_USER": "u"})
    assert str(half.value) == (
        "MLSERVE_PROMETHEUS_USER and MLSERVE_PROMETHEUS_PASSWORD go together: set both"
    )
    with pytest.raises(UsageError) as both:
        credentials({"MLSERVE_PROMETHEUS_TOKEN": "t", **user_password})
    assert str(both.value) == (
        "set MLSERVE_PROMETHEUS_TOKEN or MLSERVE_PROMETHEUS_USER and MLSERVE_PROMETHEUS_PASSWORD, "
        "not both"
    )


def test_placeholders_are_replaced_with_or_without_spaces() -> None:
    values = {"name": "fraud", "namespace": "ml", "stable": "v1", "canary": "1.10"}
    assert render_query('x{service="{{name}}", version="{{ canary }}"}', values) == (
        'x{service="fraud", version="1.10"}'
    )


# Queries the offline check rejects, each with what it says. Prometheus must reject every one
# of them too (below): the check may miss a bad query, but never refuses a good one.
REJECTED_OFFLINE = {
    "sum(rate(x[1m])": "query line 1, column 4: '(' is not closed",
    "sum(x))": "query line 1, column 7: ')' closes nothing",
    "sum(x[1m)]": "query line 1, column 9: ')' does not match the '[' at line 1, column 6",
    'x{a="b}': 'query line 1, column 5: the string opened with " is not closed',
    "up; up": "query line 1, column 3: ';' is not PromQL; a query is one expression",
    "# only a comment": "the query is empty (only comments or spaces)",
}
# Good queries: brackets in strings, regexes and comments do not count.
ACCEPTED = [
    'sum(rate(http_requests_total{code=~"5.."}[1m])) / sum(rate(http_requests_total[1m]))',
    'count(http_requests_total{code=~"(4|5).{2}"})',
    'sum(http_requests_total{version="a(b"})  # a ( in a comment',
    "histogram_quantile(0.95, sum by (le) (rate(request_seconds_bucket[1m])))",
    "sum(rate(http_requests_total{code='500'}[1m]))\nor\nvector(0)",
    'label_replace(vector(1), "a", "`", "", "")',
    "sum(rate(http_requests_total{code=`5\\d\\d`}[1m]))",
]
# Bad queries the offline check cannot see: only Prometheus can (dry run, check before step 1).
ONLY_PROMETHEUS_SEES = ["up up", "rate(up)", "sum(up) by", "nosuchfunction(up)"]


@pytest.mark.parametrize("query", list(REJECTED_OFFLINE))
def test_a_query_the_offline_check_rejects_prometheus_rejects_too(
    client: Client, query: str
) -> None:
    assert check_query(query) == [REJECTED_OFFLINE[query]]
    if query.startswith("#"):
        with pytest.raises(PrometheusError, match="bad_data") as e:
            client.query(query)
    else:
        with pytest.raises(PrometheusError, match="parse error") as e:
            client.query(query)
    assert e.value.rejected


@pytest.mark.parametrize("query", ACCEPTED)
def test_a_query_prometheus_accepts_passes_the_offline_check(client: Client, query: str) -> None:
    client.query(query)  # raises if Prometheus rejects it
    assert check_query(query) == []


@pytest.mark.parametrize("query", ONLY_PROMETHEUS_SEES)
def test_what_the_offline_check_leaves_to_prometheus(client: Client, query: str) -> None:
    assert check_query(query) == []
    with pytest.raises(PrometheusError) as e:
        client.query(query)
    assert e.value.rejected


def test_unknown_placeholders_are_named() -> None:
    assert check_query('x{version="{{version}}", ns="{{ namespace }}"}') == [
        "unknown placeholder {{version}}: use {{name}}, {{namespace}}, {{stable}} or {{canary}} "
        "({{stable_re}} or {{canary_re}} in a regular expression)"
    ]


# --- issue 20: what a query returns, and version names in regular expressions -------------------


def test_a_range_vector_or_a_string_is_rejected_as_the_querys_fault(client: Client) -> None:
    """Item 15: the real Prometheus answers `x[1m]` with a matrix and `"x"` with a string."""
    for query, what in (
        ('http_requests_total{service="prom-client"}[1m]', "a range vector (resultType matrix)"),
        ('"some text"', "a string (resultType string)"),
    ):
        with pytest.raises(PrometheusError) as e:
            client.query(query)
        assert e.value.rejected
        assert str(e.value).startswith(
            f"Prometheus at {client.address} answered the query with {what}: "
        )


def test_the_escaped_placeholder_matches_a_version_with_a_dot_and_nothing_else(
    prometheus: Prometheus, client: Client
) -> None:
    """Item 15: in `version=~"{{canary}}"` the dot of 1.10 matches any character, so 1-10's
    series counted too; {{canary_re}} writes it `1[.]10`, which needs no backslash in any
    kind of PromQL string."""
    prometheus.metrics.set("prom-re", "1.10", requests=10)
    prometheus.metrics.set("prom-re", "1-10", requests=30)
    prometheus.wait_for('rate(http_requests_total{service="prom-re", version="1-10"}[5s])')
    prometheus.wait_for('rate(http_requests_total{service="prom-re", version="1.10"}[5s])')
    values = {"name": "prom-re", "namespace": "ml", "stable": "v1", "canary": "1.10"}
    count = 'count(http_requests_total{service="{{name}}", version=~"%s"})'
    plain = client.query(render_query(count % "{{canary}}", values))
    escaped = client.query(render_query(count % "{{canary_re}}", values))
    backquoted = client.query(render_query(count.replace('"%s"', "`%s`") % "{{canary_re}}", values))
    assert (plain.value, escaped.value, backquoted.value) == (4, 2, 2)  # 2 codes per version
    assert regex_placeholders(count % "{{canary}}") == ["{{canary}}"]
    assert regex_placeholders(count % "{{canary_re}}") == []
    assert regex_placeholders('x{version="{{canary}}"}') == []


def test_braces_that_belong_to_no_placeholder_are_named() -> None:
    assert check_query('x{version="{{canary}"}') == [
        "query line 1, column 12: '{{' is not part of a placeholder: use {{name}}, "
        "{{namespace}}, {{stable}} or {{canary}} ({{stable_re}} or {{canary_re}} in a regular "
        "expression)"
    ]
    assert check_query('x{version="{{{canary}}}"}') == [
        "query line 1, column 13: {{canary}} stands inside more braces; write it with two on "
        "each side"
    ]
    assert check_query('x{version="canary}}"}') == [
        "query line 1, column 18: '}}' is not part of a placeholder: use {{name}}, "
        "{{namespace}}, {{stable}} or {{canary}} ({{stable_re}} or {{canary_re}} in a regular "
        "expression)"
    ]
