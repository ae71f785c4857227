"""The CLI's view of the local runtime: the same commands, tasks in the SQLite file.

Reading (`ls`, `get`, `logs`, completion) goes through `TaskReader` (read-only, no models for
a listing); writing opens `LocalStore` only when a command changes a task.
"""

from __future__ import annotations

import os
import time
from typing import Iterator, Optional

from ..cli.backend import CliError, now_iso
from ..core.ids import IdError, resolve_prefix
from ..core.names import OWNER_LABEL
from . import paths
from .attention import doc_needs_attention
from .reader import StoreUnreadable, TaskReader


def _task(doc: dict):
    from ..core.models import AmpTask

    return AmpTask.model_validate(doc)


class LocalBackend:
    name = "local"
    namespace = "local"

    def __init__(self, store=None, ensure_supervisor: bool = True) -> None:
        if store is None:
            home = paths.home(create=False)
            if home.exists() and not home.is_dir():
                raise CliError(f"AMPX_HOME {home} is not a directory")
        self._store = store
        self.ensure_supervisor = ensure_supervisor
        self.reader = TaskReader(store.path if store is not None else paths.db_path(create=False))
        self._launcher = None
        self._snapshot: Optional[list[dict]] = None
        self.notices: list[str] = []  # what the CLI should tell the user (stderr)

    @classmethod
    def from_env(cls, ensure_supervisor: bool = True) -> "LocalBackend":
        backend = cls(None, ensure_supervisor)
        backend.revive()
        return backend

    @property
    def store(self):
        if self._store is None:
            from .store import LocalStore

            try:
                self._store = LocalStore(paths.db_path())
            except Exception as exc:
                import sqlite3

                if isinstance(exc, sqlite3.DatabaseError):
                    raise CliError(f"{paths.db_path(create=False)} is not an ampx database ({exc})") from None
                raise
        return self._store

    @property
    def launcher(self):
        if self._launcher is None:
            from .launcher import LocalLauncher

            self._launcher = LocalLauncher(paths.runs_dir(create=False))
        return self._launcher

    def revive(self) -> None:
        """Any command restarts a supervisor that died (even kill -9) while tasks were in flight."""
        if not self.ensure_supervisor:
            return
        self._snapshot = self.list_docs(True, "")  # `ls` lists from it: one read, one parse
        if not any(doc_needs_attention(d) for d in self._snapshot):
            return
        from .supervisor import running_pid

        if running_pid():
            return
        if not os.access(paths.home(create=False), os.W_OK):
            self.notices.append(f"tasks are in flight but no supervisor runs, and "
                                f"{paths.home(create=False)} is read-only: nothing can act on them")
            return
        from .supervisor import start_background

        start_background()

    def supervise(self, refresh_credentials: bool = False) -> list[str]:
        """A supervisor to act on a change; with refresh_credentials, one holding this shell's
        credentials (restarted when they differ). Returns the variables that changed."""
        if not self.ensure_supervisor:
            return []
        from .supervisor import ensure_current, start_background

        if refresh_credentials:
            return ensure_current()[1]
        start_background()
        return []

    # ------------------------------------------------------------------ reading
    def list_docs(self, all_owners: bool, owner: str) -> list[dict]:
        """The stored wire form of the tasks: what `ls` prints, without building models (the
        first call after `revive` reuses the documents it read)."""
        snapshot, self._snapshot = self._snapshot, None
        if snapshot is not None:
            return [d for d in snapshot if all_owners
                    or (d["metadata"].get("labels") or {}).get(OWNER_LABEL) == owner]
        try:
            return self.reader.docs(None if all_owners else owner)
        except StoreUnreadable as exc:
            raise CliError(str(exc)) from None

    def all_ids(self) -> list[str]:
        try:
            return self.reader.ids()
        except StoreUnreadable as exc:
            raise CliError(str(exc)) from None

    def list(self, all_owners: bool, owner: str) -> list:
        return [_task(d) for d in self.list_docs(all_owners, owner)]

    def watch(self, all_owners: bool, owner: str) -> Iterator[tuple[str, Optional[object]]]:
        """A change stream over the database: every new version of a task, once."""
        seen: dict[str, str] = {}
        first = True
        while True:
            current = {d["metadata"]["name"]: d for d in self.list_docs(all_owners, owner)}
            for name, doc in current.items():
                rv = doc["metadata"].get("resourceVersion", "")
                if seen.get(name) != rv:
                    yield ("ADDED" if name not in seen else "MODIFIED"), _task(doc)
                    seen[name] = rv
            for name in set(seen) - set(current):
                seen.pop(name)
            if first:
                yield "SYNCED", None
                first = False
            time.sleep(0.25)

    def get(self, name: str):
        try:
            doc = self.reader.doc(name)
        except StoreUnreadable as exc:
            raise CliError(str(exc)) from None
        if doc is None:
            raise CliError(f"task {name} no longer exists")
        return _task(doc)

    def resolve(self, prefix: str):
        try:
            name = resolve_prefix(prefix, self.all_ids())
        except IdError as exc:
            raise CliError(str(exc)) from None
        return self.get(name)

    # ------------------------------------------------------------------ writing
    def create(self, task_id: str, spec, owner: str):
        task = self.store.create(task_id, spec, owner, now_iso())
        self.notices += _changed_notice(self.supervise(refresh_credentials=True))
        return task

    def update_spec(self, task, change, refresh_credentials: bool = False):
        from .store import ConflictError

        for _ in range(10):
            fresh = self.store.get(task.name)
            if fresh is None:
                raise CliError(f"task {task.name} no longer exists")
            try:
                updated = self.store.update_spec(task.name, fresh.metadata["resourceVersion"],
                                                 change(fresh))
            except ConflictError:
                time.sleep(0.05)
                continue
            self.notices += _changed_notice(self.supervise(refresh_credentials))
            return updated
        raise CliError(f"task {task.name} keeps changing; try again")

    def worker_log(self, task, attempt: int, follow: bool) -> Iterator[str]:
        path = self.launcher.log_path(task.name, attempt)
        if not path.exists():
            raise CliError(f"attempt {attempt} of task {task.name} left no log "
                           "(it was stopped before its process started, or the log was removed)")
        # newline="": a lone CR stays a CR (shown as \r), not turned into a line break
        with open(path, encoding="utf-8", errors="replace", newline="") as fh:
            while True:
                chunk = fh.read()
                if chunk:
                    yield chunk
                    continue
                if not follow or self.launcher.state(task, attempt).state != "running":
                    rest = fh.read()
                    if rest:
                        yield rest
                    return
                time.sleep(0.2)


def _changed_notice(names: list[str]) -> list[str]:
    if not names:
        return []
    return [f"restarted the local supervisor to use this shell's credentials "
            f"({', '.join(names)} changed); running attempts go on with the ones they started with"]
