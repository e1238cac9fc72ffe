"""The JSON Schema: valid 2020-12, strict everywhere, documented, in step with the code."""

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from mlserve.backends.base import CAPABILITIES, MODULES
from mlserve.spec import GATEWAY_TYPES, schema, schema_text

ROOT = Path(__file__).parent.parent


def _objects(node: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield where, node
        for key, child in node.items():
            yield from _objects(child, f"{where}/{key}")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from _objects(child, f"{where}/{i}")


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(schema())
    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_is_read_from_the_package_and_is_the_file_in_schemas() -> None:
    packaged = resources.files("mlserve") / "schemas" / "mlserve.schema.json"
    assert schema_text() == packaged.read_text(encoding="utf-8")
    assert schema_text() == (ROOT / "schemas" / "mlserve.schema.json").read_text(encoding="utf-8")
    assert json.loads(schema_text()) == schema()


def test_every_property_has_a_description() -> None:
    missing = [
        f"{where}/properties/{name}"
        for where, node in _objects(schema())
        for name, prop in (node.get("properties") or {}).items()
        if where.split("/")[-1] not in ("if",)
        and "/then" not in where
        and "description" not in prop
    ]
    assert missing == []


def test_every_object_with_properties_forbids_unknown_keys() -> None:
    loose = [
        where
        for where, node in _objects(schema())
        if "properties" in node
        and "/if" not in where
        and "/then" not in where
        and node.get("additionalProperties") is not False
    ]
    assert loose == []


def test_every_pattern_has_a_max_length_so_no_regex_sees_a_huge_string() -> None:
    unbounded = [
        where for where, node in _objects(schema()) if "pattern" in node and "maxLength" not in node
    ]
    assert unbounded == []


def test_gateway_types_match_the_code() -> None:
    enum = schema()["properties"]["gateway"]["properties"]["type"]["enum"]
    assert enum == list(GATEWAY_TYPES) == list(CAPABILITIES) == list(MODULES)


def test_host_is_required_exactly_for_the_gateways_whose_capabilities_say_so() -> None:
    validator = Draft202012Validator(schema()["properties"]["gateway"])
    for gateway_type, caps in CAPABILITIES.items():
        errors = [e.message for e in validator.iter_errors({"type": gateway_type})]
        assert ("'host' is a required property" in errors) == caps.requires_host, gateway_type
