"""Where stacks live: the DIY backend's files (file://, and s3://, azblob://, gs:// which run the
same diy code over a bucket) and a Pulumi Cloud imitation (https://).

DIY layout and rules, from pkg/backend/diy: backend.go (Lock on Update/Refresh/Destroy/Import and
CreateStack/RemoveStack, not Preview; `apply` writes one history entry per non-preview operation
with the config the operation used and no version), state.go (checkpoint with a `.bak` copy,
`addToHistory` writing STACK-UNIXNANO.history.json and a .checkpoint.json copy, `backupStack`,
`getHistory` newest first, paged), lock.go (check, write, check again; the error text), meta.go
(.pulumi/meta.yaml, version 1 = project mode). Bucket writes replace files atomically, as
gocloud's fileblob does (it writes a temporary file and renames it).
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
import shutil
import socket
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import control
from .control import EXIT_STACK_NOT_FOUND, Fail

FOREIGN_LOCK = {  # the `locked` knob: another process's lock, as lock.go writes it
    "pid": 4242,
    "username": "ci",
    "hostname": "runner-7",
    "timestamp": "2025-01-01T10:00:00Z",
}
FOREIGN_LOCK_ID = "4b9e2d7a-0000-4000-8000-000000004242"
LOCK_TEXT = (
    "the stack is currently locked by {n} lock(s). Either wait for the other process(es) to end "
    "or delete the lock file with `pulumi cancel`."
)
CLOUD_CONFLICT = "[409] Conflict: Another update is currently in progress."


@dataclass(frozen=True)
class StackRef:
    org: str
    project: str
    name: str

    @property
    def fq(self) -> str:
        return f"{self.org}/{self.project}/{self.name}"


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _dump(data: Any) -> bytes:
    return (json.dumps(data, indent=4) + "\n").encode()


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Backend:
    """The operations the commands need, shared by the DIY and Cloud imitations."""

    url: str
    cloud = False

    def ref(self, stack: str, project: str) -> StackRef:
        parts = stack.split("/")
        if len(parts) == 3:
            if not self.cloud and parts[0] != "organization":
                # pkg/backend/diy/store.go: project-scoped DIY references use the literal org.
                raise Fail(
                    f"error: invalid stack name: organization name must be 'organization', "
                    f"got '{parts[0]}'"
                )
            return StackRef(parts[0], parts[1], parts[2])
        if len(parts) != 1:
            raise Fail(f"error: invalid stack name '{stack}'")
        return StackRef("organization" if not self.cloud else "pulumi-user", project, stack)

    # -- implemented by both
    def exists(self, ref: StackRef) -> bool:
        raise NotImplementedError

    def create(self, ref: StackRef) -> None:
        raise NotImplementedError

    def remove(self, ref: StackRef) -> None:
        raise NotImplementedError

    def read(self, ref: StackRef) -> dict[str, Any] | None:
        """The checkpoint's `latest` deployment (None for a stack never updated)."""
        raise NotImplementedError

    def write(self, ref: StackRef, latest: dict[str, Any] | None) -> None:
        raise NotImplementedError

    def history(self, ref: StackRef, page_size: int, page: int) -> list[dict[str, Any]]:
        raise NotImplementedError

    def begin(self, ref: StackRef, info: dict[str, Any]) -> Any:
        """An update starts (Cloud lists it as in-progress; DIY writes nothing yet)."""
        return None

    def finish(self, ref: StackRef, token: Any, info: dict[str, Any]) -> None:
        raise NotImplementedError

    def lock(self, ref: StackRef) -> None:
        raise NotImplementedError

    def unlock(self, ref: StackRef) -> None:
        raise NotImplementedError

    def cancel(self, ref: StackRef) -> None:
        raise NotImplementedError

    def stacks(self, project: str) -> list[StackRef]:
        raise NotImplementedError

    def require(self, ref: StackRef) -> None:
        if not self.exists(ref):
            # backenderr.StackNotFoundError; the automation API matches "no stack named.*found".
            raise Fail(f"error: no stack named '{ref.name}' found", code=EXIT_STACK_NOT_FOUND)


