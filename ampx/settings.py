"""Every environment variable ampx reads, declared in one place.

The Helm chart sets some of them on the operator Deployment and the worker Jobs; a test checks
that the chart sets no variable the code does not read. Reading goes through `env()` so an
unknown name is a programming error, not a silent default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

# name -> (who reads it, what it is for)
ENV_VARS: dict[str, tuple[str, str]] = {
    # GitHub
    "AMPX_GITHUB_API_URL": ("all", "GitHub REST API base URL (GitHub Enterprise: https://HOST/api/v3)"),
    "AMPX_GITHUB_URL": ("all", "git host for clone/push and links, default https://github.com"),
    "AMPX_GITHUB_APP_ID": ("all", "the GitHub App's id"),
    "AMPX_GITHUB_APP_PRIVATE_KEY": ("all", "the App's PEM private key (from a Secret)"),
    "AMPX_GITHUB_APP_PRIVATE_KEY_FILE": ("all", "path of the App's PEM private key"),
    "GITHUB_TOKEN": ("all", "personal token fallback for a single developer"),
    # Agent
    "AMP_API_KEY": ("worker", "Amp access token (from a Secret)"),
    "AMP_URL": ("worker", "Amp service address, passed through to the amp CLI"),
    "AMPX_AGENT_COMMAND": ("worker", "custom agent command template (overrides the profile)"),
    "AMPX_AGENT_ENV": ("worker", "comma-separated names of extra variables passed to the agent's "
                                 "scrubbed environment (never a GitHub or ampx credential)"),
    # Operator
    "AMPX_WORKER_IMAGE": ("operator", "image of the worker Jobs"),
    "AMPX_WORKER_IMAGE_PULL_POLICY": ("operator", "imagePullPolicy of the worker Jobs"),
    "AMPX_WORKER_SERVICE_ACCOUNT": ("operator", "service account of the worker Jobs"),
    "AMPX_WORKER_RESOURCES": ("operator", "JSON resources block of the worker's agent container"),
    "AMPX_WORKER_STEP_RESOURCES": ("operator", "JSON resources block of the prepare and publish "
                                               "containers"),
    "AMPX_AMP_SECRET": ("operator", "name of the Secret holding AMP_API_KEY (the operator may "
                                    "read only this Secret, to mask the key)"),
    "AMPX_AMP_SECRET_KEY": ("operator", "key in that Secret, default api-key"),
    "AMPX_HISTORY_DB": ("operator", "path of the SQLite history database"),
    "AMPX_CI_POLL_SECONDS": ("operator", "CI poll interval right after a push, default 5"),
    "AMPX_WEBHOOK_LISTEN": ("operator", "[HOST]:PORT receiving GitHub webhook deliveries "
                                        "(`ampx operator --webhook-listen`; local supervisor too)"),
    "AMPX_WEBHOOK_SECRET_FILE": ("operator", "path of the webhook secret (from a Secret)"),
    "AMPX_WEBHOOK_SECRET": ("operator", "the webhook secret itself (prefer the file)"),
    "AMPX_CI_POLL_MAX_SECONDS": ("operator", "longest CI poll interval, default 60"),
    "AMPX_RESYNC_SECONDS": ("operator", "seconds between safety passes over unfinished tasks, "
                                        "default 60 (events drive everything else)"),
    "AMPX_OPERATOR_ID": ("operator", "this replica's name in the leader Lease, default the "
                                     "pod (host) name"),
    "AMPX_LEASE_NAMESPACE": ("operator", "namespace of the leader Lease, default the first "
                                         "watched (or the operator's own) namespace"),
    "AMPX_BRANCH_PREFIX": ("operator", "prefix of every task branch, default amp/"),
    "AMPX_ALLOWED_REPOS": ("operator", "JSON: repository globs allowed to every namespace, or "
                                       "a map namespace -> globs; unset: every repository"),
    "AMPX_MAX_CONCURRENT_ATTEMPTS": ("operator", "attempts running at once per namespace; the "
                                                 "others wait, queued (unset: unlimited)"),
    "AMPX_MAX_CONCURRENT_ATTEMPTS_PER_REPO": ("operator", "attempts running at once per "
                                                          "repository in a namespace (unset: unlimited)"),
    # Worker
    "AMPX_GIT_AUTHOR_NAME": ("worker", "commit author name, default ampx[bot]"),
    "AMPX_GIT_AUTHOR_EMAIL": ("worker", "commit author email"),
    "AMPX_WORKSPACE": ("worker", "where the worker clones, default a temporary directory "
                                 "(local runtime: <data dir>/workspaces)"),
    "AMPX_KEEP_WORKSPACES": ("worker", "keep each attempt's clone instead of deleting it (debugging)"),
    # CLI / local runtime
    "AMPX_BACKEND": ("cli", "local or kube"),
    "AMPX_HOME": ("cli", "data directory of the local runtime"),
    "AMPX_OWNER": ("cli", "owner recorded on new tasks, default the login name"),
    "KUBECONFIG": ("cli", "kubeconfig path(s), as for kubectl"),
    "AMPX_DEBUG": ("cli", "print the traceback of an unexpected error"),
}


# Variables whose values are credentials: every long-lived process masks them wherever they
# turn up (a CI log that prints the agent's key, say), whatever their shape.
SECRET_ENV_VARS = ("AMPX_GITHUB_APP_PRIVATE_KEY", "GITHUB_TOKEN", "AMP_API_KEY",
                   "AMPX_WEBHOOK_SECRET")


def credential_values() -> list[str]:
    """The values of the credential variables this process holds (ampx's and the agents')."""
    from .agent.profiles import BUILTIN_PROFILES

    names = set(SECRET_ENV_VARS)
    for profile in BUILTIN_PROFILES.values():
        names.update(profile.secret_env)
    return [value for name in sorted(names) if (value := os.environ.get(name))]


def register_env_secrets() -> None:
    """Mask the values of the credential variables this process holds."""
    from .redact import register_secret

    for value in credential_values():
        register_secret(value, pinned=True)


def env(name: str, default: Optional[str] = None) -> Optional[str]:
    """Read a declared variable; empty counts as unset."""
    if name not in ENV_VARS:
        raise KeyError(f"undeclared environment variable {name}")
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_int(name: str, default: int) -> int:
    raw = env(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


@dataclass(frozen=True)
class GitHubSettings:
    api_url: str
    git_url: str
    app_id: Optional[str]
    private_key: Optional[str]
    token: Optional[str]

    @classmethod
    def from_env(cls) -> "GitHubSettings":
        key = env("AMPX_GITHUB_APP_PRIVATE_KEY")
        key_file = env("AMPX_GITHUB_APP_PRIVATE_KEY_FILE")
        if key is None and key_file:
            with open(key_file, encoding="utf-8") as fh:
                key = fh.read()
        return cls(
            api_url=env("AMPX_GITHUB_API_URL", "https://api.github.com").rstrip("/"),
            git_url=env("AMPX_GITHUB_URL", "https://github.com").rstrip("/"),
            app_id=env("AMPX_GITHUB_APP_ID"),
            private_key=key,
            token=env("GITHUB_TOKEN"),
        )
