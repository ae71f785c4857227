"""GitHub behaviours end to end through the local runtime: flaky re-runs, transient API errors
while waiting on CI, and a refused merge."""

from __future__ import annotations

import time

import pytest

from ampx.cli.backend import now_iso, owner_name
from ampx.core.ids import default_branch, new_task_id
from ampx.core.models import AmpTaskSpec, Phase
from ampx.local.backend import LocalBackend
from ampx.local.supervisor import stop_background
from ampx.sandbox.scenarios import calc_with, write
from ampx.sandbox.world import DEMO_REPO

pytestmark = pytest.mark.e2e

FLAKY_TEST = (
    "import os\nimport unittest\n\n\nclass FlakyTest(unittest.TestCase):\n"
    "    def test_network(self):\n"
    "        self.assertNotEqual(os.environ.get('GITHUB_RUN_ATTEMPT'), '1', 'connection reset')\n"
)
GOOD = write("calc.py", calc_with("def multiply(a, b):\n    return a * b"))


@pytest.fixture
def backend(world):
    b = LocalBackend.from_env(ensure_supervisor=True)
    yield b
    stop_background()


def create(backend, prompt: str, title: str, **kw):
    tid = new_task_id()
    spec = AmpTaskSpec(repo=DEMO_REPO, prompt=prompt, title=title, **kw)
    spec = spec.model_copy(update={"branch": default_branch(title, tid)})
    backend.create(tid, spec, owner_name())
    return tid


