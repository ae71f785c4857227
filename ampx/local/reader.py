"""Read-only access to the local runtime's tasks: what `ls`, `get` and completion need.

Opens the database with `mode=ro` and returns the stored documents (the AmpTask wire form) as
dicts: no schema migration, no write lock, no models, so listing works on a read-only data
directory and stays fast with thousands of tasks. Writers use `LocalStore`.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Optional


class StoreUnreadable(Exception):
    """The database file cannot be read as the local runtime's database."""


class TaskReader:
    def __init__(self, db_path: Path) -> None:
        self.path = Path(db_path)
        self._conn: Optional[sqlite3.Connection] = None

    def _connect(self) -> Optional[sqlite3.Connection]:
        if self._conn is None:
            if not self.path.exists():
                return None
            uri = f"file:{self.path}?mode=ro"
            if not os.access(self.path.parent, os.W_OK):
                # WAL needs its -shm file; in a directory we cannot write, nobody else can
                # either (but root), so the file is as good as immutable.
                uri += "&immutable=1"
            try:
                conn = sqlite3.connect(uri, uri=True, timeout=10)
                conn.execute("PRAGMA busy_timeout = 10000")
                conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            except sqlite3.DatabaseError as exc:
                raise StoreUnreadable(f"{self.path} is not an ampx database ({exc})") from None
            self._conn = conn
        return self._conn

    def _rows(self, sql: str, args: tuple = ()) -> list:
        conn = self._connect()
        if conn is None:
            return []
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise StoreUnreadable(f"cannot read {self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise StoreUnreadable(f"{self.path} is not an ampx database ({exc})") from None

    def docs(self, owner: Optional[str] = None) -> list[dict]:
        """Stored tasks (of one owner), by id, with their resourceVersion."""
        sql, args = "SELECT version, doc FROM local_tasks", ()
        if owner is not None:
            sql, args = sql + " WHERE owner = ?", (owner,)
        out = []
        for version, doc in self._rows(sql + " ORDER BY id", args):
            d = json.loads(doc)
            d.setdefault("metadata", {})["resourceVersion"] = str(version)
            out.append(d)
        return out

    def doc(self, name: str) -> Optional[dict]:
        rows = self._rows("SELECT version, doc FROM local_tasks WHERE id = ?", (name,))
        if not rows:
            return None
        d = json.loads(rows[0][1])
        d.setdefault("metadata", {})["resourceVersion"] = str(rows[0][0])
        return d

    def ids(self) -> list[str]:
        return [r[0] for r in self._rows("SELECT id FROM local_tasks ORDER BY id")]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
