"""Polling GitHub Actions for an exact commit, over the emulator's real CI stand-in."""

from __future__ import annotations

import sys
import time


import pytest

from ampx.core import events as ev
from ampx.github.ci import CiWatcher, PollSchedule, poll_interval
from ampx.github.budget import RequestBudget
from ampx.github.client import Backoff
from ampx.github.errors import GitHubNotFound, RetryLater
from ampx.github.excerpt import EXCERPT_LIMIT
from ampx.core.repo import RepoRef

REPO = RepoRef("acme", "widgets")
PY = sys.executable

RUNS = "GET /repos/{owner}/{repo}/actions/runs"

FAILING_TEST = """\
from widgets import total


def test_total_adds():
    assert total([1, 2]) == 3


def test_total_with_tax():
    assert total([2.5, 12.0]) * 1.2 == 17.41
"""

PLANTED = "ghs_" + "Zq3" * 12  # shaped like an installation token


def red_repo_files(sandbox) -> dict[str, str]:
    return {
        ".github/workflows/lint.yml": sandbox.workflow("Lint", ["echo linting", "true"], job="lint"),
        ".github/workflows/test.yml": sandbox.workflow(
            "Tests",
            [f"echo using token {PLANTED}; PYTHONPATH=src {PY} -m pytest -q -p no:cacheprovider tests"],
            job="pytest",
        ),
        "tests/test_widgets.py": FAILING_TEST,
    }


def test_green_first_time(sandbox) -> None:
    svc = sandbox.service()
    sha = sandbox.push("amp/green", {
        ".github/workflows/ci.yml": sandbox.workflow("CI", ["echo ok"]),
        ".github/workflows/build.yml": sandbox.workflow("Build", ["echo built"], job="build"),
    })
    obs = sandbox.wait_ci(lambda: svc.poll_ci(REPO, sha))
    assert obs.state == "green"
    assert len(obs.runs) == 2 and all(r.conclusion == "success" for r in obs.runs)
    assert obs.run_id == obs.runs[0].id and obs.run_url and obs.run_url.startswith(sandbox.emu.url)
    assert obs.excerpt is None
    assert obs.to_event(sha) == ev.CiGreen(sha, obs.run_id, obs.run_url)


def test_one_of_two_workflows_failing_is_red_with_excerpt(sandbox) -> None:
    svc = sandbox.service()
    sha = sandbox.push("amp/red", red_repo_files(sandbox))
    assert sandbox.wait_ci(lambda: svc.poll_ci(REPO, sha)).state == "red"
    sandbox.emu.ci.wait_idle()  # red shows as soon as one run fails; let the other finish
    obs = svc.poll_ci(REPO, sha)
    assert obs.state == "red"
    red = [r for r in obs.runs if r.conclusion == "failure"]
    assert [r.name for r in red] == ["Tests"]
    assert obs.run_id == red[0].id and obs.run_url == red[0].html_url
    assert obs.failed_jobs == ("pytest",) and "lint" in obs.passed_jobs
    text = obs.excerpt
    assert text is not None and len(text) <= EXCERPT_LIMIT
    assert text.startswith("== job pytest (failed) ==")
    assert "assert (14.5 * 1.2) == 17.41" in text or "AssertionError" in text or "assert 17.4 == 17.41" in text
    assert "FAILED tests/test_widgets.py::test_total_with_tax" in text
    assert "1 failed, 1 passed" in text
    assert text.rstrip().endswith("Passed: lint")
    assert "\x1b" not in text and not any(l[:4].isdigit() and "T" in l[:12] for l in text.splitlines())
    # the planted token and the real one never reach the excerpt
    assert PLANTED not in text and "using token ***" in text
    assert svc.token_for(REPO) not in text
    assert obs.signature and "FAILED tests/test_widgets.py::test_total_with_tax" in obs.signature
    assert "Warning" not in obs.signature
    assert obs.rerunnable
    event = obs.to_event(sha)
    assert isinstance(event, ev.CiRed) and event.excerpt == text and event.run_id == obs.run_id


def test_flaky_job_green_after_rerun(sandbox) -> None:
    svc = sandbox.service()
    flaky = 'if [ "$GITHUB_RUN_ATTEMPT" -lt 2 ]; then echo "Error: flaky network"; exit 1; fi; echo fine'
    sha = sandbox.push("amp/flaky", {
        ".github/workflows/ci.yml": sandbox.workflow("CI", [flaky]),
        ".github/workflows/lint.yml": sandbox.workflow("Lint", ["true"], job="lint"),
    })
    obs = sandbox.wait_ci(lambda: svc.poll_ci(REPO, sha))
    assert obs.state == "red" and obs.rerunnable
    assert "Error: flaky network" in (obs.excerpt or "")
    sandbox.emu.ci.pause()  # keep the new attempt queued so "pending" is observable
    svc.rerun_failed_jobs(REPO, obs.run_id)
    # right after the re-run request the run must not look red any more
    assert svc.poll_ci(REPO, sha).state == "pending"
    sandbox.emu.ci.resume()
    obs2 = sandbox.wait_ci(lambda: svc.poll_ci(REPO, sha))
    assert obs2.state == "green"
    assert {r.run_attempt for r in obs2.runs if r.id == obs.run_id} == {2}


