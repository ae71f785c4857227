"""The SQLite history: schema, migrations, WAL, idempotent upserts, redaction on store."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest

from ampx.history import ATTEMPT_COLUMNS, SCHEMA_VERSION, TASK_COLUMNS, HistoryDB, HistoryError
from ampx.history.schema import MIGRATIONS

PRD_COLUMNS = {"id", "repo", "branch", "thread_id", "prompt", "status", "ci_run_id", "attempts",
               "summary", "created_at", "updated_at"}
TOKEN = "ghp_" + "Z9y8" * 9


def columns(conn: sqlite3.Connection, table: str) -> dict[str, tuple[str, int]]:
    return {row[1]: (row[2], row[5]) for row in conn.execute(f"PRAGMA table_info({table})")}


def task(**kw):
    row = {"id": "01jabc", "repo": "octo/demo", "branch": "amp/fix-01jabc", "prompt": "Fix add",
           "status": "queued", "attempts": 0, "owner": "alice", "namespace": "default",
           "max_attempts": 3}
    row.update(kw)
    return row


def test_schema(tmp_path):
    db = HistoryDB(tmp_path / "h.db")
    assert db.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
    assert db.journal_mode == "wal"
    conn = sqlite3.connect(tmp_path / "h.db")
    tasks = columns(conn, "tasks")
    assert PRD_COLUMNS <= set(tasks) and set(tasks) == set(TASK_COLUMNS)
    # keyed by (namespace, id): the same name in two namespaces is two tasks
    assert tasks["namespace"] == ("TEXT", 1) and tasks["id"] == ("TEXT", 2)
    assert tasks["ci_run_id"][0] == "INTEGER"
    attempts = columns(conn, "attempts")
    assert set(attempts) == set(ATTEMPT_COLUMNS)
    assert (attempts["namespace"][1], attempts["task_id"][1], attempts["number"][1]) == (1, 2, 3)
    assert db._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    db.close()


def test_task_upsert_is_idempotent_and_partial(tmp_path):
    with HistoryDB(tmp_path / "h.db") as db:
        created = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
        db.upsert_task(task(created_at=created))
        db.upsert_task(task(created_at=created))
        assert len(db.list_tasks()) == 1
        db.upsert_task({"id": "01jabc", "namespace": "default", "status": "running",
                        "attempts": 1, "thread_id": "T-1",
                        "created_at": "2030-01-01T00:00:00+00:00"})
        row = db.get_task("01jabc")
        assert row["status"] == "running" and row["attempts"] == 1 and row["thread_id"] == "T-1"
        assert row["prompt"] == "Fix add" and row["owner"] == "alice"  # untouched columns stay
        assert row["created_at"] == "2026-01-02T03:04:05+00:00"        # first value kept
        assert row["updated_at"] >= row["created_at"]
        assert db.get_task("nope") is None


def test_attempt_upsert_and_listing(tmp_path):
    with HistoryDB(tmp_path / "h.db") as db:
        db.upsert_task(task())
        for number in (2, 1):
            db.upsert_attempt({"namespace": "default", "task_id": "01jabc", "number": number,
                               "prompt": f"try {number}",
                               "job": f"01jabc-a{number}", "outcome": "pushed"})
        db.upsert_attempt({"namespace": "default", "task_id": "01jabc", "number": 1,
                           "ci_conclusion": "failure",
                           "ci_run_id": 42, "excerpt": "E   AssertionError", "tokens_in": 10,
                           "tokens_out": 5, "flaky": True})
        rows = db.attempts("01jabc")
        assert [r["number"] for r in rows] == [1, 2]
        first = rows[0]
        assert first["prompt"] == "try 1" and first["ci_conclusion"] == "failure"
        assert first["flaky"] == 1 and first["ci_run_id"] == 42
        assert db.attempts("other") == []


def test_list_filters_and_soft_delete(tmp_path):
    with HistoryDB(tmp_path / "h.db") as db:
        db.upsert_task(task(id="a", status="success", created_at="2026-01-01T00:00:00+00:00"))
        db.upsert_task(task(id="b", status="needs_review", owner="bob",
                            created_at="2026-01-02T00:00:00+00:00"))
        db.upsert_task(task(id="c", status="success", created_at="2026-01-03T00:00:00+00:00"))
        assert [t["id"] for t in db.list_tasks()] == ["a", "b", "c"]
        assert [t["id"] for t in db.list_tasks("success")] == ["a", "c"]
        assert [t["id"] for t in db.list_tasks(owner="bob")] == ["b"]
        assert db.mark_deleted("a", dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc))
        assert not db.mark_deleted("zzz")
        assert [t["id"] for t in db.list_tasks("success")] == ["c"]
        assert db.get_task("a")["deleted_at"] == "2026-02-01T00:00:00+00:00"
        assert len(db.list_tasks(include_deleted=True)) == 3


def test_everything_is_redacted_before_it_is_stored(tmp_path):
    path = tmp_path / "h.db"
    with HistoryDB(path) as db:
        db.upsert_task(task(prompt=f"use {TOKEN} to deploy", summary=f"token={TOKEN}",
                            pr_url=f"https://x-access-token:{TOKEN}@github.com/o/r/pull/1"))
        db.upsert_attempt({"namespace": "default", "task_id": "01jabc", "number": 1,
                           "prompt": f"Authorization: Bearer {TOKEN}",
                           "excerpt": f"Run deploy\nGITHUB_TOKEN={TOKEN}\nE AssertionError"})
    for file in tmp_path.glob("h.db*"):  # the database and its WAL
        assert TOKEN.encode() not in file.read_bytes()
    with HistoryDB(path) as db:
        assert db.get_task("01jabc")["prompt"] == "use *** to deploy"
        assert "E AssertionError" in db.attempts("01jabc")[0]["excerpt"]


def test_bad_rows_are_refused(tmp_path):
    with HistoryDB(tmp_path / "h.db") as db:
        with pytest.raises(HistoryError, match="unknown tasks column"):
            db.upsert_task({"id": "x", "colour": "red"})
        with pytest.raises(HistoryError, match="needs number"):
            db.upsert_attempt({"task_id": "x"})


def test_v1_file_is_migrated_to_the_current_version(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO tasks (id, repo, status, attempts) VALUES ('old', 'o/r', 'success', 2)")
    conn.commit()
    conn.close()
    with HistoryDB(path) as db:
        assert db.schema_version == SCHEMA_VERSION
        assert db.get_task("old")["attempts"] == 2
        indexes = {r[1] for r in db._conn.execute("PRAGMA index_list(tasks)")}
        assert {"tasks_status", "tasks_owner"} <= indexes
    with HistoryDB(path) as db:  # reopening is a no-op
        assert db.schema_version == SCHEMA_VERSION


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(HistoryError, match="upgrade ampx"):
        HistoryDB(path)


def test_create_and_export(tmp_path):
    with HistoryDB(tmp_path / "h.db") as db:
        db.upsert_task(task(id="a"))
        db.upsert_task(task(id="b"))
        db.mark_deleted("b")
        db.upsert_attempt({"namespace": "default", "task_id": "a", "number": 1, "outcome": "pushed"})
        assert db.export(tmp_path / "export.db") == 2
        with pytest.raises(FileExistsError):
            db.export(tmp_path / "export.db")
        db.export(tmp_path / "export.db", overwrite=True)
    with HistoryDB(tmp_path / "export.db") as out:
        assert out.schema_version == SCHEMA_VERSION
        assert len(out.list_tasks(include_deleted=True)) == 2
        assert out.get_task("b")["deleted_at"] is not None
        assert out.attempts("a")[0]["outcome"] == "pushed"
    with pytest.raises(FileExistsError):
        HistoryDB.create(tmp_path / "h.db")


def test_two_connections_share_the_file(tmp_path):
    first, second = HistoryDB(tmp_path / "h.db"), HistoryDB(tmp_path / "h.db")
    first.upsert_task(task(id="shared"))
    assert second.get_task("shared")["repo"] == "octo/demo"
    first.close()
    second.close()
