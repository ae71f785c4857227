"""`ampx stats`: how tasks went, from the history tables, per repository and owner.

Plain functions over an SQLite history file (the local runtime's database, the operator's
AMPX_HISTORY_DB, or an `ampx export`), opened read-only. Definitions:

- a task counts in the window when it was created in it; its phase is its last recorded one;
- attempts to green: the number of the first attempt whose CI was green, over green tasks;
- time to green: from creation to when the task turned green (`green_at`), over green tasks;
- flaky greens: attempts whose CI turned green on the flaky guard's re-run;
- breaker stops: tasks stopped early because two attempts failed CI with the same error;
- tokens per task: agent tokens (in + out) summed over a task's attempts, averaged over tasks;
- percentiles are nearest-rank (p50 of 1, 2, 3, 4 is 2).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

BREAKER_PREFIX = "stopped early"
_SPAN = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class StatsError(ValueError):
    """The window or the file cannot be used."""


def parse_since(text: str) -> dt.timedelta:
    """`7d`, `12h`, `2w`, `30m`, `90s`."""
    m = _SPAN.match(text or "")
    if not m or int(m.group(1)) == 0:
        raise StatsError(f"--since must be a positive span such as 7d, 12h, 2w or 30m, not {text!r}")
    return dt.timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


def _ts(value) -> Optional[dt.datetime]:
    if not value:
        return None
    try:
        t = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def percentile(values: list[float], p: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class TaskFacts:
    """What the statistics need of one task."""
    id: str
    repo: str
    owner: str
    phase: str
    created: dt.datetime
    green: Optional[dt.datetime] = None
    summary: str = ""
    attempts_to_green: Optional[int] = None
    flaky_greens: int = 0
    tokens_in: int = 0
    tokens_out: int = 0


@dataclass
class Group:
    repo: str
    owner: str
    tasks: list[TaskFacts] = field(default_factory=list)

    def summary(self) -> dict:
        phases: dict[str, int] = {}
        for t in self.tasks:
            phases[t.phase] = phases.get(t.phase, 0) + 1
        to_green = [t.attempts_to_green for t in self.tasks if t.attempts_to_green is not None]
        ttg = [(t.green - t.created).total_seconds() for t in self.tasks
               if t.phase == "success" and t.green is not None and t.green >= t.created]
        n = len(self.tasks)
        tokens_in = sum(t.tokens_in for t in self.tasks)
        tokens_out = sum(t.tokens_out for t in self.tasks)
        return {
            "repo": self.repo,
            "owner": self.owner,
            "tasks": n,
            "phases": dict(sorted(phases.items())),
            "attempts_to_green": {
                "mean": round(sum(to_green) / len(to_green), 2) if to_green else None,
                "p50": percentile(to_green, 50),
                "p90": percentile(to_green, 90),
            },
            "time_to_green_seconds": {
                "p50": percentile(ttg, 50),
                "p90": percentile(ttg, 90),
            },
            "flaky_greens": sum(t.flaky_greens for t in self.tasks),
            "breaker_stops": sum(1 for t in self.tasks if t.phase == "needs_review"
                                 and t.summary.startswith(BREAKER_PREFIX)),
            "tokens_per_task": {
                "in": round(tokens_in / n) if n else None,
                "out": round(tokens_out / n) if n else None,
                "total": round((tokens_in + tokens_out) / n) if n else None,
            },
        }


def open_readonly(path: Path) -> sqlite3.Connection:
    path = Path(path)
    if not path.exists():
        raise StatsError(f"{path} does not exist")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise StatsError(f"{path} is not an ampx history file ({exc})") from None
    if not {"tasks", "attempts"} <= names:
        raise StatsError(f"{path} has no history tables (tasks, attempts)")
    return conn


def load(conn: sqlite3.Connection, since: dt.datetime, until: dt.datetime,
         repo: Optional[str] = None, owner: Optional[str] = None) -> list[TaskFacts]:
    """Tasks created in [since, until) (deleted ones too: they happened), with their attempts."""
    cols = {r[1] for r in conn.execute("PRAGMA table_info(tasks)")}
    green = "green_at" if "green_at" in cols else "NULL AS green_at"
    rows = conn.execute(f"SELECT id, repo, owner, status, created_at, summary, {green} FROM tasks").fetchall()
    facts: dict[str, TaskFacts] = {}
    for r in rows:
        created = _ts(r["created_at"])
        if created is None or not since <= created < until:
            continue
        if (repo and r["repo"] != repo) or (owner and r["owner"] != owner):
            continue
        facts[r["id"]] = TaskFacts(id=r["id"], repo=r["repo"] or "-", owner=r["owner"] or "-",
                                   phase=r["status"] or "queued", created=created,
                                   green=_ts(r["green_at"]), summary=r["summary"] or "")
    if not facts:
        return []
    for a in conn.execute("SELECT task_id, number, ci_conclusion, flaky, tokens_in, tokens_out "
                          "FROM attempts ORDER BY task_id, number"):
        t = facts.get(a["task_id"])
        if t is None:
            continue
        t.tokens_in += a["tokens_in"] or 0
        t.tokens_out += a["tokens_out"] or 0
        if a["ci_conclusion"] == "success":
            if t.attempts_to_green is None:
                t.attempts_to_green = a["number"]
            if a["flaky"]:
                t.flaky_greens += 1
    return sorted(facts.values(), key=lambda t: t.created)


def compute(tasks: Iterable[TaskFacts], since: dt.datetime, until: dt.datetime) -> dict:
    """The report: per (repository, owner), the total, and time to green per day."""
    tasks = list(tasks)
    groups: dict[tuple[str, str], Group] = {}
    for t in tasks:
        groups.setdefault((t.repo, t.owner), Group(t.repo, t.owner)).tasks.append(t)
    total = Group("*", "*", tasks).summary()
    by_day: dict[str, list[float]] = {}
    for t in tasks:
        if t.phase == "success" and t.green is not None and t.green >= t.created:
            by_day.setdefault(t.green.date().isoformat(), []).append((t.green - t.created).total_seconds())
    days = []
    day = since.date()
    while day <= until.date():
        values = by_day.get(day.isoformat(), [])
        days.append({"day": day.isoformat(), "green": len(values), "p50_seconds": percentile(values, 50)})
        day += dt.timedelta(days=1)
    return {
        "since": since.isoformat(timespec="seconds"),
        "until": until.isoformat(timespec="seconds"),
        "groups": [groups[k].summary() for k in sorted(groups)],
        "total": total,
        "time_to_green_per_day": days,
    }


def stats_for_file(path: Path, window: dt.timedelta, now: Optional[dt.datetime] = None,
                   repo: Optional[str] = None, owner: Optional[str] = None) -> dict:
    until = now or dt.datetime.now(dt.timezone.utc)
    since = until - window
    conn = open_readonly(path)
    try:
        return compute(load(conn, since, until, repo, owner), since, until)
    finally:
        conn.close()


# ------------------------------------------------------------------------------ rendering
def duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d"


def _num(v) -> str:
    if v is None:
        return "-"
    return f"{v:g}" if isinstance(v, float) else str(v)


HEADERS = ["REPO", "OWNER", "TASKS", "SUCCESS", "NEEDS_REVIEW", "ERROR", "ABORTED", "ACTIVE",
           "ATT-MEAN", "ATT-P50", "ATT-P90", "TTG-P50", "TTG-P90", "FLAKY", "BREAKER", "TOKENS/TASK"]


def table_rows(report: dict) -> list[list[str]]:
    rows = []
    for g in report["groups"] + ([report["total"]] if len(report["groups"]) > 1 else []):
        ph = g["phases"]
        active = sum(v for k, v in ph.items() if k not in ("success", "needs_review", "error", "aborted"))
        att, ttg = g["attempts_to_green"], g["time_to_green_seconds"]
        rows.append([g["repo"], g["owner"], str(g["tasks"]), str(ph.get("success", 0)),
                     str(ph.get("needs_review", 0)), str(ph.get("error", 0)), str(ph.get("aborted", 0)),
                     str(active), _num(att["mean"]), _num(att["p50"]), _num(att["p90"]),
                     duration(ttg["p50"]), duration(ttg["p90"]), str(g["flaky_greens"]),
                     str(g["breaker_stops"]), _num(g["tokens_per_task"]["total"])])
    return rows


_BARS = "▁▂▃▄▅▆▇█"


def day_chart(report: dict, width: int = 80) -> list[str]:
    """A compact chart of the median time to green per day (one bar per day, blank when no
    task turned green that day), with its scale."""
    days = report["time_to_green_per_day"][-max(1, width - 30):]
    values = [d["p50_seconds"] for d in days]
    known = [v for v in values if v is not None]
    if not known:
        return ["time to green per day: no task turned green in the window"]
    top = max(known)
    bars = "".join(" " if v is None else _BARS[min(len(_BARS) - 1, int(v / top * (len(_BARS) - 1) + 0.5))]
                   for v in values)
    return [f"time to green per day (median; tallest {duration(top)})",
            f"  {days[0]['day']} {bars} {days[-1]['day']}"]
