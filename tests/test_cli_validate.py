"""`mlserve validate` and `mlserve schema`, through typer's CliRunner and a real process."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlserve.cli import app
from mlserve.spec import load_spec, schema_text

ROOT = Path(__file__).parent.parent
SPECS = Path(__file__).parent / "specs"
EXAMPLES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "specs").glob("*.yaml"))
MINIMAL_IMAGE = """\
apiVersion: mlserve/v1
name: fraud
gateway:
  type: istio
  host: models.example.com
versions:
  - name: v1
    image: {image}
traffic:
  stable: v1
"""
PULUMI_MODULES = ("pulumi", "pulumi_kubernetes", "pulumi_kong", "pulumi_azure_native")


@pytest.fixture
def in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def run(*args: str, cwd: Path = ROOT, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLSERVE_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "mlserve", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def test_valid_files_exit_0_and_say_valid(in_root: None) -> None:
    result = CliRunner().invoke(app, ["validate", *EXAMPLES])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [f"{f}: valid" for f in EXAMPLES]
    # Notes (what a gateway cannot do, deprecations) go to stderr and keep exit 0.
    assert result.stderr.splitlines() == [str(n) for f in EXAMPLES for n in load_spec(f).notes]


def test_a_valid_spec_with_notes_exits_0_and_prints_them_on_stderr(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    text = MINIMAL_IMAGE.format(image="ghcr.io/a/b:1").replace("type: istio", "type: kong")
    host = "  host: models.example.com\n"
    spec.write_text(text.replace(host, host + "  kong: {stripPath: false}\n"), encoding="utf-8")
    result = run("validate", str(spec), "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == []
    assert result.stderr == (
        f"{spec}:6:10: gateway.kong.stripPath: warning: kong.stripPath is deprecated; use "
        "gateway.stripPath, which applies to every gateway\n"
    )


def test_invalid_file_exits_2_with_one_line_per_problem_and_a_summary(in_root: None) -> None:
    spec = "tests/specs/invalid-unknown-keys.yaml"
    expected = (SPECS / "invalid-unknown-keys.expected").read_text(encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", "specs/istio.yaml", spec])
    assert result.exit_code == 2
    assert result.stdout == "specs/istio.yaml: valid\n" + expected.replace(
        "invalid-unknown-keys.yaml", spec
    )
    assert result.stderr == "6 problems in 1 of 2 files\n"


def test_json_lists_every_problem_of_every_file(in_root: None) -> None:
    result = CliRunner().invoke(
        app,
        ["validate", "--json", "specs/kong.yaml", "tests/specs/invalid-traffic.yaml", "nope.yaml"],
    )
    assert result.exit_code == 2
    problems = json.loads(result.stdout)
    assert problems[0] == {
        "file": "tests/specs/invalid-traffic.yaml",
        "line": 12,
        "column": 11,
        "path": "versions[2].name",
        "message": "duplicate version name 'v1' (also versions[0])",
    }
    assert [p["file"] for p in problems] == ["tests/specs/invalid-traffic.yaml"] * 3 + ["nope.yaml"]
    assert problems[-1] == {
        "file": "nope.yaml",
        "line": None,  # no position to point at
        "column": None,
        "path": "",
        "message": "no such file",
    }


def test_json_of_valid_files_is_an_empty_list(in_root: None) -> None:
    result = CliRunner().invoke(app, ["validate", "--json", *EXAMPLES])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []


def test_missing_file_exits_2_without_a_traceback() -> None:
    result = run("validate", "does-not-exist.yaml")
    assert result.returncode == 2
    assert result.stdout == "does-not-exist.yaml: no such file\n"
    assert "Traceback" not in result.stderr


def test_a_directory_is_named_as_typed_with_no_invented_position(in_root: None) -> None:
    result = CliRunner().invoke(app, ["validate", "specs/"])
    assert (result.exit_code, result.stdout) == (
        2,
        "specs/: is a directory, not a spec file (its spec files: specs/*.yaml)\n",
    )
    document = json.loads(CliRunner().invoke(app, ["validate", "specs", "--json"]).stdout)
    assert document == [
        {
            "file": "specs/",
            "line": None,
            "column": None,
            "path": "",
            "message": "is a directory, not a spec file (its spec files: specs/*.yaml)",
        }
    ]


def test_validate_in_a_real_process_exits_2_on_every_invalid_golden_spec() -> None:
    """All of them in one process: each file's problems, in order, exactly its .expected lines
    (test_golden_specs checks each file on its own, in this process)."""
    invalid = sorted(SPECS.glob("invalid-*.yaml"))
    result = run("validate", *(p.name for p in invalid), cwd=SPECS)
    assert result.returncode == 2
    assert result.stdout == "".join(
        p.with_suffix(".expected").read_text(encoding="utf-8") for p in invalid
    )
    assert result.stderr.endswith(f" problems in {len(invalid)} of {len(invalid)} files\n")


def test_validate_in_a_real_process_accepts_the_examples() -> None:
    result = run("validate", *EXAMPLES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": valid\n") == len(EXAMPLES)


def test_schema_prints_the_packaged_schema() -> None:
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    assert result.stdout == schema_text()
    assert json.loads(run("schema").stdout)["title"] == "mlserve spec (apiVersion mlserve/v1)"


@pytest.mark.parametrize(
    "args",
    [["--help"], ["validate", *EXAMPLES], ["validate", "tests/specs/invalid-types.yaml"]],
    ids=["help", "validate-valid", "validate-invalid"],
)
def test_help_and_validate_do_not_import_pulumi(args: list[str]) -> None:
    code = (
        "import sys\n"
        "from mlserve.cli import app\n"
        "try:\n"
        "    app(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('\\nLOADED', sorted({m.split('.')[0] for m in sys.modules}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=20,
        check=True,
    )
    loaded = result.stdout.rsplit("LOADED", 1)[1]
    assert "'mlserve'" in loaded
    assert [m for m in PULUMI_MODULES if f"'{m}'" in loaded] == []


# --- hostile files: rejected promptly; the timeout turns a hang into a failure -----------------


def _billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev, this = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{this}: &{this} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("name", "content", "first_line"),
    [
        (
            "laughs.yaml",
            _billion_laughs(),
            "laughs.yaml:1:4: anchor '&a': YAML anchors and aliases are not allowed; "
            "write the value out",
        ),
        (
            "deep.yaml",
            "a: " + "[" * 100_000 + "]" * 100_000 + "\n",
            "deep.yaml:1:67: nesting deeper than 64 levels",
        ),
        (
            "deep-mappings.yaml",
            "a: " + "{b: " * 100_000 + "}" * 100_000 + "\n",
            "deep-mappings.yaml:1:256: nesting deeper than 64 levels",
        ),
        (
            "big.yaml",
            "a: " + "x" * (2 * 1024 * 1024) + "\n",
            "big.yaml: the file is 2.0 MiB; a spec must be at most 1 MiB",
        ),
        (
            "wide.yaml",
            "labels: [" + "1," * 500_000 + "1]\n",
            "wide.yaml:1:20004: more than 10000 values; a spec is much smaller",
        ),
        (
            "long-value.yaml",
            MINIMAL_IMAGE.format(image="a" * 900_000 + "!"),
            "long-value.yaml:8:12: versions[0].image: '" + "a" * 57 + "...' "
            "is not a container image reference such as ghcr.io/acme/fraud:1.4.2",
        ),
    ],
    ids=[
        "billion-laughs",
        "100000-nested-lists",
        "100000-nested-mappings",
        "2-MiB",
        "500000-values",
        "900-KiB-value",
    ],
)
def test_hostile_file_is_rejected_promptly(
    tmp_path: Path, name: str, content: str, first_line: str
) -> None:
    (tmp_path / name).write_text(content, encoding="utf-8")
    result = run("validate", name, cwd=tmp_path, timeout=10)
    assert result.returncode == 2
    assert result.stdout.splitlines()[0] == first_line
    assert "Traceback" not in result.stderr


def test_the_schema_points_users_at_nothing_they_do_not_have() -> None:
    """Editors show descriptions on hover; DESIGN.md is not shipped to users."""
    text = json.dumps(json.loads(schema_text()))
    assert "DESIGN" not in text


RETIRED = (
    "gateway.type: note: ingress-nginx is retired: its maintenance ended in March 2026 and "
    "1.15.1, 1.14.5 and 1.13.9 are its last releases, with no fixes to come, security fixes "
    "included; type gateway-api carries the same canary split (an HTTPRoute on your cluster's "
    "Gateway)"
)


def test_validate_notes_once_that_ingress_nginx_is_retired(in_root: None) -> None:
    """Issue 19 item 6 (kubernetes/ingress-nginx README, "Ingress NGINX Retirement"): once per
    ingress-nginx spec, at its gateway type, pointing to gateway-api; never for another gateway."""
    result = CliRunner().invoke(app, ["validate", *EXAMPLES])
    assert result.exit_code == 0
    retired = [line for line in result.stderr.splitlines() if "retired" in line]
    assert retired == [f"specs/ingress-nginx.yaml:11:9: {RETIRED}"]


def _on_a_terminal(*args: str, **env: str) -> tuple[int, str]:
    """`mlserve ARGS` with a pseudo-terminal as stdin, stdout and stderr, as typed at one; what
    the terminal showed, with its line ends as "\n"."""
    environ = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "CI", "MLSERVE_DEBUG")}
    environ.update({"PYTHONPATH": str(ROOT), "TERM": "xterm-256color", **env})
    master, terminal = os.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlserve", *args],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            cwd=ROOT,
            env=environ,
        )
    finally:
        os.close(terminal)
    shown = bytearray()
    try:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the process has closed its side
                break
            if not chunk:
                break
            shown.extend(chunk)
    finally:
        os.close(master)
    return process.wait(timeout=60), shown.decode().replace("\r\n", "\n")


@pytest.fixture
def three_kinds(tmp_path: Path) -> list[str]:
    """An invalid spec (errors), a spec with a warning and one with notes."""
    warned = tmp_path / "warned.yaml"
    text = MINIMAL_IMAGE.format(image="ghcr.io/a/b:1").replace("type: istio", "type: kong")
    host = "  host: models.example.com\n"
    warned.write_text(text.replace(host, host + "  kong: {stripPath: false}\n"), encoding="utf-8")
    return ["tests/specs/invalid-unknown-keys.yaml", str(warned), "specs/ingress-nginx.yaml"]


RED, YELLOW, CYAN, END = "\x1b[1;31m", "\x1b[33m", "\x1b[36m", "\x1b[0m"


def test_on_a_terminal_errors_warnings_and_notes_are_in_colour(three_kinds: list[str]) -> None:
    """Issue 19 item 5: each line's place in its severity's colour (red, yellow, cyan), and the
    word that starts a warning or a note in the same; output.py decides colour for all output."""
    code, shown = _on_a_terminal("validate", *three_kinds)
    assert code == 2
    lines = shown.splitlines()
    invalid, warned, _ = three_kinds
    assert lines[0] == (
        f"{RED}{invalid}:3:1:{END} gateway: 'host' is required for gateway type istio"
    )
    assert (
        f"{YELLOW}{warned}:6:10:{END} gateway.kong.stripPath: {YELLOW}warning:{END} "
        "kong.stripPath is deprecated; use gateway.stripPath, which applies to every gateway"
    ) in lines
    note = RETIRED.replace("note:", f"{CYAN}note:{END}")
    assert f"{CYAN}specs/ingress-nginx.yaml:11:9:{END} {note}" in lines
    _, plain = _on_a_terminal("validate", *three_kinds, NO_COLOR="1")
    assert re.sub(r"\x1b\[[0-9;]*m", "", shown) == plain


@pytest.mark.parametrize(
    "env", [{"NO_COLOR": "1"}, {"CI": "true"}, {"TERM": "dumb"}], ids=["NO_COLOR", "CI", "dumb"]
)
def test_no_colour_with_no_color_ci_or_a_dumb_terminal(
    three_kinds: list[str], env: dict[str, str]
) -> None:
    code, shown = _on_a_terminal("validate", *three_kinds, **env)
    assert code == 2
    assert "\x1b" not in shown
    assert f"{three_kinds[0]}:3:1: gateway: 'host' is required" in shown


def test_no_colour_without_a_terminal(three_kinds: list[str]) -> None:
    result = run("validate", *three_kinds)
    assert result.returncode == 2
    assert "\x1b" not in result.stdout + result.stderr
    assert result.stdout.startswith(f"{three_kinds[0]}:3:1: gateway: 'host' is required")
