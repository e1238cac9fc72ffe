"""The typer app: parse, call one function, print. The only place that knows exit codes.

Keep imports here light: `mlserve --help` and `validate` must not import Pulumi, so every
command imports what it needs inside its body.

To add a command: `@app.command(rich_help_panel=...)` with a docstring whose first line is the
summary and whose `Examples:` section shows one call; take the shared options below (`Stack`,
`Project`, `Json`, ...); wrap the body in `with _errors(debug):` (`at_once=True` if it has
nothing to finish when interrupted: Ctrl-C then ends the process at once). Errors, --json error
documents, exit codes and the help layout then come for free.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from mlserve import __version__, interrupt
from mlserve.errors import MlserveError, SpecError, UsageError

if TYPE_CHECKING:
    from mlserve.engine import Target
    from mlserve.spec import Spec

# --- errors: one mapping from failures to messages, --json documents and exit codes ---------

# The `kind` of each exit code in a --json error document. Stable: pipelines match on it.
KINDS = {
    1: "unexpected",
    2: "usage",
    3: "busy",
    4: "engine-unavailable",
    5: "operation-failed",
    6: "precondition",
    7: "analysis-failed",
    10: "pending-changes",
    130: "interrupted",
}
BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `cat` or `git log` cut off by `head`
_run_flags: ContextVar[tuple[bool, bool]] = ContextVar("run_flags", default=(False, False))


def _debug_env() -> bool:
    return os.environ.get("MLSERVE_DEBUG", "").lower() not in ("", "0", "false", "no")


def _fail(error: BaseException, debug: bool) -> int:
    """Say what failed (stderr; with --json also one document on stdout); return the exit code."""
    from mlserve import output

    json_out, debug_flag = _run_flags.get()
    debug = debug or debug_flag or _debug_env()
    if isinstance(error, MlserveError):
        code, message = error.exit_code, str(error)
    elif isinstance(error, typer.TyperException):  # the parser's: no such option, bad value
        code, message = 2, error.format_message()
    elif isinstance(error, KeyboardInterrupt | typer.Abort):
        code, message = 130, "interrupted"
    else:
        code = 1
        message = f"unexpected error: {type(error).__name__}: {error}"
        if not debug:
            message += " (run with --debug for details)"
    if debug and code != 2:
        import traceback

        traceback.print_exception(error)
    plain = output.is_plain(sys.stderr) or json_out
    typer.echo(f"{output.paint('error:', 'error', output.colour(plain))} {message}", err=True)
    if json_out and not output.document_printed():
        output.print_document({"error": _error_body(error, code, message)})
    return code


def _error_body(error: BaseException, code: int, message: str) -> dict[str, Any]:
    """The `error` object of a --json document: code, kind, message (and a spec's problems)."""
    kind = "spec" if isinstance(error, SpecError) else KINDS.get(code, "unexpected")
    body: dict[str, Any] = {"code": code, "kind": kind, "message": message}
    if isinstance(error, SpecError):
        body["problems"] = [p.to_json() for p in error.problems]
    return body


def _with_error(document: dict[str, Any], error: MlserveError | None) -> dict[str, Any]:
    """A report that is itself the failure (doctor's checks, plan --exit-code's plan) carries the
    `error` object beside its fields, as every failing --json document does."""
    if error is None:
        return document
    return {**document, "error": _error_body(error, error.exit_code, str(error))}


@contextlib.contextmanager
def _errors(debug: bool, *, at_once: bool = False) -> Iterator[None]:
    """Around each command's body: every failure becomes a message and its exit code. Ctrl-C is
    a KeyboardInterrupt inside, so that the command can finish what it started; with `at_once`
    (nothing to finish: render, validate, schema) it ends the process at once (interrupt.py)."""
    try:
        with contextlib.nullcontext() if at_once else interrupt.raising():
            yield
    except (typer.Exit, BrokenPipeError):
        raise
    except (Exception, KeyboardInterrupt) as e:
        raise typer.Exit(_fail(e, debug)) from None


def _flag(argv: Sequence[str], name: str) -> bool:
    return name in argv[: argv.index("--")] if "--" in argv else name in argv


def _flushed(code: int) -> int:
    """The exit code once what is buffered for stdout is written: a full disk is said here
    (exit 2, as `_stdout_errors`), not by Python at exit."""
    try:
        with _stdout_errors():
            sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        return BROKEN_PIPE
    except UsageError as e:
        typer.echo(f"error: {e}", err=True)
        return code or UsageError.exit_code
    return code


def _run(group: TyperGroup, argv: list[str], prog_name: str, extra: dict[str, Any]) -> int:
    """Parse and invoke; what fails before or around a command's body is mapped here."""
    from mlserve import output

    output.start_run()
    token = _run_flags.set((_flag(argv, "--json"), _flag(argv, "--debug")))
    try:
        with group.make_context(prog_name, argv, **extra) as ctx:
            group.invoke(ctx)
        return _flushed(0)
    except typer.Exit as e:
        return _flushed(e.exit_code)
    except BrokenPipeError:
        # The reader went away (`mlserve schema | head -1`): stop quietly, and keep Python's
        # final flush of stdout from failing again at exit.
        _silence_stdout()
        return BROKEN_PIPE
    except (Exception, KeyboardInterrupt) as e:
        code = _fail(e, debug=False)
        if isinstance(e, typer.TyperException) and getattr(e, "ctx", None) is not None:
            typer.echo(f"See '{e.ctx.command_path} --help' for usage.", err=True)  # type: ignore[attr-defined]
        return code
    finally:
        _run_flags.reset(token)


# --- help: laid out as kubectl and gh lay theirs out ----------------------------------------

ENVIRONMENT = [
    ("MLSERVE_STACK, MLSERVE_PROJECT", "defaults for --stack and --project"),
    (
        "MLSERVE_BACKEND_URL, PULUMI_BACKEND_URL",
        "the state backend, the first one set; default file://~/.mlserve/state",
    ),
    ("MLSERVE_HOME", "mlserve's own files: workspaces, the pinned Pulumi CLI (default ~/.mlserve)"),
    ("PULUMI_CONFIG_PASSPHRASE[_FILE]", "the passphrase that encrypts stack secrets"),
    ("KUBECONFIG", "the cluster, as for kubectl"),
    ("KONG_ADMIN_ADDR", "Kong's Admin API when the spec has no gateway.kong.adminUrl"),
    (
        "KONG_ADMIN_TOKEN, KONG_API_KEY, KONG_ADMIN_USERNAME and KONG_ADMIN_PASSWORD",
        "Kong Admin API credentials, as the Kong provider reads them (spec files hold no "
        "secrets); TLS_SKIP_VERIFY=true skips checking its certificate",
    ),
    ("ARM_*, or az login", "Azure credentials, for azure-apim"),
    ("MLSERVE_PROMETHEUS_URL", "rollout: the Prometheus to query, as --prometheus"),
    (
        "MLSERVE_PROMETHEUS_TOKEN, or MLSERVE_PROMETHEUS_USER and MLSERVE_PROMETHEUS_PASSWORD",
        "rollout: Prometheus credentials (bearer token, or basic auth)",
    ),
    ("MLSERVE_PROMETHEUS_TIMEOUT", "rollout: seconds one query may take (default 10)"),
    ("MLSERVE_DEBUG=1", "tracebacks and the engine's full output, as --debug"),
    ("NO_COLOR", "no colour"),
    ("CI=true", "no colour, no live display, no prompts (as when output is not a terminal)"),
]


def _width() -> int:
    return max(60, min(shutil.get_terminal_size((100, 24)).columns, 120))


def _rows(rows: Sequence[tuple[str, str]], left: int | None = None, indent: int = 2) -> str:
    """Two columns, the second wrapped to the terminal's width; on a narrow terminal, the second
    goes under the first."""
    left = left or min(max((len(a) for a, _ in rows), default=0), 34)
    width = _width() - indent - left - 3
    stacked = width < 30
    if stacked:
        left, width = 5, _width() - indent - 8
    lines = []
    for a, b in rows:
        wrapped = textwrap.wrap(b, width) or [""]
        if stacked or len(a) > left:
            lines.append(" " * indent + a)
            lines += [" " * (indent + left + 3) + w for w in wrapped if w]
        else:
            lines.append(" " * indent + a.ljust(left) + "   " + wrapped[0])
            lines += [" " * (indent + left + 3) + w for w in wrapped[1:]]
    return "\n".join(lines)


def _wrap(text: str) -> str:
    """Paragraphs refilled to the terminal's width."""
    paragraphs = [" ".join(p.split()) for p in text.strip().split("\n\n")]
    return "\n\n".join(textwrap.fill(p, _width()) for p in paragraphs)


def _split_doc(doc: str) -> tuple[str, str]:
    """(description, examples) of a command's docstring."""
    head, _, examples = doc.partition("\nExamples:\n")
    return head.strip(), textwrap.dedent(examples).strip("\n")


def _argument_name(p: Any) -> str:
    name = p.metavar or p.name.upper()
    name += "..." if p.nargs == -1 else ""
    return name if p.required else f"[{name}]"


def _option_row(p: Any) -> tuple[str, str]:
    longs = [o for o in p.opts if o.startswith("--")]
    shorts = [o for o in p.opts if not o.startswith("--")]
    names = ", ".join([*shorts, *longs]) if shorts else "    " + ", ".join(longs)
    if not p.is_flag:
        names += f" {p.metavar or 'VALUE'}"
    text = "Show this help." if p.name == "help" else (p.help or "")
    if not p.is_flag and p.default not in (None, "") and p.show_default is not False:
        text += f" [default: {p.default}]"
    if p.envvar:
        envvars = [p.envvar] if isinstance(p.envvar, str) else list(p.envvar)
        text += f" [env: {', '.join(envvars)}]"
    return names, text


class Command(TyperCommand):
    """A command whose help reads: summary, usage, arguments, options, examples."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        args = [_argument_name(p) for p in self.get_params(ctx) if p.param_type_name == "argument"]
        return [*args, "[options]"]

    def format_help(self, ctx: Any, formatter: Any) -> None:
        description, examples = _split_doc(self.help or "")
        description = _wrap(description)
        params: list[Any] = self.get_params(ctx)
        arguments = [
            (_argument_name(p), p.help or "") for p in params if p.param_type_name == "argument"
        ]
        options = [_option_row(p) for p in params if p.param_type_name == "option" and not p.hidden]
        parts = [
            description,
            f"Usage:\n  {ctx.command_path} {' '.join(self.collect_usage_pieces(ctx))}",
        ]
        if arguments:
            parts.append("Arguments:\n" + _rows(arguments))
        parts.append("Options:\n" + _rows(options))
        if examples:
            parts.append("Examples:\n" + textwrap.indent(examples, "  "))
        formatter.write("\n\n".join(parts) + "\n")


class Group(TyperGroup):
    """mlserve itself: its help lists the commands by panel and the environment variables; its
    `main` is where every run starts, so parser errors and a closed stdout are mapped too."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        panels: dict[str, list[tuple[str, str]]] = {}
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            summary = (command.help or "").strip().splitlines()[0] if command.help else ""
            panel = getattr(command, "rich_help_panel", None) or "Commands"
            panels.setdefault(panel, []).append((name, summary))
        params: list[Any] = self.get_params(ctx)
        options = [_option_row(p) for p in params if not p.hidden]
        left = max(len(name) for rows in panels.values() for name, _ in rows)
        parts = [
            _wrap(self.help or ""),
            f"Usage:\n  {ctx.command_path} COMMAND [options]",
            *(f"{panel}:\n" + _rows(rows, left) for panel, rows in panels.items()),
            "Options:\n" + _rows(options),
            "Environment:\n" + _rows(ENVIRONMENT),
            f"Run '{ctx.command_path} COMMAND --help' for a command's options and an example.",
        ]
        formatter.write("\n\n".join(parts) + "\n")

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        # A shell asking for completions (_MLSERVE_COMPLETE set): answer and exit (typer's own).
        self._main_shell_completion(extra, prog_name or "mlserve", complete_var)
        code = _run(self, argv, prog_name or "mlserve", extra)
        if not standalone_mode:
            return code
        interrupt.end(code)


class App(typer.Typer):
    """typer.Typer whose commands lay out their help as `Command` does."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        kwargs.setdefault("cls", Command)
        return super().command(*args, **kwargs)


app = App(
    name="mlserve",
    help="mlserve: serve versioned ML models behind a gateway, with canary traffic (Pulumi).",
    cls=Group,
    invoke_without_command=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

SPEC_PANEL = "Spec commands (offline)"
STACK_PANEL = "Stack commands"
SETUP_PANEL = "Set-up"


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", help="Print mlserve's version and exit.", is_eager=True)
    ] = False,
) -> None:
    if version:
        typer.echo(f"mlserve {__version__}")
        raise typer.Exit()
    if ctx.invoked_subcommand is None:  # no command: a usage error, help on stderr (as click's)
        typer.echo(ctx.get_help(), err=True)
        raise typer.Exit(2)


# --- shared options (DESIGN.md section 2): one definition each, so every command says the same -

SpecFile = Annotated[
    Path,
    typer.Argument(
        metavar="FILE", help="The spec file (YAML, apiVersion mlserve/v1); - reads it from stdin."
    ),
]
Stack = Annotated[
    str,
    typer.Option(
        "--stack", metavar="NAME", envvar="MLSERVE_STACK", help="The stack: one environment."
    ),
]
Project = Annotated[
    str | None,
    typer.Option(
        "--project",
        metavar="NAME",
        envvar="MLSERVE_PROJECT",
        help="The project: the `name` in the deployed spec. Needed without a spec FILE.",
    ),
]
StackSpec = Annotated[
    Path | None,
    typer.Argument(
        metavar="FILE",
        help="A spec file to take the project from (its `name`; nothing else of it is used). "
        "Without one, give --project.",
        show_default=False,
    ),
]
SpecProject = Annotated[
    str | None,
    typer.Option(
        "--project",
        metavar="NAME",
        envvar="MLSERVE_PROJECT",
        help="The project; default and only allowed value: the spec's `name`.",
    ),
]
Backend = Annotated[
    str | None,
    typer.Option(
        "--backend",
        metavar="URL",
        envvar=["MLSERVE_BACKEND_URL", "PULUMI_BACKEND_URL"],
        show_envvar=True,
        help="Where stack state lives: file://DIR, s3://, azblob://, gs://, postgres:// or "
        "Pulumi Cloud (https://). Default: file://~/.mlserve/state.",
    ),
]
Json = Annotated[
    bool,
    typer.Option(
        "--json", help='Print one JSON document on stdout; a failure prints {"error": ...}.'
    ),
]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
Debug = Annotated[
    bool,
    typer.Option(
        "--debug", envvar="MLSERVE_DEBUG", help="Show tracebacks and the engine's full output."
    ),
]
# For a routing-only command: pass it on to ops (live.routing_update's dry_run).
DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Preview the update (Pulumi preview, same targets): the new split and the objects "
        "that would change; nothing is changed.",
    ),
]
LockTimeout = Annotated[
    str,
    typer.Option(
        "--lock-timeout",
        metavar="DURATION",
        help="While another update holds the stack, wait this long (0, 45s, 5m) before exit 3.",
    ),
]


def _load(file: Path) -> Spec:
    from mlserve.spec import load_spec

    return load_spec(file)


def _stack_target(
    file: Path | None, project: str | None, stack: str, backend: str | None
) -> Target:
    """The stack a command acts on: the project from the spec FILE if given, else --project."""
    from mlserve import ops

    return ops.target_for(_load(file) if file is not None else None, project, stack, backend)


# --- validate / schema / render (spec, offline) ---------------------------------------------


@app.command(rich_help_panel=SPEC_PANEL)
def validate(
    files: Annotated[
        list[Path], typer.Argument(metavar="FILE", help="Spec files to check; - reads stdin.")
    ],
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """Check spec files against the schema and the gateway's rules; nothing else is touched.

    Prints `FILE: valid` per good file, or one line per problem (file:line:column: path: message);
    exits 2 if any file has a problem. With --json: one list of problems, [] when all are valid.

    Examples:
      mlserve validate specs/*.yaml
      git show main:spec.yaml | mlserve validate -
    """
    with _errors(debug, at_once=True):
        from mlserve import output
        from mlserve.errors import Problem

        problems: list[Problem] = []
        invalid = 0
        errors_colour = output.colour(output.is_plain(sys.stdout))
        notes_colour = output.colour(output.is_plain(sys.stderr) or json_out)
        for file in files:
            try:
                spec = _load(file)
            except SpecError as e:
                problems.extend(e.problems)
                invalid += 1
                if not json_out:
                    typer.echo("\n".join(output.problem_line(p, errors_colour) for p in e.problems))
            else:
                for note in spec.notes:  # notes and warnings: the spec stays valid (exit 0)
                    typer.echo(output.problem_line(note, notes_colour), err=True)
                if not json_out:
                    typer.echo(f"{'<stdin>' if str(file) == '-' else file}: valid")
        if json_out:
            output.print_document([p.to_json() for p in problems])
        if problems:
            if not json_out:
                count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
                typer.echo(f"{count} in {invalid} of {len(files)} files", err=True)
            raise typer.Exit(2)


@app.command(rich_help_panel=SPEC_PANEL)
def schema(json_out: Json = False, debug: Debug = False) -> None:
    """Print the spec's JSON Schema (editors use it for completion and checks).

    The output is JSON either way; --json makes a failure a JSON document too.

    Examples:
      mlserve schema > mlserve.schema.json
    """
    with _errors(debug, at_once=True):
        from mlserve.spec import schema_text

        typer.echo(schema_text(), nl=False)


@app.command(rich_help_panel=SPEC_PANEL)
def render(
    file: SpecFile,
    output_format: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--output",
            metavar="yaml|json|kong",
            show_default=False,
            help="yaml: the Kubernetes objects, for kubectl (the default); json: every resource "
            "as {type, name, inputs}; kong: the Kong resources in decK's format.",
        ),
    ] = None,
    out: Annotated[
        str | None,  # not Path: typer would read --out "" as the current directory
        typer.Option(
            "--out", metavar="DIR", help="Write one file per resource into DIR instead of stdout."
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help='The same as -o json; a failure prints {"error": ...}.')
    ] = False,
    debug: Debug = False,
) -> None:
    """Print the resources a deploy would declare, offline (no Pulumi CLI, cluster or credentials).

    The program runs under Pulumi's mocks. -o yaml prints Kubernetes objects only, so the stream
    goes straight to `kubectl apply -f -`; what it leaves out (Kong, Azure resources) is named on
    stderr with the option that shows it. -o kong prints the Kong resources as a decK file
    (_format_version "3.0", tagged for `deck gateway diff --select-tag`).

    Examples:
      mlserve render specs/istio.yaml | kubectl apply --dry-run=server -f -
      mlserve render specs/kong.yaml -o kong > kong.yaml && deck gateway diff kong.yaml
    """
    with _errors(debug, at_once=True):
        from mlserve import output
        from mlserve import render as rendering

        fmt = output_format or ("json" if json_out else "yaml")
        if fmt not in rendering.FORMATS:
            raise UsageError(f"-o must be yaml, json or kong, not {fmt!r}")
        if json_out and fmt != "json":
            raise UsageError(f"--json prints JSON: drop -o {fmt}, or drop --json")
        if out == "":
            raise UsageError("--out needs a directory name (--out . for the current directory)")
        resources = rendering.render(_load(file))
        if out is None:
            if json_out:
                output.begin_document()
            with _stdout_errors():
                rendering.write(resources, fmt, sys.stdout)
                sys.stdout.flush()
        else:
            # Interrupted, write_files removes its staging directory (render.py).
            with interrupt.raising(teardown=False):
                written = rendering.write_files(resources, Path(out), fmt)
            for path in written:
                typer.echo(f"wrote {path}")
        note = rendering.left_out(resources, fmt)
        if note:
            typer.echo(note, err=True)


@contextlib.contextmanager
def _stdout_errors() -> Iterator[None]:
    """Standard output that cannot take what is written (a full disk, /dev/full, an I/O error)
    is a clear error, exit 2 as for an --out directory that cannot be written; a closed pipe
    stays exit 141 (_run)."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as e:
        _silence_stdout()
        raise UsageError(f"cannot write to standard output ({e.strerror or e})") from None


def _silence_stdout() -> None:
    """Standard output to /dev/null: what is still buffered goes nowhere instead of failing
    again when Python flushes it at exit."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


# --- engine: plan, deploy, status, history, destroy ------------------------------------------


@app.command(rich_help_panel=STACK_PANEL)
def plan(
    file: SpecFile,
    stack: Stack = "dev",
    project: SpecProject = None,
    backend: Backend = None,
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="Exit 10 when changes are pending.")
    ] = False,
    lock_timeout: LockTimeout = "0",
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """Preview what a deploy would create, update, replace or delete, weights included.

    Examples:
      mlserve plan spec.yaml --stack prod --exit-code
    """
    with _errors(debug):
        from mlserve import ops, output
        from mlserve.errors import PendingChangesError

        timeout = ops.parse_duration(lock_timeout)
        spec = _load(file)
        target = ops.target_for(spec, project, stack, backend)
        ui = output.Ui(json_out)
        try:
            report = ops.plan(
                spec, target, sink=ui.sink(), lock_timeout=timeout, debug=debug or _debug_env()
            )
        finally:
            ui.close()
        pending = (
            PendingChangesError("changes are pending (plan --exit-code)")
            if exit_code and report.pending
            else None
        )
        ui.show(output.render_plan(report, ui.plain), _with_error(report.to_json(), pending))
        if pending is not None:
            raise pending


@app.command(rich_help_panel=STACK_PANEL)
def deploy(
    file: SpecFile,
    stack: Stack = "dev",
    project: SpecProject = None,
    backend: Backend = None,
    yes: Yes = False,
    reset_traffic: Annotated[
        bool,
        typer.Option(
            "--reset-traffic", help="Apply the spec's traffic as written, not the live weight."
        ),
    ] = False,
    lock_timeout: LockTimeout = "0",
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """Preview, confirm, then deploy the spec (without a terminal, --yes is required).

    A routine deploy keeps a canary's live weight (with a warning) rather than the spec's.

    Examples:
      mlserve deploy spec.yaml --stack prod --yes
    """
    with _errors(debug):
        from mlserve import ops, output

        if not yes and not sys.stdin.isatty():
            raise UsageError("deploy needs --yes when there is no terminal")
        timeout = ops.parse_duration(lock_timeout)
        spec = _load(file)
        target = ops.target_for(spec, project, stack, backend)
        ui = output.Ui(json_out)
        try:
            report = ops.deploy(
                spec,
                target,
                sink=ui.sink(),
                confirm=None if yes else lambda plan: ui.confirm("Deploy these changes?"),
                on_plan=lambda plan: ui.show_plan(output.render_plan(plan, ui.plain)),
                lock_timeout=timeout,
                reset_traffic=reset_traffic,
                debug=debug or _debug_env(),
            )
        finally:
            ui.close()
        ui.show(output.render_deploy(report, ui.plain), report.to_json())


@app.command(rich_help_panel=STACK_PANEL)
def status(
    file: StackSpec = None,
    stack: Stack = "dev",
    project: Project = None,
    backend: Backend = None,
    refresh: Annotated[
        bool,
        typer.Option("--refresh", help="First reconcile with the real world and report drift."),
    ] = False,
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """Show a stack's versions, live weights, endpoint and last update.

    Needs the project: a spec FILE, or --project.

    Examples:
      mlserve status specs/istio.yaml --stack prod
      mlserve status --stack prod --project fraud-detector
    """
    with _errors(debug):
        from mlserve import ops, output

        target = _stack_target(file, project, stack, backend)
        ui = output.Ui(json_out)
        try:
            report = ops.status(
                target, refresh=refresh, sink=ui.sink(), debug=debug or _debug_env()
            )
        finally:
            ui.close()
        ui.show(output.render_status(report, ui.plain), report.to_json())


@app.command(rich_help_panel=STACK_PANEL)
def history(
    file: StackSpec = None,
    stack: Stack = "dev",
    project: Project = None,
    backend: Backend = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", metavar="N", help="Show only the newest N revisions."),
    ] = None,
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """List a stack's updates: revision, time, kind, result, stable/canary/weight/mirror, command.

    Needs the project: a spec FILE, or --project.

    Examples:
      mlserve history --stack prod --project fraud-detector --json
    """
    with _errors(debug):
        from mlserve import ops, output

        target = _stack_target(file, project, stack, backend)
        rows = ops.history(target, limit=limit, debug=debug or _debug_env())
        output.Ui(json_out).show(output.render_history(rows), [r.to_json() for r in rows])


@app.command(rich_help_panel=STACK_PANEL)
def destroy(
    file: StackSpec = None,
    stack: Stack = "dev",
    project: Project = None,
    backend: Backend = None,
    yes: Yes = False,
    lock_timeout: LockTimeout = "0",
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """Remove everything the stack created; the stack and its history remain.

    Needs the project: a spec FILE, or --project.

    Examples:
      mlserve destroy --stack dev --project fraud-detector --yes
    """
    with _errors(debug):
        from mlserve import ops, output

        if not yes and not sys.stdin.isatty():
            raise UsageError("destroy needs --yes when there is no terminal")
        timeout = ops.parse_duration(lock_timeout)
        target = _stack_target(file, project, stack, backend)
        ui = output.Ui(json_out)
        try:
            report = ops.destroy(
                target,
                sink=ui.sink(),
                confirm=None if yes else lambda what: ui.confirm(f"Destroy everything in {what}?"),
                lock_timeout=timeout,
                debug=debug or _debug_env(),
            )
        finally:
            ui.close()
        ui.show(output.render_destroy(report), report.to_json())


# --- traffic: promote, rollback ------------------------------------------------------------


@app.command(rich_help_panel=STACK_PANEL)
def promote(
    file: StackSpec = None,
    weight: Annotated[
        int | None,
        typer.Option("--weight", metavar="N", help="The canary's new share, 1..99; 100 completes."),
    ] = None,
    complete: Annotated[
        bool, typer.Option("--complete", help="Make the canary the stable version.")
    ] = False,
    expect_weight: Annotated[
        int | None,
        typer.Option(
            "--expect-weight",
            metavar="N",
            help="Refuse (exit 6, nothing changed) unless the live canary weight is N.",
        ),
    ] = None,
    dry_run: DryRun = False,
    stack: Stack = "dev",
    project: Project = None,
    backend: Backend = None,
    lock_timeout: LockTimeout = "0",
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """Move the canary to a new weight, or complete the promotion.

    Changes only the routing resources, so it does not wait on unrelated workload changes. The
    deployed spec and the live split come from the stack. Needs the project: a spec FILE, or
    --project.

    Examples:
      mlserve promote --weight 50 --expect-weight 10 --stack prod --project fraud-detector
      mlserve promote specs/istio.yaml --weight 50 --dry-run
    """
    with _errors(debug):
        from mlserve import ops, output

        ops.promote_weight(weight, complete)  # usage errors before any engine work
        ops.check_expect_weight(expect_weight)
        timeout = ops.parse_duration(lock_timeout)
        target = _stack_target(file, project, stack, backend)
        ui = output.Ui(json_out)
        try:
            report = ops.promote(
                target,
                weight=weight,
                complete=complete,
                expect_weight=expect_weight,
                sink=ui.sink(),
                lock_timeout=timeout,
                debug=debug or _debug_env(),
                dry_run=dry_run,
            )
        finally:
            ui.close()
        ui.show(output.render_traffic_change(report, ui.plain), report.to_json())


@app.command(rich_help_panel=STACK_PANEL)
def rollback(
    file: StackSpec = None,
    to: Annotated[
        int | None,
        typer.Option(
            "--to", metavar="REVISION", help="Re-apply this revision from the stack's history."
        ),
    ] = None,
    dry_run: DryRun = False,
    stack: Stack = "dev",
    project: Project = None,
    backend: Backend = None,
    lock_timeout: LockTimeout = "0",
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """Send all traffic back to the last known-good stable version.

    With a canary, the canary goes to 0%; after a completed promotion, the previous stable
    comes back. The deployed spec and the live split come from the stack. Needs the project: a
    spec FILE, or --project.

    Examples:
      mlserve rollback --stack prod --project fraud-detector
      mlserve rollback specs/istio.yaml --stack prod --dry-run
    """
    with _errors(debug):
        from mlserve import ops, output

        timeout = ops.parse_duration(lock_timeout)
        target = _stack_target(file, project, stack, backend)
        ui = output.Ui(json_out)
        try:
            report = ops.rollback(
                target,
                to=to,
                sink=ui.sink(),
                lock_timeout=timeout,
                debug=debug or _debug_env(),
                dry_run=dry_run,
            )
        finally:
            ui.close()
        ui.show(output.render_traffic_change(report, ui.plain), report.to_json())


@app.command(rich_help_panel=STACK_PANEL)
def mirror(
    file: StackSpec = None,
    version: Annotated[
        str | None,
        typer.Option("--version", metavar="V", help="The version that gets the copies."),
    ] = None,
    percent: Annotated[
        int | None,
        typer.Option(
            "--percent", metavar="P", help="The share of unpinned requests copied, 1..100."
        ),
    ] = None,
    off: Annotated[bool, typer.Option("--off", help="End the live mirror.")] = False,
    expect_mirror: Annotated[
        int | None,
        typer.Option(
            "--expect-mirror",
            metavar="PERCENT",
            help="Refuse (exit 6, nothing changed) unless the live mirror copies PERCENT "
            "(no mirror: 0).",
        ),
    ] = None,
    dry_run: DryRun = False,
    stack: Stack = "dev",
    project: Project = None,
    backend: Backend = None,
    lock_timeout: LockTimeout = "0",
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """Copy a share of live requests to a version and drop its answers.

    The served split does not change: users get the stable's and canary's answers while the
    mirrored version's errors and latency show in your metrics. Changes only the routing
    resources, as promote does. rollback and any promote of the mirrored canary end the mirror.
    Needs the project: a spec FILE, or --project.

    Examples:
      mlserve mirror --version v2 --percent 20 --stack prod --project fraud-detector
      mlserve mirror --off --stack prod --project fraud-detector
      mlserve mirror specs/istio.yaml --version v2 --percent 20 --dry-run
    """
    with _errors(debug):
        from mlserve import ops, output

        ops.check_mirror_args(version, percent, off, expect_mirror)  # before any engine work
        timeout = ops.parse_duration(lock_timeout)
        target = _stack_target(file, project, stack, backend)
        ui = output.Ui(json_out)
        try:
            report = ops.mirror(
                target,
                version=version,
                percent=percent,
                off=off,
                expect_mirror=expect_mirror,
                sink=ui.sink(),
                lock_timeout=timeout,
                debug=debug or _debug_env(),
                dry_run=dry_run,
            )
        finally:
            ui.close()
        ui.show(output.render_traffic_change(report, ui.plain), report.to_json())


# --- rollout -------------------------------------------------------------------------------


@app.command(rich_help_panel=STACK_PANEL)
def rollout(
    file: Annotated[
        Path | None,
        typer.Argument(
            metavar="FILE", help="A spec: deploy it first, then walk its rollout steps."
        ),
    ] = None,
    proceed: Annotated[
        bool, typer.Option("--continue", help="Go on after a manual pause.")
    ] = False,
    abort: Annotated[
        bool, typer.Option("--abort", help="Send the canary to 0% now and stop the rollout.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="List the steps and pauses it would walk and run every query once; change "
            "nothing.",
        ),
    ] = False,
    restart: Annotated[
        bool,
        typer.Option("--restart", help="Start over from the live traffic, also after an abort."),
    ] = False,
    prometheus: Annotated[
        str | None,
        typer.Option(
            "--prometheus",
            metavar="URL",
            envvar="MLSERVE_PROMETHEUS_URL",
            help="Query this Prometheus instead of the spec's rollout.analysis address (a "
            "port-forward: http://localhost:9090).",
        ),
    ] = None,
    stack: Stack = "dev",
    project: Project = None,
    backend: Backend = None,
    yes: Yes = False,
    lock_timeout: LockTimeout = "0",
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """Walk the canary through the spec's rollout steps, checking Prometheus in each pause.

    Each step is a routing-only update, as promote makes; a failing canary goes back to 0% and
    the command exits 7. A killed rollout resumes at its step; a manual pause exits 0 until
    --continue. Needs the project: a spec FILE (deployed first, except with --dry-run and
    --abort), or --project. Prometheus credentials: MLSERVE_PROMETHEUS_TOKEN, or
    MLSERVE_PROMETHEUS_USER and MLSERVE_PROMETHEUS_PASSWORD. SIGTERM and SIGHUP (a cancelled CI
    job) stop it as Ctrl-C does: exit 130, and the next `mlserve rollout` resumes.

    Examples:
      mlserve rollout specs/istio.yaml --stack prod --yes
      mlserve rollout --continue --stack prod --project fraud-detector
      mlserve rollout specs/istio.yaml --dry-run --prometheus http://localhost:9090
    """
    with _errors(debug), _signals_interrupt():
        from mlserve import ops, ops_rollout, output
        from mlserve.errors import AnalysisFailedError, PreconditionError

        if sum((proceed, abort, dry_run, restart)) > 1:
            raise UsageError("give at most one of --continue, --abort, --dry-run and --restart")
        deploying = file is not None and not (abort or dry_run)
        if deploying and not yes and not sys.stdin.isatty():
            raise UsageError(
                "rollout SPEC deploys the spec first: it needs --yes without a terminal"
            )
        timeout = ops.parse_duration(lock_timeout)
        ops_rollout.check_prometheus_url(prometheus)
        spec = _load(file) if file is not None else None
        target = ops.target_for(spec, project, stack, backend)
        ui = output.Ui(json_out)
        dbg = debug or _debug_env()
        try:
            if dry_run:
                report = ops_rollout.dry_run(target, spec, debug=dbg, prometheus=prometheus)
            elif abort:
                report = ops_rollout.abort(target, sink=ui.sink(), lock_timeout=timeout, debug=dbg)
            else:
                view = output.RolloutView(
                    sys.stdout, plain=ui.plain, quiet=json_out, before_print=ui.close
                )
                report = ops_rollout.run(
                    target,
                    spec if deploying else None,
                    proceed=proceed,
                    restart=restart,
                    watcher=view,
                    sink=ui.sink(),
                    confirm=None if yes else lambda plan: ui.confirm("Deploy these changes?"),
                    on_plan=lambda plan: ui.show_plan(output.render_plan(plan, ui.plain)),
                    lock_timeout=timeout,
                    debug=dbg,
                    prometheus=prometheus,
                )
        finally:
            ui.close()
        ui.show(output.render_rollout(report, ui.plain), report.to_json())
        rejected = [e for e in report.errors.values() if e.rejected]
        if rejected:
            raise UsageError(f"Prometheus rejected {len(rejected)} of the queries")
        if report.errors:
            raise PreconditionError(f"{len(report.errors)} of the queries got no answer")
        if report.status == "aborted" and not report.by_hand:
            last = report.updates[-1] if report.updates else None
            moved = last is not None and last.before != last.after  # a mirror's end counts
            where = "sent back to 0%" if moved else "kept at 0%"
            raise AnalysisFailedError(f"rollout aborted, {report.canary} {where}: {report.reason}")


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP (a cancelled CI job, a closed terminal) stop a command as Ctrl-C does
    (KeyboardInterrupt: its message, its JSON document, exit 130) instead of ending it silently
    with 143 or 129. A running Pulumi operation takes them over while it runs (engine.py)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    caught = (signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, interrupt) for s in caught}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# --- set-up: doctor, setup -----------------------------------------------------------------


@app.command(rich_help_panel=SETUP_PANEL)
def doctor(
    file: Annotated[
        Path | None,
        typer.Argument(
            metavar="FILE", help="A spec: also check its gateway's plugins and credentials."
        ),
    ] = None,
    backend: Backend = None,
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """Check the Pulumi CLI, plugins, backend, passphrase, and the cluster and gateway access.

    With a spec, contacts what the spec needs (the Kubernetes API server, Kong's Admin API) with
    a short timeout and says what failed and how to fix it; exits 4 if anything is not ready.
    With --json: {"ready", "checks": [{"check", "ok", "detail", "fix"}]}, and "error" when not
    ready.

    Examples:
      mlserve doctor specs/kong.yaml
    """
    with _errors(debug):
        from mlserve import ops, output
        from mlserve.errors import EngineUnavailableError

        spec = _load(file) if file is not None else None
        checks = ops.doctor(spec, backend)
        ui = output.Ui(json_out)
        failed = [c.name for c in checks if not c.ok]
        error = EngineUnavailableError(f"not ready: {', '.join(failed)}") if failed else None
        document = {"ready": not failed, "checks": [c.to_json() for c in checks]}
        ui.show(output.render_doctor(checks, ui.plain), _with_error(document, error))
        if error is not None:
            raise error


@app.command(rich_help_panel=SETUP_PANEL)
def setup(
    file: Annotated[
        Path | None,
        typer.Argument(metavar="FILE", help="A spec: install only its gateway's plugins."),
    ] = None,
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """Get a suitable Pulumi CLI and install the provider plugins the spec needs.

    A Pulumi CLI of at least 3.181 on PATH (or from an earlier setup) is used as it is; only
    without one is the pinned version downloaded into MLSERVE_HOME. Plugins go where the CLI
    keeps them (PULUMI_HOME, default ~/.pulumi); installing them needs network once.

    Examples:
      mlserve setup specs/istio.yaml
    """
    with _errors(debug):
        from mlserve import ops, output

        spec = _load(file) if file is not None else None
        ui = output.Ui(json_out)
        report = ops.setup(spec, sink=ui.sink())
        ui.show(output.render_setup(report), report.to_json())


def main() -> None:
    """The process's CLI (mlserve/__main__.py; the tests' warm mlserve and bench/ call it too)."""
    interrupt.install()
    app(prog_name="mlserve")
