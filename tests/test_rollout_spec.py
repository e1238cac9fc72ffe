"""The spec's rollout section in the frozen model: read, normalized and recorded as mlserve:spec."""

from __future__ import annotations

import json
from pathlib import Path

from mlserve.spec import Analysis, Metric, Rollout, RolloutStep, Spec, load_spec

SPECS = Path(__file__).parent / "specs"


def test_the_rollout_section_survives_the_recorded_spec_round_trip() -> None:
    spec = load_spec(SPECS / "valid-rollout.yaml")
    recorded = json.loads(json.dumps(spec.to_dict()))  # as the stack config stores it
    assert Spec.from_dict(recorded, source=spec.source) == spec
    assert spec.rollout is not None
    assert spec.rollout.steps == (
        RolloutStep(10, "5m"),
        RolloutStep(25, "10m"),
        RolloutStep(None, "manual"),
        RolloutStep(100, None),
    )
    assert recorded["rollout"]["steps"][2:] == [{"pause": "manual"}, {"weight": 100}]


def test_defaults_are_written_out_in_the_normalized_spec() -> None:
    data = load_spec(SPECS / "valid-minimal-istio.yaml").to_dict()
    assert "rollout" not in data
    data["rollout"] = {
        "steps": [{"weight": 50, "pause": "1m"}],
        "analysis": {
            "prometheus": {"address": "http://prom:9090"},
            "metrics": [{"name": "errors", "query": "vector(0)", "max": 1}],
        },
    }
    rollout = Spec.from_dict(data).rollout
    assert rollout == Rollout(
        steps=(RolloutStep(50, "1m"),),
        complete=True,
        analysis=Analysis("http://prom:9090", (Metric("errors", "vector(0)", None, 1.0),), "1m", 1),
    )
    assert rollout.to_dict() == {
        "steps": [{"weight": 50, "pause": "1m"}],
        "complete": True,
        "analysis": {
            "prometheus": {"address": "http://prom:9090"},
            "interval": "1m",
            "failureLimit": 1,
            "metrics": [{"name": "errors", "query": "vector(0)", "max": 1.0}],
        },
    }


def test_a_version_placeholder_in_a_regular_expression_gets_a_note(tmp_path: Path) -> None:
    """Issue 20 item 15: `version=~"{{canary}}"` with canary 1.10 matches 1-10 too."""
    text = (SPECS / "valid-rollout.yaml").read_text()
    path = tmp_path / "regex.yaml"
    path.write_text(text.replace('version="{{canary}}", code', 'version=~"{{canary}}", code'))
    notes = [str(n) for n in load_spec(path).notes if "regular expression" in str(n)]
    assert notes == [
        f"{path}:28:16: rollout.analysis.metrics[0].query: note: {{{{canary}}}} stands in a "
        "regular expression (=~ or !~), where the '.' of a version name matches any character "
        "(1.10 matches 1-10 too); {{canary_re}} is the name with its dots escaped"
    ]
