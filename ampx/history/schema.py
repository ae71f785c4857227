"""The history schema as an ordered list of migrations.

``PRAGMA user_version`` records how many migrations a file has seen; opening a file applies
the rest. Append new migrations, never edit old ones: files written by older versions (and
``ampx export`` files) must keep opening.
"""

from __future__ import annotations

TASK_COLUMNS: tuple[str, ...] = (
    "id",
    "repo",
    "branch",
    "thread_id",
    "prompt",
    "status",
    "ci_run_id",
    "attempts",
    "summary",
    "created_at",
    "updated_at",
    "namespace",
    "owner",
    "base_branch",
    "pr_url",
    "ci_run_url",
    "max_attempts",
    "deleted_at",
    "green_at",
)

ATTEMPT_COLUMNS: tuple[str, ...] = (
    "namespace",
    "task_id",
    "number",
    "prompt",
    "commit_sha",
    "job",
    "started_at",
    "finished_at",
    "outcome",
    "ci_run_id",
    "ci_run_url",
    "ci_conclusion",
    "excerpt",
    "tokens_in",
    "tokens_out",
    "flaky",
)

_V1 = [
    """
    CREATE TABLE tasks (
        id           TEXT PRIMARY KEY,
        repo         TEXT,
        branch       TEXT,
        thread_id    TEXT,
        prompt       TEXT,
        status       TEXT,
        ci_run_id    INTEGER,
        attempts     INTEGER NOT NULL DEFAULT 0,
        summary      TEXT,
        created_at   TIMESTAMP,
        updated_at   TIMESTAMP,
        namespace    TEXT,
        owner        TEXT,
        base_branch  TEXT,
        pr_url       TEXT,
        ci_run_url   TEXT,
        max_attempts INTEGER,
        deleted_at   TIMESTAMP
    )
    """,
    """
    CREATE TABLE attempts (
        task_id       TEXT NOT NULL,
        number        INTEGER NOT NULL,
        prompt        TEXT,
        commit_sha    TEXT,
        job           TEXT,
        started_at    TIMESTAMP,
        finished_at   TIMESTAMP,
        outcome       TEXT,
        ci_run_id     INTEGER,
        ci_run_url    TEXT,
        ci_conclusion TEXT,
        excerpt       TEXT,
        tokens_in     INTEGER,
        tokens_out    INTEGER,
        flaky         INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (task_id, number)
    )
    """,
]

# v2: `ampx ls` filters by status and owner; keep those lookups off a full scan.
_V2 = [
    "CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status)",
    "CREATE INDEX IF NOT EXISTS tasks_owner ON tasks (owner, created_at)",
]

# v3: a task is keyed by (namespace, id): the same name in two namespaces is two tasks (one
# deleted must not mark the other). Rows of older files keep their namespace ('' if none), and
# attempts take their task's.
_TASKS_V3 = """
    CREATE TABLE tasks_v3 (
        id           TEXT NOT NULL,
        repo         TEXT,
        branch       TEXT,
        thread_id    TEXT,
        prompt       TEXT,
        status       TEXT,
        ci_run_id    INTEGER,
        attempts     INTEGER NOT NULL DEFAULT 0,
        summary      TEXT,
        created_at   TIMESTAMP,
        updated_at   TIMESTAMP,
        namespace    TEXT NOT NULL DEFAULT '',
        owner        TEXT,
        base_branch  TEXT,
        pr_url       TEXT,
        ci_run_url   TEXT,
        max_attempts INTEGER,
        deleted_at   TIMESTAMP,
        PRIMARY KEY (namespace, id)
    )
"""
_ATTEMPTS_V3 = """
    CREATE TABLE attempts_v3 (
        namespace     TEXT NOT NULL DEFAULT '',
        task_id       TEXT NOT NULL,
        number        INTEGER NOT NULL,
        prompt        TEXT,
        commit_sha    TEXT,
        job           TEXT,
        started_at    TIMESTAMP,
        finished_at   TIMESTAMP,
        outcome       TEXT,
        ci_run_id     INTEGER,
        ci_run_url    TEXT,
        ci_conclusion TEXT,
        excerpt       TEXT,
        tokens_in     INTEGER,
        tokens_out    INTEGER,
        flaky         INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (namespace, task_id, number)
    )
"""
_V1_TASK_COLUMNS = ("id, repo, branch, thread_id, prompt, status, ci_run_id, attempts, summary, "
                    "created_at, updated_at, owner, base_branch, pr_url, ci_run_url, "
                    "max_attempts, deleted_at")
_V1_ATTEMPT_COLUMNS = ("task_id, number, prompt, commit_sha, job, started_at, finished_at, "
                       "outcome, ci_run_id, ci_run_url, ci_conclusion, excerpt, tokens_in, "
                       "tokens_out, flaky")
_V3 = [
    _TASKS_V3,
    f"INSERT INTO tasks_v3 ({_V1_TASK_COLUMNS}, namespace) "
    f"SELECT {_V1_TASK_COLUMNS}, COALESCE(namespace, '') FROM tasks",
    _ATTEMPTS_V3,
    f"INSERT INTO attempts_v3 ({_V1_ATTEMPT_COLUMNS}, namespace) "
    f"SELECT {_V1_ATTEMPT_COLUMNS}, COALESCE((SELECT COALESCE(t.namespace, '') FROM tasks t "
    f"WHERE t.id = attempts.task_id), '') FROM attempts",
    "DROP TABLE attempts",
    "DROP TABLE tasks",
    "ALTER TABLE tasks_v3 RENAME TO tasks",
    "ALTER TABLE attempts_v3 RENAME TO attempts",
    "CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status)",
    "CREATE INDEX IF NOT EXISTS tasks_owner ON tasks (owner, created_at)",
    "CREATE INDEX IF NOT EXISTS tasks_id ON tasks (id)",
]
# v4: when the task turned green (its Succeeded condition's transition), for `ampx stats`.
_V4 = [
    "ALTER TABLE tasks ADD COLUMN green_at TIMESTAMP",
]

MIGRATIONS: list[list[str]] = [_V1, _V2, _V3, _V4]
SCHEMA_VERSION = len(MIGRATIONS)
