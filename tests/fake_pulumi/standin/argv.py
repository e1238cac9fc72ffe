"""The command line as the automation API builds it (sdk/python/lib/pulumi/automation/_stack.py,
_local_workspace.py): command words, flags (`--f v` or `--f=v`) and what follows `--`."""

from __future__ import annotations

from dataclasses import dataclass, field

from .control import EXIT_CONFIGURATION, Fail

VALUE_FLAGS = {
    "--stack", "-s", "--event-log", "--client", "--exec-kind", "--color", "--message", "-m",
    "--target", "--replace", "--exclude", "--secrets-provider", "--page-size", "--page",
    "--plaintext", "--secret", "--parallel", "-p", "--cwd", "-C", "--server", "--json-input",
    "--config-file", "--policy-pack", "--policy-pack-config", "--tracing", "--verbose", "-v",
    "--save-plan", "--plan", "--import-file", "--file", "--run-program", "--exec-agent",
    "--path-separator",
}  # fmt: skip
BOOL_FLAGS = {
    "--non-interactive", "--yes", "-y", "--skip-preview", "--json", "-j", "--show-secrets",
    "--diff", "--debug", "--force", "--preview-only", "--clear-pending-creates",
    "--expect-no-changes", "--target-dependents", "--exclude-dependents", "--logflow",
    "--logtostderr", "--suppress-outputs", "--suppress-progress", "--continue-on-error",
    "--attach-debugger", "--refresh", "--exclude-protected", "--preserve-config", "--remove",
    "--no-select", "--path", "--help", "-h", "--full-dates", "--all", "--create",
}  # fmt: skip
REPEATED = {"--target", "--replace", "--exclude", "--plaintext", "--secret", "--policy-pack"}
ALIASES = {"-s": "--stack", "-m": "--message", "-C": "--cwd", "-y": "--yes", "-j": "--json",
           "-p": "--parallel", "-v": "--verbose", "-h": "--help"}  # fmt: skip


@dataclass
class Argv:
    words: list[str]
    flags: dict[str, str] = field(default_factory=dict)
    lists: dict[str, list[str]] = field(default_factory=dict)
    rest: list[str] = field(default_factory=list)

    def has(self, flag: str) -> bool:
        """A boolean flag that is set (`--f`, `--f=true`)."""
        return self.flags.get(flag, "false").lower() in ("true", "1", "")

    def get(self, flag: str, default: str | None = None) -> str | None:
        return self.flags.get(flag, default)

    def many(self, flag: str) -> list[str]:
        return self.lists.get(flag, [])


def parse(argv: list[str]) -> Argv:
    out = Argv(words=[])
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            out.rest = argv[i + 1 :]
            break
        if arg.startswith("-") and arg != "-":
            name, eq, value = arg.partition("=")
            if name not in VALUE_FLAGS and name not in BOOL_FLAGS:
                # cobra's message for an unknown flag (spf13/cobra flag parsing).
                raise Fail(f"error: unknown flag: {name}", code=EXIT_CONFIGURATION)
            if name in VALUE_FLAGS and not eq:
                i += 1
                if i >= len(argv):
                    raise Fail(f"error: flag needs an argument: {name}", code=EXIT_CONFIGURATION)
                value = argv[i]
            elif not eq:
                value = "true"
            name = ALIASES.get(name, name)
            if name in REPEATED:
                out.lists.setdefault(name, []).append(value)
            else:
                out.flags[name] = value
        else:
            out.words.append(arg)
        i += 1
    return out
