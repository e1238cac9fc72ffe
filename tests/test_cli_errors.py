"""Every failure: one line on stderr, its exit code, and with --json one document on stdout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlserve import errors, ops
from mlserve.cli import KINDS, app
from mlserve.errors import Problem
from tests.fake_pulumi import fixture
from tests.fake_pulumi.fixture import Fake
from tests.helpers import REPO
from tests.helpers import run_cli as mlserve

fake = fixture.fake
no_pulumi = fixture.no_pulumi
SPEC = str(REPO / "specs" / "istio.yaml")


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


# Each error class, as the operations raise it; the rollout work adds exit 7.
CLASSES = [
    (errors.UsageError("--weight 150: use 1..99, or 100 to complete"), 2, "usage"),
    (errors.StackBusyError("stack 'prod' is locked"), 3, "busy"),
    (errors.EngineUnavailableError("the Pulumi CLI was not found"), 4, "engine-unavailable"),
    (errors.OperationFailedError("the update failed"), 5, "operation-failed"),
    (errors.PreconditionError("--expect-weight 10: the live canary is at 50%"), 6, "precondition"),
    (errors.PendingChangesError("changes are pending"), 10, "pending-changes"),
    (errors.Interrupted("interrupted; the update was cancelled"), 130, "interrupted"),
]


@pytest.mark.parametrize(("error", "code", "kind"), CLASSES, ids=lambda x: str(x)[:12])
def test_with_json_a_failure_is_one_error_document_with_its_code_and_kind(
    monkeypatch: pytest.MonkeyPatch, error: errors.MlserveError, code: int, kind: str
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(ops, "history", fail)
    exit_code, stdout, stderr = invoke("history", "--project", "fraud", "--json")
    assert exit_code == code
    assert json.loads(stdout) == {"error": {"code": code, "kind": kind, "message": str(error)}}
    assert stderr == f"error: {error}\n"
    assert KINDS[code] == kind


def test_a_spec_error_lists_its_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: mlserve/v1\nname: fraud\nversions: 3\n")
    exit_code, stdout, _ = invoke("plan", str(bad), "--json")
    body = json.loads(stdout)["error"]
    assert (exit_code, body["code"], body["kind"]) == (2, 2, "spec")
    assert body["problems"][0] == Problem(str(bad), 1, 1, "", "'gateway' is required").to_json()
    assert body["message"] == "\n".join(
        f"{p['file']}:{p['line']}:{p['column']}: "
        + (f"{p['path']}: " if p["path"] else "")
        + p["message"]
        for p in body["problems"]
    )


def test_an_unexpected_error_is_exit_1_and_says_to_use_debug(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(ops, "history", boom)
    exit_code, stdout, stderr = invoke("history", "--project", "fraud", "--json")
    message = "unexpected error: RuntimeError: boom (run with --debug for details)"
    assert exit_code == 1
    assert json.loads(stdout) == {"error": {"code": 1, "kind": "unexpected", "message": message}}
    assert stderr == f"error: {message}\n"


def test_ctrl_c_outside_an_operation_is_exit_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(ops, "history", interrupt)
    assert invoke("history", "--project", "fraud", "--json") == (
        130,
        json.dumps(
            {"error": {"code": 130, "kind": "interrupted", "message": "interrupted"}}, indent=2
        )
        + "\n",
        "error: interrupted\n",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["history", "--nope"], "No such option: --nope"),
        (
            ["promote", "--weight", "ten"],
            "Invalid value for '--weight': Input should be a valid integer, unable to parse "
            "string as an integer",
        ),
    ],
    ids=["unknown-option", "bad-value"],
)
def test_a_parser_error_is_a_usage_error_in_the_same_shape(args: list[str], message: str) -> None:
    exit_code, stdout, stderr = invoke(*args, "--json")
    assert exit_code == 2
    assert json.loads(stdout) == {"error": {"code": 2, "kind": "usage", "message": message}}
    assert stderr == f"error: {message}\nSee 'mlserve {args[0]} --help' for usage.\n"
    assert invoke(*args)[1] == ""  # without --json, stdout stays empty


def test_without_json_stdout_stays_empty_on_failure() -> None:
    exit_code, stdout, stderr = invoke("status")
    assert (exit_code, stdout) == (2, "")
    assert stderr == "error: --project is needed without a spec file (or set MLSERVE_PROJECT)\n"


def test_a_failure_after_the_document_adds_no_second_document(fake: Fake) -> None:
    """`plan --exit-code --json` prints the plan, then exits 10: stdout stays one document,
    the plan with the `error` object every failing document has."""
    result = mlserve("plan", SPEC, "--exit-code", "--json")
    assert result.returncode == 10
    document = json.loads(result.stdout)
    assert document["pendingChanges"] is True
    assert document["error"] == {
        "code": 10,
        "kind": "pending-changes",
        "message": "changes are pending (plan --exit-code)",
    }
    assert result.stderr.endswith("error: changes are pending (plan --exit-code)\n")
    unchanged = mlserve("plan", SPEC, "--json")
    assert unchanged.returncode == 0 and "error" not in json.loads(unchanged.stdout)


def test_doctor_json_is_one_object_with_the_error_when_something_is_not_ready(
    no_pulumi: Path,
) -> None:
    result = mlserve("doctor", "--json")
    assert result.returncode == 4
    document = json.loads(result.stdout)
    assert (document["ready"], document["error"]) == (
        False,
        {
            "code": 4,
            "kind": "engine-unavailable",
            "message": "not ready: pulumi CLI, plugin kubernetes",
        },
    )
    assert [c["check"] for c in document["checks"]][:2] == ["pulumi CLI", "plugin kubernetes"]
    assert set(document["checks"][0]) == {"check", "ok", "detail", "fix"}


def test_a_failing_promote_leaves_a_json_document_for_ci(fake: Fake) -> None:
    """The first-hour report: `promote --json > promote.json` left an empty file."""
    result = mlserve("promote", "--weight", "50", "--project", "fraud-detector", "--json")
    assert result.returncode == 6
    body = json.loads(result.stdout)["error"]
    assert (body["code"], body["kind"]) == (6, "precondition")
    assert result.stderr.endswith(f"error: {body['message']}\n")


def test_schema_into_a_closed_pipe_exits_quietly() -> None:
    """`mlserve schema | head -0`: the reader is gone before the first write."""
    done = subprocess.run(
        f"{sys.executable} -m mlserve schema | head -c 0; exit ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (141, "")


def test_validate_reads_stdin_and_reports_positions_as_stdin() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mlserve", "validate", "-", "specs/kong.yaml"],
        input="apiVersion: mlserve/v1\nname: fraud\nversions:\n  - name: 1.10\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 2
    assert '<stdin>:4:11: versions[0].name: 1.1 is a number; quote it ("1.10")\n' in done.stdout
    assert done.stdout.endswith("specs/kong.yaml: valid\n")
    ok = subprocess.run(
        [sys.executable, "-m", "mlserve", "validate", "-"],
        input=(REPO / "specs" / "kong.yaml").read_text(),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert (ok.returncode, ok.stdout) == (0, "<stdin>: valid\n")
