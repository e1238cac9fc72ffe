import subprocess
import sys


def test_help_lists_every_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mlserve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in (
        "validate",
        "render",
        "plan",
        "deploy",
        "promote",
        "rollout",
        "rollback",
        "status",
        "history",
        "destroy",
        "doctor",
        "setup",
        "schema",
    ):
        assert command in out
