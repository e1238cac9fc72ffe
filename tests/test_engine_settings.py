"""Issue 11: bad paths and URLs, project names, concurrent first runs and a lost passphrase.

Every run goes through the real pulumi.automation code and the stand-in CLI (tests/fake_pulumi);
the commands run in this process (`run_cli`), except the racing first runs.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlserve import engine, ops
from mlserve.errors import UsageError
from tests.fake_pulumi import fixture
from tests.fake_pulumi.fixture import Fake
from tests.helpers import REPO
from tests.helpers import run_cli as mlserve
from tests.test_ops import TARGET, make_spec

fake = fixture.fake
SPEC = str(REPO / "specs" / "istio.yaml")
PROJECT = ("--project", "fraud-detector")


@contextlib.contextmanager
def unwritable(path: Path) -> Iterator[None]:
    """No new entries in a directory, even for root: chmod binds others, `chattr +i` root."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root where `chattr +i` is not available")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


# --- 3: file-system errors are exit 4 with the path and the way out --------------------------


def test_a_backend_that_cannot_be_a_directory_exits_4_naming_it(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "team secret")
    result = mlserve("plan", SPEC, "--backend", "file:///dev/null/state")
    assert (result.returncode, result.stderr) == (
        4,
        "error: cannot create the backend directory (file:///dev/null/state) /dev/null/state "
        "(Not a directory): pass --backend file://DIR with a directory you can write\n",
    )


