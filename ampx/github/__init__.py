"""The GitHub layer: App/token auth, CI polling with log excerpts, pull requests."""

from .auth import AppAuth, TokenAuth, TokenProvider, provider_from_settings
from .ci import CiObservation, CiWatcher, PollSchedule, RunInfo, poll_interval
from .errors import (
    GitHubAuthError,
    GitHubConfigError,
    GitHubError,
    GitHubNotFound,
    GitHubPermissionError,
    RetryLater,
)
from .excerpt import build_excerpt, signature
from .pulls import MergeResult, render_pr_body
from .service import GitHubService

__all__ = [
    "AppAuth", "TokenAuth", "TokenProvider", "provider_from_settings",
    "CiObservation", "CiWatcher", "PollSchedule", "RunInfo", "poll_interval",
    "GitHubAuthError", "GitHubConfigError", "GitHubError", "GitHubNotFound",
    "GitHubPermissionError", "RetryLater",
    "build_excerpt", "signature", "MergeResult", "render_pr_body", "GitHubService",
]
