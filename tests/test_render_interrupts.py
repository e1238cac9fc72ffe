"""Issue 19 item 4: Ctrl-C at any moment of `mlserve render` exits 130 with one line.

SIGINT goes to the process alone (as `kill -INT` and CI runners send it), at moments spread over
the whole run: while the CLI's modules load, while typer parses, while the Pulumi SDK is imported,
while the program runs under the mocks (worker threads and event loops), while the YAML is written
and while the process ends, on a machine loaded by a busy process. Fresh processes, both ways a
user starts one (the console script and `python -m mlserve`): how a process starts, takes a
signal and exits is the subject (mlserve/interrupt.py says what goes wrong otherwise).

The moments count from mlserve's first line: before it, Python itself is starting (its site
imports) and answers a SIGINT its own way, which no program can change. Each run imports with
PYTHONPROFILEIMPORTTIME, and the first import it reports after mlserve.interrupt (and
mlserve.__main__, which the console script imports) comes after the handler is in place.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.k8s_helpers import REPO
from tests.test_render_cli import _big_spec, _env

TRIALS = 32
INTERRUPTED = "error: interrupted\n"
BEFORE_HANDLER = {"mlserve", "mlserve.interrupt", "mlserve.__main__"}


def _commands() -> list[list[str]]:
    script = shutil.which("mlserve", path=str(Path(sys.executable).parent))
    module = [sys.executable, "-m", "mlserve"]
    return [module, [script]] if script else [module]


def _stat(pid: int) -> tuple[str, float]:
    """(state, CPU seconds used by all its threads) of a process not yet waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return fields[0], (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    """One render: what it printed, and its CPU time when mlserve's handler was in place."""

    process: subprocess.Popen[bytes]
    stdout: Path
    lines: list[str]
    reader: threading.Thread
    ready_cpu: float

    def stderr(self) -> str:
        """Stderr without the import report."""
        return "".join(line for line in self.lines if not line.startswith("import time:"))

    def cpu_until(self, used: float) -> bool:
        """Wait until the process has used `used` CPU seconds since the handler was in place:
        its own progress, whatever else the machine runs. False if it ended first."""
        while True:
            state, cpu = _stat(self.process.pid)
            if state in "ZX":
                return False
            if cpu - self.ready_cpu >= used:
                return True
            time.sleep(0.001)

    def finish(self) -> int:
        try:
            code = self.process.wait(timeout=120)  # a hang shows here (not a speed check)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"render hung after SIGINT: {self.stderr()!r}") from None
        self.reader.join(10)
        return code


def _start(
    command: list[str], spec: Path, tmp: Path, n: int, *args: str, ignored: bool = False
) -> Run:
    """`mlserve render SPEC ARGS`, once mlserve's handler is in place; `ignored`: started with
    SIGINT ignored, as a shell script starts a background job."""
    env = {**_env(tmp), "PYTHONPROFILEIMPORTTIME": "1"}
    stdout = tmp / f"out-{n}.yaml"
    with stdout.open("wb") as out:
        process = subprocess.Popen(
            [*command, "render", str(spec), *args],
            stdout=out,
            stderr=subprocess.PIPE,
            env=env,
            cwd=tmp,
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignored else None,
        )
    ready = threading.Event()
    lines: list[str] = []

    def read() -> None:  # drains stderr: the import report is larger than a pipe holds
        assert process.stderr is not None
        seen_interrupt = False
        for raw in process.stderr:
            line = raw.decode(errors="replace")
            lines.append(line)
            if line.startswith("import time:") and "|" in line:
                name = line.rsplit("|", 1)[1].strip()
                if name == "mlserve.interrupt":
                    seen_interrupt = True
                elif seen_interrupt and name not in BEFORE_HANDLER:
                    ready.set()
        ready.set()  # ended before that: the caller's assertions say how

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert ready.wait(120)
    _, cpu = _stat(process.pid)
    return Run(process, stdout, lines, reader, cpu)


@pytest.fixture
def busy() -> Iterator[None]:
    """A process that keeps one core busy while the renders run."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


@pytest.mark.slow
def test_ctrl_c_at_any_moment_of_render_exits_130_with_one_line(tmp_path: Path, busy: None) -> None:
    spec = _big_spec(tmp_path / "big.yaml")
    commands = _commands()

    def uninterrupted(n: int) -> tuple[float, str]:
        run = _start(commands[n % len(commands)], spec, tmp_path, n)
        run.cpu_until(float("inf"))
        used = _stat(run.process.pid)[1] - run.ready_cpu
        assert run.finish() == 0, run.stderr()
        assert run.stderr() == ""
        return used, run.stdout.read_text()

    # Two at a time beside the busy process: two cores, over-committed.
    with ThreadPoolExecutor(2) as pool:
        measured = list(pool.map(uninterrupted, range(3)))
    length = min(cpu for cpu, _ in measured)  # CPU seconds from the handler in place to the end
    [complete] = {out for _, out in measured}

    def interrupted(i: int) -> tuple[float, int | None, str, str]:
        """(moment, status, stderr, stdout) of a render sent SIGINT once it had used `moment`
        CPU seconds after mlserve's handler was in place; status None: it ended before."""
        moment = length * 0.9 * i / TRIALS
        run = _start(commands[i % len(commands)], spec, tmp_path, 100 + i)
        sent = run.cpu_until(moment)
        if sent:
            run.process.send_signal(signal.SIGINT)
        code = run.finish()
        return moment, code if sent else None, run.stderr(), run.stdout.read_text()

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(interrupted, range(TRIALS)))

    stopped = 0
    for moment, code, stderr, stdout in outcomes:
        where = f"SIGINT after {moment:.2f} of {length:.2f} CPU seconds: exit {code}, {stderr!r}"
        assert "Traceback" not in stderr and "Exception ignored" not in stderr, where
        if code == 130:
            assert stderr == INTERRUPTED, where
            stopped += 1
        else:
            # A run that needed less CPU than the least of the uninterrupted ones had ended, or
            # was ending (the kernel drops a signal to an exiting process): it wrote everything.
            assert code in (0, None) and moment >= length / 2, where
            assert (stderr, stdout) == ("", complete), where
    assert stopped >= 30, [(round(m, 2), c) for m, c, _, _ in outcomes]


