"""The attempt's git workspace: clone with a token, branch, read changes, commit, push."""

from ampx.gitops.auth import GitAuth
from ampx.gitops.git import GitError, GitTimeout, run_git
from ampx.gitops.message import TASK_TRAILER, add_trailers, attempt_message, commit_title
from ampx.gitops.repospec import RepoSpec, RepoSpecError, parse_repo_spec, remote_url
from ampx.gitops.tamper import is_test_file, is_workflow, tamper_check
from ampx.gitops.workspace import (
    Change,
    Checkout,
    PushError,
    PushRejected,
    PushTransportError,
    RemoteHeads,
    WipResult,
    Workspace,
    classify_push_failure,
)

__all__ = [
    "Change", "Checkout", "GitAuth", "GitError", "GitTimeout", "PushError", "PushRejected",
    "PushTransportError", "RemoteHeads", "RepoSpec", "RepoSpecError", "TASK_TRAILER",
    "WipResult", "Workspace", "add_trailers", "attempt_message", "classify_push_failure",
    "commit_title", "is_test_file", "is_workflow", "parse_repo_spec", "remote_url", "run_git",
    "tamper_check",
]
