"""Help that reads like a well-kept CLI's (kubectl, gh): what to type, choices, env vars in one
form, an example per command, and --version."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import typer.main
from typer.testing import CliRunner

from mlserve import __version__
from mlserve.cli import ENVIRONMENT, app

GROUP = typer.main.get_command(app)
COMMANDS = sorted(GROUP.commands)  # type: ignore[attr-defined]
NO_SPEC = ("promote", "mirror", "rollback", "status", "history", "destroy")


def help_of(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_help_lists_every_command_and_every_environment_variable_an_option_reads() -> None:
    text = help_of()
    for name in COMMANDS:
        assert re.search(rf"^  {name} ", text, re.M), name
    envvars = {
        env
        for command in GROUP.commands.values()  # type: ignore[attr-defined]
        for p in command.params
        for env in ([p.envvar] if isinstance(p.envvar, str) else p.envvar or [])
    }
    listed = " ".join(name for name, _ in ENVIRONMENT)
    assert envvars and all(env in listed for env in envvars), envvars
    assert "Environment:" in text and "NO_COLOR" in text


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_says_what_to_type_and_shows_an_example(command: str) -> None:
    text = help_of(command)
    usage = text.split("Usage:\n", 1)[1].splitlines()[0]
    assert usage.startswith(f"  mlserve {command} ") and usage.endswith("[options]"), usage
    for leak in (
        r"\{\w+\}",
        "<list",
        "<str>",
        "<int>",
        "<path>",
        "<bool>",
        r"\[OPTIONS\]",
        r"\(env ",
    ):
        assert not re.search(leak, text), (leak, text)
    options = text.split("Options:\n", 1)[1].split("\n\n", 1)[0]
    for line in options.splitlines():
        m = re.match(r"^  (?:-\w, |    )(--[\w-]+)(?: (\S+))?   ", line)
        if m and m.group(2):  # an option that takes a value: a metavar or the choices
            assert re.fullmatch(r"[A-Z]+|[a-z]+(\|[a-z]+)+", m.group(2)), line
    examples = text.split("Examples:\n", 1)[1]
    assert re.match(rf"  mlserve {command}\b", examples), examples


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_json(command: str) -> None:
    assert "      --json " in help_of(command)


def test_render_lists_its_output_formats() -> None:
    assert "  -o, --output yaml|json|kong   " in help_of("render")


def test_project_help_fits_commands_with_and_without_a_spec() -> None:
    for command in NO_SPEC:
        text = " ".join(help_of(command).split())
        assert (
            "--project NAME The project: the `name` in the deployed spec. Needed without a " in text
        )
        usage = help_of(command).split("Usage:\n", 1)[1].splitlines()[0]
        assert usage == f"  mlserve {command} [FILE] [options]"
        assert "Needs the project: a spec FILE, or --project." in text
    for command in ("plan", "deploy"):
        assert "default and only allowed value: the spec's `name`" in help_of(command)


def test_env_vars_are_shown_one_way() -> None:
    text = help_of("promote")
    assert "[default: dev] [env: MLSERVE_STACK]" in text
    assert "[env: MLSERVE_BACKEND_URL, PULUMI_BACKEND_URL]" in " ".join(text.split())


def test_version_and_bare_invocation() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert (result.exit_code, result.stdout) == (0, f"mlserve {__version__}\n")
    bare = CliRunner().invoke(app, [])
    assert (bare.exit_code, bare.stdout) == (2, "")  # no command: a usage error
    assert bare.stderr.startswith("mlserve: serve versioned ML models")
    assert "Usage:\n  mlserve COMMAND [options]" in bare.stderr


def test_help_names_every_variable_mlserve_and_its_providers_read() -> None:
    text = " ".join(help_of().split())
    for name in (
        "MLSERVE_PROMETHEUS_URL",
        "MLSERVE_PROMETHEUS_TOKEN",
        "MLSERVE_PROMETHEUS_USER",
        "MLSERVE_PROMETHEUS_PASSWORD",
        "MLSERVE_PROMETHEUS_TIMEOUT",
        "KONG_ADMIN_ADDR",
        "KONG_ADMIN_TOKEN",
        "KONG_API_KEY",
        "KONG_ADMIN_USERNAME",
        "KONG_ADMIN_PASSWORD",
    ):
        assert name in text, name
    assert "gs://, postgres:// or Pulumi Cloud" in " ".join(help_of("status").split())
    assert "--limit N " in help_of("history")


def test_shell_completion_completes_commands_and_options_in_a_real_process() -> None:
    def complete(words: str) -> list[str]:
        env = {
            **os.environ,
            "_MLSERVE_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - 1),
        }
        done = subprocess.run(
            [sys.executable, "-m", "mlserve"], env=env, capture_output=True, text=True, check=True
        )
        return done.stdout.split()

    assert complete("mlserve pro") == ["promote"]
    assert "--dry-run" in complete("mlserve rollback --d")
    assert "--install-completion" in help_of()


def test_short_help_flag() -> None:
    short = CliRunner().invoke(app, ["render", "-h"], env={"COLUMNS": "100"})  # as help_of's
    assert short.stdout == help_of("render")


def test_help_follows_the_terminal_width() -> None:
    wide = CliRunner().invoke(app, ["promote", "--help"], env={"COLUMNS": "120"}).stdout
    narrow = CliRunner().invoke(app, ["promote", "--help"], env={"COLUMNS": "60"}).stdout

    def widest(text: str) -> int:  # examples are commands to copy: never wrapped
        return max(map(len, text.split("Examples:")[0].splitlines()))

    assert widest(wide) <= 120
    assert widest(narrow) <= 60 < widest(wide)


def test_help_in_a_real_process_names_the_program_mlserve() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mlserve", "status", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Usage:\n  mlserve status [FILE] [options]\n" in out
