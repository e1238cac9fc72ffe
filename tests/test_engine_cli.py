"""The engine commands as a user or a CI step runs them: exit codes, messages, JSON, no secrets.

The commands run in this process (`run_cli`); the test that no output carries the passphrase runs
each as its own process, since anything a child writes to the inherited stderr is its subject."""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import pytest

from tests.fake_pulumi import fixture
from tests.fake_pulumi.fixture import Fake
from tests.helpers import REPO, run_mlserve
from tests.helpers import run_cli as mlserve

fake = fixture.fake
no_pulumi = fixture.no_pulumi
SPEC = str(REPO / "specs" / "istio.yaml")
K8S = importlib.metadata.version("pulumi-kubernetes")
NO_CLI = (
    "error: the Pulumi CLI was not found (`pulumi` on PATH): run `mlserve setup`, or install "
    "Pulumi from https://www.pulumi.com/docs/install/\n"
)


@pytest.mark.parametrize(
    "args",
    [
        ["plan", SPEC],
        ["deploy", SPEC, "--yes"],
        ["status", "--project", "fraud-detector"],
        ["history", "--project", "fraud-detector"],
        ["destroy", "--yes", "--project", "fraud-detector"],
    ],
    ids=lambda a: a[0],
)
def test_without_a_pulumi_cli_every_engine_command_exits_4_with_the_way_out(
    no_pulumi: Path, args: list[str]
) -> None:
    result = mlserve(*args)
    assert (result.returncode, result.stderr, result.stdout) == (4, NO_CLI, "")


def test_doctor_without_a_pulumi_cli_exits_4_after_the_table(no_pulumi: Path) -> None:
    result = mlserve("doctor")
    home = no_pulumi / "mlserve-home"
    assert result.returncode == 4
    assert result.stdout == (
        "CHECK              STATUS  DETAIL\n"
        "pulumi CLI         FAILED  the Pulumi CLI was not found (`pulumi` on PATH)\n"
        f"plugin kubernetes  FAILED  v{K8S} missing\n"
        f"backend            ok      {(home / 'state').as_uri()} (writable)\n"
        f"passphrase         ok      {home / 'passphrase'} is created on first use\n"
        "\n"
        "To fix:\n"
        "  pulumi CLI: run `mlserve setup`, or install Pulumi from "
        "https://www.pulumi.com/docs/install/\n"
        "  plugin kubernetes: run `mlserve setup` where there is network, or install it by "
        f"hand: `pulumi plugin install resource kubernetes {K8S}` (add `--file PATH` to "
        "install it from a plugin binary, folder or tarball you downloaded)\n"
    )
    assert result.stderr == "error: not ready: pulumi CLI, plugin kubernetes\n"


@pytest.mark.parametrize("command", ["deploy", "destroy"])
def test_no_terminal_and_no_yes_is_a_usage_error(fake: Fake, command: str) -> None:
    args = [SPEC] if command == "deploy" else ["--project", "fraud-detector"]
    result = mlserve(command, *args)
    assert result.returncode == 2
    assert result.stderr == f"error: {command} needs --yes when there is no terminal\n"
    assert fake.calls() == []


def test_deploy_then_status_history_and_plan_exit_code(fake: Fake) -> None:
    deployed = mlserve("deploy", SPEC, "--yes")
    assert deployed.returncode == 0, deployed.stderr
    assert (
        "Deployed revision 1 of stack 'dev': 7 created (Pulumi also counts the stack itself)"
        in deployed.stdout
    )
    assert "  + create    Deployment  fraud-detector-v1  created" in deployed.stdout
    assert deployed.stdout.endswith(
        "  traffic: v1 90%, v2 10%\n"
        "  v1  ###########################...   90%\n"
        "  v2  ###...........................   10%\n"
    )

    status = mlserve("status", "--project", "fraud-detector")
    assert status.returncode == 0, status.stderr
    assert "endpoint     http://fraud.models.example.com/fraud" in status.stdout
    assert "traffic      v1 90%, v2 10%" in status.stdout

    history = mlserve("history", "--project", "fraud-detector", "--json")
    rows = json.loads(history.stdout)
    assert [
        (r["revision"], r["kind"], r["result"], r["stable"], r["canary"], r["weight"], r["command"])
        for r in rows
    ] == [(1, "update", "succeeded", "v1", "v2", 10, "mlserve deploy")]

    unchanged = mlserve("plan", SPEC, "--exit-code")
    assert unchanged.returncode == 0, unchanged.stderr
    changed = mlserve("plan", SPEC, "--exit-code", "--stack", "prod")
    assert changed.returncode == 10
    assert changed.stderr.endswith("error: changes are pending (plan --exit-code)\n")


