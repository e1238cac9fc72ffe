"""The engine's edges against the REAL stack (tests/realstack.py): the Pulumi CLI, the Kubernetes
provider plugin and an API server. mlserve runs as a user runs it, as fresh processes.

- Interrupts in the middle of an update: the CLI handles SIGINT and SIGTERM alike, the first as a
  clean cancel, any second one as a hard stop that leaves the running steps pending yet still
  writes a failed history entry and releases the lock (pkg/backend/cancellation_scope.go,
  pkg/backend/diy/backend.go `apply`). mlserve runs an operation's CLI in a process group of its
  own and passes each interrupt on once (engine.Command, Engine._interruptible).
- The CLI killed with SIGKILL: the lock and a pending create stay, no history entry is written;
  mlserve's message, and the way out it prints, run as printed.
- Two promotes started together with the same `--expect-weight`, against the CLI's real lock.

Where an update must stay in the middle of a step, the deploy is of the `service` example, whose
LoadBalancer Service the provider waits on until something gives it an address (nothing does
here, as no cloud runs), and the test stops the provider plugin (SIGSTOP) as a provider that hangs
on its cloud would: the CLI's cancel then waits for it, so that a second interrupt is a real hard
stop and not a race with a cancel that the Kubernetes provider finishes within milliseconds.
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.realstack import REPO, Real

# `waits`: each takes 15-60 s, mostly waiting on the provider and the CLI (tests/conftest.py).
pytestmark = [pytest.mark.real, pytest.mark.waits]

ADDRESS = {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}  # as a cloud's controller sets it


class Run:
    """`mlserve ARGS` in a session of its own (a CI step, a terminal tab), its output read as it
    comes, by a thread, so that a live display on a terminal never fills the pty; `pid` is
    mlserve's and its process group's."""

    def __init__(self, real: Real, *args: str, terminal: bool = False) -> None:
        self.seen = bytearray()
        if terminal:  # the child is a session leader with the new terminal in its foreground
            self.pid, self.fd = pty.fork()
            if self.pid == 0:
                try:
                    os.chdir(REPO)
                    os.execve(sys.executable, real.command(*args), real.env)
                finally:
                    os._exit(127)
            self.proc: subprocess.Popen[bytes] | None = None
        else:
            self.proc = subprocess.Popen(
                real.command(*args), cwd=REPO, env=real.env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            assert self.proc.stdout is not None
            self.pid, self.fd = self.proc.pid, self.proc.stdout.fileno()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:  # a pty's master reads EIO once the child side is closed
                return
            if not chunk:
                return
            self.seen.extend(chunk)

    def read_until(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.seen:
            assert time.monotonic() < deadline and self.reader.is_alive(), (text, self.text())
            time.sleep(0.05)

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        """The exit code and everything it printed."""
        if self.proc is not None:
            code = self.proc.wait(timeout=timeout)
        else:
            _, status = os.waitpid(self.pid, 0)
            code = os.waitstatus_to_exitcode(status)
        self.reader.join(timeout)
        if self.proc is None:
            os.close(self.fd)
        return code, self.text()

    def text(self) -> str:
        """What it printed, without a terminal's colours and cursor movements."""
        text = bytes(self.seen).decode(errors="replace").replace("\r\n", "\n")
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def children(pid: int) -> Iterator[tuple[int, str]]:
    """(pid, command line) of each child of `pid`, from /proc."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            yield int(entry), argv


def pulumi_up(mlserve: int) -> int:
    """The Pulumi CLI running mlserve's update."""
    (pid,) = [p for p, argv in children(mlserve) if " up " in argv]
    return pid