def _knob_lock(lock_dir: Path, lock_file: str) -> bool:
    """The `locked` knob: put another process's lock in place; True if one is there now.

    `locked: N` lets the next N lock attempts find it (then that process "finishes" and its
    lock goes); -1 keeps it until `pulumi cancel` deletes every lock file.
    """

    def step(ctl: dict[str, Any]) -> tuple[bool, bool]:
        n = int(ctl.get("locked", 0))
        if n > 0:
            ctl["locked"] = n - 1
        return n != 0, n == 1

    present, last = control.update(step)
    path = lock_dir / lock_file
    if present and not path.exists():
        _write(path, json.dumps(FOREIGN_LOCK).encode())
    elif not present:
        path.unlink(missing_ok=True)  # the knob was cleared: that process has finished
    return last


class DIY(Backend):
    def __init__(self, url: str, root: Path) -> None:
        self.url = url
        self.root = root
        self.lock_id = str(uuid.uuid4())  # one per backend instance (diy/backend.go New)

    @classmethod
    def open(cls, url: str) -> DIY:
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme == "file":
            # massageBlobPath (diy/backend.go): ~ expands, relative paths are made absolute.
            raw = urllib.parse.unquote(url[len("file://") :].split("?")[0])
            root = Path(os.path.expanduser(raw)).absolute()
        else:
            # s3://, azblob://, gs:// run the same diy code over a bucket; here the bucket is a
            # directory under FAKE_PULUMI_STATE, keyed by the URL.
            key = f"{parsed.scheme}/{parsed.netloc}{parsed.path}".rstrip("/")
            root = Path(os.environ["FAKE_PULUMI_STATE"]) / "buckets" / key
        return cls(url, root)

    @property
    def bookkeeping(self) -> Path:
        return self.root / ".pulumi"

    def ensure_meta(self) -> None:
        # meta.go ensurePulumiMeta: a new state store is written in project mode (version 1).
        meta = self.bookkeeping / "meta.yaml"
        if not meta.exists():
            try:
                _write(meta, b"version: 1\n")
            except OSError as e:
                raise Fail(f"error: could not write state metadata file: {e}") from None

    def stack_path(self, ref: StackRef) -> Path:
        return self.bookkeeping / "stacks" / ref.project / f"{ref.name}.json"

    def history_dir(self, ref: StackRef) -> Path:
        return self.bookkeeping / "history" / ref.project / ref.name

    def lock_dir(self, ref: StackRef) -> Path:
        return self.bookkeeping / "locks" / ref.org / ref.project / ref.name

    def exists(self, ref: StackRef) -> bool:
        return self.stack_path(ref).exists()

    def create(self, ref: StackRef) -> None:
        self.ensure_meta()
        self.lock(ref)  # CreateStack locks the stack
        try:
            if self.exists(ref):
                raise Fail(f"error: stack '{ref.fq}' already exists")
            self.write(ref, None)
        finally:
            self.unlock(ref)

    def remove(self, ref: StackRef) -> None:
        self.lock(ref)
        try:
            path = self.stack_path(ref)
            shutil.copyfile(path, str(path) + ".bak")  # removeStack: keep a backup only
            path.unlink()
            shutil.rmtree(self.history_dir(ref), ignore_errors=True)
        finally:
            self.unlock(ref)

    def read(self, ref: StackRef) -> dict[str, Any] | None:
        data = json.loads(self.stack_path(ref).read_text())
        latest: dict[str, Any] | None = data.get("checkpoint", {}).get("latest")
        return latest

    def write(self, ref: StackRef, latest: dict[str, Any] | None) -> None:
        path = self.stack_path(ref)
        checkpoint: dict[str, Any] = {"stack": ref.fq}
        if latest is not None:
            checkpoint["latest"] = latest
        try:
            if path.exists():
                shutil.copyfile(path, str(path) + ".bak")  # state.go backupTarget
            _write(path, _dump({"version": 3, "checkpoint": checkpoint}))
        except OSError as e:
            raise Fail(
                f"error: An IO error occurred while writing the new snapshot file: {e}"
            ) from None

    def history(self, ref: StackRef, page_size: int, page: int) -> list[dict[str, Any]]:
        directory = self.history_dir(ref)
        if not directory.exists():
            return []
        # state.go getHistory: sorted by name (older first), reversed; pageSize <= 0 means all.
        files = sorted(p.name for p in directory.iterdir() if p.name.endswith(".history.json"))
        files.reverse()
        if page_size > 0:
            start = (max(page, 1) - 1) * page_size
            files = files[start : start + page_size]
        return [json.loads((directory / f).read_text()) for f in files]

    def finish(self, ref: StackRef, token: Any, info: dict[str, Any]) -> None:
        # backend.go apply -> addToHistory (history + checkpoint copy) and backupStack.
        stamp = time.time_ns()
        directory = self.history_dir(ref)
        prefix = directory / f"{ref.name}-{stamp}"
        _write(Path(f"{prefix}.history.json"), _dump(info))
        checkpoint = self.stack_path(ref).read_bytes()
        _write(Path(f"{prefix}.checkpoint.json"), checkpoint)
        backups = self.bookkeeping / "backups" / ref.project / ref.name
        _write(backups / f"{ref.name}.{time.time_ns()}.json", checkpoint)

    def lock(self, ref: StackRef) -> None:
        # lock.go Lock: check for other locks, write ours, check again (a racing writer makes
        # both fail), remove ours on failure.
        directory = self.lock_dir(ref)
        release_foreign = _knob_lock(directory, f"{FOREIGN_LOCK_ID}.json")
        try:
            self._check(ref)
            content = {
                "pid": os.getpid(),
                "username": getpass.getuser(),
                "hostname": socket.gethostname(),
                "timestamp": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
            }
            try:
                _write(directory / f"{self.lock_id}.json", json.dumps(content).encode())
            except OSError as e:
                raise Fail(f"error: {e}") from None
            try:
                self._check(ref)
            except Fail:
                self.unlock(ref)
                raise
        finally:
            if release_foreign:
                (directory / f"{FOREIGN_LOCK_ID}.json").unlink(missing_ok=True)

    def _check(self, ref: StackRef) -> None:
        directory = self.lock_dir(ref)
        mine = f"{self.lock_id}.json"
        others = (
            sorted(p for p in directory.glob("*.json") if p.name != mine)
            if directory.exists()
            else []
        )
        if not others:
            return
        lines = ["error: " + LOCK_TEXT.format(n=len(others))]
        for path in others:
            try:
                held = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # released while we looked
            stamp = str(held.get("timestamp", ""))
            stamp = stamp.split(".")[0].rstrip("Z") + "Z" if stamp.endswith("Z") else stamp
            url = urllib.parse.urlparse(self.url)
            lock_url = url._replace(
                path=f"{url.path.rstrip('/')}/{path.relative_to(self.root).as_posix()}"
            ).geturl()
            lines.append(
                f"  {lock_url}: created by {held.get('username')}@{held.get('hostname')} "
                f"(pid {held.get('pid')}) at {stamp}"
            )
        raise Fail("\n".join(lines))

    def unlock(self, ref: StackRef) -> None:
        (self.lock_dir(ref) / f"{self.lock_id}.json").unlink(missing_ok=True)

    def cancel(self, ref: StackRef) -> None:
        # backend.go CancelCurrentUpdate: delete ALL the lock files.
        directory = self.lock_dir(ref)
        if directory.exists():
            for path in directory.glob("*.json"):
                path.unlink(missing_ok=True)
        control.update(lambda ctl: ctl.pop("locked", None))

    def stacks(self, project: str) -> list[StackRef]:
        directory = self.bookkeeping / "stacks" / project
        if not directory.exists():
            return []
        return [
            StackRef("organization", project, p.name[: -len(".json")])
            for p in sorted(directory.glob("*.json"))
        ]


