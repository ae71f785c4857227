"""Read a commit's workflow files and changed paths from git, for `workflow_triggers.predict`.

The worker calls this on the commit it has just pushed, so the attempt's report says which
workflows run on push to the task branch and which on a pull request into the base.
"""

from __future__ import annotations

from typing import Callable, Optional

from ..github.workflow_triggers import WORKFLOWS_DIR, Triggers, is_workflow_path, predict

#: Workflow names kept per list in the worker's report.
REPORT_MAX = 30
#: Runs a local git command in the repository and returns its result (``.stdout``).
Git = Callable[..., object]


def _out(git: Git, *args: str) -> str:
    return str(getattr(git(*args), "stdout", "") or "")


def changed_paths(git: Git, old: str, new: str) -> list[str]:
    """Paths that differ between two commits (renames as delete + add, like GitHub's diff)."""
    out = _out(git, "diff", "--name-only", "--no-renames", "-z", old, new)
    return [p for p in out.split("\0") if p]


def workflow_files(git: Git, sha: str) -> dict[str, str]:
    """``.github/workflows/*.yml|yaml`` of ``sha``: path -> text."""
    listing = _out(git, "ls-tree", "-z", "--name-only", sha, f"{WORKFLOWS_DIR}/")
    paths = [p for p in listing.split("\0") if p and is_workflow_path(p)]
    return {p: _out(git, "cat-file", "blob", f"{sha}:{p}") for p in paths}


def commit_triggers(git: Git, sha: str, branch: str, base: str, parent: str,
                    parent_is_base: bool) -> Triggers:
    """Which workflows of ``sha`` run on its push to ``branch`` (the push's files: those
    changed since ``parent``, the branch's previous head or the base it starts from) and on a
    pull request into ``base`` (the same files when ``parent`` is the base's head; otherwise
    unknown, and path filters are taken as matching)."""
    changed: Optional[list[str]] = changed_paths(git, parent, sha)
    return predict(workflow_files(git, sha), branch, base, push_changed=changed,
                   pr_changed=changed if parent_is_base else None)


def trigger_fields(git: Git, sha: str, branch: str, base: str, parent: str,
                   parent_is_base: bool, log: Callable[[str], None]) -> dict:
    """The worker report's fields for :func:`commit_triggers`; empty when git could not say
    (the task then waits on push runs as before, and says so if none comes)."""
    try:
        t = commit_triggers(git, sha, branch, base, parent, parent_is_base)
    except Exception as exc:  # noqa: BLE001 - an unreadable tree must not lose the push
        log(f"[ampx] could not read the workflows of {sha[:12]}: {exc}")
        return {}
    log(f"[ampx] workflows: {len(t.workflows)} read; on push to {branch}: "
        f"{', '.join(t.push) or 'none'}; on pull_request to {base}: {', '.join(t.pull_request) or 'none'}")
    # the decision needs only whether a list is empty; the names are for messages, and the
    # report stays small (a pod's termination message holds 4 KiB)
    return {"workflows": list(t.workflows[:REPORT_MAX]), "push_workflows": list(t.push[:REPORT_MAX]),
            "pull_request_workflows": list(t.pull_request[:REPORT_MAX])}
