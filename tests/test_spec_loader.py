"""The loader: YAML hazards, positions, messages, and the checks beyond the schema."""

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from mlserve.backends import base
from mlserve.errors import SpecError
from mlserve.spec import (
    MAX_BYTES,
    Gateway,
    Spec,
    Traffic,
    Version,
    _semantic_issues,
    format_path,
    load_spec,
    parse_path,
    recorded_spec_problems,
)

MINIMAL = """\
apiVersion: mlserve/v1
name: fraud
gateway:
  type: istio
  host: models.example.com
versions:
  - name: v1
    image: ghcr.io/acme/fraud:1.4.2
traffic:
  stable: v1
"""

NO_ANCHORS = "YAML anchors and aliases are not allowed; write the value out"

Problems = Callable[[str | bytes], list[str]]


@pytest.fixture
def problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Problems:
    """Write the text to spec.yaml and return the problem lines of loading it."""
    monkeypatch.chdir(tmp_path)

    def run(text: str | bytes) -> list[str]:
        path = tmp_path / "spec.yaml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        try:
            load_spec("spec.yaml")
        except SpecError as e:
            return [str(p) for p in e.problems]
        return []

    return run


@pytest.fixture(params=["libyaml", "pure-python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with libyaml's event parser and with PyYAML's pure-Python one."""
    if request.param == "pure-python":
        monkeypatch.setattr(yaml, "__with_libyaml__", False)
    elif not yaml.__with_libyaml__:
        pytest.skip("PyYAML was built without libyaml")
    return str(request.param)


def test_minimal_spec_loads_with_defaults(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(MINIMAL, encoding="utf-8")
    spec = load_spec(tmp_path / "s.yaml")
    assert spec.namespace == "default"
    assert spec.gateway.path == "/"
    assert spec.versions == (Version(name="v1", image="ghcr.io/acme/fraud:1.4.2"),)
    assert spec.traffic == Traffic(stable="v1")
    assert spec.source == str(tmp_path / "s.yaml")


def test_numeric_resource_quantities_keep_their_text_as_written(tmp_path: Path) -> None:
    resources = (
        "    resources:\n"
        "      requests: {cpu: 1.10, memory: 1Gi}\n"
        "      limits: {nvidia.com/gpu: 1, cpu: 2}\n"
    )
    (tmp_path / "s.yaml").write_text(MINIMAL.replace("traffic:", resources + "traffic:"))
    version = load_spec(tmp_path / "s.yaml").versions[0]
    assert dict(version.requests) == {"cpu": "1.10", "memory": "1Gi"}
    assert dict(version.limits) == {"nvidia.com/gpu": "1", "cpu": "2"}


def test_utf8_byte_order_mark_is_accepted(problems: Problems) -> None:
    assert problems(b"\xef\xbb\xbf" + MINIMAL.encode()) == []


# --- YAML hazards ------------------------------------------------------------------------------


def test_duplicate_key_names_both_lines(problems: Problems, parser: str) -> None:
    text = MINIMAL.replace(
        "  host: models.example.com\n", "  host: a.example.com\n  host: b.example.com\n"
    )
    assert problems(text) == ["spec.yaml:6:3: gateway.host: duplicate key 'host' (first on line 5)"]


def test_anchor_and_alias_are_refused(problems: Problems, parser: str) -> None:
    text = MINIMAL + "x: &img ghcr.io/a/b:1\ny: *img\n"
    assert problems(text) == [
        "spec.yaml:11:4: anchor '&img': " + NO_ANCHORS,
        "spec.yaml:12:4: alias '*img': " + NO_ANCHORS,
    ]


def test_merge_key_is_refused(problems: Problems, parser: str) -> None:
    text = MINIMAL.replace("  stable: v1\n", "  stable: v1\n  <<: {canary: v2}\n")
    assert problems(text) == [
        "spec.yaml:11:3: traffic: merge keys ('<<') are not allowed; write the keys out"
    ]


def test_explicit_tags_are_refused(problems: Problems, parser: str) -> None:
    text = MINIMAL.replace("type: istio", "type: !!str istio").replace(
        "stable: v1", "stable: !version v1"
    )
    assert problems(text) == [
        "spec.yaml:4:9: gateway.type: tag '!!str' is not allowed; quote the value",
        "spec.yaml:10:11: traffic.stable: tag '!version' is not allowed; quote the value",
    ]


def test_several_documents_are_refused(problems: Problems, parser: str) -> None:
    assert problems(MINIMAL + "---\n" + MINIMAL) == [
        "spec.yaml:11:1: a second YAML document; a spec file holds one document"
    ]


@pytest.mark.parametrize(
    ("text", "found"),
    [("- a\n- b\n", "a list"), ("just text\n", "a single value")],
)
def test_top_level_must_be_a_mapping(problems: Problems, text: str, found: str) -> None:
    assert problems(text) == [
        f"spec.yaml:1:1: the top level is {found}; expected a mapping that starts with "
        "apiVersion: mlserve/v1"
    ]


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n", "~\n"])
def test_empty_spec_is_refused(problems: Problems, text: str) -> None:
    [line] = problems(text)
    assert line.split(": ", 1)[1] == (
        "the spec is empty; expected a mapping that starts with apiVersion: mlserve/v1"
    )


def test_non_utf8_byte_names_its_line_and_column(problems: Problems) -> None:
    text = MINIMAL.encode().replace(b"name: fraud", b"name: fr\xe9ud")
    assert problems(text) == ["spec.yaml:2:9: the file is not UTF-8 (byte 0xe9); save it as UTF-8"]


def test_control_character_is_refused_with_its_position(problems: Problems, parser: str) -> None:
    [line] = problems(MINIMAL.replace("name: fraud", 'name: "fr\x01aud"'))
    assert line.startswith("spec.yaml:2:10: character U+0001 is not allowed in YAML")


def test_file_of_exactly_1_mib_is_read_and_one_byte_more_is_refused(problems: Problems) -> None:
    padded = MINIMAL + "#" * (MAX_BYTES - len(MINIMAL) - 1) + "\n"
    assert len(padded.encode()) == MAX_BYTES
    assert problems(padded) == []
    assert problems(padded + "\n") == [
        "spec.yaml: the file is 1048577 bytes; a spec must be at most 1 MiB"
    ]


def test_nesting_of_64_levels_is_allowed_and_65_is_refused(problems: Problems, parser: str) -> None:
    # the root mapping is level 1, so labels' value is level 2
    allowed = MINIMAL + "labels: " + "[" * 63 + "]" * 63 + "\n"
    refused = MINIMAL + "labels: " + "[" * 64 + "]" * 64 + "\n"
    assert "nesting" not in " ".join(problems(allowed))
    assert problems(refused) == ["spec.yaml:11:72: nesting deeper than 64 levels"]


@pytest.mark.parametrize(("opening", "closing"), [("[", "]"), ("{a: ", "}")])
def test_our_depth_limit_answers_before_the_parser_own(
    problems: Problems, parser: str, opening: str, closing: str
) -> None:
    """libyaml (bundled since PyYAML 6.0.4) refuses 1000 flow levels itself: ours comes first."""
    text = MINIMAL + "labels: " + opening * 100_000 + closing * 100_000 + "\n"
    column = len("labels: ") + 63 * len(opening) + 1  # the root is level 1
    assert problems(text) == [f"spec.yaml:11:{column}: nesting deeper than 64 levels"]


def test_deep_block_nesting_is_refused(problems: Problems, parser: str) -> None:
    text = "".join("  " * i + f"k{i}:\n" for i in range(80))
    assert problems(text) == ["spec.yaml:65:129: nesting deeper than 64 levels"]


def test_huge_integers_are_refused(problems: Problems, parser: str) -> None:
    text = MINIMAL.replace("stable: v1", "stable: v1\n  weight: 1234567890123456789")
    assert problems(text) == [
        "spec.yaml:11:11: traffic.weight: 1234567890123456789 is too large "
        "(integers have at most 18 digits)"
    ]


def test_very_long_integer_is_refused_without_converting_it(problems: Problems) -> None:
    [line] = problems(MINIMAL.replace("stable: v1", "stable: v1\n  weight: " + "9" * 100_000))
    assert line == (
        "spec.yaml:11:11: traffic.weight: 9999999999999999999999999999999999999... is too large "
        "(integers have at most 18 digits)"
    )


def test_dates_are_refused_and_say_to_quote(problems: Problems, parser: str) -> None:
    text = MINIMAL + "labels:\n  release: 2024-05-01\n  at: 2024-05-01 10:00:00\n"
    assert problems(text) == [
        'spec.yaml:12:12: labels.release: 2024-05-01 is a date; quote it ("2024-05-01")',
        "spec.yaml:13:7: labels.at: 2024-05-01 10:00:00 is a date; "
        'quote it ("2024-05-01 10:00:00")',
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("on", 'true is a boolean; quote it ("on")'),
        ("no", 'false is a boolean; quote it ("no")'),
        ("yes", 'true is a boolean; quote it ("yes")'),
        ("1.10", '1.1 is a number; quote it ("1.10")'),
        ("0755", '493 is a number; quote it ("0755")'),
        ("1:30", '90 is a number; quote it ("1:30")'),
        ("12", '12 is a number; quote it ("12")'),
        ("~", '~ is null; quote it ("~")'),
        ("null", 'null is null; quote it ("null")'),
    ],
)
def test_yaml_1_1_value_where_a_string_is_expected_says_to_quote_it(
    problems: Problems, value: str, message: str
) -> None:
    text = MINIMAL.replace(
        "    image: ghcr.io/acme/fraud:1.4.2\n",
        "    image: ghcr.io/a/b:1\n    env:\n      X: " + value + "\n",
    )
    assert problems(text) == [f"spec.yaml:10:10: versions[0].env.X: {message}"]


def test_empty_value_where_a_string_is_expected_is_a_missing_value(problems: Problems) -> None:
    text = MINIMAL.replace("    image: ghcr.io/acme/fraud:1.4.2\n", "    image:\n")
    assert problems(text) == [
        "spec.yaml:8:11: versions[0].image: missing value (expected a string)"
    ]


@pytest.mark.parametrize("key", ["on", "1", "null", "2024-01-01"])
def test_mapping_key_that_is_not_a_string_is_refused(problems: Problems, key: str) -> None:
    [line] = problems(MINIMAL + f"labels:\n  {key}: x\n")
    assert line.startswith(f"spec.yaml:12:3: labels: key {key} is a ")
    assert line.endswith(f'; quote it ("{key}")')


def test_collection_as_key_is_refused(problems: Problems, parser: str) -> None:
    assert problems(MINIMAL + "labels:\n  [a, b]: x\n") == [
        "spec.yaml:12:3: labels: a key must be a string, not a collection"
    ]


def test_syntax_error_points_at_the_problem(problems: Problems) -> None:
    text = MINIMAL.replace("  host: models.example.com", "   host: models.example.com")
    assert problems(text) == [
        "spec.yaml:5:8: invalid YAML: mapping values are not allowed in this context"
    ]


def test_hazards_are_all_reported_in_one_pass(problems: Problems) -> None:
    text = MINIMAL + "labels:\n  a: &x b\n  a: 2024-01-01\n  <<: *x\n"
    assert [line.split(": ", 1)[0] for line in problems(text)] == [
        "spec.yaml:12:6",  # anchor
        "spec.yaml:13:3",  # duplicate key
        "spec.yaml:13:6",  # date
        "spec.yaml:14:3",  # merge key
        "spec.yaml:14:7",  # alias
    ]


def test_missing_file_and_directory_are_problems_not_exceptions(tmp_path: Path) -> None:
    for path, shown, message in (
        (tmp_path / "nope.yaml", f"{tmp_path}/nope.yaml", "no such file"),
        (
            tmp_path,
            f"{tmp_path}/",
            f"is a directory, not a spec file (its spec files: {tmp_path}/*.yaml)",
        ),
    ):
        with pytest.raises(SpecError) as err:
            load_spec(path)
        assert [str(p) for p in err.value.problems] == [f"{shown}: {message}"]


def test_problems_are_capped_with_a_note(problems: Problems) -> None:
    text = MINIMAL + "labels:\n" + "".join(f"  k{i}: {i}\n" for i in range(150))
    lines = problems(text)
    assert len(lines) == 101
    assert lines[0].startswith("spec.yaml:12:3: labels: has 150 entries; at most 64 are allowed")
    assert lines[-1] == "spec.yaml:111:8: 51 more problems not shown"


# --- schema messages ---------------------------------------------------------------------------


def test_at_most_64_labels_and_the_message_says_why(problems: Problems) -> None:
    def labels(n: int) -> str:
        return MINIMAL + "labels:\n" + "".join(f"  k{i}: v\n" for i in range(n))

    assert problems(labels(64)) == []
    assert problems(labels(65)) == [
        "spec.yaml:12:3: labels: has 65 entries; at most 64 are allowed: every object mlserve "
        "creates carries all of them (a Deployment twice, on itself and on its pods)"
    ]


def test_a_stack_recorded_with_more_than_64_labels_is_not_damaged() -> None:
    """Labels were capped after stacks could record more; a record is read as it was written.
    Other problems in a record are still found."""
    record = yaml.safe_load(MINIMAL) | {"labels": {f"k{i}": "v" for i in range(100)}}
    assert recorded_spec_problems(record) == []
    record["labels"]["k0"] = "not a label value"
    assert [p.split(":")[0] for p in recorded_spec_problems(record)] == ["labels.k0"]


def test_unknown_key_points_at_the_key_and_suggests(problems: Problems) -> None:
    text = MINIMAL.replace("  host: models.example.com", "  host: models.example.com\n  pth: /x")
    assert problems(text) == ["spec.yaml:6:3: gateway: unknown key 'pth' (did you mean 'path'?)"]


def test_required_for_a_gateway_type_names_the_type(problems: Problems) -> None:
    text = MINIMAL.replace("  host: models.example.com\n", "")
    assert problems(text) == ["spec.yaml:3:1: gateway: 'host' is required for gateway type istio"]


def test_enum_suggests_the_close_value(problems: Problems) -> None:
    assert problems(MINIMAL.replace("type: istio", "type: Istio")) == [
        "spec.yaml:4:9: gateway.type: 'Istio' is not one of istio, gateway-api, ingress-nginx, "
        "kong, azure-apim, service (did you mean 'istio'?)"
    ]


def test_float_is_not_an_integer(problems: Problems) -> None:
    text = MINIMAL.replace("stable: v1", "stable: v1\n  weight: 10.0")
    assert problems(text) == ["spec.yaml:11:11: traffic.weight: 10.0 is not of type 'integer'"]


def test_yaml_1_1_only_spellings_of_booleans_and_integers_are_ambiguous(
    problems: Problems,
) -> None:
    text = MINIMAL.replace(
        "    image: ghcr.io/acme/fraud:1.4.2\n",
        "    image: ghcr.io/a/b:1\n    port: 0x1F90\n    replicas: 010\n",
    )
    assert problems(text) == [
        "spec.yaml:10:15: versions[0].replicas: 010 is ambiguous (YAML 1.1 reads 8); write 8"
    ]


# --- semantic checks ---------------------------------------------------------------------------


def test_backend_check_messages_are_placed_at_their_node_or_nearest_ancestor(
    problems: Problems, monkeypatch: pytest.MonkeyPatch
) -> None:
    istio = base.module("istio")
    monkeypatch.setattr(
        istio,
        "check",
        lambda spec: [("versions[0].image", "first"), ("gateway.istio.gateways", "second")],
    )
    assert problems(MINIMAL) == [
        "spec.yaml:3:1: gateway.istio.gateways: second",  # missing: where gateway is named
        "spec.yaml:8:12: versions[0].image: first",
    ]


def test_semantic_checks_run_only_on_a_schema_valid_spec(
    problems: Problems, monkeypatch: pytest.MonkeyPatch
) -> None:
    called: list[Spec] = []
    monkeypatch.setattr(base.module("istio"), "check", lambda spec: called.append(spec) or [])
    problems(MINIMAL.replace("name: fraud", "name: Fraud"))
    assert called == []
    problems(MINIMAL)
    assert len(called) == 1


def test_derived_kubernetes_names_longer_than_63_characters_are_refused() -> None:
    spec = Spec(
        name="n" * 50,
        gateway=Gateway(type="istio", host="a.example.com"),
        versions=(Version(name="v" * 15, image="x:1"),),
        traffic=Traffic(stable="v" * 15),
    )
    issues = _semantic_issues(spec, {"gateway": {}, "versions": [{}]})
    long_name = f"{'n' * 50}-{'v' * 15}"
    message = (
        f"the Kubernetes name '{long_name}' is longer than 63 characters; "
        "shorten the name or the version name"
    )
    assert (("versions", 0, "name"), message, False) in issues


def test_header_pinning_is_refused_by_a_gateway_that_cannot_pin(
    problems: Problems, monkeypatch: pytest.MonkeyPatch
) -> None:
    caps = dict(base.CAPABILITIES)
    caps["istio"] = base.Capabilities(
        image_versions=True, url_versions=False, header_pinning=False, requires_host=True
    )
    monkeypatch.setattr(base, "CAPABILITIES", caps)
    text = MINIMAL.replace(
        "  host: models.example.com", "  host: models.example.com\n  versionHeader: x-v"
    )
    assert problems(text) == [
        "spec.yaml:6:18: gateway.versionHeader: gateway istio cannot pin a request to a version "
        "by header"
    ]


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ((), ""),
        (("versions", 1, "replicas"), "versions[1].replicas"),
        (("labels", "app.kubernetes.io/team"), 'labels["app.kubernetes.io/team"]'),
        (("resources", "limits", "nvidia.com/gpu"), 'resources.limits["nvidia.com/gpu"]'),
        (("env", "MODEL_URI"), "env.MODEL_URI"),
        (("labels", 'café "x"'), 'labels["café \\"x\\""]'),
    ],
)
def test_spec_paths_format_and_parse_back(path: tuple[str | int, ...], text: str) -> None:
    assert format_path(path) == text
    assert parse_path(text) == path


