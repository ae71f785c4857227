"""The CLI's view of the local runtime: the same commands, tasks in the SQLite file."""

from __future__ import annotations

import time
from typing import Iterator, Optional

from ..cli.backend import CliError, now_iso
from ..core.ids import IdError, resolve_prefix
from ..core.models import AmpTask, AmpTaskSpec
from . import paths
from .launcher import LocalLauncher
from .store import ConflictError, LocalStore


class LocalBackend:
    name = "local"
    namespace = "local"

    def __init__(self, store: LocalStore, ensure_supervisor: bool = True) -> None:
        self.store = store
        self.ensure_supervisor = ensure_supervisor
        self.launcher = LocalLauncher(paths.runs_dir())

    @classmethod
    def from_env(cls, ensure_supervisor: bool = True) -> "LocalBackend":
        backend = cls(LocalStore(paths.db_path()), ensure_supervisor)
        backend.revive()
        return backend

    def revive(self) -> None:
        """Any command restarts a supervisor that died (even kill -9) while tasks were in flight."""
        from .supervisor import needs_attention

        if self.ensure_supervisor and any(needs_attention(t) for t in self.store.list()):
            self._supervise()

    def _supervise(self) -> None:
        """Any command that changes a task makes sure a supervisor is there to act on it."""
        if self.ensure_supervisor:
            from .supervisor import start_background

            start_background()

    def create(self, task_id: str, spec: AmpTaskSpec, owner: str) -> AmpTask:
        task = self.store.create(task_id, spec, owner, now_iso())
        self._supervise()
        return task

    def list(self, all_owners: bool, owner: str) -> list[AmpTask]:
        return self.store.list(None if all_owners else owner)

    def watch(self, all_owners: bool, owner: str) -> Iterator[tuple[str, Optional[AmpTask]]]:
        """A change stream over the database: every new version of a task, once."""
        seen: dict[str, str] = {}
        first = True
        while True:
            current = {t.name: t for t in self.list(all_owners, owner)}
            for name, task in current.items():
                rv = task.metadata.get("resourceVersion", "")
                if seen.get(name) != rv:
                    yield ("ADDED" if name not in seen else "MODIFIED"), task
                    seen[name] = rv
            for name in set(seen) - set(current):
                seen.pop(name)
            if first:
                yield "SYNCED", None
                first = False
            time.sleep(0.25)

    def get(self, name: str) -> AmpTask:
        task = self.store.get(name)
        if task is None:
            raise CliError(f"task {name} no longer exists")
        return task

    def resolve(self, prefix: str) -> AmpTask:
        try:
            name = resolve_prefix(prefix, self.store.ids())
        except IdError as exc:
            raise CliError(str(exc)) from None
        task = self.store.get(name)
        assert task is not None
        return task

    def update_spec(self, task: AmpTask, change) -> AmpTask:
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
            self._supervise()
            return updated
        raise CliError(f"task {task.name} keeps changing; try again")

    def worker_log(self, task: AmpTask, attempt: int, follow: bool) -> Iterator[str]:
        path = self.launcher.log_path(task.name, attempt)
        if not path.exists():
            raise CliError(f"no log for attempt {attempt} yet")
        with open(path, encoding="utf-8", errors="replace") as fh:
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
