"""REST behaviour beyond auth: conditional requests, rate limits, faults, pagination,
pull requests and refs — exercised with PyGithub where it has the operation."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
import requests
from github import GithubException, GithubRetry

from ampx.sandbox.github_emulator import GitHubEmulator
from ampx.sandbox.github_emulator.contract import ResponseContract

WORKFLOW = "on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ok\n"


@pytest.fixture
def acme(github_emulator: GitHubEmulator, make_seed, git, app_key_pem, tmp_path: Path):
    """acme/api with a main branch and a pushed feature branch; returns (token, working copy)."""
    emu = github_emulator
    emu.create_repo("acme/api", make_seed({"README.md": "base\n", "shared.txt": "one\n"}))
    creds = emu.create_app(555, private_key_pem=app_key_pem)
    token = emu.create_installation_token(emu.install_app(creds.app_id, "acme/api"))
    wc = tmp_path / "wc"
    # Setup pushes over file:// (fast); the HTTP transport has its own tests.
    git("clone", "-q", f"file://{emu.git_path('acme/api')}", str(wc))
    git("checkout", "-q", "-b", "amp/feature", cwd=wc)
    git.commit_file(wc, "feature.txt", "feature\n", "Add feature")
    git.commit_file(wc, "feature2.txt", "more\n", "More feature")
    git("push", "-q", "origin", "amp/feature", cwd=wc)
    emu.notify_push("acme/api")
    return token, wc


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}", "Accept": "application/vnd.github+json"}


def test_etag_304_is_free_and_counted_separately(github_emulator: GitHubEmulator, acme) -> None:
    token, _ = acme
    url = f"{github_emulator.api_url}/repos/acme/api/actions/runs"
    first = requests.get(url, headers=_auth(token), timeout=10)
    assert first.status_code == 200
    etag = first.headers["ETag"]
    remaining = int(first.headers["x-ratelimit-remaining"])
    assert first.headers["x-ratelimit-resource"] == "core"
    assert int(first.headers["x-ratelimit-used"]) >= 1
    for _ in range(3):
        again = requests.get(url, headers={**_auth(token), "If-None-Match": etag}, timeout=10)
        assert again.status_code == 304 and again.content == b""
        assert int(again.headers["x-ratelimit-remaining"]) == remaining
    changed = requests.get(url, headers={**_auth(token), "If-None-Match": 'W/"stale"'}, timeout=10)
    assert changed.status_code == 200 and int(changed.headers["x-ratelimit-remaining"]) == remaining - 1
    stats = github_emulator.stats.get("GET", "/repos/{owner}/{repo}/actions/runs")
    assert (stats.requests, stats.ok, stats.not_modified) == (5, 2, 3)
    # /rate_limit itself is not charged either.
    rl = requests.get(f"{github_emulator.api_url}/rate_limit", headers=_auth(token), timeout=10).json()
    assert rl["rate"]["remaining"] == remaining - 1


def test_primary_rate_limit_exhaustion(github_emulator: GitHubEmulator, acme) -> None:
    token, _ = acme
    github_emulator.rate_limit = 3
    github_emulator.reset_rate_limits()
    url = f"{github_emulator.api_url}/repos/acme/api"
    statuses = [requests.get(url, headers=_auth(token), timeout=10) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 403]
    last = statuses[-1]
    assert last.headers["x-ratelimit-remaining"] == "0"
    assert last.json()["message"].startswith("API rate limit exceeded for installation ID")
    assert int(last.headers["x-ratelimit-reset"]) > time.time()


def test_injected_faults(github_emulator: GitHubEmulator, acme, make_github) -> None:
    token, _ = acme
    emu = github_emulator
    # PyGithub's default retry policy rides over transient 502s.
    emu.faults.fail_next(2, status=502, path=r"/pulls$")
    pulls = list(make_github(token, retry=GithubRetry(total=3, backoff_factor=0)).get_repo("acme/api").get_pulls())
    assert pulls == []
    stats = emu.stats.get("GET", "/repos/{owner}/{repo}/pulls")
    assert stats.by_status[502] == 2 and stats.ok == 1

    emu.faults.secondary_rate_limit(1, retry_after=1, path=r"^/repos/acme/api$")
    resp = requests.get(f"{emu.api_url}/repos/acme/api", headers=_auth(token), timeout=10)
    assert resp.status_code == 403 and resp.headers["Retry-After"] == "1"
    assert resp.json()["message"].startswith("You have exceeded a secondary rate limit")
    assert requests.get(f"{emu.api_url}/repos/acme/api", headers=_auth(token), timeout=10).status_code == 200

    emu.faults.primary_rate_limit(1, status=429, method="GET")
    resp = requests.get(f"{emu.api_url}/repos/acme/api", headers=_auth(token), timeout=10)
    assert resp.status_code == 429 and resp.headers["x-ratelimit-remaining"] == "0"
    assert int(resp.headers["x-ratelimit-reset"]) > time.time()
    assert emu.faults.pending == 0 and emu.faults.injected == 4


def test_pull_request_lifecycle_with_squash_merge(github_emulator: GitHubEmulator, acme, make_github, git, tmp_path) -> None:
    token, wc = acme
    emu = github_emulator
    repo = make_github(token).get_repo("acme/api")
    head_sha = git.sha(wc)
    pr = repo.create_pull(base="main", head="amp/feature", title="Add feature", body="Generated by ampx")
    assert (pr.number, pr.state, pr.merged, pr.head.sha, pr.head.ref) == (1, "open", False, head_sha, "amp/feature")
    assert pr.html_url == f"{emu.url}/acme/api/pull/1"
    assert (pr.commits, pr.changed_files) == (2, 2)
    fetched = repo.get_pull(1)
    assert fetched.mergeable is True and fetched.mergeable_state == "clean"
    diff = requests.get(pr.diff_url, timeout=10).text  # html/diff URLs are served too
    assert "+++ b/feature.txt" in diff and "+feature" in diff
    assert "Add feature" in requests.get(pr.html_url, timeout=10).text

    with pytest.raises(GithubException) as dup:
        repo.create_pull(base="main", head="amp/feature", title="Again")
    assert dup.value.status == 422
    assert dup.value.data["errors"][0]["message"] == "A pull request already exists for acme:amp/feature."
    with pytest.raises(GithubException) as missing:
        repo.create_pull(base="main", head="no-such-branch", title="Nope")
    assert missing.value.status == 422 and missing.value.data["errors"][0]["field"] == "head"

    assert [p.number for p in repo.get_pulls(state="open", head="acme:amp/feature")] == [1]
    assert list(repo.get_pulls(head="acme:other")) == []

    with pytest.raises(GithubException) as stale:
        pr.merge(merge_method="squash", sha="0" * 40)
    assert stale.value.status == 409
    assert stale.value.data["message"] == "Head branch was modified. Review and try the merge again."

    result = pr.merge(merge_method="squash", sha=head_sha)
    assert result.merged is True and result.message == "Pull Request successfully merged"
    main = emu.branches("acme/api")["main"]
    assert main == result.sha
    log = subprocess.run(
        ["git", "--git-dir", str(emu.git_path("acme/api")), "log", "--format=%P%n%s", "-1", main],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    assert len(log[0].split()) == 1 and log[1] == "Add feature (#1)"  # one parent: a squash commit
    tree = subprocess.run(
        ["git", "--git-dir", str(emu.git_path("acme/api")), "ls-tree", "--name-only", main],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert {"feature.txt", "feature2.txt"} <= set(tree)

    merged = repo.get_pull(1)
    assert merged.merged and merged.state == "closed" and merged.merge_commit_sha == main
    with pytest.raises(GithubException) as again:
        merged.merge()
    assert again.value.status == 405 and again.value.data["message"] == "Pull Request is not mergeable"
    assert [p.number for p in repo.get_pulls(state="closed")] == [1]
    assert emu.pulls("acme/api")[0].merged_by is not None

    # Deleting the head branch really deletes the ref.
    resp = requests.delete(f"{emu.api_url}/repos/acme/api/git/refs/heads/amp/feature", headers=_auth(token), timeout=10)
    assert resp.status_code == 204
    assert "amp/feature" not in emu.branches("acme/api")
    resp = requests.delete(f"{emu.api_url}/repos/acme/api/git/refs/heads/amp/feature", headers=_auth(token), timeout=10)
    assert resp.status_code == 422 and resp.json()["message"] == "Reference does not exist"


def test_merge_methods_and_refusals(github_emulator: GitHubEmulator, acme, make_github, git) -> None:
    token, wc = acme
    emu = github_emulator
    repo = make_github(token).get_repo("acme/api")
    git("checkout", "-q", "-b", "amp/second", "main", cwd=wc)
    git.commit_file(wc, "second.txt", "2\n", "Second")
    git("push", "-q", "origin", "amp/second", cwd=wc)
    git("checkout", "-q", "-b", "amp/conflict", "main", cwd=wc)
    git.commit_file(wc, "feature.txt", "conflicting\n", "Conflicting feature")
    git("push", "-q", "origin", "amp/conflict", cwd=wc)
    emu.notify_push("acme/api")

    first = repo.create_pull(base="main", head="amp/feature", title="Feature")
    second = repo.create_pull(base="main", head="acme:amp/second", title="Second")

    emu.set_mergeable("acme/api", first.number, False)
    assert repo.get_pull(first.number).mergeable is False
    with pytest.raises(GithubException) as refused:
        first.merge()
    assert refused.value.status == 405
    emu.set_mergeable("acme/api", first.number, None)  # "GitHub is still computing"
    assert repo.get_pull(first.number).mergeable is None
    emu.clear_mergeable("acme/api", first.number)

    merge = first.merge(merge_method="merge")
    parents = subprocess.run(
        ["git", "--git-dir", str(emu.git_path("acme/api")), "log", "--format=%P", "-1", merge.sha],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert len(parents) == 2

    rebase = second.merge(merge_method="rebase")
    info = subprocess.run(
        ["git", "--git-dir", str(emu.git_path("acme/api")), "log", "--format=%P %s", "-1", rebase.sha],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert info[0] == merge.sha and info[1] == "Second"

    # The conflicting branch now conflicts with main: not mergeable, for real.
    conflict = repo.create_pull(base="main", head="amp/conflict", title="Conflict")
    assert repo.get_pull(conflict.number).mergeable is False
    with pytest.raises(GithubException) as err:
        conflict.merge()
    assert err.value.status == 405


def test_pull_request_event_workflow_and_pagination(github_emulator: GitHubEmulator, make_seed, git, make_github, app_key_pem, tmp_path) -> None:
    emu = github_emulator
    workflow = "on:\n  pull_request:\n    branches: [main]\njobs:\n  pr:\n    runs-on: x\n    steps:\n      - run: echo \"$GITHUB_EVENT_NAME $GITHUB_REF $GITHUB_HEAD_REF->$GITHUB_BASE_REF\"\n"
    emu.create_repo("acme/api", make_seed({".github/workflows/pr.yml": workflow}))
    token = emu.create_installation_token(emu.install_app(emu.create_app(9, private_key_pem=app_key_pem).app_id, "acme/api"))
    wc = tmp_path / "wc"
    git("clone", "-q", f"file://{emu.git_path('acme/api')}", str(wc))
    for i in range(3):
        git("checkout", "-q", "-b", f"amp/b{i}", "main", cwd=wc)
        git.commit_file(wc, f"f{i}.txt", "x\n", f"f{i}")
    git("push", "-q", "origin", "amp/b0", "amp/b1", "amp/b2", cwd=wc)
    emu.notify_push("acme/api")
    assert emu.ci.runs("acme/api") == []  # no push trigger in this workflow
    repo = make_github(token, per_page=2).get_repo("acme/api")
    for i in range(3):
        repo.create_pull(base="main", head=f"amp/b{i}", title=f"PR {i}")
    emu.ci.wait_idle(30)
    runs = list(repo.get_workflow_runs(event="pull_request"))  # 2 pages, followed via the Link header
    assert len(runs) == 3 and {r.conclusion for r in runs} == {"success"}
    assert {r.head_branch for r in runs} == {"amp/b0", "amp/b1", "amp/b2"}
    assert [p.number for p in repo.get_pulls()] == [3, 2, 1]
    page = requests.get(f"{emu.api_url}/repos/acme/api/pulls?per_page=1", headers=_auth(token), timeout=10)
    assert 'rel="next"' in page.headers["Link"] and page.headers["Link"].startswith(f"<{emu.api_url}/")
    log = emu.ci.runs("acme/api")[0].jobs[0].log_text()
    assert re.search(r"pull_request refs/pull/\d+/merge amp/b\d->main", log)


def test_contract_validator_catches_bad_responses(github_contract: ResponseContract) -> None:
    """The fixture's validator is only useful if it can fail."""
    headers = {h: "1" for h in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "x-ratelimit-used", "x-ratelimit-resource")}
    base = "http://127.0.0.1:1"
    ok = github_contract.check("GET", "/api/v3/rate_limit", 200, {**headers, "ETag": "x"},
                               b'{"rate":{"limit":1,"remaining":1,"reset":1,"used":0},"resources":{"core":{"limit":1,"remaining":1,"reset":1,"used":0},"search":{"limit":1,"remaining":1,"reset":1,"used":0}}}', base_url=base)
    assert ok == []
    assert github_contract.check("GET", "/api/v3/rate_limit", 200, {**headers, "ETag": "x"}, b'{"rate":{}}', base_url=base)
    assert github_contract.check("GET", "/api/v3/rate_limit", 200, {"ETag": "x"}, b"{}", base_url=base)
    assert github_contract.check("GET", "/api/v3/repos/a/b", 502, headers, b"<html>", base_url=base)
    assert github_contract.check("GET", "/api/v3/repos/a/b/actions/runs", 200, {**headers, "ETag": "x"},
                                 b'{"total_count":0,"workflow_runs":[],"x":"https://api.github.com/x"}', base_url=base)
    assert github_contract.check("GET", "/api/v3/repos/a/b/nope", 200, headers, b"{}", base_url=base)
