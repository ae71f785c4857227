"""The GitHub layer in one object: what the operator, the local runtime and the worker call."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

from ampx.core.models import MergeMethod
from ampx.core.repo import RepoRef, parse_repo
from ampx.settings import GitHubSettings

from .auth import TokenProvider, provider_from_settings
from .budget import RequestBudget
from .ci import CiObservation, CiWatcher, PollSchedule, RepoPoll
from .client import ApiStats, Backoff, PyGithubFactory, RestClient
from .pulls import MergeResult, OpenedPull, Pulls


def _ref(repo: RepoRef | str) -> RepoRef:
    return repo if isinstance(repo, RepoRef) else parse_repo(repo)


class GitHubService:
    """Tokens, CI polling, re-runs, pull requests. Repositories are ``RepoRef`` or any form
    :func:`ampx.core.repo.parse_repo` accepts. Thread-safe."""

    def __init__(
        self,
        provider: TokenProvider,
        api_url: str,
        *,
        git_url: str = "https://github.com",
        schedule: Optional[PollSchedule] = None,
        backoff: Optional[Backoff] = None,
        mergeable_wait: float = 1.0,
        timeout: float = 30.0,
        default_branch_ttl: float = 600.0,
        monotonic: Callable[[], float] = time.monotonic,
        budget: Optional[RequestBudget] = None,
    ) -> None:
        self.provider = provider
        self.api_url = api_url.rstrip("/")
        self.git_url = git_url.rstrip("/")
        self.rest = RestClient(self.api_url, provider, backoff=backoff, timeout=timeout, budget=budget)
        self.ci = CiWatcher(provider, self.api_url, rest=self.rest, schedule=schedule)
        self.factory = PyGithubFactory(self.api_url, provider, timeout=timeout)
        self.pulls = Pulls(self.factory, self.rest, mergeable_wait=mergeable_wait)
        # repository -> (looked up at, default branch): asked before every task's first
        # attempt, and a default branch rarely changes
        self._defaults: dict[str, tuple[float, str]] = {}
        self._defaults_lock = threading.Lock()
        self.default_branch_ttl = default_branch_ttl
        self._monotonic = monotonic

    @classmethod
    def from_settings(cls, settings: Optional[GitHubSettings] = None, **kwargs: Any) -> "GitHubService":
        settings = settings or GitHubSettings.from_env()
        provider = provider_from_settings(settings)
        return cls(provider, settings.api_url, git_url=settings.git_url, **kwargs)

    def __repr__(self) -> str:
        return f"<GitHubService {self.api_url} auth={self.provider.kind}>"

    @property
    def stats(self) -> ApiStats:
        return self.rest.stats

    def token_for(self, repo: RepoRef | str) -> str:
        return self.provider.token_for(_ref(repo))

    def clone_url(self, repo: RepoRef | str) -> str:
        """HTTPS clone URL without credentials (the worker passes the token to git itself)."""
        r = _ref(repo)
        return f"{self.git_url}/{r.owner}/{r.name}.git"

    def poll_ci(self, repo: RepoRef | str, sha: str, branch: Optional[str] = None,
                event: str = "push") -> CiObservation:
        return self.ci.poll(_ref(repo), sha, branch, event)

    def poll_repository(self, repo: RepoRef | str, wanted: list[tuple[str, str]]) -> RepoPoll:
        """CI of many commits of one repository at the cost of one conditional request per
        event (see CiWatcher.poll_repository)."""
        return self.ci.poll_repository(_ref(repo), wanted)

    def poll_interval(self, seconds_since_push: float) -> float:
        return self.ci.poll_interval(seconds_since_push)

    def rerun_failed_jobs(self, repo: RepoRef | str, run_id: int) -> None:
        self.ci.rerun_failed_jobs(_ref(repo), run_id)

    def default_branch(self, repo: RepoRef | str) -> str:
        """The repository's default branch, remembered for `default_branch_ttl` seconds."""
        ref = _ref(repo)
        key = ref.full_name.lower()
        now = self._monotonic()
        with self._defaults_lock:
            hit = self._defaults.get(key)
        if hit is not None and now - hit[0] < self.default_branch_ttl:
            return hit[1]
        branch = self.pulls.default_branch(ref)
        with self._defaults_lock:
            self._defaults[key] = (now, branch)
        return branch

    def open_or_adopt_pr(
        self, repo: RepoRef | str, head_branch: str, base_branch: Optional[str], title: str, body: str
    ) -> tuple[str, int, bool]:
        return self.pulls.open_or_adopt_pr(_ref(repo), head_branch, base_branch, title, body)

    def open_or_adopt(self, repo: RepoRef | str, head_branch: str, base_branch: Optional[str],
                      title: str, body: str, draft: bool = False) -> OpenedPull:
        return self.pulls.open_or_adopt(_ref(repo), head_branch, base_branch, title, body, draft)

    def pull_for_branch(self, repo: RepoRef | str, head_branch: str) -> Optional[OpenedPull]:
        return self.pulls.pull_for_branch(_ref(repo), head_branch)

    def mark_ready(self, repo: RepoRef | str, number: int, body: Optional[str] = None) -> bool:
        return self.pulls.mark_ready(_ref(repo), number, body)

    def comment_pr(self, repo: RepoRef | str, number: int, body: str) -> None:
        self.pulls.comment(_ref(repo), number, body)

    def merge_pr(
        self,
        repo: RepoRef | str,
        number: int,
        method: MergeMethod | str = MergeMethod.SQUASH,
        sha: Optional[str] = None,
        delete_branch: bool = False,
        branch: Optional[str] = None,
    ) -> MergeResult:
        return self.pulls.merge_pr(_ref(repo), number, method, sha, delete_branch, branch)
