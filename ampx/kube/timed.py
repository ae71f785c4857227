"""What only time can change, read from the watch-fed task bodies (plain functions, no server).

The operator learns of every change from its watches; what remains periodic is what no event
announces: CI results (polled per repository), a task's time budget running out, and a slow
safety pass over tasks that still want work (a GitHub call that failed outright is retried
there).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Optional

from ..core.models import AmpTaskStatus
from ..core.observe import pr_comment_due

ACTIVE = ("queued", "running", "retrying")


def _status(body: Any) -> dict:
    return body.get("status") or {}


def _name(body: Any) -> str:
    return (body.get("metadata") or {}).get("name", "")


def ci_groups(bodies: Iterable[Any]) -> dict[str, list[tuple[str, Optional[str]]]]:
    """Tasks waiting on CI, by repository: {repo: [(task, waiting since)]}."""
    groups: dict[str, list[tuple[str, Optional[str]]]] = {}
    for body in bodies:
        st = _status(body)
        if st.get("stage") != "ci" or st.get("phase") not in ACTIVE or not st.get("ci"):
            continue
        repo = (body.get("spec") or {}).get("repo") or ""
        groups.setdefault(repo, []).append((_name(body), (st.get("ci") or {}).get("since")))
    return groups


def budget_spent(body: Any, now: dt.datetime) -> bool:
    """An active task whose whole-task time budget (spec.limits.taskTimeoutMinutes) is over."""
    st = _status(body)
    limit = ((body.get("spec") or {}).get("limits") or {}).get("taskTimeoutMinutes")
    started = st.get("runStartedAt")
    if not limit or not started or st.get("phase") not in ACTIVE:
        return False
    begun = dt.datetime.fromisoformat(started.replace("Z", "+00:00"))
    return (now - begun).total_seconds() >= limit * 60


def thread_unknown(body: Any) -> bool:
    """An attempt seen running whose agent thread id is not known yet: the operator reads it
    from the agent's log at a bounded rate (`KubeLauncher._probe_thread`) until it is."""
    st = _status(body)
    n = st.get("attempts")
    if st.get("phase") not in ACTIVE or st.get("stage") != "agent" or not n or st.get("threadId"):
        return False
    history = st.get("history") or []
    last = history[-1] if history else {}
    report = (st.get("reports") or {}).get(str(n)) or {}
    return bool(last.get("startedAt")) and not last.get("finishedAt") and not report.get("threadId") \
        and report.get("outcome") is None


def wants_work(body: Any) -> bool:
    """Tasks the safety pass reconciles: not yet admitted, active, merging, or owing the
    review comment on a draft PR (everything else is finished and waits for a user)."""
    st = _status(body)
    phase = st.get("phase")
    if phase is None or phase in ACTIVE or st.get("prState") == "merging":
        return True
    if phase == "needs_review" and st.get("prState") == "draft":
        return pr_comment_due(AmpTaskStatus.model_validate(st))
    return False