def test_every_stack_command_takes_the_project_from_a_spec_file(fake: Fake) -> None:
    fake.deployed(Path(SPEC))
    status = mlserve("status", SPEC)
    assert status.returncode == 0, status.stderr
    assert "stack        dev (project fraud-detector)" in status.stdout
    history = mlserve("history", SPEC, "--limit", "1")
    assert history.returncode == 0 and "mlserve deploy" in history.stdout
    promoted = mlserve("promote", SPEC, "--weight", "20")
    assert promoted.returncode == 0, promoted.stderr
    rolled = mlserve("rollback", SPEC)
    assert rolled.returncode == 0, rolled.stderr
    destroyed = mlserve("destroy", SPEC, "--yes")
    assert destroyed.returncode == 0, destroyed.stderr
    other = mlserve("status", SPEC, "--project", "other")
    assert (other.returncode, other.stderr) == (
        2,
        "error: --project 'other' does not match the spec's name 'fraud-detector' (the project "
        "is taken from the spec)\n",
    )
    neither = mlserve("rollback")
    assert (neither.returncode, neither.stderr) == (
        2,
        "error: --project is needed without a spec file (or set MLSERVE_PROJECT)\n",
    )


def test_plan_and_status_show_the_share_kong_really_sends(fake: Fake, tmp_path: Path) -> None:
    fake.install_plugin("kong", importlib.metadata.version("pulumi-kong"))
    spec = tmp_path / "kong.yaml"
    spec.write_text((REPO / "specs" / "kong.yaml").read_text().replace("weight: 25", "weight: 5"))
    line = "Kong sends v1 95.24%, v2 4.76% (Target weights are integers: v1 100, v2 5)"
    plan = mlserve("plan", str(spec))
    assert plan.returncode == 0, plan.stderr
    assert "  traffic: v1 95%, v2 5% (first deploy)\n" in plan.stdout
    assert f"\n  {line}\n" in plan.stdout
    assert mlserve("deploy", str(spec), "--yes").returncode == 0
    status = mlserve("status", str(spec))
    assert f"traffic      v1 95%, v2 5%\nserved       {line}\n" in status.stdout
    document = json.loads(mlserve("status", str(spec), "--json").stdout)
    assert document["served"] == {
        "gateway": "Kong",
        "weights": {"v1": 95.24, "v2": 4.76},
        "why": "Target weights are integers: v1 100, v2 5",
    }


