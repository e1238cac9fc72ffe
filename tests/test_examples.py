"""The example specs in specs/: one per gateway, each valid, each usable from an editor."""

from pathlib import Path

import pytest

from mlserve.spec import GATEWAY_TYPES, Spec, _validator, load_spec

ROOT = Path(__file__).parent.parent
EXAMPLES = sorted((ROOT / "specs").glob("*.yaml"))


def test_there_is_one_example_per_gateway_type() -> None:
    """`specs/<type>.yaml` for each gateway type; other examples show one use (vllm-gpu.yaml)."""
    by_type = [p for p in EXAMPLES if p.stem in GATEWAY_TYPES]
    assert sorted(p.stem for p in by_type) == sorted(GATEWAY_TYPES)
    for path in by_type:
        assert load_spec(path).gateway.type == path.stem


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_and_points_editors_at_the_schema(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=../schemas/mlserve.schema.json"
    assert (path.parent / "../schemas/mlserve.schema.json").resolve().is_file()
    load_spec(path)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_normalized_form_is_schema_valid_and_round_trips(path: Path) -> None:
    spec = load_spec(path)
    normalized = spec.to_dict()
    assert list(_validator().iter_errors(normalized)) == []
    assert Spec.from_dict(normalized, source=spec.source) == spec
