"""The Kubernetes definitions in mlserve's schema are Kubernetes' own, generated (never written by
hand) by scripts/k8s_schema.py from the schema kubernetes-validate ships; `validate` needs none
of the dev dependencies that generate them."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from mlserve.spec import schema, schema_text

REPO = Path(__file__).resolve().parent.parent


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("k8s_schema", REPO / "scripts" / "k8s_schema.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_definitions_are_what_the_generator_makes_from_upstream() -> None:
    gen = _generator()
    assert gen.text(gen.generated(json.loads(schema_text()))) == schema_text(), (
        "stale: run .venv/bin/python scripts/k8s_schema.py"
    )


def test_every_kubernetes_definition_keeps_upstreams_fields_and_required_ones() -> None:
    gen = _generator()
    upstream = gen.upstream()
    ours = {k: v for k, v in schema()["$defs"].items() if k.startswith("io.k8s.")}
    assert set(gen.ROOTS) <= set(ours)
    for name, definition in ours.items():
        if name == gen.QUANTITY:
            continue
        assert set(definition.get("properties", {})) == set(upstream[name].get("properties", {}))
        assert definition.get("required") == upstream[name].get("required"), name
        assert definition["additionalProperties"] is False or "properties" not in definition


def test_every_reference_in_the_schema_resolves() -> None:
    text = schema_text()
    refs = {part.split('"')[0] for part in text.split('"$ref": "#/$defs/')[1:]}
    assert refs <= set(schema()["$defs"])


def test_validate_runs_without_kubernetes_validate_installed() -> None:
    code = (
        "import sys; sys.modules['kubernetes_validate'] = None\n"
        "from mlserve.spec import load_spec\n"
        "print(load_spec('specs/vllm-gpu.yaml').name)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout) == (0, "llm-chat\n"), result.stderr
