"""What `ampx start` can refuse at once, before a task exists: the same rules the runtimes
apply (`ampx.core.admission`), with what the CLI knows.

Local runtime: everything but the repository's default branch (the supervisor asks GitHub).
Kubernetes: the shape of the repository and branch, and the host when AMPX_GITHUB_URL is set
here; the operator's host, prefix and allow-list are its own settings, so it refuses the rest.
"""

from __future__ import annotations

from typing import Optional

from ..core.admission import TaskRules, branch_problem, repo_problem
from ..core.branches import base_branch_problem, task_branch_problem
from ..core.models import AmpTaskSpec
from ..core.repo import RepoError, parse_repo
from ..settings import GitHubSettings, env
from .config import branch_prefix, task_rules


def start_problem(spec: AmpTaskSpec, backend: str) -> Optional[str]:
    """Why this task would be refused (one line for the user), or None."""
    if backend == "local":
        rules: TaskRules = task_rules(GitHubSettings.from_env().git_url)
        return repo_problem(spec, "local", rules) or branch_problem(spec, rules)
    try:
        parse_repo(spec.repo, env("AMPX_GITHUB_URL"))
    except RepoError as exc:
        return str(exc)
    return base_branch_problem(spec.base_branch) or task_branch_problem(
        spec.branch, prefix=branch_prefix(), base=spec.base_branch)
