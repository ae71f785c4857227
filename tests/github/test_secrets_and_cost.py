"""No token, JWT or key in any exception or log record; what CI polling costs per minute."""

from __future__ import annotations

import logging
import time

import pytest

from ampx.core.repo import RepoRef
from ampx.core.models import MergeMethod
from ampx.github.budget import RequestBudget
from ampx.github.auth import AppAuth, TokenAuth
from ampx.github.ci import PollSchedule
from ampx.github.errors import GitHubAuthError, GitHubError, RetryLater
from ampx.github.service import GitHubService

REPO = RepoRef("acme", "widgets")


def test_tokens_never_in_exceptions_or_logs(sandbox, caplog, app_key_pem) -> None:
    caplog.set_level(logging.DEBUG)
    emu = sandbox.emu
    seen: list[str] = []  # every credential that went over the wire
    auth = sandbox.auth()
    real_mint, real_jwt = auth._mint, auth.app_jwt

    def mint(inst, repo):
        token, exp = real_mint(inst, repo)
        seen.append(token)
        return token, exp

    def app_jwt():
        value = real_jwt()
        seen.append(value)
        return value

    auth._mint, auth.app_jwt = mint, app_jwt
    now = [time.time()]
    svc = GitHubService(auth, emu.api_url, mergeable_wait=0.01,
                        budget=RequestBudget(clock=lambda: now[0]))
    errors: list[BaseException] = []

    def expect(exc_type, fn, *args):
        with pytest.raises(exc_type) as info:
            fn(*args)
        errors.append(info.value)

    # a red CI (logs fetched, excerpt built), with the token echoed by the workflow
    sha = sandbox.push("amp/leak", {".github/workflows/ci.yml": sandbox.workflow(
        "CI", ['echo "token is $(cat /dev/null)ghs_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"; exit 1'])})
    obs = sandbox.wait_ci(lambda: svc.poll_ci(REPO, sha))
    assert obs.state == "red"
    # revoked token: refreshed once; then faults of every kind
    emu.revoke_token(svc.token_for(REPO))
    svc.poll_ci(REPO, sha)
    emu.faults.fail_next(1, 500)
    expect(RetryLater, svc.poll_ci, REPO, sha)
    emu.faults.secondary_rate_limit(1, retry_after=3)
    expect(RetryLater, svc.default_branch, REPO)
    now[0] += 4  # the 3 s GitHub asked for are up
    expect(GitHubError, svc.poll_ci, "acme/nope", sha)
    # PRs, refused and accepted merges
    _, number, _ = svc.open_or_adopt_pr(REPO, "amp/leak", None, "Leak", "body")
    emu.set_mergeable(REPO.full_name, number, False)
    assert not svc.merge_pr(REPO, number, MergeMethod.SQUASH).merged
    emu.clear_mergeable(REPO.full_name, number)
    assert svc.merge_pr(REPO, number, MergeMethod.SQUASH, None, True, "amp/leak").merged
    # a JWT GitHub rejects (App registered with another key), a revoked personal token
    other = AppAuth(999, app_key_pem, emu.api_url)
    expect(GitHubAuthError, other.token_for, REPO)
    pat = "ghp_" + "Pq7" * 12
    emu.add_personal_token(pat)
    seen.append(pat)
    pat_svc = GitHubService(TokenAuth(pat), emu.api_url)
    emu.revoke_token(pat)
    expect(GitHubAuthError, pat_svc.poll_ci, REPO, sha)
    expect(GitHubAuthError, pat_svc.open_or_adopt_pr, REPO, "amp/x", "main", "t", "b")

    assert len(seen) >= 5
    secrets = seen + [app_key_pem.splitlines()[1]]
    texts = [str(e) for e in errors] + [repr(e) for e in errors]
    texts += [r.getMessage() for r in caplog.records] + [repr(r.args) for r in caplog.records]
    texts += [obs.excerpt or "", repr(auth), repr(svc), repr(TokenAuth(pat))]
    assert any("urllib3" in r.name or "github" in r.name for r in caplog.records)  # logs were captured
    for text in texts:
        for secret in secrets:
            assert secret not in text


def test_polling_cost_per_task_minute(sandbox, capsys) -> None:
    """The operator's loop for one task waiting on CI, in virtual time: a 12-minute CI run
    (held in 'queued' by the emulator), polled on the default schedule."""
    emu = sandbox.emu
    svc = sandbox.service(schedule=PollSchedule())
    emu.ci.pause()
    sha = sandbox.push("amp/cost", {".github/workflows/ci.yml": sandbox.workflow("CI", ["true"]),
                                    ".github/workflows/lint.yml": sandbox.workflow("Lint", ["true"], job="lint")})
    start = svc.stats.snapshot()
    t, polls = 0.0, 0
    while t < 12 * 60:
        assert svc.poll_ci(REPO, sha).state == "pending"
        polls += 1
        t += svc.poll_interval(t)
    emu.ci.resume()
    final = sandbox.wait_ci(lambda: svc.poll_ci(REPO, sha))
    assert final.state == "green"
    end = svc.stats.snapshot()
    minutes = t / 60
    made = end["requests"] - start["requests"]
    n304 = end["not_modified"] - start["not_modified"]
    n200 = end["ok"] - start["ok"]
    with capsys.disabled():
        print(f"\n[cost] {polls} polls over {minutes:.0f} virtual min: {made} requests "
              f"({n200} x 200, {n304} x 304) = {made / minutes:.2f} req/min, "
              f"{(made - n304) / minutes:.2f} counted against the rate limit per min")
    assert polls == 24 + 32 + 2  # 5 s for 2 min, 15 s to 10 min, 60 s after
    assert n304 >= polls - 1
    assert (made - n304) / minutes < 1.0