def wait(backend, tid, pred, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = backend.get(tid)
        if pred(t):
            return t
        time.sleep(0.3)
    t = backend.get(tid)
    raise AssertionError(f"timed out in {t.status.phase}: {t.status.summary}")


def test_flaky_job_green_on_rerun_costs_no_attempt(world, backend):
    tid = create(backend, "Add a network check\n" + write("test_flaky.py", FLAKY_TEST), "Flaky")
    t = wait(backend, tid, lambda t: t.status.phase == Phase.SUCCESS)
    assert t.status.attempts == 1
    assert t.status.history[0].flaky is True
    assert t.status.history[0].ci_conclusion == "success"
    runs = [r for r in world.emulator.ci.runs(DEMO_REPO) if r.head_sha == t.status.history[0].commit]
    assert len(runs) == 1 and runs[0].run_attempt == 2


def test_transient_github_errors_while_waiting_do_not_fail_the_task(world, backend):
    world.emulator.ci.pause()  # runs stay queued while the API misbehaves
    tid = create(backend, "Add multiply\n" + GOOD, "Faults")
    wait(backend, tid, lambda t: t.status.stage and t.status.stage.value == "ci")
    world.emulator.faults.fail_next(3, status=502, path=r"/actions/runs")
    world.emulator.faults.secondary_rate_limit(2, retry_after=1, path=r"/actions/runs")
    time.sleep(3)
    world.emulator.ci.resume()
    t = wait(backend, tid, lambda t: not t.status.phase.active)
    assert t.status.phase == Phase.SUCCESS and t.status.attempts == 1
    assert world.emulator.faults.pending == 0, "every injected fault was hit by a CI poll"
    statuses = world.emulator.stats.get("GET", "/repos/{owner}/{repo}/actions/runs").by_status
    assert statuses.get(502) == 3 and statuses.get(403) == 2


def test_refused_merge_leaves_a_clear_summary_and_changes_nothing_else(world, backend):
    tid = create(backend, "Add multiply\n" + GOOD, "Refused")
    t = wait(backend, tid, lambda t: t.status.phase == Phase.SUCCESS)
    world.emulator.set_mergeable(DEMO_REPO, t.status.pr_number, False)
    before = t.status.model_copy()
    backend.update_spec(t, lambda x: x.spec.model_copy(update={"merge_requested_at": now_iso()}))
    t = wait(backend, tid, lambda t: "refused" in (t.status.summary or ""))
    assert t.status.summary.startswith(f"merge of PR #{before.pr_number} refused: ")
    assert "not mergeable" in t.status.summary.lower()
    assert t.status.phase == Phase.SUCCESS and t.status.pr_state == "open"
    assert t.status.history == before.history and t.status.pr_url == before.pr_url
    pr = next(p for p in world.emulator.pulls(DEMO_REPO) if p.number == before.pr_number)
    assert pr.merged_at is None


def test_red_with_a_new_error_each_attempt_uses_every_attempt(world, backend):
    """Each attempt fails CI differently (wrong result, then a missing function, then an
    exception), so the same-error breaker never fires: the task spends all maxAttempts attempts,
    then stops in needs_review without a pull request."""
    from ampx.core.models import AttemptOutcome
    from ampx.sandbox.scenarios import unit_test_file

    from e2e.checks import branch_commits

    def rule(when: str, directive: str) -> str:
        return f'@fake when "{when}" {directive.removeprefix("@fake ")}'

    prompt = "\n".join([
        "Add power to calc.py, with a unit test.",
        write("calc.py", calc_with("def power(a, b):\n    return a * b")),
        write("test_power.py", unit_test_file("power", "power(2, 3)", "8")),
        # attempt 2 (its prompt carries attempt 1's assertion): power disappears -> ImportError
        rule("AssertionError: 6 != 8", write("calc.py", calc_with())),
        # attempt 3 (its prompt carries the ImportError): power raises -> ValueError
        rule("cannot import name 'power'", write("calc.py", calc_with(
            "def power(a, b):\n    raise ValueError('negative exponents are not supported yet')"))),
    ])
    max_attempts = 3
    tid = create(backend, prompt, "Never converges", max_attempts=max_attempts)
    t = wait(backend, tid, lambda t: t.status.phase is not None and not t.status.phase.active,
             timeout=120)
    st = t.status
    assert st.phase == Phase.NEEDS_REVIEW, st.summary
    assert st.attempts == max_attempts, st.summary
    assert st.summary.startswith(f"CI still red after {max_attempts} attempt(s)"), st.summary
    assert "stopped early" not in st.summary
    # three different failures reached the history, in the order the agent caused them
    markers = ["AssertionError: 6 != 8", "cannot import name 'power'",
               "ValueError: negative exponents are not supported yet"]
    assert [r.ci_conclusion for r in st.history] == ["failure"] * max_attempts
    for rec, marker in zip(st.history, markers):
        assert marker in (rec.excerpt or ""), (rec.number, rec.excerpt)
    assert len({r.signature for r in st.history}) == max_attempts
    assert all(r.outcome == AttemptOutcome.PUSHED for r in st.history)
    assert branch_commits(world, t.spec.branch) == max_attempts
    assert [p for p in world.emulator.pulls(DEMO_REPO) if p.head_ref == t.spec.branch] == []
    assert st.pr_url is None and st.pr_number is None


def test_commit_without_any_workflow_run_ends_in_error_after_the_grace_period(world, backend):
    """Actions never starts a run for the pushed commit (the stand-in holds the repository, as
    if Actions were down or no workflow matched): after limits.ciGraceMinutes (1, the minimum)
    the task ends in error, naming the commit and the wait."""
    from ampx.core.models import Limits

    world.emulator.ci.hold(DEMO_REPO)
    tid = create(backend, "Add multiply\n" + GOOD, "No CI", limits=Limits(ci_grace_minutes=1))
    t = wait(backend, tid, lambda t: t.status.phase is not None and not t.status.phase.active,
             timeout=110)
    st = t.status
    assert st.phase == Phase.ERROR, st.summary
    assert st.attempts == 1 and st.history[0].ci_conclusion == "missing"
    sha = st.history[0].commit
    assert sha and world.emulator.branches(DEMO_REPO).get(t.spec.branch) == sha  # it was pushed
    assert [r for r in world.emulator.ci.runs(DEMO_REPO) if r.head_sha == sha] == []
    assert st.summary == (f"no GitHub Actions run appeared for {sha[:7]} in 1 min — do your "
                          "workflows run on push to `amp/*` branches?"), st.summary
    assert st.pr_url is None


def test_a_forged_pr_number_cannot_merge_another_pull_request(world, backend):
    """Issue 9, item 5. Whoever can write a task's status (a worker's credential, before the
    isolation work) points `prNumber` and the last commit at another open pull request; the
    owner's `ampx merge` then must not merge it. Control: the merge call the engine made before
    the check, with the same forged values, merges the other pull request."""
    from ampx.github.service import GitHubService

    victim = create(backend, "Add multiply\n" + GOOD, "Victim")
    other = create(backend, "Add a note\n" + write("NOTE.md", "attacker's change\n"), "Attacker")
    v = wait(backend, victim, lambda t: t.status.phase == Phase.SUCCESS)
    o = wait(backend, other, lambda t: t.status.phase == Phase.SUCCESS)
    forged = v.status.model_copy(deep=True)
    forged.pr_number = o.status.pr_number
    forged.history[-1].commit = o.status.history[-1].commit
    backend.store.save_status(v, forged)
    t = backend.get(victim)
    backend.update_spec(t, lambda x: x.spec.model_copy(update={"merge_requested_at": now_iso()}))
    t = wait(backend, victim, lambda t: "refused" in (t.status.summary or ""))
    assert f"names PR #{o.status.pr_number}" in t.status.summary
    assert f"is #{v.status.pr_number}" in t.status.summary
    assert all(p.merged_at is None for p in world.emulator.pulls(DEMO_REPO)), "nothing merged"
    assert t.status.pr_state == "open"
    # control: without the check (the number and commit taken from the status) it merges
    svc = GitHubService.from_settings()
    result = svc.merge_pr(DEMO_REPO, o.status.pr_number, "squash", o.status.history[-1].commit)
    assert result.merged
    assert next(p for p in world.emulator.pulls(DEMO_REPO) if p.number == o.status.pr_number).merged_at


def test_pull_request_only_ci_with_ci_trigger_push_ends_at_once_naming_the_workflows(world, backend):
    """`--ci-trigger push` on a repository whose CI runs on pull requests only: the task ends in
    error right after the push (not after the 10-minute grace) and says what it read."""
    from ampx.core.models import CiSpec, CiTrigger
    from ampx.sandbox.world import PR_ONLY_REPO

    tid = new_task_id()
    spec = AmpTaskSpec(repo=PR_ONLY_REPO, prompt="Add multiply\n" + GOOD, title="Push only",
                       ci=CiSpec(trigger=CiTrigger.PUSH))
    backend.create(tid, spec.model_copy(update={"branch": default_branch("Push only", tid)}),
                   owner_name())
    started = time.monotonic()
    t = wait(backend, tid, lambda t: t.status.phase == Phase.ERROR)
    assert time.monotonic() - started < 60
    assert "no workflow runs on push to amp/push-only-" in t.status.summary
    assert "on pull_request: tests.yml; use --ci-trigger auto" in t.status.summary
    assert "workflows read: ready.yml, tests.yml" in t.status.summary
    assert world.emulator.pulls(PR_ONLY_REPO) == []


def test_pull_request_only_ci_left_for_review_then_continued_on_the_same_draft(world, backend):
    """needs_review leaves the draft open with one comment summarising the attempts; `continue`
    reuses that draft, and green marks it ready for review."""
    from ampx.sandbox.scenarios import MODULO_BUG, MODULO_OK, unit_test_file
    from ampx.sandbox.world import PR_ONLY_REPO

    tid = new_task_id()
    prompt = ("Add modulo\n" + write("calc.py", calc_with(MODULO_BUG)) + "\n"
              + write("test_modulo.py", unit_test_file("modulo", "modulo(7, 3)", "1")))
    spec = AmpTaskSpec(repo=PR_ONLY_REPO, prompt=prompt, title="Review me", max_attempts=1)
    backend.create(tid, spec.model_copy(update={"branch": default_branch("Review me", tid)}),
                   owner_name())
    t = wait(backend, tid, lambda t: t.status.phase == Phase.NEEDS_REVIEW and t.status.pr_commented)
    pr = world.emulator.pulls(PR_ONLY_REPO)[0]
    assert pr.draft is True and pr.state == "open" and t.status.pr_state == "draft"
    comments = world.emulator.comments(PR_ONLY_REPO, pr.number)
    assert len(comments) == 1 and "CI still red after 1 attempt(s)" in comments[0]
    assert f"| 1 | `{t.status.history[0].commit[:12]}` | [failure]" in comments[0]
    from ampx.cli.backend import add_follow_up

    backend.update_spec(t, add_follow_up("modulo is a % b\n" + write("calc.py", calc_with(MODULO_OK)),
                                         owner_name()))
    t = wait(backend, tid, lambda t: t.status.phase == Phase.SUCCESS)
    prs = world.emulator.pulls(PR_ONLY_REPO)
    assert len(prs) == 1 and prs[0].number == pr.number and prs[0].draft is False
    assert t.status.pr_number == pr.number and "ready for review" in t.status.summary
    assert len(world.emulator.comments(PR_ONLY_REPO, pr.number)) == 1