def test_an_mlserve_home_that_cannot_be_created_exits_4_naming_it(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLSERVE_HOME", "/dev/null/mlserve")
    result = mlserve("plan", SPEC)
    assert (result.returncode, result.stderr) == (
        4,
        "error: cannot create MLSERVE_HOME /dev/null/mlserve (Not a directory): make it "
        "writable, or set MLSERVE_HOME to a directory you can write (or export "
        "PULUMI_CONFIG_PASSPHRASE_FILE (or PULUMI_CONFIG_PASSPHRASE))\n",
    )


def test_a_passphrase_file_that_is_a_directory_exits_4(
    fake: Fake, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE_FILE", str(tmp_path))
    result = mlserve("plan", SPEC)
    assert (result.returncode, result.stderr) == (
        4,
        f"error: PULUMI_CONFIG_PASSPHRASE_FILE={tmp_path} is a directory, not a file holding "
        "the passphrase: point PULUMI_CONFIG_PASSPHRASE_FILE at the file holding the "
        "passphrase\n",
    )
    (fake.home / "passphrase").mkdir(parents=True)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE")
    result = mlserve("status", *PROJECT)
    assert (result.returncode, result.stderr) == (
        4,
        f"error: {fake.home / 'passphrase'} is a directory, not a file holding the passphrase: "
        "restore it, or export PULUMI_CONFIG_PASSPHRASE_FILE (or PULUMI_CONFIG_PASSPHRASE)\n",
    )


def test_a_passphrase_file_that_is_not_text_or_empty_exits_4(fake: Fake) -> None:
    path = fake.home / "passphrase"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xff\xfe")
    result = mlserve("status", *PROJECT)
    assert (result.returncode, result.stderr) == (
        4,
        f"error: {path} is not UTF-8 text: restore it, or export PULUMI_CONFIG_PASSPHRASE_FILE "
        "(or PULUMI_CONFIG_PASSPHRASE)\n",
    )
    path.write_text("")
    result = mlserve("status", *PROJECT)
    assert (result.returncode, result.stderr) == (
        4,
        f"error: the passphrase file {path} is empty: restore it, or export "
        "PULUMI_CONFIG_PASSPHRASE_FILE (or PULUMI_CONFIG_PASSPHRASE)\n",
    )


def test_status_works_in_a_read_only_workspace_and_says_why_when_it_cannot(fake: Fake) -> None:
    fake.deployed(REPO / "specs" / "istio.yaml")
    workspace = fake.workspace("fraud-detector")
    with unwritable(workspace):
        status = mlserve("status", *PROJECT)
        assert status.returncode == 0, status.stderr
        assert "traffic      v1 90%, v2 10%" in status.stdout
    project_file = workspace / "Pulumi.yaml"
    project_file.write_text(project_file.read_text().replace("runtime: python", "runtime: go"))
    with unwritable(workspace):
        status = mlserve("status", *PROJECT)
    reason = "Operation not permitted" if os.geteuid() == 0 else "Permission denied"
    assert (status.returncode, status.stderr) == (
        4,
        f"error: cannot write {project_file} ({reason}): make it writable, or set MLSERVE_HOME "
        "to a directory you can write\n",
    )


def test_a_backend_that_cannot_be_written_stops_changes_but_not_reads(fake: Fake) -> None:
    fake.deployed(REPO / "specs" / "istio.yaml")
    state = fake.home / "state"
    fake.clear_log()
    with unwritable(state):
        deploy = mlserve("deploy", SPEC, "--yes", "--reset-traffic")
        status = mlserve("status", *PROJECT)
    assert (deploy.returncode, deploy.stderr) == (
        4,
        f"error: the backend directory {state} is not writable, and the update writes the "
        "stack's state and lock there: make it writable, or pass --backend file://DIR with a "
        "directory you can write\n",
    )
    assert "up" not in fake.commands()
    assert status.returncode == 0, status.stderr


# --- 4: concurrent first runs -----------------------------------------------------------------


def test_losing_the_stack_init_race_selects_the_stack_and_goes_on(fake: Fake) -> None:
    fake.set(lose_init_race=True)
    report = ops.plan(make_spec(), TARGET)
    assert report.pending
    assert fake.commands()[:4] == ["version", "stack select", "stack init", "stack select"]


def test_a_first_run_whose_create_finds_the_lock_held_tries_again(fake: Fake) -> None:
    """The DIY backend's CreateStack takes the stack's lock (pkg/backend/diy/backend.go), so of
    first runs at once one can find another's lock ("the stack is currently locked"): it tries
    again rather than failing as busy (CI's lowest-versions run once saw exit 3 here)."""
    fake.set(locked=1)  # the next lock attempt, the create's, finds another process's lock
    report = ops.plan(make_spec(), TARGET)
    assert report.pending
    assert fake.commands()[:5] == [
        "version", "stack select", "stack init", "stack select", "stack init",
    ]  # fmt: skip


def test_three_first_plans_at_once_all_succeed_with_one_passphrase(fake: Fake) -> None:
    procs = [
        subprocess.Popen(
            [*fixture.mlserve_command(), "plan", SPEC, "--stack", "prod"],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    assert [code for code, _ in results] == [0, 0, 0], results
    created = [err for _, err in results if "created a passphrase" in err]
    assert len(created) == 1
    assert engine.stored_stacks(fake.home / "state") == ["fraud-detector/prod"]
    assert sorted(p.name for p in fake.home.iterdir()) == ["passphrase", "state", "workspaces"]


def test_a_racing_run_never_reads_a_half_written_passphrase(fake: Fake) -> None:
    """The file appears whole or not at all: an empty file is a damaged one, not a race."""
    first = engine.resolve_passphrase(fake.home, engine.default_backend(fake.home), True)
    assert first.created == fake.home / "passphrase"
    again = engine.resolve_passphrase(fake.home, engine.default_backend(fake.home), True)
    assert (again.secret, again.created) == (first.secret, None)
    assert [p.name for p in fake.home.iterdir()] == ["passphrase"]  # no temporary file left


# --- 5: backend URLs --------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["garbage", "://", "ftp://x/y", "file:relative", "s3:/bucket"])
def test_an_unknown_backend_scheme_exits_2_naming_what_is_accepted(fake: Fake, url: str) -> None:
    result = mlserve("status", *PROJECT, "--backend", url)
    assert (result.returncode, result.stderr) == (
        2,
        f"error: --backend {url!r} is not a backend URL the Pulumi CLI accepts: use file://DIR, "
        "s3://BUCKET, azblob://CONTAINER, gs://BUCKET, postgres://HOST/DB, or "
        "https://api.pulumi.com for Pulumi Cloud\n",
    )
    assert fake.calls() == []
    assert not fake.home.exists()


def test_a_backend_url_without_a_location_or_from_the_environment_is_named(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(UsageError) as e:
        engine.resolve_backend("s3://", fake.home)
    assert str(e.value).startswith("--backend 's3://' names no location: use file://DIR")
    monkeypatch.setenv("MLSERVE_BACKEND_URL", "gopher://x")
    with pytest.raises(UsageError) as e:
        engine.resolve_backend(None, fake.home)
    assert str(e.value).startswith("MLSERVE_BACKEND_URL 'gopher://x' is not a backend URL")


def test_every_scheme_the_pulumi_cli_accepts_is_accepted(fake: Fake) -> None:
    for url in (
        "s3://bucket/p",
        "azblob://c",
        "gs://b",
        "postgres://u@h/db",
        "https://api.pulumi.com",
        "http://pulumi.internal:8080",
    ):
        assert engine.resolve_backend(url, fake.home) == (url, False)


def test_the_default_backend_is_recognised_however_it_is_written(
    fake: Fake, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    default = engine.default_backend(fake.home)
    for url in (
        f"file://{fake.home}/state",
        f"file://{fake.home}/state/",
        f"file://{fake.home}//state",
        f"file://{fake.home}/workspaces/../state",
        f"FILE://{fake.home}/state",
    ):
        assert engine.resolve_backend(url, fake.home) == (default, True), url
    monkeypatch.setenv("HOME", str(tmp_path))
    home = tmp_path / ".mlserve"
    assert engine.resolve_backend("file://~/.mlserve/state", home) == (
        engine.default_backend(home),
        True,
    )
    assert engine.resolve_backend(f"file://{fake.home}/state?no_tmp_dir=false", fake.home) == (
        f"{default}?no_tmp_dir=false",
        False,
    )


def test_the_default_written_out_uses_the_same_workspace_and_stack(fake: Fake) -> None:
    fake.deployed(REPO / "specs" / "istio.yaml")
    status = mlserve("status", *PROJECT, "--backend", f"file://{fake.home}/state/")
    assert status.returncode == 0, status.stderr
    assert [p.name for p in (fake.home / "workspaces").iterdir()] == ["fraud-detector"]


# --- 6: project names -------------------------------------------------------------------------


RULE = (
    "a project name starts with a letter, '_' or '.', goes on with letters, digits, '-', '_' "
    "and '.', and has at most 100 characters"
)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        (".", "names a directory, not a project"),
        ("..", "names a directory, not a project"),
        ("1fraud", ""),
        ("fraud detector", ""),
        ("a" * 101, ""),
        ("team/fraud", ""),
    ],
    ids=["dot", "dotdot", "digit-first", "space", "101-chars", "slash"],
)
def test_an_invalid_project_name_exits_2_and_writes_nothing(
    fake: Fake, name: str, problem: str
) -> None:
    result = mlserve("status", "--project", name)
    said = f"{name!r} {problem}" if problem else repr(name)
    assert (result.returncode, result.stderr) == (2, f"error: --project {said}: {RULE}\n")
    assert not fake.home.exists()
    assert fake.calls() == []


def test_pulumis_project_names_are_accepted() -> None:
    for name in ("fraud", "_x", ".hidden", "a.b-c_d", "A" * 100):
        ops.check_project_name(name)


# --- 7: a deleted passphrase file ----------------------------------------------------------


def test_a_deleted_passphrase_is_not_replaced_while_stacks_exist(fake: Fake) -> None:
    first = mlserve("deploy", SPEC, "--yes")
    passphrase = fake.home / "passphrase"
    assert (
        f"created a passphrase for stack secrets in {passphrase} (mode 0600); keep it: every "
        "later command on this backend needs it\n"
    ) in first.stderr
    passphrase.unlink()
    result = mlserve("status", *PROJECT)
    assert (result.returncode, result.stderr) == (
        4,
        f"error: the passphrase file {passphrase} is missing, but "
        f"{engine.default_backend(fake.home)} holds stacks encrypted with the passphrase it held "
        "(fraud-detector/dev); mlserve will not make a new one, which could not open them: "
        f"restore {passphrase} from a backup, or export PULUMI_CONFIG_PASSPHRASE_FILE (or "
        "PULUMI_CONFIG_PASSPHRASE) with that passphrase\n",
    )
    assert not passphrase.exists()
    doctor = {c.name: c for c in ops.doctor(None)}["passphrase"]
    assert (doctor.ok, doctor.fix) == (
        False,
        f"restore {passphrase} from a backup, or export PULUMI_CONFIG_PASSPHRASE_FILE (or "
        "PULUMI_CONFIG_PASSPHRASE) with that passphrase",
    )
