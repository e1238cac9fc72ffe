"""The typer app: parse, call one function, print. The only place that knows exit codes.

Keep imports here light: `mlserve --help` and `validate` must not import Pulumi, so every
command imports what it needs inside its body.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from mlserve.errors import MlserveError, UsageError

app = typer.Typer(
    name="mlserve",
    help="Serve versioned ML models behind a gateway, with canary traffic, through Pulumi.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# --- common options (DESIGN.md section 2) --------------------------------------------------

SpecFile = Annotated[Path, typer.Argument(help="The spec file (YAML, apiVersion mlserve/v1).")]
Stack = Annotated[
    str, typer.Option("--stack", envvar="MLSERVE_STACK", help="Stack (environment) name.")
]
Project = Annotated[
    str | None,
    typer.Option(
        "--project",
        envvar="MLSERVE_PROJECT",
        help="Pulumi project; taken from the spec's name when a spec is given.",
    ),
]
Backend = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help="State backend URL (env MLSERVE_BACKEND_URL, then PULUMI_BACKEND_URL; "
        "default file://~/.mlserve/state).",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
Debug = Annotated[
    bool, typer.Option("--debug", envvar="MLSERVE_DEBUG", help="Show tracebacks and engine output.")
]
LockTimeout = Annotated[
    str,
    typer.Option(
        "--lock-timeout",
        help="Wait this long for another update's lock to be released (0, 45s, 5m).",
    ),
]


def _debug_env() -> bool:
    return os.environ.get("MLSERVE_DEBUG", "").lower() not in ("", "0", "false", "no")


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def _errors(debug: bool) -> Iterator[None]:
    """Map every failure to a message and an exit code; tracebacks only with --debug."""
    debug = debug or _debug_env()
    try:
        yield
    except typer.Exit:
        raise
    except MlserveError as e:
        if debug:
            import traceback

            traceback.print_exc()
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as e:
        if debug:
            raise
        _fail(f"unexpected error: {type(e).__name__}: {e} (run with --debug for details)", 1)


# --- validate / schema (spec) --------------------------------------------------------------


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Spec files to check.")],
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """Load and check spec files; nothing else is touched."""
    with _errors(debug):
        import json

        from mlserve.errors import Problem, SpecError
        from mlserve.spec import load_spec

        problems: list[Problem] = []
        invalid = 0
        for file in files:
            try:
                load_spec(file)
            except SpecError as e:
                problems.extend(e.problems)
                invalid += 1
                if not json_out:
                    typer.echo("\n".join(str(p) for p in e.problems))
            else:
                if not json_out:
                    typer.echo(f"{file}: valid")
        if json_out:
            typer.echo(json.dumps([p.to_json() for p in problems], indent=2))
        if problems:
            if not json_out:
                count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
                typer.echo(f"{count} in {invalid} of {len(files)} files", err=True)
            raise typer.Exit(2)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the spec."""
    with _errors(False):
        from mlserve.spec import schema_text

        typer.echo(schema_text(), nl=False)


# --- render --------------------------------------------------------------------------------


@app.command()
def render(
    file: SpecFile,
    output: Annotated[str, typer.Option("-o", "--output", help="yaml or json.")] = "yaml",
    out: Annotated[
        Path | None, typer.Option("--out", help="Write one file per resource into DIR.")
    ] = None,
    debug: Debug = False,
) -> None:
    """Run the program offline under Pulumi's mocks and print the resources it declares."""
    with _errors(debug):
        if output not in ("yaml", "json"):
            raise UsageError(f"-o must be yaml or json, not {output!r}")
        from mlserve import render as rendering
        from mlserve.spec import load_spec

        resources = rendering.render(load_spec(file))
        if out is None:
            typer.echo(rendering.format_resources(resources, output), nl=False)
        else:
            for path in rendering.write_files(resources, out, output):
                typer.echo(f"wrote {path}")


# --- engine: plan, deploy, status, history, destroy, doctor, setup -------------------------


@app.command()
def plan(
    file: SpecFile,
    stack: Stack = "dev",
    project: Project = None,
    backend: Backend = None,
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="Exit 10 when changes are pending.")
    ] = False,
    lock_timeout: LockTimeout = "0",
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """Preview what a deploy would create, update, replace or delete, weights included."""
    with _errors(debug):
        from mlserve import ops, output
        from mlserve.errors import PendingChangesError
        from mlserve.spec import load_spec

        timeout = ops.parse_duration(lock_timeout)
        spec = load_spec(file)
        target = ops.target_for(spec, project, stack, backend)
        ui = output.Ui(json_out)
        try:
            report = ops.plan(
                spec, target, sink=ui.sink(), lock_timeout=timeout, debug=debug or _debug_env()
            )
        finally:
            ui.close()
        ui.show(output.render_plan(report, ui.plain), report.to_json())
        if exit_code and report.pending:
            raise PendingChangesError("changes are pending (plan --exit-code)")


