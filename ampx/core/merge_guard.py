"""The merge check: merge only the pull request GitHub has for the task branch, at the task's
last green commit.

The status (`prNumber`, the history) is written by processes an attacker may reach; GitHub's
answer for the task's head branch is not. A status naming another pull request, or a branch
whose head moved past the green commit, is refused with what was found (issue 9, item 5).
"""

from __future__ import annotations

from typing import Optional


def merge_refusal(branch: str, status_number: Optional[int], green_sha: Optional[str],
                  found_number: Optional[int], found_head: Optional[str]) -> Optional[str]:
    """Why the merge must not go ahead, or None when GitHub's pull request for ``branch`` is the
    task's (``status_number``) and its head is the last green commit."""
    if not green_sha:
        return "the task has no commit whose CI was green; nothing to merge"
    if found_number is None:
        return f"GitHub has no open pull request for branch {branch}; not merging"
    if status_number != found_number:
        return (f"the task's status names PR #{status_number}, but GitHub's open pull request "
                f"for branch {branch} is #{found_number}; not merging")
    if found_head != green_sha:
        head = found_head[:12] if found_head else "unknown"
        return (f"PR #{found_number}'s head is {head}, not the task's last green commit "
                f"{green_sha[:12]}; not merging")
    return None