def test_a_wrong_traffic_name_is_reported_together_with_schema_problems(
    problems: Problems,
) -> None:
    text = MINIMAL.replace("    image:", "    replicas: three\n    image:").replace(
        "  stable: v1", "  stable: v1\n  canary: v3\n  weight: 10"
    )
    assert problems(text) == [
        "spec.yaml:8:15: versions[0].replicas: 'three' is not of type 'integer'",
        "spec.yaml:12:11: traffic.canary: 'v3' is not one of the versions (v1)",
    ]


# --- version names, header names, stripPath, notes (issues 10 and 13) --------------------------


# "fraud-" + 57 characters is the longest derived name Kubernetes allows (63).
@pytest.mark.parametrize("name", ["1.10", "2024-11", "v2.1.0", "V2_beta", "a" * 57])
def test_any_kubernetes_label_value_is_a_version_name(problems: Problems, name: str) -> None:
    text = MINIMAL.replace("  - name: v1", f'  - name: "{name}"').replace(
        "stable: v1", f'stable: "{name}"'
    )
    assert problems(text) == []


@pytest.mark.parametrize("name", ["a" * 64, "-v1", "v1.", "v 1", "v1\n"])
def test_a_version_name_that_is_no_label_value_is_refused(problems: Problems, name: str) -> None:
    quoted = name.replace("\n", "\\n")
    text = MINIMAL.replace("  - name: v1", f'  - name: "{quoted}"')
    lines = problems(text.replace("stable: v1", f'stable: "{quoted}"'))
    assert [line.split(": ")[1] for line in lines] == ["versions[0].name", "traffic.stable"]
    assert all("is not a version name: a Kubernetes label value of at most 63" in x for x in lines)


