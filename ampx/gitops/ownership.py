"""Never replace someone else's work: which task a branch tip belongs to.

Every commit ampx makes carries an `Ampx-Task: <id>` trailer. Before a task first pushes to a
branch that already exists on the remote, the branch's tip must carry this task's trailer;
otherwise the branch is someone else's (another task's, or a person's) and the task stops
without pushing. A branch equal to the remote's default branch or to the base branch is never
a task's, whatever its tip says.
"""

from __future__ import annotations

import re
from typing import Optional

from .message import TASK_TRAILER

_TRAILER = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*):[ \t]*(.*?)\s*$")


class BranchRefused(Exception):
    """This task may not push this branch; the message says why (nothing was pushed)."""


class BranchNotOwned(BranchRefused):
    """The branch exists on the remote and its tip is not this task's."""


class ProtectedBranch(BranchRefused):
    """The branch is the remote's default branch or the task's base branch."""


def task_of(message: str) -> Optional[str]:
    """The `Ampx-Task` trailer of a commit message (its last paragraph), or None."""
    paragraphs = [p for p in message.strip().split("\n\n") if p.strip()]
    if len(paragraphs) < 2:
        return None
    for line in paragraphs[-1].splitlines():
        m = _TRAILER.match(line)
        if m and m.group(1).lower() == TASK_TRAILER.lower() and m.group(2):
            return m.group(2)
    return None


def ownership_problem(branch: str, tip_sha: str, tip_message: str, task_id: str) -> Optional[str]:
    """Why this task may not push over `branch`'s tip (None: the tip is its own)."""
    owner = task_of(tip_message)
    if owner is not None and owner.lower() == task_id.lower():
        return None
    whose = f"task {owner}'s" if owner else "not made by an ampx task"
    return (f"branch {branch} already exists and its tip {tip_sha[:12]} is {whose} commit; "
            "a task never replaces work that is not its own (choose another --branch)")


def protected_problem(branch: str, base: Optional[str], default: Optional[str]) -> Optional[str]:
    """Why `branch` is never a task's branch: the base or the remote's default branch."""
    if branch in ("HEAD", "") or branch.startswith("refs/"):
        return f"{branch!r} is not a task branch name"
    if default and branch == default:
        return f"branch {branch} is the repository's default branch; a task pushes only its own"
    if base and branch == base:
        return f"branch {branch} is the base branch; a task pushes only its own"
    return None
