"""The operator's task rules from its environment (the chart's `tasks.*` values).

Read once at start: a prefix or allow-list the operator cannot understand stops it with the
reason, rather than letting it run tasks without the rules its admin wrote.
"""

from __future__ import annotations

import logging

from .core.admission import TaskRules
from .core.allowlist import parse_allowlist
from .core.ids import DEFAULT_BRANCH_PREFIX
from .settings import GitHubSettings, env

log = logging.getLogger("ampx.rules")


def rules_from_env(warn: bool = True) -> TaskRules:
    """AMPX_GITHUB_URL, AMPX_BRANCH_PREFIX and AMPX_ALLOWED_REPOS as one TaskRules."""
    rules = TaskRules(
        git_url=GitHubSettings.from_env().git_url,
        branch_prefix=env("AMPX_BRANCH_PREFIX", DEFAULT_BRANCH_PREFIX),
        allowed_repos=parse_allowlist(env("AMPX_ALLOWED_REPOS"), "AMPX_ALLOWED_REPOS"),
    )
    if warn and rules.allowed_repos.unrestricted:
        log.warning("no repository allow-list (AMPX_ALLOWED_REPOS, chart value "
                    "tasks.allowedRepos): anyone who may create AmpTasks may use every "
                    "repository the GitHub App is installed on")
    return rules
