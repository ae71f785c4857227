"""History rows are keyed by (namespace, name); files written with the old schema migrate."""

from __future__ import annotations

import sqlite3

from ampx.core.models import AmpTask, AmpTaskSpec, AmpTaskStatus, AttemptRecord, Phase
from ampx.history import SCHEMA_VERSION, HistoryDB
from ampx.history.schema import MIGRATIONS
from ampx.record import record


def task(namespace: str, phase: Phase, prompt: str) -> AmpTask:
    return AmpTask(metadata={"name": "fix-readme", "namespace": namespace,
                             "creationTimestamp": "2026-01-01T00:00:00Z"},
                   spec=AmpTaskSpec(repo="acme/api", prompt=prompt, branch="amp/fix-readme"),
                   status=AmpTaskStatus(phase=phase, attempts=1, history=[
                       AttemptRecord(number=1, prompt=prompt, commit=namespace * 3)]))


def test_the_same_name_in_two_namespaces_is_two_tasks(tmp_path):
    with HistoryDB(tmp_path / "h.db") as db:
        record(db, task("team-a", Phase.SUCCESS, "a's task"))
        record(db, task("team-b", Phase.RUNNING, "b's task"))
        rows = db.list_tasks()
        assert sorted((r["namespace"], r["status"]) for r in rows) == [
            ("team-a", "success"), ("team-b", "running")]
        assert db.get_task("fix-readme", "team-b")["prompt"] == "b's task"
        assert db.attempts("fix-readme", "team-a")[0]["commit_sha"] == "team-ateam-ateam-a"
        assert db.mark_deleted("fix-readme", namespace="team-a")
        assert db.get_task("fix-readme", "team-a")["deleted_at"] is not None
        assert db.get_task("fix-readme", "team-b")["deleted_at"] is None  # the bug
        out = tmp_path / "export.db"
        assert db.export(out) == 2
    with HistoryDB(out) as exported:
        rows = exported.list_tasks(include_deleted=True)
        assert sorted(r["namespace"] for r in rows) == ["team-a", "team-b"]
        assert exported.attempts("fix-readme", "team-b")[0]["namespace"] == "team-b"


def old_file(path, version: int) -> None:
    """A history file as an older ampx wrote it: its migrations only, then rows."""
    conn = sqlite3.connect(path)
    for number in range(version):
        for statement in MIGRATIONS[number]:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    rows = [("t1", "default", "success"), ("t2", "team-b", "needs_review"), ("t3", None, "error")]
    for tid, ns, status in rows:
        conn.execute("INSERT INTO tasks (id, repo, namespace, status, attempts, created_at) "
                     "VALUES (?, 'acme/api', ?, ?, 2, '2026-01-01T00:00:00+00:00')", (tid, ns, status))
        for n in (1, 2):
            conn.execute("INSERT INTO attempts (task_id, number, outcome, commit_sha) "
                         "VALUES (?, ?, 'pushed', ?)", (tid, n, f"{tid}-{n}"))
    conn.commit()
    conn.close()


def test_a_file_with_the_old_schema_migrates_without_losing_rows(tmp_path):
    for version in (1, 2):
        path = tmp_path / f"v{version}.db"
        old_file(path, version)
        with HistoryDB(path) as db:
            assert db.schema_version == SCHEMA_VERSION
            tasks = {(r["namespace"], r["id"]): r["status"] for r in db.list_tasks()}
            assert tasks == {("default", "t1"): "success", ("team-b", "t2"): "needs_review",
                             ("", "t3"): "error"}
            for ns, tid in tasks:
                assert [(a["namespace"], a["commit_sha"]) for a in db.attempts(tid, ns)] == [
                    (ns, f"{tid}-1"), (ns, f"{tid}-2")]
            # and the migrated file is keyed by namespace from now on
            db.upsert_task({"id": "t1", "namespace": "team-b", "status": "queued"})
            assert db.get_task("t1", "default")["status"] == "success"
            assert db.get_task("t1", "team-b")["status"] == "queued"
        with HistoryDB(path) as again:  # opening it again changes nothing
            assert len(again.list_tasks()) == 4
