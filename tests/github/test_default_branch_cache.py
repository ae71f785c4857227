"""The repository's default branch, asked of GitHub before each task's first attempt, is
remembered for a while: many tasks on one repository cost one request."""

from __future__ import annotations

from ampx.core.repo import RepoRef
from ampx.github.service import GitHubService

REPO = RepoRef("acme", "widgets")  # the sandbox fixture's repository

REPO_GET = "GET /repos/{owner}/{repo}"


def test_default_branch_is_cached_then_asked_again(sandbox) -> None:
    clock = [1000.0]
    svc = GitHubService(sandbox.auth(), sandbox.emu.api_url, default_branch_ttl=600,
                        monotonic=lambda: clock[0])
    assert [svc.default_branch(REPO) for _ in range(5)] == ["main"] * 5
    assert svc.default_branch(f"{REPO.owner.upper()}/{REPO.name}") == "main"
    assert sandbox.emu.stats[REPO_GET].requests == 1
    clock[0] += 601
    assert svc.default_branch(REPO) == "main"
    assert sandbox.emu.stats[REPO_GET].requests == 2
