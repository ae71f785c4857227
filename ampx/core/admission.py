"""May this task start at all? Decided once, before its first attempt, by both runtimes.

The CRD schema refuses what a pattern can express; what depends on the installation's settings
(the git host, the task branch prefix, the namespace's allow-list) or on GitHub (the
repository's default branch) is decided here. A refused task ends in `error` with the reason
and nothing is ever pushed for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .allowlist import AllowList
from .branches import base_branch_problem, check_prefix, task_branch_problem
from .ids import DEFAULT_BRANCH_PREFIX
from .models import AmpTaskSpec, spec_problem
from .repo import RepoError, parse_repo


@dataclass(frozen=True)
class TaskRules:
    """The installation's rules for tasks (operator settings, or the local config file)."""

    git_url: str = "https://github.com"
    branch_prefix: str = DEFAULT_BRANCH_PREFIX
    allowed_repos: AllowList = field(default_factory=AllowList)

    def __post_init__(self) -> None:
        check_prefix(self.branch_prefix)


def repo_problem(spec: AmpTaskSpec, namespace: str, rules: TaskRules) -> Optional[str]:
    """The repository part: the configured host, a well-formed name, the allow-list."""
    try:
        ref = parse_repo(spec.repo, rules.git_url)
    except RepoError as exc:
        return str(exc)
    return rules.allowed_repos.problem(ref.full_name, namespace)


def branch_problem(spec: AmpTaskSpec, rules: TaskRules,
                   default_branch: Optional[str] = None) -> Optional[str]:
    """The branch part: its own branch under the prefix, never the base or default branch."""
    return base_branch_problem(spec.base_branch) or task_branch_problem(
        spec.branch, prefix=rules.branch_prefix, base=spec.base_branch, default=default_branch)


def admission_problem(spec: dict | AmpTaskSpec, namespace: str, rules: TaskRules,
                      default_branch: Optional[str] = None) -> Optional[str]:
    """Why this task may not start (None: it may). `default_branch` is the repository's, as
    GitHub says (None when unknown: the worker checks it again before pushing)."""
    if isinstance(spec, dict):
        if why := spec_problem(spec):
            return why
        spec = AmpTaskSpec.model_validate(spec)
    return repo_problem(spec, namespace, rules) or branch_problem(spec, rules, default_branch)