@app.command()
def deploy(
    file: SpecFile,
    stack: Stack = "dev",
    project: Project = None,
    backend: Backend = None,
    yes: Yes = False,
    reset_traffic: Annotated[
        bool, typer.Option("--reset-traffic", help="Apply the spec's traffic as written.")
    ] = False,
    lock_timeout: LockTimeout = "0",
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """Preview, confirm, then deploy the spec."""
    with _errors(debug):
        from mlserve import ops, output
        from mlserve.spec import load_spec

        if not yes and not sys.stdin.isatty():
            raise UsageError("deploy needs --yes when there is no terminal")
        timeout = ops.parse_duration(lock_timeout)
        spec = load_spec(file)
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


@app.command()
def status(
    stack: Stack = "dev",
    project: Project = None,
    backend: Backend = None,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Reconcile with the real world first.")
    ] = False,
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """Versions, live weights, endpoint and last update of a stack."""
    with _errors(debug):
        from mlserve import ops, output

        target = ops.target_for(None, project, stack, backend)
        ui = output.Ui(json_out)
        try:
            report = ops.status(
                target, refresh=refresh, sink=ui.sink(), debug=debug or _debug_env()
            )
        finally:
            ui.close()
        ui.show(output.render_status(report, ui.plain), report.to_json())


@app.command()
def history(
    stack: Stack = "dev",
    project: Project = None,
    backend: Backend = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Show only the newest N revisions.")
    ] = None,
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """The stack's deployments: revision, time, kind, result, stable/canary/weight."""
    with _errors(debug):
        from mlserve import ops, output

        target = ops.target_for(None, project, stack, backend)
        rows = ops.history(target, limit=limit, debug=debug or _debug_env())
        output.Ui(json_out).show(output.render_history(rows), [r.to_json() for r in rows])


@app.command()
def destroy(
    stack: Stack = "dev",
    project: Project = None,
    backend: Backend = None,
    yes: Yes = False,
    lock_timeout: LockTimeout = "0",
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """Remove everything the stack created."""
    with _errors(debug):
        from mlserve import ops, output

        if not yes and not sys.stdin.isatty():
            raise UsageError("destroy needs --yes when there is no terminal")
        timeout = ops.parse_duration(lock_timeout)
        target = ops.target_for(None, project, stack, backend)
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


@app.command()
def doctor(
    file: Annotated[
        Path | None, typer.Argument(help="Optional spec: also check its gateway's credentials.")
    ] = None,
    stack: Stack = "dev",
    backend: Backend = None,
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """Check the Pulumi CLI, plugins, backend, passphrase and credentials."""
    with _errors(debug):
        from mlserve import ops, output
        from mlserve.errors import EngineUnavailableError
        from mlserve.spec import load_spec

        spec = load_spec(file) if file is not None else None
        checks = ops.doctor(spec, backend)
        output.Ui(json_out).show(output.render_doctor(checks), [c.to_json() for c in checks])
        failed = [c.name for c in checks if not c.ok]
        if failed:
            raise EngineUnavailableError(f"not ready: {', '.join(failed)}")


@app.command()
def setup(
    file: Annotated[
        Path | None, typer.Argument(help="Optional spec: install only its gateway's plugins.")
    ] = None,
    debug: Debug = False,
) -> None:
    """Install the pinned Pulumi CLI and the provider plugins."""
    with _errors(debug):
        from mlserve import ops, output
        from mlserve.spec import load_spec

        spec = load_spec(file) if file is not None else None
        ui = output.Ui(False)
        report = ops.setup(spec, sink=ui.sink())
        ui.show(output.render_setup(report), report.to_json())


# --- traffic: promote, rollback ------------------------------------------------------------


@app.command()
def promote(
    weight: Annotated[
        int | None, typer.Option("--weight", help="The canary's new share, 1..99; 100 completes.")
    ] = None,
    complete: Annotated[
        bool, typer.Option("--complete", help="Make the canary the stable version.")
    ] = False,
    expect_weight: Annotated[
        int | None,
        typer.Option("--expect-weight", help="Refuse (exit 6) unless the live weight is this."),
    ] = None,
    stack: Stack = "dev",
    project: Project = None,
    backend: Backend = None,
    lock_timeout: LockTimeout = "0",
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """Move the canary to a new weight, or complete the promotion."""
    with _errors(debug):
        from mlserve import ops, output

        ops.promote_weight(weight, complete)  # usage errors before any engine work
        ops.check_expect_weight(expect_weight)
        timeout = ops.parse_duration(lock_timeout)
        target = ops.target_for(None, project, stack, backend)
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
            )
        finally:
            ui.close()
        ui.show(output.render_traffic_change(report, ui.plain), report.to_json())


@app.command()
def rollback(
    to: Annotated[
        int | None, typer.Option("--to", help="Re-apply this revision from the stack's history.")
    ] = None,
    stack: Stack = "dev",
    project: Project = None,
    backend: Backend = None,
    lock_timeout: LockTimeout = "0",
    json_out: Json = False,
    debug: Debug = False,
) -> None:
    """Send all traffic back to the last known-good stable version."""
    with _errors(debug):
        from mlserve import ops, output

        timeout = ops.parse_duration(lock_timeout)
        target = ops.target_for(None, project, stack, backend)
        ui = output.Ui(json_out)
        try:
            report = ops.rollback(
                target, to=to, sink=ui.sink(), lock_timeout=timeout, debug=debug or _debug_env()
            )
        finally:
            ui.close()
        ui.show(output.render_traffic_change(report, ui.plain), report.to_json())


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
