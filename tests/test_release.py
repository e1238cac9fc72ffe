"""The release recipe (.github/workflows/release.yml): what it builds, checks and publishes.

GitHub Actions cannot run here; this checks the recipe says what the README promises. That the
built wheel installs and runs outside the tree is checked for real by .ci/run on every change.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.helpers import REPO

WORKFLOW = REPO / ".github" / "workflows" / "release.yml"


def workflow() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def runs(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in job["steps"])


def test_a_tag_builds_checks_and_publishes_with_trusted_publishing() -> None:
    data = workflow()
    trigger = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` as true
    assert trigger["push"] == {"tags": ["v*"]}
    assert data["permissions"] == {"contents": "read"}  # only the publish job gets more
    build, publish = data["jobs"]["build"], data["jobs"]["publish"]
    assert "python -m build" in runs(build)
    assert "python -m twine check --strict dist/*" in runs(build)
    assert publish["needs"] == "build"
    assert publish["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert publish["permissions"] == {"id-token": "write"}
    assert publish["environment"]["name"] == "pypi"
    [step] = [s for s in publish["steps"] if "gh-action-pypi-publish" in s.get("uses", "")]
    assert step["uses"] == "pypa/gh-action-pypi-publish@release/v1"
    assert "with" not in step  # no password or token: PyPI trusts the workflow (OIDC)
    assert not re.search(r"secrets\.", WORKFLOW.read_text(encoding="utf-8"))


def test_the_wheel_is_tried_outside_the_tree_before_anything_is_published() -> None:
    build = workflow()["jobs"]["build"]
    script = runs(build)
    assert 'pip" install dist/*.whl' in script
    assert 'cd "$RUNNER_TEMP"' in script  # not the checkout: the installed package, not ./mlserve
    assert 'mlserve" validate "$GITHUB_WORKSPACE"/specs/*.yaml' in script
    assert 'ls "dist/mlserve-${GITHUB_REF_NAME#v}-py3-none-any.whl"' in script  # tag = version


def test_ci_keeps_building_the_wheel_and_running_it_outside_the_tree() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip wheel" in ci and "-m mlserve validate" in ci