def provider(cli: int) -> int:
    """The Kubernetes provider plugin the CLI started."""
    (pid,) = [p for p, argv in children(cli) if "pulumi-resource-kubernetes" in argv]
    return pid


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stack_files(real: Real) -> tuple[list[Path], list[dict[str, Any]], list[dict[str, Any]]]:
    """The stack's lock files, its pending operations and its history entries (oldest first), as
    the file backend keeps them (pkg/backend/diy: locks, stacks, history)."""
    root = real.tmp / "state" / ".pulumi"
    locks = sorted((root / "locks").rglob("*.json"))
    (checkpoint,) = (root / "stacks" / "forecast").glob("dev.json")
    pending = json.loads(checkpoint.read_text())["checkpoint"]["latest"].get("pending_operations")
    history = [
        json.loads(p.read_text())
        for p in sorted((root / "history" / "forecast" / "dev").glob("*.history.json"))
    ]
    return locks, pending or [], history


def pending_creates(pending: list[dict[str, Any]]) -> list[str]:
    return [f"{op['type']} {op['resource']['urn'].rsplit('::', 1)[-1]}" for op in pending]


def deploy_again(real: Real, spec: Path) -> None:
    """The end of every way out: the orphaned Service deleted as the note says, then a deploy,
    with the address the Service waits for set as a cloud's controller would."""
    real.stack.kubectl("delete", "service", "forecast", "-n", real.namespace, "--wait=true")
    real.set_status("services", "forecast", ADDRESS)
    result = real.mlserve("deploy", str(spec), "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    selector = real.get("services", "forecast")["spec"]["selector"]
    assert selector["app.kubernetes.io/version"] == "2024-11"
    rows = json.loads(real.mlserve("history", "--project", "forecast", "--json").stdout)
    assert (rows[0]["command"], rows[0]["result"]) == ("mlserve deploy", "succeeded")


def wait_for_the_service(real: Real, run: Run, timeout: float = 120) -> None:
    """Until the provider has created the LoadBalancer Service and waits for its address."""
    deadline = time.monotonic() + timeout
    while not real.stack.exists("services", "forecast", real.namespace):
        assert time.monotonic() < deadline and run.reader.is_alive(), run.text()
        time.sleep(0.2)
    time.sleep(0.5)


CANCELLED = (
    "error: interrupted: Pulumi cancelled the update cleanly: the steps already running finished "
    "and the stack's lock was released. Run `mlserve status --refresh --stack dev` to see what "
    "it changed before running it again\n"
)


def start_deploy_and_freeze_the_provider(
    real: Real, *, terminal: bool = False
) -> tuple[Path, Run, int, int]:
    spec = real.spec("service.yaml")
    run = Run(real, "deploy", str(spec), "--yes", terminal=terminal)
    wait_for_the_service(real, run)
    cli = pulumi_up(run.pid)
    plugin = provider(cli)
    os.kill(plugin, signal.SIGSTOP)  # a provider hung on its cloud: the cancel waits for it
    return spec, run, cli, plugin


@pytest.mark.parametrize("how", ["sigterm-to-the-group", "ctrl-c-in-a-terminal", "sighup"])
def test_one_interrupt_reaches_pulumi_once_and_cancels_the_update_cleanly(
    real: Real, how: str
) -> None:
    """A runner's SIGTERM to the job's process group, a Ctrl-C typed in a terminal (which signals
    the foreground group) and a hangup are each one interrupt: the CLI, in a group of its own,
    gets one SIGINT from mlserve, so its cancel stays clean though it has to wait for a slow
    provider. (Before, the group's signal reached the CLI besides mlserve's, and two are a hard
    stop: pending operations.)"""
    spec, run, cli, plugin = start_deploy_and_freeze_the_provider(
        real, terminal=how == "ctrl-c-in-a-terminal"
    )
    if how == "sigterm-to-the-group":
        os.killpg(run.pid, signal.SIGTERM)
    elif how == "sighup":
        os.kill(run.pid, signal.SIGHUP)
    else:
        os.write(run.fd, b"\x03")  # Ctrl-C, as typed
    run.read_until("letting Pulumi cancel the operation cleanly")
    time.sleep(3)  # the cancel waits for the provider; nothing else reached the CLI meanwhile
    assert alive(cli)
    locks, _, history = stack_files(real)
    assert locks and history == []  # still running, holding its lock
    os.kill(plugin, signal.SIGCONT)
    code, output = run.finish()
    assert code == 130, output
    assert output.endswith(CANCELLED), output
    assert "terminating" not in output and "exited prematurely" not in output
    locks, pending, history = stack_files(real)
    assert (locks, pending) == ([], [])
    assert [(h["kind"], h["result"], h["message"]) for h in history] == [
        ("update", "failed", "mlserve deploy")
    ]
    # The way out printed: status --refresh shows what the cancelled deploy made.
    status = real.mlserve("status", "--refresh", "--stack", "dev", "--project", "forecast")
    assert status.returncode == 0, status.stderr
    assert "nothing deployed" in status.stdout
    assert "dropped" not in status.stdout  # nothing was left pending
    real.set_status("services", "forecast", ADDRESS)
    again = real.mlserve("deploy", str(spec), "--yes")  # the Service it cancelled is in the state
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_second_interrupt_stops_the_update_at_once_and_the_way_out_works(real: Real) -> None:
    """The second interrupt reaches the CLI as a second SIGINT: it stops the engine at once,
    leaving the step that was running pending in the state, and still writes a failed history
    entry and releases the lock; mlserve waits for that and says so (it used to give up after
    10 s and claim the stack may still be locked)."""
    spec, run, cli, plugin = start_deploy_and_freeze_the_provider(real)
    os.kill(run.pid, signal.SIGINT)
    run.read_until("letting Pulumi cancel the operation cleanly")
    time.sleep(2)
    assert alive(cli)
    os.kill(run.pid, signal.SIGINT)
    code, output = run.finish()
    assert code == 130, output
    assert output.endswith(
        "interrupted again: Pulumi stops the operation at once; waiting for it to release the "
        "stack's lock (interrupt again to stop waiting)\n"
        "error: interrupted twice: Pulumi stopped the update at once and released the stack's "
        "lock, but the steps that were running were cut off and may be left pending in its "
        "state. Run `mlserve status --refresh --stack dev` to reconcile them before running it "
        "again\n"
    ), output
    assert not alive(cli) and not alive(plugin)  # the CLI ended its plugins
    locks, pending, history = stack_files(real)
    assert locks == []
    assert pending_creates(pending) == ["creating forecast"]
    assert [(h["kind"], h["result"]) for h in history] == [("update", "failed")]
    # The way out, as printed.
    status = real.mlserve("status", "--refresh", "--stack", "dev", "--project", "forecast")
    assert status.returncode == 0, status.stderr
    assert (
        "note: the refresh dropped 1 create(s) an interrupted update left pending: "
        "kubernetes:core/v1:Service forecast. Their objects may exist without the stack "
        "managing them: look for each in the cluster or gateway and delete any that exist, then "
        "run `mlserve deploy` to create them under the stack's management"
    ) in status.stdout + status.stderr
    assert real.stack.exists("services", "forecast", real.namespace)  # left unmanaged
    assert stack_files(real)[1] == []
    deploy_again(real, spec)


def test_a_pulumi_cli_killed_mid_update_leaves_its_lock_and_the_way_out_works(real: Real) -> None:
    """SIGKILL (the OOM killer, a runner's last resort): no history entry, the lock and a pending
    create stay. mlserve names it and points at `status --refresh`, which names the lock and the
    `pulumi cancel` command that removes it; each step runs as printed."""
    spec = real.spec("service.yaml")
    run = Run(real, "deploy", str(spec), "--yes")
    wait_for_the_service(real, run)
    os.kill(pulumi_up(run.pid), signal.SIGKILL)
    code, output = run.finish()
    assert code == 5, output
    assert "Error in event stream" not in output
    backend = (real.tmp / "state").as_uri()
    assert output.endswith(
        "error: the update failed: the Pulumi CLI was killed (SIGKILL) in the middle of it, so "
        f"stack 'dev' of project 'forecast' (backend {backend}) may still be locked and hold "
        "pending operations. Run `mlserve status --refresh --stack dev`: if the stack is locked, "
        "it says how to remove the lock\n"
    ), output
    locks, pending, history = stack_files(real)
    assert len(locks) == 1 and history == []
    assert pending_creates(pending) == ["creating forecast"]
    # A plain status reads the state without the lock, and names what is pending.
    status = real.mlserve("status", "--stack", "dev", "--project", "forecast")
    assert status.returncode == 0, status.stderr
    assert (
        "the stack's state holds 1 pending operation(s) (creating Service forecast): an update "
        "is running now, or one was stopped before it finished them. If none is running, "
        "`mlserve status --refresh --stack dev` reconciles them"
    ) in status.stdout, status.stdout

    status = real.mlserve("status", "--refresh", "--stack", "dev", "--project", "forecast")
    assert status.returncode == 3, status.stdout + status.stderr
    found = re.search(r"remove the lock with: (pulumi cancel --yes --stack dev --cwd \S+)\n",
                      status.stderr)  # fmt: skip
    assert found, status.stderr
    assert "created by " in status.stderr  # who held it: user@host (pid N) at TIME
    # Run as printed, in the user's environment (the workspace's Pulumi.yaml names the backend).
    cancel = subprocess.run(
        found.group(1), shell=True, env=real.env, capture_output=True, text=True, timeout=120
    )
    assert cancel.returncode == 0, cancel.stderr
    assert stack_files(real)[0] == []

    status = real.mlserve("status", "--refresh", "--stack", "dev", "--project", "forecast")
    assert status.returncode == 0, status.stderr
    assert "the refresh dropped 1 create(s) an interrupted update left pending: " in (
        status.stdout + status.stderr
    )
    deploy_again(real, spec)


def test_of_two_promotes_started_together_exactly_one_wins_in_each_of_20_rounds(
    real: Real,
) -> None:
    """Two CI jobs promoting with the same `--expect-weight`, started together, against the real
    CLI's lock: one changes the stack, the other exits 6 (its guard read the winner's entry under
    the lock) or 3, cleanly, with no traceback; what the winner printed is what was recorded and
    what the API server holds."""
    spec = real.spec("istio.yaml")
    deployed = real.mlserve("deploy", str(spec), "--yes")
    assert deployed.returncode == 0, deployed.stderr
    expected = 10
    for round_ in range(20):
        weights = (20 + round_, 60 + round_)

        def racer(weight: int, expect: int) -> subprocess.Popen[str]:
            return real.mlserve_background(
                "promote", "--project", "fraud-detector", "--json", "--weight", str(weight),
                "--expect-weight", str(expect), "--lock-timeout", "2m",
            )  # fmt: skip

        jobs = [racer(w, expected) for w in weights]
        outcomes = [job.communicate(timeout=300) for job in jobs]
        codes = [job.returncode for job in jobs]
        assert sorted(codes) in ([0, 3], [0, 6]), (round_, outcomes)
        won, lost = codes.index(0), 1 - codes.index(0)
        assert "Traceback" not in "".join(outcomes[lost]) + "".join(outcomes[won])
        error = outcomes[lost][1].splitlines()[-1]
        assert error.startswith("error: "), outcomes[lost]
        if codes[lost] == 6:
            assert "nothing was changed" in error.lower(), error
        assert json.loads(outcomes[won][0])["after"]["weight"] == weights[won]
        expected = weights[won]
        vs = real.get("virtualservices.networking.istio.io", "fraud-detector")
        route = vs["spec"]["http"][-1]["route"]
        split = {d["destination"]["subset"]: d.get("weight", 0) for d in route}
        assert split == {"v1": 100 - expected, "v2": expected}, round_
    rows = json.loads(real.mlserve("history", "--project", "fraud-detector", "--json").stdout)
    succeeded = [r["weight"] for r in reversed(rows) if r["result"] == "succeeded"]
    assert len(succeeded) == 21 and succeeded[-1] == expected