def test_rerun_requested_but_not_yet_visible_is_pending() -> None:
    """GitHub may still list the old, failed attempt for a moment after a re-run request."""
    from ampx.github.auth import TokenAuth
    from ampx.github.ci import RunInfo

    now = [100.0]
    watcher = CiWatcher(TokenAuth("ghp_unused_token_value"), "http://127.0.0.1:9/api/v3", clock=lambda: now[0])
    failed = RunInfo(7, "CI", 1, "completed", "failure", "http://x/runs/7", 1)
    watcher._reruns[(REPO.full_name.lower(), 7)] = (1, now[0])
    assert watcher._observe(REPO, [failed]).state == "pending"
    rerun_green = RunInfo(7, "CI", 1, "completed", "success", "http://x/runs/7", 2)
    assert watcher._observe(REPO, [rerun_green]).state == "green"  # new attempt seen: forgotten
    assert not watcher._reruns


def test_no_run_is_none(sandbox) -> None:
    svc = sandbox.service()
    sandbox.emu.ci.hold(REPO.full_name)
    sha = sandbox.push("amp/held", {".github/workflows/ci.yml": sandbox.workflow("CI", ["true"])})
    obs = svc.poll_ci(REPO, sha)
    assert obs.state == "none" and obs.runs == () and obs.run_id is None
    assert obs.to_event(sha) is None


def test_pending_while_running(sandbox) -> None:
    svc = sandbox.service()
    sandbox.emu.ci.pause()
    sha = sandbox.push("amp/queued", {".github/workflows/ci.yml": sandbox.workflow("CI", ["true"])})
    obs = svc.poll_ci(REPO, sha)
    assert obs.state == "pending" and obs.run_id is not None
    assert obs.to_event(sha) == ev.CiPending(sha, obs.run_id, obs.run_url)
    sandbox.emu.ci.resume()
    assert sandbox.wait_ci(lambda: svc.poll_ci(REPO, sha)).state == "green"


def test_unchanged_answer_is_a_304(sandbox) -> None:
    svc = sandbox.service()
    emu = sandbox.emu
    sha = sandbox.push("amp/etag", {".github/workflows/ci.yml": sandbox.workflow("CI", ["true"])})
    first = sandbox.wait_ci(lambda: svc.poll_ci(REPO, sha))
    before = emu.stats[RUNS]
    ours = svc.ci.stats.not_modified
    again = svc.poll_ci(REPO, sha)
    after = emu.stats[RUNS]
    assert again == first
    assert after.requests == before.requests + 1
    assert after.not_modified == before.not_modified + 1
    assert svc.ci.stats.not_modified == ours + 1


def test_red_logs_fetched_once_while_nothing_changes(sandbox) -> None:
    svc = sandbox.service()
    sha = sandbox.push("amp/red-once", red_repo_files(sandbox))
    sandbox.wait_ci(lambda: svc.poll_ci(REPO, sha))
    sandbox.emu.ci.wait_idle()
    first = svc.poll_ci(REPO, sha)
    logs = sandbox.emu.stats["GET /repos/{owner}/{repo}/actions/jobs/{job_id}/logs"].requests
    assert logs in (1, 2)  # 2 when the lint run finished after the first red observation
    for _ in range(3):
        assert svc.poll_ci(REPO, sha) == first
    assert sandbox.emu.stats["GET /repos/{owner}/{repo}/actions/jobs/{job_id}/logs"].requests == logs