def test_the_version_name_is_kept_as_written_and_objects_get_a_dns_safe_name(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.yaml"
    text = MINIMAL.replace("name: v1", 'name: "V1.10_rc"').replace("stable: v1", "stable: V1.10_rc")
    path.write_text(text, encoding="utf-8")
    spec = load_spec(path)
    assert spec.version_names == ("V1.10_rc",)
    assert spec.traffic.stable == "V1.10_rc"
    assert spec.object_name("V1.10_rc") == "fraud-v1-10-rc"
    assert spec.to_dict()["versions"][0]["name"] == "V1.10_rc"


@pytest.mark.parametrize("header", ["X-Canary", "x_model.version", "X-Model-Version!"])
def test_any_http_header_name_is_accepted_and_kept_as_written(tmp_path: Path, header: str) -> None:
    path = tmp_path / "s.yaml"
    text = MINIMAL.replace(
        "  host: models.example.com", f"  host: models.example.com\n  versionHeader: {header}"
    )
    path.write_text(text, encoding="utf-8")
    spec = load_spec(path)
    assert spec.gateway.version_header == header
    assert spec.to_dict()["gateway"]["versionHeader"] == header


def test_a_trailing_newline_never_matches_a_pattern(problems: Problems) -> None:
    # ECMA-262 `$` (JSON Schema patterns) ends the string; Python's also matches before "\n".
    text = MINIMAL + 'labels:\n  "team\\n": "risk\\n"\n'
    assert problems(text) == [
        "spec.yaml:12:3: labels[\"team\\n\"]: key 'team\\n' is not a Kubernetes label key: an "
        "optional DNS prefix and '/', then at most 63 letters, digits, '-', '_' and '.'",
        "spec.yaml:12:13: labels[\"team\\n\"]: 'risk\\n' is not a Kubernetes label value: at most "
        "63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
    ]


def test_a_dollar_inside_a_character_class_stays_a_dollar() -> None:
    from mlserve.spec import _ecma_pattern

    assert _ecma_pattern(r"^/[$&]*$").pattern == r"^/[$&]*\Z"
    assert _ecma_pattern(r"^a\$b$").search("a$b")
    assert not _ecma_pattern(r"^ab$").search("ab\n")


@pytest.mark.parametrize("key", ["1e3", "0o17"])
def test_a_key_yaml_1_2_reads_as_a_number_is_refused(problems: Problems, key: str) -> None:
    assert problems(MINIMAL + f"labels:\n  {key}: x\n") == [
        f'spec.yaml:12:3: labels: key {key} is a number in YAML 1.2; quote it ("{key}")'
    ]


def test_gateway_strip_path_defaults_to_true_on_every_gateway(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(MINIMAL, encoding="utf-8")
    spec = load_spec(path)
    assert spec.gateway.strip_path is True
    assert spec.to_dict()["gateway"]["stripPath"] is True


@pytest.mark.parametrize(
    ("gateway", "stripped"),
    [
        ("istio", False),
        ("gateway-api", False),
        ("ingress-nginx", False),
        ("kong", True),
        ("azure-apim", True),
    ],
)
def test_a_recorded_spec_without_strip_path_keeps_what_the_gateway_did_before(
    gateway: str, stripped: bool
) -> None:
    # A promote or rollback re-renders from the stack's record: it must not move the model's path.
    record = {
        "name": "fraud",
        "gateway": {"type": gateway, "host": "h.example.com"},
        "versions": [{"name": "v1", "url": "https://a.example.com"}],
        "traffic": {"stable": "v1"},
    }
    assert Spec.from_dict(record).gateway.strip_path is stripped


def test_kong_strip_path_is_a_deprecated_alias(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    text = MINIMAL.replace("type: istio", "type: kong").replace(
        "  host: models.example.com\n", "  kong: {stripPath: false}\n"
    )
    path.write_text(text, encoding="utf-8")
    spec = load_spec(path)
    assert spec.gateway.strip_path is False
    assert "stripPath" not in spec.to_dict()["gateway"]["kong"]
    assert [str(n) for n in spec.notes] == [
        f"{path}:5:10: gateway.kong.stripPath: warning: kong.stripPath is deprecated; use "
        "gateway.stripPath, which applies to every gateway"
    ]


def test_kong_strip_path_contradicting_gateway_strip_path_is_an_error(problems: Problems) -> None:
    text = MINIMAL.replace("type: istio", "type: kong").replace(
        "  host: models.example.com\n", "  stripPath: true\n  kong: {stripPath: false}\n"
    )
    assert problems(text) == [
        "spec.yaml:6:10: gateway.kong.stripPath: contradicts gateway.stripPath; remove the "
        "deprecated kong.stripPath"
    ]


def test_versions_without_traffic_get_one_note_and_the_spec_stays_valid(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    extra = "  - name: v2\n    image: ghcr.io/a/b:2\n  - name: v3\n    image: ghcr.io/a/b:3\n"
    path.write_text(MINIMAL.replace("traffic:", extra + "traffic:"), encoding="utf-8")
    notes = [str(n) for n in load_spec(path).notes if "traffic.stable" in n.message]
    assert notes == [
        f"{path}:9:11: versions[1].name: note: v2 and v3 are neither traffic.stable nor "
        "traffic.canary, so they get no unpinned traffic"
    ]


def test_a_canary_without_a_weight_gets_a_note_that_it_starts_at_0(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    extra = "  - name: v2\n    image: ghcr.io/a/b:2\n"
    text = MINIMAL.replace("traffic:", extra + "traffic:") + "  canary: v2\n"
    path.write_text(text, encoding="utf-8")
    assert [str(n) for n in load_spec(path).notes if "traffic.weight" in n.message] == [
        f"{path}:13:11: traffic.canary: note: traffic.canary v2 has no traffic.weight, so it "
        "starts at 0% (no unpinned traffic): set traffic.weight, or move it later with "
        "`mlserve promote --weight N` or `mlserve rollout`"
    ]
    path.write_text(text + "  weight: 0\n", encoding="utf-8")  # written out: no surprise
    assert not [n for n in load_spec(path).notes if "traffic.weight" in n.message]
    path.write_text(text.replace("type: istio", "type: service").replace(
        "  host: models.example.com\n", ""), encoding="utf-8")  # fmt: skip
    assert not [n for n in load_spec(path).notes if "traffic.weight" in n.message]


def test_a_path_with_a_dot_segment_is_refused(problems: Problems) -> None:
    text = MINIMAL.replace(
        "  host: models.example.com", "  host: models.example.com\n  path: /a/./b"
    )
    assert problems(text) == [
        "spec.yaml:6:9: gateway.path: '/a/./b' has a '.' or '..' segment, which Kubernetes "
        "Ingress, Gateway API and Kong refuse; write the path without it"
    ]


def test_the_service_gateway_refuses_a_weighted_canary_a_path_and_a_host(
    problems: Problems,
) -> None:
    text = (
        MINIMAL.replace("type: istio", "type: service")
        .replace("  host: models.example.com", "  host: models.example.com\n  path: /x")
        .replace("traffic:", "  - name: v2\n    image: ghcr.io/a/b:2\ntraffic:")
        .replace("stable: v1", "stable: v1\n  canary: v2\n  weight: 10")
    )
    assert problems(text) == [
        "spec.yaml:5:9: gateway.host: gateway service does not route by host: clients reach "
        "the Service's address (the endpoint output); remove gateway.host",
        "spec.yaml:6:9: gateway.path: gateway service does not route by path: a Service "
        "forwards every path to the model; remove gateway.path",
        "spec.yaml:15:11: traffic.weight: gateway service cannot split traffic: a Service sends "
        "every request to the pods it selects; keep the canary at 0 and switch to it with "
        "`mlserve promote --complete` (blue-green)",
    ]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "path",
            "/v1.0/churn\n  stripPath: false",
            "gateway.path: '/v1.0/churn' has characters ingress-nginx refuses in a Prefix path "
            "('.'): with stripPath: false mlserve renders pathType Prefix, and with its default "
            "strict-validate-path-type (controller 1.12 and later) ingress-nginx allows only "
            "letters, digits, '_', '-' and '/' there (controllers 1.12.6, 1.13.2 and 1.14 on "
            "also take '.'; earlier 1.12 and 1.13 ones refuse it); rename the path, or set "
            "stripPath: true (the model then sees paths without the prefix), which renders an "
            "ImplementationSpecific regex path that the rule leaves alone",
        ),
        (
            "path",
            "/m~l/\n  stripPath: false",
            "gateway.path: '/m~l/' has characters ingress-nginx refuses in a Prefix path ('~'): "
            "with stripPath: false mlserve renders pathType Prefix, and with its default "
            "strict-validate-path-type (controller 1.12 and later) ingress-nginx allows only "
            "letters, digits, '_', '-' and '/' there; rename the path, or set stripPath: true "
            "(the model then sees paths without the prefix), which renders an "
            "ImplementationSpecific regex path that the rule leaves alone",
        ),
        (
            "path",
            "/etc/nginx",
            "gateway.path: '/etc/nginx' holds '/etc/nginx', which ingress-nginx's deep inspection "
            "(--deep-inspect, on by default) refuses in any Ingress path: choose another path",
        ),
        (
            "versionHeader",
            "x-model!",
            "gateway.versionHeader: 'x-model!' is not a header name ingress-nginx accepts in "
            "canary-by-header: use letters, digits, '-', '_' and '.'",
        ),
    ],
)
def test_ingress_nginx_refuses_what_its_admission_rejects(
    problems: Problems, field: str, value: str, message: str
) -> None:
    text = MINIMAL.replace("type: istio", "type: ingress-nginx").replace(
        "  host: models.example.com", f"  host: models.example.com\n  {field}: {value}"
    )
    [line] = problems(text)
    assert line.split(": ", 1)[1] == message


@pytest.mark.parametrize("path", ["/v1.0/churn", "/m~l"])
def test_ingress_nginx_takes_any_path_with_strip_path(problems: Problems, path: str) -> None:
    """stripPath (the default) renders an ImplementationSpecific regex path: strict-validate-
    path-type leaves it alone (tests/test_gateway_traffic.py checks the rendered Ingresses)."""
    text = MINIMAL.replace("type: istio", "type: ingress-nginx").replace(
        "  host: models.example.com", f"  host: models.example.com\n  path: {path}"
    )
    assert problems(text) == []


def test_the_service_gateway_refuses_rollout_steps_that_split_traffic(problems: Problems) -> None:
    text = (
        MINIMAL.replace("type: istio", "type: service")
        .replace("  host: models.example.com\n", "")
        .replace("traffic:", "  - name: v2\n    image: ghcr.io/a/b:2\ntraffic:")
        .replace("stable: v1", "stable: v1\n  canary: v2")
        + "rollout:\n  steps:\n    - {weight: 10, pause: 1m}\n    - {pause: 5m}\n"
    )
    assert problems(text) == [
        "spec.yaml:15:16: rollout.steps[0].weight: gateway service cannot send 10% to the "
        "canary: a Service selects one version; a rollout behind it can only pause (and "
        "measure) before `complete` switches every request to the canary",
    ]
