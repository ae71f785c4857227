"""Which branch a task may push: its own, under the task prefix, never the base or default.

Plain decisions, used by the CLI (`ampx start`), the engine before the first attempt, and the
worker before it pushes; each returns why a name is refused (None: allowed).
"""

from __future__ import annotations

import re
from typing import Optional

from .ids import DEFAULT_BRANCH_PREFIX
from .models import BRANCH_PATTERN, check_branch


class BranchPrefixError(ValueError):
    """The configured task-branch prefix cannot hold task branches."""


def reserved_name_problem(name: str, what: str = "branch") -> Optional[str]:
    """Names git or GitHub give a meaning of their own: `HEAD` and full ref names."""
    if name == "HEAD":
        return f"{what} must not be HEAD"
    if name.startswith("refs/"):
        return f"{what} must be a branch name, not a ref ({name!r} starts with 'refs/')"
    return None


def check_prefix(prefix: str) -> str:
    """A usable prefix: non-empty, a valid start of a branch name, not a reserved name."""
    if not prefix:
        raise BranchPrefixError("the task branch prefix must not be empty (default 'amp/')")
    sample = prefix + "x"
    try:
        check_branch(sample)
    except ValueError as exc:
        raise BranchPrefixError(f"the task branch prefix {prefix!r} is not usable: {exc}") from None
    if not re.match(BRANCH_PATTERN, sample) or reserved_name_problem(sample):
        raise BranchPrefixError(f"the task branch prefix {prefix!r} is not a valid start of a "
                                "branch name (letters, digits, '_', '-', '.', '/')")
    return prefix


def base_branch_problem(base: Optional[str]) -> Optional[str]:
    """Why a base branch cannot be used (None: it can, or it is left to the repository)."""
    if not base:
        return None
    return reserved_name_problem(base, "the base branch")


def task_branch_problem(branch: Optional[str], *, prefix: str = DEFAULT_BRANCH_PREFIX,
                        base: Optional[str] = None,
                        default: Optional[str] = None) -> Optional[str]:
    """Why `branch` may not be a task's branch: reserved, outside `prefix`, or equal to the
    base branch or to the repository's default branch (`default`, when known)."""
    if not branch:
        return "the task has no branch"
    if why := reserved_name_problem(branch):
        return why
    if base and branch == base:
        return f"branch {branch!r} is the base branch; a task pushes only its own branch"
    if default and branch == default:
        return (f"branch {branch!r} is the repository's default branch; a task pushes only "
                "its own branch")
    if not branch.startswith(prefix) or branch == prefix:
        return f"branch {branch!r} is outside the task branch prefix {prefix!r}"
    return None
