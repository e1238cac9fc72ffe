"""constraints.txt, the lock the README's commands and CI install from, agrees with pyproject.toml.

A range changed in pyproject.toml without `scripts/lock` would leave the lock pinning a version
the package no longer allows, and `pip install -c constraints.txt` would then fail on a clean
machine; this says so first, naming the package and the fix.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_every_dependency_of_the_package_is_locked_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted += extra
    pins = _pins()
    wrong = []
    for text in wanted:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name == "mlserve":  # the dev extra names the package's own extras
            continue
        if name not in pins:
            wrong.append(f"{req.name} is not in constraints.txt")
        elif not req.specifier.contains(pins[name], prereleases=True):
            wrong.append(f"{req.name}=={pins[name]} is outside {req.specifier}")
    assert wrong == [], "; ".join(wrong) + ": run scripts/lock, then the tests"
