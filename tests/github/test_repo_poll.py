"""CI of many commits of one repository for the price of one conditional request."""

from __future__ import annotations

import time
import uuid

import pytest

from ampx.github.budget import RequestBudget
from ampx.github.client import ETAG_CACHE_SIZE, RestClient
from ampx.github.errors import RetryLater

REPO_RUNS = "GET /repos/{owner}/{repo}/actions/runs"


def runs_requests(emu) -> tuple[int, int]:
    s = emu.stats.get("GET", "/repos/{owner}/{repo}/actions/runs")
    return s.requests, s.not_modified


def test_one_request_per_repository_gives_each_commit_what_a_commit_query_gives(sandbox) -> None:
    svc = sandbox.service()
    green = sandbox.push("amp/green", {".github/workflows/ci.yml": sandbox.workflow("CI", ["true"])})
    red = sandbox.push("amp/red", {".github/workflows/ci.yml": sandbox.workflow("CI", ["echo boom; exit 3"])})
    quiet = sandbox.push("amp/quiet", {"a.txt": "no workflow here\n"})
    sandbox.emu.ci.wait_idle()
    wanted = [(green, "push"), (red, "push"), (quiet, "push")]
    before, _ = runs_requests(sandbox.emu)
    result = svc.poll_repository(sandbox.repo, wanted)
    after, _ = runs_requests(sandbox.emu)
    assert after - before == 1, "one request for the three commits"
    obs = result.observations
    assert obs[(green, "push")].state == "green"
    assert obs[(red, "push")].state == "red" and "boom" in (obs[(red, "push")].excerpt or "")
    assert obs[(quiet, "push")].state == "none"
    assert result.spacing is not None and result.spacing > 0, "a counted answer spaces the next"
    for sha, _ in wanted:  # the same as the per-commit query says
        single = svc.poll_ci(sandbox.repo, sha)
        assert (single.state, single.run_id) == (obs[(sha, "push")].state, obs[(sha, "push")].run_id)


def test_an_unchanged_repository_costs_a_free_304_and_reads_no_log_again(sandbox) -> None:
    svc = sandbox.service()
    red = sandbox.push("amp/red", {".github/workflows/ci.yml": sandbox.workflow("CI", ["exit 1"])})
    sandbox.emu.ci.wait_idle()
    first = svc.poll_repository(sandbox.repo, [(red, "push")])
    start = svc.stats.snapshot()
    again = svc.poll_repository(sandbox.repo, [(red, "push")])
    end = svc.stats.snapshot()
    assert end["requests"] - start["requests"] == 1 and end["not_modified"] - start["not_modified"] == 1
    assert again.spacing is None, "a 304 costs nothing: no spacing"
    assert again.observations[(red, "push")] is first.observations[(red, "push")]


def test_a_new_run_for_another_commit_does_not_fetch_this_commits_logs_again(sandbox) -> None:
    svc = sandbox.service()
    red = sandbox.push("amp/red", {".github/workflows/ci.yml": sandbox.workflow("CI", ["exit 1"])})
    sandbox.emu.ci.wait_idle()
    first = svc.poll_repository(sandbox.repo, [(red, "push")]).observations[(red, "push")]
    other = sandbox.push("amp/other", {".github/workflows/ci.yml": sandbox.workflow("CI", ["true"])})
    sandbox.emu.ci.wait_idle()
    jobs = sandbox.emu.stats.get("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs").requests
    res = svc.poll_repository(sandbox.repo, [(red, "push"), (other, "push")]).observations
    assert res[(red, "push")] is first
    assert res[(other, "push")].state == "green"
    assert sandbox.emu.stats.get("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs").requests == jobs


def test_a_commit_beyond_the_recent_page_is_asked_for_by_head_sha(sandbox) -> None:
    """After a restart nothing is remembered: a commit whose runs are no longer in the recent
    page is asked for on its own once it has been missing for `fallback_every` s (a new
    commit's runs show at the top of the page within that time), then kept up to date."""
    svc = sandbox.service()
    svc.ci.page_size = 2
    svc.ci.fallback_every = 0.5
    old = sandbox.push("amp/old", {".github/workflows/ci.yml": sandbox.workflow("CI", ["exit 1"])})
    for i in range(3):
        sandbox.push(f"amp/new{i}", {".github/workflows/ci.yml": sandbox.workflow("CI", ["true"])})
    sandbox.emu.ci.wait_idle()
    wanted = [(old, "push"), ("f" * 40, "push")]
    n0, _ = runs_requests(sandbox.emu)
    res = svc.poll_repository(sandbox.repo, wanted).observations
    assert runs_requests(sandbox.emu)[0] == n0 + 1 and res[(old, "push")].state == "none"
    time.sleep(0.6)
    res = svc.poll_repository(sandbox.repo, wanted).observations
    assert runs_requests(sandbox.emu)[0] == n0 + 4, "the page, and each missing commit by head_sha"
    assert res[(old, "push")].state == "red", "found by its own query"
    assert res[("f" * 40, "push")].state == "none"
    n = runs_requests(sandbox.emu)[0]
    res = svc.poll_repository(sandbox.repo, [(old, "push")]).observations
    assert runs_requests(sandbox.emu)[0] == n + 1, "known now: the page is enough"
    assert res[(old, "push")].state == "red"