def test_502_then_secondary_rate_limit_then_success(sandbox) -> None:
    now = [time.time()]  # the budget's clock, moved on past each wait GitHub asked for
    svc = sandbox.service(backoff=Backoff(base=2.0, cap=30.0),
                          budget=RequestBudget(clock=lambda: now[0]))
    emu = sandbox.emu
    sha = sandbox.push("amp/faults", {".github/workflows/ci.yml": sandbox.workflow("CI", ["true"])})
    sandbox.wait_ci(lambda: svc.poll_ci(REPO, sha))

    emu.faults.fail_next(2, 502, path=r"/actions/runs$")
    with pytest.raises(RetryLater) as first:
        svc.poll_ci(REPO, sha)
    assert 1.0 <= first.value.seconds <= 2.0 and first.value.status == 502
    with pytest.raises(RetryLater) as second:
        svc.poll_ci(REPO, sha)
    assert 2.0 <= second.value.seconds <= 4.0  # exponential

    emu.faults.secondary_rate_limit(1, retry_after=7, path=r"/actions/runs$")
    with pytest.raises(RetryLater) as limited:
        svc.poll_ci(REPO, sha)
    assert limited.value.seconds == 7 and "rate limit" in limited.value.reason
    with pytest.raises(RetryLater) as held:  # honoured: nothing is sent before the 7 s are up
        svc.poll_ci(REPO, sha)
    assert "budget" in held.value.reason
    now[0] += 7.5

    emu.faults.primary_rate_limit(1, reset_in=120, path=r"/actions/runs$")
    with pytest.raises(RetryLater) as primary:
        svc.poll_ci(REPO, sha)
    assert 115 <= primary.value.seconds <= 122
    now[0] += 125

    assert svc.poll_ci(REPO, sha).state == "green"
    # after a success the back-off starts again from the bottom
    emu.faults.fail_next(1, 503, path=r"/actions/runs$")
    with pytest.raises(RetryLater) as again:
        svc.poll_ci(REPO, sha)
    assert again.value.seconds <= 2.0


def test_connection_error_is_retry_later(sandbox) -> None:
    auth = sandbox.auth()
    auth.token_for(REPO)
    watcher = CiWatcher(auth, "http://127.0.0.1:9/api/v3", schedule=PollSchedule())
    with pytest.raises(RetryLater) as exc:
        watcher.poll(REPO, "0" * 40)
    assert exc.value.seconds > 0 and "cannot reach GitHub" in exc.value.reason


def test_missing_repository_is_permanent(github_emulator) -> None:
    from ampx.github.auth import TokenAuth

    pat = "ghp_" + "Qw9" * 12
    github_emulator.add_personal_token(pat)
    watcher = CiWatcher(TokenAuth(pat), github_emulator.api_url)
    with pytest.raises(GitHubNotFound, match="repository acme/nope not found"):
        watcher.poll(RepoRef("acme", "nope"), "0" * 40)


@pytest.mark.parametrize(
    "since,expected",
    [(0, 5), (60, 5), (119, 5), (120, 15), (599, 15), (600, 60), (3600, 60)],
)
def test_poll_interval_schedule(since: float, expected: float) -> None:
    assert PollSchedule().interval(since) == expected


def test_poll_interval_from_env(monkeypatch) -> None:
    monkeypatch.setenv("AMPX_CI_POLL_SECONDS", "2")
    monkeypatch.setenv("AMPX_CI_POLL_MAX_SECONDS", "30")
    assert [poll_interval(s) for s in (0, 300, 900)] == [2, 15, 30]
    monkeypatch.setenv("AMPX_CI_POLL_MAX_SECONDS", "10")
    assert [poll_interval(s) for s in (0, 300, 900)] == [2, 10, 10]
    monkeypatch.setenv("AMPX_CI_POLL_SECONDS", "x")
    with pytest.raises(ValueError, match="AMPX_CI_POLL_SECONDS"):
        poll_interval(0)


# ----------------------------------------------------------------------------- classification
# Several workflow runs for one head_sha. Green only when every run completed as success, neutral
# or skipped; red as soon as any run completed as failure, timed_out or cancelled (even while
# others still run: the watcher decides early); pending while any run is queued or in progress.


def test_skipped_job_next_to_a_passing_workflow_is_green(sandbox) -> None:
    """A workflow whose only job is skipped by its `if:` does not hold the commit back."""
    svc = sandbox.service()
    skipped = sandbox.workflow("Deploy", ["echo deploying; exit 1"], job="deploy").replace(
        "    runs-on:", "    if: github.ref == 'refs/heads/main'\n    runs-on:")
    sha = sandbox.push("amp/skipped", {
        ".github/workflows/ci.yml": sandbox.workflow("CI", ["true"]),
        ".github/workflows/deploy.yml": skipped,
    })
    obs = sandbox.wait_ci(lambda: svc.poll_ci(REPO, sha))
    sandbox.emu.ci.wait_idle()
    obs = svc.poll_ci(REPO, sha)
    assert obs.state == "green", obs
    assert sorted(r.name for r in obs.runs) == ["CI", "Deploy"]
    deploy = next(r for r in sandbox.emu.ci.runs(REPO.full_name) if r.workflow.name == "Deploy")
    assert [j.conclusion for j in deploy.latest_jobs()] == ["skipped"]  # the job really was skipped