def test_json_output_is_one_document_on_stdout(fake: Fake) -> None:
    result = mlserve("deploy", SPEC, "--yes", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["applied"] is True
    assert document["outputs"]["weights"] == {"v1": 90, "v2": 10}
    assert document["plan"]["changes"] == {"create": 7}
    assert document["plan"]["pulumiChanges"] == {"create": 8}  # and the stack itself
    assert document["changes"] == {"create": 7}
    assert "created a passphrase" in result.stderr


def test_a_held_lock_exits_3_and_a_failed_update_exits_5(fake: Fake) -> None:
    fake.set(locked=-1)
    busy = mlserve("deploy", SPEC, "--yes", "--lock-timeout", "0.2")
    assert busy.returncode == 3
    assert "is locked by another update and was not released within --lock-timeout 0.2s" in (
        busy.stderr
    )
    assert "pulumi cancel --yes --stack dev --cwd" in busy.stderr

    fake.set(fail={"up": {"Deployment::fraud-detector-v2": "Deployment ml/fraud-detector-v2 "
                          "never became ready"}})  # fmt: skip
    failed = mlserve("deploy", SPEC, "--yes")
    assert failed.returncode == 5
    assert failed.stderr.endswith(
        "error: the update failed: fraud-detector-v2: Deployment ml/fraud-detector-v2 never "
        "became ready (run with --debug for the engine's full output)\n"
    )


def test_a_bad_lock_timeout_exits_2(fake: Fake) -> None:
    result = mlserve("deploy", SPEC, "--yes", "--lock-timeout", "soon")
    assert result.returncode == 2
    assert result.stderr == (
        "error: --lock-timeout: 'soon' is not a duration (use 0, 45s, 5m or 1h; a plain number "
        "is seconds)\n"
    )


def test_project_must_match_the_spec(fake: Fake) -> None:
    result = mlserve("plan", SPEC, "--project", "other")
    assert result.returncode == 2
    assert result.stderr == (
        "error: --project 'other' does not match the spec's name 'fraud-detector' "
        "(the project is taken from the spec)\n"
    )


SECRET = "Pa55phrase-that-must-never-print"
PROJECT_ARG = ("--project", "fraud-detector")
LEAKS = {"leak": True}  # the stand-in's failure texts carry the passphrase
# case: (starts from a deployed stack, knobs, the commands in order, their exit codes)
PASSPHRASE_RUNS: dict[str, tuple[bool, dict[str, object], list[list[str]], list[int]]] = {
    "plan": (False, {}, [["plan", SPEC]], [0]),
    "deploy": (False, {}, [["deploy", SPEC, "--yes", "--debug"]], [0]),
    "status": (True, {}, [["status", *PROJECT_ARG, "--refresh", "--debug"]], [0]),
    "history": (True, {}, [["history", *PROJECT_ARG, "--json"]], [0]),
    "doctor": (False, {}, [["doctor", SPEC, "--debug"]], [4]),  # no kubeconfig: exit 4
    "failed-deploy-twice": (
        False,
        {"fail": {"up": "engine dumped its environment"}, **LEAKS},
        [
            ["deploy", SPEC, "--yes", "--debug", "--stack", "prod"],
            ["deploy", SPEC, "--yes", "--stack", "prod"],
        ],
        [5, 5],
    ),
    "program-error": (
        True,
        {"program_error": "boom", **LEAKS},
        [["plan", SPEC, "--debug", "--json"]],
        [5],
    ),
    "destroy": (True, {}, [["destroy", "--yes", *PROJECT_ARG, "--debug"]], [0]),
}


@pytest.mark.parametrize("case", list(PASSPHRASE_RUNS))
def test_the_passphrase_never_appears_in_any_output(
    fake: Fake, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, case: str
) -> None:
    """One case per command (each runs as a process of its own, the expensive part, so the
    cases run in parallel); a command about a deployed stack starts from the one `deploy SPEC
    --yes` left with the same passphrase."""
    deployed, knobs, commands, codes = PASSPHRASE_RUNS[case]
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", SECRET)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))  # doctor fails: exit 4
    if deployed:
        fake.deployed(REPO / "specs" / "istio.yaml", passphrase=SECRET)
    fake.set(**knobs)
    runs = [run_mlserve(*args) for args in commands]

    assert [r.returncode for r in runs] == codes
    if "fail" in knobs:
        assert "passphrase was [secret]" in runs[0].stderr  # the leak was there, and scrubbed
    for r in runs:
        assert SECRET not in r.stdout
        assert SECRET not in r.stderr


def readme_block(after: str, language: str) -> str:
    """The first ```LANGUAGE block after the line `after` in the README."""
    text = (REPO / "README.md").read_text(encoding="utf-8").split(f"\n{after}\n", 1)[1]
    return text.split(f"```{language}\n", 1)[1].split("```\n", 1)[0]


def test_the_readme_try_it_locally_steps_run_as_written(fake: Fake, tmp_path: Path) -> None:
    """Under the stand-in, not a cluster: the spec is valid and every mlserve step succeeds."""
    spec = tmp_path / "try.yaml"
    spec.write_text(readme_block("## Try it locally", "yaml"), encoding="utf-8")
    steps = [
        line.split("#", 1)[0].split()
        for line in readme_block("## Try it locally", "sh").splitlines()
        if line.startswith("mlserve ")
    ]
    assert [s[1] for s in steps] == [
        "setup", "plan", "deploy", "promote", "promote", "rollback", "history", "destroy",
    ]  # fmt: skip
    for words in steps:
        result = mlserve(*[str(spec) if w == "try.yaml" else w for w in words[1:]])
        assert result.returncode == 0, (words, result.stderr)
    history = mlserve("history", str(spec), "--stack", "try", "--json")
    assert [r["command"] for r in json.loads(history.stdout)] == [
        "mlserve destroy",
        "mlserve rollback",
        "mlserve promote --complete",
        "mlserve deploy",
    ]
    # The weighted variant the README describes: gateway istio with a host, weight 10.
    text = spec.read_text(encoding="utf-8")
    text = re.sub(
        r"  type: service.*\n  service: .*\n", "  type: istio\n  host: try.example.com\n", text
    )
    text = text.replace("  canary: v2", "  canary: v2\n  weight: 10")
    spec.write_text(text, encoding="utf-8")
    plan = mlserve("plan", str(spec), "--stack", "try")
    assert plan.returncode == 0, plan.stderr
    assert "  traffic: v1 90%, v2 10% (first deploy)\n" in plan.stdout  # after the destroy