class Cloud(Backend):
    """Pulumi Cloud, imitated in files: updates numbered 1, 2, 3... per stack, the running one
    listed as in-progress, and a 409 for a second update while one runs. Only what the CLI's
    commands show is imitated (pkg/backend/httpstate); the service itself is not."""

    cloud = True

    def __init__(self, url: str) -> None:
        self.url = url
        key = hashlib.sha256(url.encode()).hexdigest()[:12]
        self.root = Path(os.environ["FAKE_PULUMI_STATE"]) / "cloud" / key

    def _dir(self, ref: StackRef) -> Path:
        return self.root / ref.org / ref.project / ref.name

    def exists(self, ref: StackRef) -> bool:
        return (self._dir(ref) / "checkpoint.json").exists()

    def create(self, ref: StackRef) -> None:
        if self.exists(ref):
            raise Fail(f"error: stack '{ref.fq}' already exists")
        self.write(ref, None)

    def remove(self, ref: StackRef) -> None:
        shutil.rmtree(self._dir(ref))

    def read(self, ref: StackRef) -> dict[str, Any] | None:
        data = json.loads((self._dir(ref) / "checkpoint.json").read_text())
        latest: dict[str, Any] | None = data.get("latest")
        return latest

    def write(self, ref: StackRef, latest: dict[str, Any] | None) -> None:
        _write(self._dir(ref) / "checkpoint.json", _dump({"latest": latest}))

    def _updates(self, ref: StackRef) -> list[Path]:
        directory = self._dir(ref) / "updates"
        if not directory.exists():
            return []
        return sorted(directory.glob("*.json"), key=lambda p: int(p.stem))

    def history(self, ref: StackRef, page_size: int, page: int) -> list[dict[str, Any]]:
        entries = [json.loads(p.read_text()) for p in reversed(self._updates(ref))]
        if page_size > 0:
            start = (max(page, 1) - 1) * page_size
            entries = entries[start : start + page_size]
        return entries

    def begin(self, ref: StackRef, info: dict[str, Any]) -> Any:
        version = len(self._updates(ref)) + 1
        _write(self._dir(ref) / "updates" / f"{version}.json", _dump({**info, "version": version}))
        return version

    def finish(self, ref: StackRef, token: Any, info: dict[str, Any]) -> None:
        _write(self._dir(ref) / "updates" / f"{token}.json", _dump({**info, "version": token}))

    def lock(self, ref: StackRef) -> None:
        directory = self._dir(ref) / "locks"
        release_foreign = _knob_lock(directory, "foreign")
        try:
            directory.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(directory / "update", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                raise Fail(f"error: {CLOUD_CONFLICT}") from None
            os.close(fd)
            if (directory / "foreign").exists():
                (directory / "update").unlink()
                raise Fail(f"error: {CLOUD_CONFLICT}")
        finally:
            if release_foreign:
                (directory / "foreign").unlink(missing_ok=True)

    def unlock(self, ref: StackRef) -> None:
        (self._dir(ref) / "locks" / "update").unlink(missing_ok=True)

    def cancel(self, ref: StackRef) -> None:
        shutil.rmtree(self._dir(ref) / "locks", ignore_errors=True)
        control.update(lambda ctl: ctl.pop("locked", None))

    def stacks(self, project: str) -> list[StackRef]:
        if not self.root.exists():
            return []
        return [
            StackRef(d.parent.parent.name, project, d.name)
            for d in sorted(self.root.glob(f"*/{project}/*"))
            if (d / "checkpoint.json").exists()
        ]


def open_backend(url: str) -> Backend:
    if url.startswith(("https://", "http://")):
        return Cloud(url)
    if url.split("://")[0] in ("file", "s3", "azblob", "gs"):
        return DIY.open(url)
    # diy/backend.go newDIYBackend: the schemes gocloud's URL mux knows.
    raise Fail(f"error: diy URL {url} has an illegal prefix; expected one of: azblob, file, gs, s3")