def test_ctrl_c_with_json_prints_the_error_document_too(tmp_path: Path) -> None:
    """As any failure of a --json run (cli._fail): the document on stdout, the line on stderr."""
    run = _start(_commands()[0], REPO / "specs" / "istio.yaml", tmp_path, 0, "--json")
    run.process.send_signal(signal.SIGINT)
    assert run.finish() == 130
    assert run.stderr() == INTERRUPTED
    assert json.loads(run.stdout.read_text()) == {
        "error": {"code": 130, "kind": "interrupted", "message": "interrupted"}
    }


def test_a_render_started_with_sigint_ignored_keeps_ignoring_it(tmp_path: Path) -> None:
    """A background job of a shell script (`mlserve render spec.yaml > out.yaml &`) is started
    with SIGINT ignored, so that a Ctrl-C to the script spares it; Python keeps it ignored, and
    so does mlserve."""
    run = _start(_commands()[-1], REPO / "specs" / "istio.yaml", tmp_path, 0, ignored=True)
    run.process.send_signal(signal.SIGINT)
    assert run.finish() == 0
    assert run.stderr() == ""
    assert run.stdout.read_text().startswith("---\n")


# A Ctrl-C that lands while render --out writes its second file: the program stands in for the
# moment (writing takes milliseconds), sending SIGINT to its own process from Path.open.
INTERRUPT_WHILE_WRITING = """
import os, signal, sys
from pathlib import Path

from mlserve import interrupt

interrupt.install()
opened = Path.open


def open_(self, *args, **kwargs):
    if ".mlserve-" in self.parent.name and any(self.parent.iterdir()):
        os.kill(os.getpid(), signal.SIGINT)
    return opened(self, *args, **kwargs)


Path.open = open_
sys.argv = ["mlserve", "render", sys.argv[1], "--out", sys.argv[2]]
from mlserve.cli import main

main()
"""


def test_ctrl_c_while_render_out_writes_leaves_no_staging_directory(tmp_path: Path) -> None:
    """render --out writes its files in a staging directory first (render.py write_files): an
    interrupt then removes it, and DIR does not appear."""
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", INTERRUPT_WHILE_WRITING, str(REPO / "specs" / "istio.yaml"), "out"],
        capture_output=True, text=True, env=_env(tmp_path), cwd=work, timeout=120,
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (130, INTERRUPTED)
    assert list(work.iterdir()) == []