def test_pull_request_waits_share_one_request_of_their_own(sandbox) -> None:
    svc = sandbox.service()
    pr_only = ("name: PR\non:\n  pull_request:\njobs:\n  t:\n    runs-on: ubuntu-latest\n"
               "    steps:\n      - run: echo ok\n")
    sha = sandbox.push("amp/pr", {".github/workflows/ci.yml": pr_only})
    push_sha = sandbox.push("amp/push", {".github/workflows/ci.yml": sandbox.workflow("CI", ["true"])})
    svc.open_or_adopt(sandbox.repo, "amp/pr", None, "PR", "body", draft=True)
    sandbox.emu.ci.wait_idle()
    before, _ = runs_requests(sandbox.emu)
    res = svc.poll_repository(sandbox.repo, [(sha, "pull_request"), (push_sha, "push"), (sha, "push")])
    assert runs_requests(sandbox.emu)[0] - before == 2, "one request per event"
    assert res.observations[(sha, "pull_request")].state == "green"
    assert res.observations[(sha, "push")].state == "none"
    assert res.observations[(push_sha, "push")].state == "green"


@pytest.mark.parametrize("size, free", [(ETAG_CACHE_SIZE, True), (64, False)])
def test_every_waiting_commit_gets_free_304s_while_the_cache_holds_them(sandbox, size, free) -> None:
    """The ETag cache is keyed by request and holds one entry per commit asked for by head_sha
    (8192 by default, so more than 512 waiting commits still get 304s); the control, a cache
    smaller than the commits asked for (the old 512 with 520 commits), gets no 304 at all."""
    auth = sandbox.auth()
    rest = RestClient(sandbox.emu.api_url, auth, etag_cache_size=size,
                      budget=RequestBudget(points_per_minute=100_000))
    shas = [uuid.uuid4().hex + "0" * 8 for _ in range(100)]
    path = "/repos/acme/widgets/actions/runs"
    for rnd in range(2):
        n304 = 0
        for sha in shas:
            r = rest.get_json(sandbox.repo, path, params={"head_sha": sha}, conditional=True)
            n304 += r.not_modified
    assert (n304 == len(shas)) if free else (n304 == 0)
    assert ETAG_CACHE_SIZE >= 8192


def test_a_rate_limit_holds_every_request_until_github_allows_it(sandbox) -> None:
    svc = sandbox.service()
    sha = sandbox.push("amp/x", {".github/workflows/ci.yml": sandbox.workflow("CI", ["true"])})
    sandbox.emu.ci.wait_idle()
    sandbox.emu.faults.secondary_rate_limit(1, retry_after=30, path=r"/actions/runs$")
    with pytest.raises(RetryLater) as first:
        svc.poll_repository(sandbox.repo, [(sha, "push")])
    assert 29 <= first.value.seconds <= 30
    n = sandbox.emu.stats.total_requests
    with pytest.raises(RetryLater) as held:
        svc.poll_repository("acme/other", [(sha, "push")])
    assert held.value.seconds > 25 and "budget" in str(held.value)
    assert sandbox.emu.stats.total_requests == n, "held back: nothing sent while GitHub said wait"


def test_budget_spacing_and_reserve() -> None:
    now = [1000.0]
    b = RequestBudget(points_per_minute=10, clock=lambda: now[0])
    assert b.poll_spacing(10) == pytest.approx(3600 * 10 / 2500)
    for _ in range(2):
        b.sent("POST")  # 5 points each
    assert b.hold() == pytest.approx(60.0), "this minute's points are spent"
    now[0] += 60
    assert b.hold() == 0
    b.answered(200, {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "400",
                     "x-ratelimit-reset": str(now[0] + 100)})
    assert b.hold() == 0, "a needed request still goes in the last tenth of the quota"
    assert b.hold(optional=True) == pytest.approx(101.0), "a poll waits for the reset"
    b.answered(403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(now[0] + 50)})
    assert b.hold() == pytest.approx(51.0)


def test_a_run_that_scrolled_off_the_page_is_seen_completing(sandbox) -> None:
    svc = sandbox.service()
    svc.ci.page_size = 2
    sha = sandbox.push("amp/slow", {".github/workflows/ci.yml": sandbox.workflow("CI", ["sleep 3; exit 1"])})
    res = svc.poll_repository(sandbox.repo, [(sha, "push")]).observations
    assert res[(sha, "push")].state == "pending"
    for i in range(2):  # quick runs, newer: the slow one leaves the page of 2 and ends last
        sandbox.push(f"amp/later{i}", {".github/workflows/ci.yml": sandbox.workflow("CI", ["true"])})
    sandbox.emu.ci.wait_idle()
    n, _ = runs_requests(sandbox.emu)
    res = svc.poll_repository(sandbox.repo, [(sha, "push")]).observations
    assert res[(sha, "push")].state == "red", "its completion, from the second page"
    assert runs_requests(sandbox.emu)[0] == n + 2, "two pages, no head_sha"
