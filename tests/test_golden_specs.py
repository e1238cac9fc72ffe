"""Golden specs: each valid-*.yaml loads; each invalid-*.yaml gives exactly its .expected lines."""

from pathlib import Path

import pytest

from mlserve.errors import SpecError
from mlserve.spec import Spec, load_spec

SPECS = Path(__file__).parent / "specs"
VALID = sorted(SPECS.glob("valid-*.yaml"))
INVALID = sorted(SPECS.glob("invalid-*.yaml"))


def test_there_are_golden_specs_of_both_kinds() -> None:
    assert len(VALID) >= 3
    assert len(INVALID) >= 10


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_golden_spec_loads(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(SPECS)
    spec = load_spec(path.name)
    assert isinstance(spec, Spec)
    assert spec.source == path.name


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_golden_spec_gives_the_expected_messages(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(SPECS)
    expected = path.with_suffix(".expected").read_text(encoding="utf-8").splitlines()
    with pytest.raises(SpecError) as err:
        load_spec(path.name)
    assert [str(p) for p in err.value.problems] == expected
