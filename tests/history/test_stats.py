"""`ampx stats` computed from a history file: the module alone, then the command."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest

from ampx.history.db import HistoryDB
from ampx.history.stats import StatsError, day_chart, parse_since, percentile, stats_for_file, table_rows

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.timezone.utc)


def ago(**kw) -> str:
    return (NOW - dt.timedelta(**kw)).isoformat()


def after(start: str, seconds: int) -> str:
    return (dt.datetime.fromisoformat(start) + dt.timedelta(seconds=seconds)).isoformat()


@pytest.fixture
def history(tmp_path):
    path = tmp_path / "history.db"
    with HistoryDB(path) as db:
        c1 = ago(days=2)
        db.upsert_task({"id": "t1", "repo": "acme/api", "owner": "ann", "status": "success",
                        "created_at": c1, "green_at": after(c1, 600), "attempts": 2})
        db.upsert_attempt({"task_id": "t1", "number": 1, "ci_conclusion": "failure",
                           "tokens_in": 100, "tokens_out": 10})
        db.upsert_attempt({"task_id": "t1", "number": 2, "ci_conclusion": "success", "flaky": True,
                           "tokens_in": 200, "tokens_out": 20})
        db.upsert_task({"id": "t2", "repo": "acme/api", "owner": "ann", "status": "needs_review",
                        "created_at": ago(days=1), "attempts": 2,
                        "summary": "stopped early: attempts 1 and 2 failed CI with the same error (x)"})
        db.upsert_task({"id": "t3", "repo": "acme/api", "owner": "bob", "status": "success",
                        "created_at": ago(hours=3), "green_at": after(ago(hours=3), 60), "attempts": 1})
        db.upsert_attempt({"task_id": "t3", "number": 1, "ci_conclusion": "success",
                           "tokens_in": 50, "tokens_out": 5})
        db.upsert_task({"id": "t4", "repo": "acme/web", "owner": "ann", "status": "success",
                        "created_at": ago(days=10), "green_at": ago(days=10)})  # outside 7d
        db.upsert_task({"id": "t5", "repo": "acme/api", "owner": "ann", "status": "needs_review",
                        "created_at": ago(hours=1), "summary": "CI still red after 3 attempt(s)"})
    return path


def test_the_report_per_repository_and_owner(history):
    r = stats_for_file(history, parse_since("7d"), now=NOW)
    groups = {(g["repo"], g["owner"]): g for g in r["groups"]}
    assert set(groups) == {("acme/api", "ann"), ("acme/api", "bob")}, "t4 is outside the window"
    ann = groups[("acme/api", "ann")]
    assert ann["tasks"] == 3 and ann["phases"] == {"needs_review": 2, "success": 1}
    assert ann["attempts_to_green"] == {"mean": 2.0, "p50": 2, "p90": 2}
    assert ann["time_to_green_seconds"] == {"p50": 600.0, "p90": 600.0}
    assert ann["flaky_greens"] == 1 and ann["breaker_stops"] == 1
    assert ann["tokens_per_task"] == {"in": 100, "out": 10, "total": 110}
    total = r["total"]
    assert total["tasks"] == 4 and total["attempts_to_green"] == {"mean": 1.5, "p50": 1, "p90": 2}
    assert total["time_to_green_seconds"] == {"p50": 60.0, "p90": 600.0}
    days = {d["day"]: d for d in r["time_to_green_per_day"]}
    assert len(days) == 8 and days["2026-11-23"]["p50_seconds"] == 600.0
    assert days["2026-11-25"]["green"] == 1 and days["2026-11-24"]["p50_seconds"] is None
    rows = table_rows(r)
    assert [row[:3] for row in rows] == [["acme/api", "ann", "3"], ["acme/api", "bob", "1"], ["*", "*", "4"]]
    chart = day_chart(r)
    assert chart[0].startswith("time to green per day (median; tallest 10m)")
    assert chart[1] == "  2026-11-18      █ ▂ 2026-11-25"  # 18..22 and 24 had no green task


def test_filters_window_and_percentiles(history):
    r = stats_for_file(history, parse_since("12h"), now=NOW, owner="ann")
    assert r["total"]["tasks"] == 1 and r["total"]["attempts_to_green"]["mean"] is None
    assert percentile([1, 2, 3, 4], 50) == 2 and percentile([1, 2, 3, 4], 90) == 4
    assert percentile([], 50) is None
    for bad in ("7", "0d", "-1d", "1y", ""):
        with pytest.raises(StatsError):
            parse_since(bad)


def test_an_older_history_without_green_at_still_reports(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    with HistoryDB(path) as db:
        db.upsert_task({"id": "t1", "repo": "r", "owner": "o", "status": "success",
                        "created_at": ago(hours=1)})
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE tasks DROP COLUMN green_at")
    conn.commit()
    conn.close()
    r = stats_for_file(path, parse_since("1d"), now=NOW)
    assert r["total"]["tasks"] == 1 and r["total"]["time_to_green_seconds"]["p50"] is None


def test_the_command_on_an_export(history, tmp_path):
    def ampx(*args):
        return subprocess.run([sys.executable, "-m", "ampx", *args], capture_output=True, text=True,
                              timeout=60, env={"PATH": "/usr/bin:/bin", "AMPX_HOME": str(tmp_path / "h"),
                                               "PYTHONPATH": ":".join(sys.path)})

    r = ampx("stats", "--db", str(history), "--since", "1000d", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["total"]["tasks"] == 5
    r = ampx("stats", "--db", str(history), "--since", "1000d")
    assert r.returncode == 0 and r.stdout.splitlines()[0].split()[:3] == ["REPO", "OWNER", "TASKS"]
    assert "time to green per day" not in r.stdout, "no chart on a pipe"
    r = ampx("stats", "--db", str(history), "--since", "week")
    assert r.returncode == 1 and r.stderr.startswith("error: --since must be a positive span")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    r = ampx("stats", "--db", str(junk))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and str(junk) in r.stderr
    r = ampx("--backend", "kube", "stats")
    assert r.returncode == 1 and "ampx export --db FILE" in r.stderr


def test_the_history_records_when_a_task_turned_green():
    from ampx.core.models import AmpTask, AmpTaskSpec, AmpTaskStatus, Condition, Phase
    from ampx.record import task_row

    cond = Condition(type="Succeeded", status="True", reason="r", message="m",
                     last_transition_time="2026-11-25T10:05:00Z")
    t = AmpTask(metadata={"name": "t"}, spec=AmpTaskSpec(repo="a/b", prompt="x"),
                status=AmpTaskStatus(phase=Phase.SUCCESS, conditions=[cond]))
    assert task_row(t)["green_at"] == "2026-11-25T10:05:00Z"
    t.status.phase = Phase.NEEDS_REVIEW
    assert task_row(t)["green_at"] is None
