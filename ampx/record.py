"""Write a task's state into the SQLite history: the same rows from either runtime."""

from __future__ import annotations

from ampx.core.models import OWNER_LABEL, AmpTask


def task_row(task: AmpTask) -> dict:
    st, spec, meta = task.status, task.spec, task.metadata
    current = st.current()
    return {
        "id": task.name,
        "repo": spec.repo,
        "branch": spec.branch,
        "thread_id": st.thread_id,
        "prompt": current.prompt if current else spec.prompt,
        "status": st.phase.value if st.phase else "queued",
        "ci_run_id": st.ci_run_id,
        "attempts": st.attempts,
        "summary": st.summary,
        "created_at": meta.get("creationTimestamp"),
        "updated_at": st.updated_at or meta.get("creationTimestamp"),
        "namespace": meta.get("namespace") or "",
        "owner": (meta.get("labels") or {}).get(OWNER_LABEL),
        "base_branch": spec.base_branch,
        "pr_url": st.pr_url,
        "ci_run_url": st.ci_run_url,
        "max_attempts": spec.max_attempts,
        "green_at": _green_at(task),
    }


def _green_at(task: AmpTask):
    """When the task last turned green: its Succeeded condition's transition time."""
    if task.status.phase is None or task.status.phase.value != "success":
        return None
    cond = next((c for c in task.status.conditions if c.type == "Succeeded" and c.status == "True"), None)
    return cond.last_transition_time if cond else (task.status.updated_at or None)


def attempt_rows(task: AmpTask) -> list[dict]:
    return [
        {
            "namespace": task.metadata.get("namespace") or "",
            "task_id": task.name,
            "number": rec.number,
            "prompt": rec.prompt,
            "commit_sha": rec.commit,
            "job": rec.job,
            "started_at": rec.started_at,
            "finished_at": rec.finished_at,
            "outcome": rec.outcome.value if rec.outcome else None,
            "ci_run_id": rec.ci_run_id,
            "ci_run_url": rec.ci_run_url,
            "ci_conclusion": rec.ci_conclusion,
            "excerpt": rec.excerpt,
            "tokens_in": rec.tokens_in,
            "tokens_out": rec.tokens_out,
            "flaky": bool(rec.flaky),
        }
        for rec in task.status.history
    ]


def record(db, task: AmpTask) -> None:
    """Upsert the task and all its attempts (idempotent: replaying it changes nothing)."""
    db.upsert_task(task_row(task))
    for row in attempt_rows(task):
        db.upsert_attempt(row)
