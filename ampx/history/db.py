"""SQLite history of tasks and their attempts (standard library ``sqlite3``, WAL mode).

Both runtimes and ``ampx export`` write this one schema. Writes are idempotent upserts so a
restarted operator or supervisor can replay them, and every text goes through
:func:`ampx.redact.redact` first: the file is meant to be shared.
"""

from __future__ import annotations

import datetime as _dt
import os
import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ampx.history.schema import ATTEMPT_COLUMNS, MIGRATIONS, SCHEMA_VERSION, TASK_COLUMNS
from ampx.redact import redact

BUSY_TIMEOUT_MS = 5000

# Columns never rewritten by redaction (keys and timestamps).
_NOT_REDACTED = {"id", "task_id", "namespace", "created_at", "updated_at", "started_at", "finished_at",
                 "deleted_at", "green_at"}


class HistoryError(Exception):
    """The history file cannot be used (newer schema, bad row)."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _value(column: str, value: Any) -> Any:
    """Normalise a value for storage: datetimes as ISO text, bools as 0/1, text redacted."""
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return value.isoformat(timespec="seconds")
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str) and column not in _NOT_REDACTED:
        return redact(value)
    return value


class HistoryDB:
    """One history file; safe to share between threads of a process and between processes."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
            check_same_thread=False,
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._migrate()

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, overwrite: bool = False) -> "HistoryDB":
        """Create a fresh file with the current schema (for ``ampx export``)."""
        target = Path(path)
        if target.exists():
            if not overwrite:
                raise FileExistsError(f"{target} already exists")
            for suffix in ("", "-wal", "-shm"):
                Path(str(target) + suffix).unlink(missing_ok=True)
        return cls(target)

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "HistoryDB":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return self._conn.execute("PRAGMA user_version").fetchone()[0]

    @property
    def journal_mode(self) -> str:
        return self._conn.execute("PRAGMA journal_mode").fetchone()[0]

    def _migrate(self) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                version = self.schema_version
                if version > SCHEMA_VERSION:
                    raise HistoryError(
                        f"{self.path} has schema version {version}; this ampx knows up to "
                        f"{SCHEMA_VERSION} (upgrade ampx)"
                    )
                for number in range(version, SCHEMA_VERSION):
                    for statement in MIGRATIONS[number]:
                        self._conn.execute(statement)
                    self._conn.execute(f"PRAGMA user_version = {number + 1}")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    # -- writes ----------------------------------------------------------------------------

    def _upsert(self, table: str, columns: tuple[str, ...], keys: tuple[str, ...],
                row: Mapping[str, Any], keep_first: tuple[str, ...] = ()) -> None:
        unknown = set(row) - set(columns)
        if unknown:
            raise HistoryError(f"unknown {table} column(s): {', '.join(sorted(unknown))}")
        missing = [k for k in keys if row.get(k) is None]
        if missing:
            raise HistoryError(f"{table} row needs {', '.join(missing)}")
        names = list(row)
        values = [_value(name, row[name]) for name in names]
        updates = []
        for name in names:
            if name in keys:
                continue
            if name in keep_first:
                updates.append(f"{name} = COALESCE({table}.{name}, excluded.{name})")
            else:
                updates.append(f"{name} = excluded.{name}")
        conflict = f"DO UPDATE SET {', '.join(updates)}" if updates else "DO NOTHING"
        sql = (
            f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)}) "
            f"ON CONFLICT ({', '.join(keys)}) {conflict}"
        )
        with self._lock:
            self._conn.execute(sql, values)

    def upsert_task(self, row: Mapping[str, Any]) -> None:
        """Insert or update a task, keyed by (namespace, id); only the given columns change,
        ``created_at`` keeps its first value."""
        row = dict(row)
        now = _now()
        row["namespace"] = row.get("namespace") or ""
        row.setdefault("updated_at", now)
        row.setdefault("created_at", row["updated_at"])
        self._upsert("tasks", TASK_COLUMNS, ("namespace", "id"), row, keep_first=("created_at",))

    def upsert_attempt(self, row: Mapping[str, Any]) -> None:
        """Insert or update one attempt, keyed by (namespace, task_id, number)."""
        row = dict(row)
        row["namespace"] = row.get("namespace") or ""
        self._upsert("attempts", ATTEMPT_COLUMNS, ("namespace", "task_id", "number"), row)

    def mark_deleted(self, task_id: str, at: _dt.datetime | str | None = None,
                     namespace: str | None = None) -> bool:
        """Soft-delete a task (rows stay for the record); False when it is unknown. Give the
        namespace: the same name in another namespace is another task."""
        stamp = _value("deleted_at", at) if at is not None else _now()
        sql, args = "UPDATE tasks SET deleted_at = ?, updated_at = ? WHERE id = ?", [stamp, stamp, task_id]
        if namespace is not None:
            sql, args = sql + " AND namespace = ?", args + [namespace]
        with self._lock:
            cur = self._conn.execute(sql, args)
        return cur.rowcount > 0

    # -- reads -----------------------------------------------------------------------------

    def get_task(self, task_id: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The task `task_id` of `namespace` (None: of the first namespace that has one)."""
        sql, args = "SELECT * FROM tasks WHERE id = ?", [task_id]
        if namespace is not None:
            sql, args = sql + " AND namespace = ?", args + [namespace]
        with self._lock:
            row = self._conn.execute(sql + " ORDER BY namespace LIMIT 1", args).fetchone()
        return dict(row) if row else None

    def list_tasks(self, status: str | None = None, *, include_deleted: bool = False,
                   owner: str | None = None) -> list[dict[str, Any]]:
        """Tasks oldest first, optionally filtered by status and owner."""
        where, args = [], []
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        if not include_deleted:
            where.append("deleted_at IS NULL")
        sql = "SELECT * FROM tasks"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at, namespace, id"
        with self._lock:
            return [dict(r) for r in self._conn.execute(sql, args).fetchall()]

    def attempts(self, task_id: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """The attempts of task `task_id` of `namespace` (None: as for :meth:`get_task`)."""
        if namespace is None:
            task = self.get_task(task_id)
            namespace = task["namespace"] if task else ""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM attempts WHERE task_id = ? AND namespace = ? ORDER BY number",
                (task_id, namespace),
            ).fetchall()
        return [dict(r) for r in rows]

    def export(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> int:
        """Copy every task (deleted ones too) and attempt into a new file; returns the task count."""
        tasks = self.list_tasks(include_deleted=True)
        with HistoryDB.create(path, overwrite=overwrite) as out:
            for task in tasks:
                out.upsert_task(task)
                for attempt in self.attempts(task["id"], task["namespace"]):
                    out.upsert_attempt(attempt)
        return len(tasks)