def test_job_over_its_time_limit_is_red_with_the_timeout_in_the_excerpt(sandbox) -> None:
    """`timeout-minutes` kills the job in the runner stand-in; the commit is red and the excerpt
    says why, while the other workflow of the same commit passed."""
    svc = sandbox.service()
    slow = sandbox.workflow("Slow", ["echo starting the slow step; sleep 30"], job="slow").replace(
        "    runs-on:", "    timeout-minutes: 0.02\n    runs-on:")  # 1.2 s
    sha = sandbox.push("amp/timeout", {
        ".github/workflows/ci.yml": sandbox.workflow("CI", ["true"]),
        ".github/workflows/slow.yml": slow,
    })
    sandbox.wait_ci(lambda: svc.poll_ci(REPO, sha))
    sandbox.emu.ci.wait_idle()
    obs = svc.poll_ci(REPO, sha)
    assert obs.state == "red"
    red = [r for r in obs.runs if r.red]
    assert [r.name for r in red] == ["Slow"] and obs.run_id == red[0].id
    assert obs.failed_jobs == ("slow",) and obs.passed_jobs == ("test",)
    assert "exceeded the maximum execution time" in (obs.excerpt or "")
    assert isinstance(obs.to_event(sha), ev.CiRed)


def _set_run(run, state: str) -> None:
    """Put a completed emulator run (and its jobs) into ``state``: a conclusion, or
    queued/in_progress. The runner stand-in concludes runs only as success/failure (cancelled
    on shutdown), so the rarer conclusions GitHub reports are set on its stored state."""
    for job in run.latest_jobs():
        if state in ("queued", "in_progress"):
            job.status, job.conclusion = state, None
        else:
            job.status, job.conclusion = "completed", state
    if state in ("queued", "in_progress"):
        run.status, run.conclusion = state, None
    else:
        run.status, run.conclusion = "completed", state


@pytest.mark.parametrize("states,expected", [
    (("success", "neutral", "skipped"), "green"),
    (("skipped", "skipped", "neutral"), "green"),
    (("success", "neutral", "failure"), "red"),
    (("success", "timed_out", "skipped"), "red"),
    (("cancelled", "success", "neutral"), "red"),
    (("success", "in_progress", "neutral"), "pending"),
    (("queued", "success", "skipped"), "pending"),
    (("queued", "in_progress", "success"), "pending"),
    (("failure", "in_progress", "success"), "red"),  # red is reported without waiting for the rest
], ids=lambda v: "+".join(v) if isinstance(v, tuple) else v)
def test_conclusions_of_several_runs_for_one_commit(sandbox, states, expected) -> None:
    svc = sandbox.service()
    names = ("Alpha", "Beta", "Gamma")
    sha = sandbox.push("amp/mixed", {
        f".github/workflows/{n.lower()}.yml": sandbox.workflow(n, ["echo fine"]) for n in names})
    assert sandbox.wait_ci(lambda: svc.poll_ci(REPO, sha)).state == "green"
    sandbox.emu.ci.wait_idle()
    runs = {r.workflow.name: r for r in sandbox.emu.ci.runs(REPO.full_name) if r.head_sha == sha}
    assert sorted(runs) == list(names)
    with sandbox.emu.store.lock:
        for name, state in zip(names, states):
            _set_run(runs[name], state)
    obs = svc.poll_ci(REPO, sha)
    assert obs.state == expected, (states, obs)
    assert len(obs.runs) == 3
    seen = {r.name: (r.status if r.status != "completed" else r.conclusion) for r in obs.runs}
    assert seen == dict(zip(names, states))
    event = obs.to_event(sha)
    if expected == "green":
        assert event == ev.CiGreen(sha, obs.run_id, obs.run_url)
    elif expected == "pending":
        waiting = next(r for r in obs.runs if not r.completed)
        assert obs.run_id == waiting.id
        assert event == ev.CiPending(sha, obs.run_id, obs.run_url)
    else:
        red_name, red_conclusion = next(
            (n, s) for n, s in zip(names, states) if s in ("failure", "timed_out", "cancelled"))
        assert obs.run_id == runs[red_name].id
        assert isinstance(event, ev.CiRed) and event.run_id == runs[red_name].id
        # re-running can help a failed or timed-out job, not a cancelled one
        assert obs.rerunnable == (red_conclusion in ("failure", "timed_out"))
        assert obs.excerpt and "== job test (" in obs.excerpt


@pytest.mark.parametrize("conclusion,green,red", [
    ("success", True, False), ("neutral", True, False), ("skipped", True, False),
    ("failure", False, True), ("timed_out", False, True), ("cancelled", False, True),
    ("startup_failure", False, True), ("action_required", False, True), ("stale", False, True),
])
def test_run_conclusion_classification(conclusion, green, red) -> None:
    from ampx.github.ci import RunInfo

    done = RunInfo(1, "CI", 1, "completed", conclusion, None, 1)
    assert (done.green, done.red) == (green, red)
    for status in ("queued", "in_progress", "waiting", "requested"):
        running = RunInfo(1, "CI", 1, status, None, None, 1)
        assert not running.green and not running.red
