"""Assertions shared by the end-to-end tests of both runtimes."""

from __future__ import annotations

import subprocess
import time

from ampx.cli.backend import owner_name
from ampx.core.ids import new_task_id
from ampx.core.models import AttemptOutcome
from ampx.sandbox.demo import Run, _spec, drive
from ampx.sandbox.world import PR_ONLY_REPO


def start(backend, scenario) -> Run:
    """Create a scenario's task through a CLI backend (either runtime)."""
    tid = new_task_id()
    backend.create(tid, _spec(scenario, tid), owner_name())
    return Run(scenario, tid, time.monotonic())


def wait_all(backend, runs, timeout=180):
    """Play the developer's part of each story until every task is finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        drive(backend, runs)
        if all(r.done() for r in runs):
            return
        time.sleep(0.3)
    raise AssertionError("timed out: " + ", ".join(
        f"{r.scenario.key}={r.task.status.phase}:{r.task.status.summary}" for r in runs))


def branch_commits(world, branch: str, repo: str = "demo/calculator") -> int:
    """Commits on the task branch that are not on main: one per pushed attempt."""
    git_dir = world.emulator.git_path(repo)
    out = subprocess.run(["git", "--git-dir", str(git_dir), "rev-list", "--count", f"main..{branch}"],
                         capture_output=True, text=True)
    return int(out.stdout.strip()) if out.returncode == 0 else 0


def assert_story(world, run, history_db=None):
    """Final phase and attempts, PR state in the stand-in, nothing pushed or opened twice."""
    sc, task = run.scenario, run.task
    st = task.status
    assert st.phase.value == sc.expect_phase, (sc.key, st.summary)
    assert st.attempts == sc.expect_attempts, (sc.key, st.summary)
    prs = [p for p in world.emulator.pulls(sc.repo) if p.head_ref == task.spec.branch]
    if sc.expect_pr is None:
        assert prs == [], sc.key
        assert st.pr_url is None
    else:
        assert len(prs) == 1, f"{sc.key}: {len(prs)} pull requests for one branch"
        assert (prs[0].merged_at is not None) == (sc.expect_pr == "merged")
        assert st.pr_state == sc.expect_pr
    pushed = [r for r in st.history if r.outcome == AttemptOutcome.PUSHED]
    if sc.expect_pr != "merged":  # a merged task's branch is deleted
        assert branch_commits(world, task.spec.branch, sc.repo) == len(pushed), sc.key
    if sc.repo == PR_ONLY_REPO:
        assert_pull_request_story(world, run)
    if history_db is not None:
        row = history_db.get_task(task.name)
        assert row["status"] == st.phase.value and row["attempts"] == st.attempts
        rows = history_db.attempts(task.name)
        assert [r["number"] for r in rows] == list(range(1, st.attempts + 1))
        assert [r["commit_sha"] for r in rows] == [r.commit for r in st.history]


def assert_pull_request_story(world, run):
    """CI that runs on pull requests only, reached without editing the workflows: a draft PR
    opened after the first push, each attempt's runs on `pull_request` for its exact head, and
    the draft marked ready for review (once) when green."""
    sc, st = run.scenario, run.task.status
    runs = [r for r in world.emulator.ci.runs(sc.repo) if r.head_branch == run.task.spec.branch]
    assert runs and all(r.event == "pull_request" for r in runs), [(r.event, r.workflow.path) for r in runs]
    tests = [r for r in runs if r.workflow.path == ".github/workflows/tests.yml"]
    commits = [r.commit for r in st.history]
    assert sorted(r.head_sha for r in tests) == sorted(commits), "one PR run per pushed commit"
    for rec in st.history:
        assert rec.ci_run_id in {r.id for r in tests if r.head_sha == rec.commit}
    pr = next(p for p in world.emulator.pulls(sc.repo) if p.head_ref == run.task.spec.branch)
    ready = [r for r in runs if r.workflow.path == ".github/workflows/ready.yml"]
    if sc.expect_phase == "success":
        assert pr.draft is False and len(ready) == 1 and ready[0].head_sha == commits[-1]
        assert "ready for review" in st.summary
        assert f"| {len(commits)} | `{commits[-1][:12]}` | [success]" in (pr.body or "")
    else:
        assert pr.draft is True and ready == []
    workflows = world.emulator.git_path(sc.repo)
    out = subprocess.run(["git", "--git-dir", str(workflows), "diff", "--name-only", "main",
                          st.history[-1].commit, "--", ".github"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "", "the workflows were not edited"
