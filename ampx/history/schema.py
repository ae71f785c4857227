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

# v3: when the task turned green (its Succeeded condition's transition), for `ampx stats`.
_V3 = [
    "ALTER TABLE tasks ADD COLUMN green_at TIMESTAMP",
]

MIGRATIONS: list[list[str]] = [_V1, _V2, _V3]
SCHEMA_VERSION = len(MIGRATIONS)
