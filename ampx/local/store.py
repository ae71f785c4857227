"""Tasks of the local runtime in one SQLite file (WAL), beside the history tables.

Each task is kept whole (spec + status, the AmpTask wire form) in `local_tasks` with a version
counter for optimistic concurrency, the same way the API server keeps AmpTasks; the history
tables of `ampx.history` are written in the same file, so `ampx export` and the operator's
history have one schema. Writers follow the Kubernetes split: the supervisor writes the status,
the worker only `status.reports[N]`, the CLI only the spec.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Callable, Optional

from ..core.models import OWNER_LABEL, AmpTask, AmpTaskSpec, AmpTaskStatus, WorkerReport
from ..history.db import HistoryDB
from ..record import record

_SCHEMA = """
CREATE TABLE IF NOT EXISTS local_tasks (
    id         TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    version    INTEGER NOT NULL,
    doc        TEXT NOT NULL
)
"""


class ConflictError(Exception):
    """The task changed between read and write."""


class LocalStore:
    def __init__(self, db_path: Path) -> None:
        self.path = Path(db_path)
        self.history = HistoryDB(self.path)  # creates the file, WAL, migrations
        self._lock = threading.RLock()
        self._cache: dict[str, tuple[int, AmpTask]] = {}  # id -> (version, parsed task)
        self._conn = sqlite3.connect(str(self.path), timeout=10, isolation_level=None,
                                     check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout = 10000")
        self._conn.execute(_SCHEMA)

    def close(self) -> None:
        self._conn.close()
        self.history.close()

    # ------------------------------------------------------------------ reading
    def _row_task(self, row) -> AmpTask:
        doc = json.loads(row[1])
        doc["metadata"]["resourceVersion"] = str(row[0])
        return AmpTask.model_validate(doc)

    def get(self, name: str) -> Optional[AmpTask]:
        with self._lock:
            row = self._conn.execute("SELECT version, doc FROM local_tasks WHERE id = ?",
                                     (name,)).fetchone()
        return self._row_task(row) if row else None

    load = get  # the engine's TaskStore interface

    def list(self, owner: Optional[str] = None) -> list[AmpTask]:
        """All tasks (of one owner), parsing only those that changed since the last call:
        the supervisor lists four times a second, and finished tasks pile up over months."""
        sql, args = "SELECT id, version FROM local_tasks", ()
        if owner is not None:
            sql, args = sql + " WHERE owner = ?", (owner,)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY id", args).fetchall()
            stale = [tid for tid, version in rows if self._cache.get(tid, (None,))[0] != version]
            for chunk in range(0, len(stale), 500):
                ids = stale[chunk:chunk + 500]
                marks = ",".join("?" * len(ids))
                for tid, version, doc in self._conn.execute(
                        f"SELECT id, version, doc FROM local_tasks WHERE id IN ({marks})", ids):
                    self._cache[tid] = (version, self._row_task((version, doc)))
        return [self._cache[tid][1].model_copy(deep=True) for tid, _ in rows if tid in self._cache]

    def ids(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT id FROM local_tasks ORDER BY id")]

    def data_version(self) -> int:
        """Changes whenever any connection commits: a cheap "did anything change" probe."""
        with self._lock:
            return int(self._conn.execute("SELECT max(version) + count(*) FROM local_tasks")
                       .fetchone()[0] or 0)

    # ------------------------------------------------------------------ writing
    def create(self, name: str, spec: AmpTaskSpec, owner: str, created_at: str) -> AmpTask:
        task = AmpTask(metadata={"name": name, "namespace": "local", "creationTimestamp": created_at,
                                 "labels": {OWNER_LABEL: owner}, "uid": name},
                       spec=spec, status=AmpTaskStatus())
        doc = json.dumps(self._doc(task))
        with self._lock:
            try:
                self._conn.execute("INSERT INTO local_tasks (id, owner, created_at, version, doc)"
                                   " VALUES (?, ?, ?, 1, ?)", (name, owner, created_at, doc))
            except sqlite3.IntegrityError:
                raise ConflictError(f"task {name} already exists") from None
        record(self.history, task)
        return self.get(name)  # type: ignore[return-value]

    @staticmethod
    def _doc(task: AmpTask) -> dict:
        meta = {k: v for k, v in task.metadata.items() if k != "resourceVersion"}
        return {"apiVersion": task.api_version, "kind": task.kind, "metadata": meta,
                "spec": task.spec.wire(), "status": task.status.wire()}

    def _update(self, name: str, change: Callable[[AmpTask], AmpTask],
                expected_version: Optional[str] = None) -> AmpTask:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute("SELECT version, doc FROM local_tasks WHERE id = ?",
                                         (name,)).fetchone()
                if row is None:
                    raise KeyError(name)
                if expected_version is not None and str(row[0]) != str(expected_version):
                    raise ConflictError(f"task {name} changed since it was read")
                new = change(self._row_task(row))
                self._conn.execute("UPDATE local_tasks SET version = ?, doc = ? WHERE id = ?",
                                   (row[0] + 1, json.dumps(self._doc(new)), name))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return self.get(name)  # type: ignore[return-value]

    def save_status(self, task: AmpTask, status: AmpTaskStatus) -> AmpTask:
        """The supervisor's write: every status field but the workers' reports."""

        def change(current: AmpTask) -> AmpTask:
            return current.model_copy(update={
                "status": status.model_copy(update={"reports": current.status.reports})})

        saved = self._update(task.name, change)
        record(self.history, saved)
        return saved

    def update_spec(self, name: str, expected_version: str, spec: AmpTaskSpec) -> AmpTask:
        """The CLI's write (continue, abort, merge), refused if the task moved meanwhile."""
        return self._update(name, lambda t: t.model_copy(update={"spec": spec}), expected_version)

    def write_report(self, name: str, number: int, fields: dict) -> AmpTask:
        """The worker's write: merge `fields` into status.reports[number]."""

        def change(current: AmpTask) -> AmpTask:
            reports = dict(current.status.reports)
            old = reports.get(str(number))
            merged = {**(old.model_dump(exclude_none=True) if old else {}), **fields}
            reports[str(number)] = WorkerReport.model_validate(merged)
            return current.model_copy(update={
                "status": current.status.model_copy(update={"reports": reports})})

        return self._update(name, change)
