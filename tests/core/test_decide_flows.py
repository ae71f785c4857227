"""Whole task stories through the decision core: sequences of events, not single cells."""

from __future__ import annotations

from ampx.core import events as ev
from ampx.core.actions import MergePullRequest, RerunFailedJobs, StartAttempt, StopAttempt
from ampx.core.decide import decide, requested_events
from ampx.core.observe import resume_actions
from ampx.core.models import (
    AmpTaskSpec,
    AmpTaskStatus,
    AttemptOutcome,
    FollowUp,
    Phase,
    Policy,
    Stage,
)

NOW = "2026-11-25T10:00:00Z"


def mk(**kw) -> AmpTaskSpec:
    base = dict(repo="acme/api", prompt="Make the tests pass", branch="amp/make-tests-01abcd",
                policy=Policy(flaky_retry=False))
    base.update(kw)
    return AmpTaskSpec(**base)


def run(spec, status, *events):
    decisions = []
    for e in events:
        d = decide(spec, status, e, NOW)
        assert d.accepted, f"{e}: {d.reason}"
        status = d.status
        decisions.append(d)
    return status, decisions


def sha(n: int) -> str:
    return f"{n:x}" * 40


def push_and_fail(n: int, excerpt: str, signature: str):
    return [
        ev.AttemptStarted(n),
        ev.AttemptPushed(n, sha(n), thread_id="T-abc"),
        ev.CiRed(sha(n), 100 + n, f"http://gh/runs/{100 + n}", excerpt, signature),
    ]


def test_red_then_green_carries_the_excerpt_into_the_next_prompt():
    spec = mk()
    st, _ = run(spec, AmpTaskStatus(), ev.Created(),
                *push_and_fail(1, "FAILED test_calc.py::test_add - AssertionError: 3 != 4", "s1"))
    assert st.phase == Phase.RETRYING and st.attempts == 2
    prompt = st.history[-1].prompt
    assert prompt.startswith(f"CI failed on {sha(1)[:12]} (http://gh/runs/101)")
    assert "AssertionError: 3 != 4" in prompt and "Fix and retry." in prompt
    assert st.history[0].excerpt.startswith("FAILED") and st.history[0].ci_conclusion == "failure"
    st, ds = run(spec, st, ev.AttemptStarted(2), ev.AttemptPushed(2, sha(2)),
                 ev.CiGreen(sha(2), 202, "http://gh/runs/202"), ev.PrOpened("http://gh/pr/1", 1))
    assert st.phase == Phase.SUCCESS and st.pr_url == "http://gh/pr/1"
    assert st.ci_run_id == 202 and st.thread_id == "T-abc"
    assert "PR #1 opened" in st.summary


def test_never_green_gives_up_to_needs_review_after_max_attempts():
    spec = mk(max_attempts=3)
    evs = [ev.Created()]
    for n in (1, 2, 3):
        evs += push_and_fail(n, f"error {n}", f"sig{n}")
    st, ds = run(spec, AmpTaskStatus(), *evs)
    assert st.phase == Phase.NEEDS_REVIEW and st.stage == Stage.IDLE
    assert st.attempts == 3
    assert "CI still red after 3 attempt(s)" in st.summary and "runs/103" in st.summary
    assert ds[-1].actions == ()


def test_same_error_twice_stops_early():
    spec = mk(max_attempts=5)
    st, _ = run(spec, AmpTaskStatus(), ev.Created(),
                *push_and_fail(1, "E1", "AssertionError: 3 != 4"),
                *push_and_fail(2, "E1 again", "AssertionError: 3 != 4"))
    assert st.phase == Phase.NEEDS_REVIEW and st.attempts == 2
    assert "same error" in st.summary and "AssertionError" in st.summary


def test_breaker_summary_names_the_error_not_the_job_header():
    spec = mk(max_attempts=5)
    sig = "== job unit (failed) ==\nFAIL: test_divide\nAssertionError: <n> != <n>"
    excerpt = ("== job unit (failed) ==\nFAIL: test_divide\nAssertionError: 18 != 2\n"
               "##[error]Process completed with exit code 1.")
    st, _ = run(spec, AmpTaskStatus(), ev.Created(), *push_and_fail(1, excerpt, sig),
                *push_and_fail(2, excerpt, sig))
    assert st.summary.endswith("(AssertionError: 18 != 2)")


def test_breaker_can_be_switched_off():
    spec = mk(max_attempts=5, policy=Policy(flaky_retry=False, stop_on_repeated_failure=False))
    st, _ = run(spec, AmpTaskStatus(), ev.Created(), *push_and_fail(1, "E", "same"),
                *push_and_fail(2, "E", "same"))
    assert st.phase == Phase.RETRYING and st.attempts == 3


def test_flaky_guard_reruns_once_then_counts_green_as_flaky():
    spec = mk(policy=Policy(flaky_retry=True))
    st, ds = run(spec, AmpTaskStatus(), ev.Created(), ev.AttemptStarted(1),
                 ev.AttemptPushed(1, sha(1)), ev.CiRed(sha(1), 5, "u", "boom", "s"))
    assert ds[-1].actions == (RerunFailedJobs(5),)
    assert st.phase == Phase.RUNNING and st.stage == Stage.CI and st.attempts == 1
    st, ds = run(spec, st, ev.CiGreen(sha(1), 5, "u"))
    assert st.stage == Stage.PR and st.history[-1].flaky is True
    assert "flaky" in st.summary


def test_flaky_guard_red_again_spends_an_attempt():
    spec = mk(policy=Policy(flaky_retry=True))
    st, ds = run(spec, AmpTaskStatus(), ev.Created(), ev.AttemptStarted(1),
                 ev.AttemptPushed(1, sha(1)), ev.CiRed(sha(1), 5, "u", "boom", "s"),
                 ev.RerunStarted(5), ev.CiRed(sha(1), 5, "u", "boom", "s"))
    assert ds[-1].actions == (StartAttempt(2),)
    assert st.history[0].flaky is None and st.history[0].ci_conclusion == "failure"


def test_a_rerun_that_did_not_reach_github_is_repeated_before_red_counts():
    spec = mk(policy=Policy(flaky_retry=True))
    st, _ = run(spec, AmpTaskStatus(), ev.Created(), ev.AttemptStarted(1),
                ev.AttemptPushed(1, sha(1)), ev.CiRed(sha(1), 5, "u", "boom", "s"))
    # GitHub answered the re-run request with a 502: the status still asks for it
    assert resume_actions(spec, st) == [RerunFailedJobs(5)]
    d = decide(spec, st, ev.CiRed(sha(1), 5, "u", "boom", "s"), NOW)
    assert not d.accepted and "has not reached GitHub yet" in d.reason
    assert d.status.attempts == 1 and d.actions == ()
    st, _ = run(spec, st, ev.RerunStarted(5))
    assert resume_actions(spec, st) == []
    assert not decide(spec, st, ev.RerunStarted(5), NOW).accepted  # recorded once
    st, ds = run(spec, st, ev.CiRed(sha(1), 5, "u", "boom", "s"))
    assert ds[-1].actions == (StartAttempt(2),)


def test_a_rerun_refused_for_good_lets_the_next_red_count():
    spec = mk(policy=Policy(flaky_retry=True))
    st, _ = run(spec, AmpTaskStatus(), ev.Created(), ev.AttemptStarted(1),
                ev.AttemptPushed(1, sha(1)), ev.CiRed(sha(1), 5, "u", "boom", "s"),
                ev.ForgeFailed("rerun", "Resource not accessible by integration (403)"))
    assert resume_actions(spec, st) == [] and "could not re-run" in st.summary
    st, ds = run(spec, st, ev.CiRed(sha(1), 5, "u", "boom", "s"))
    assert ds[-1].actions == (StartAttempt(2),)


def test_tampering_attempt_goes_to_review_naming_files():
    spec = mk()
    st, _ = run(spec, AmpTaskStatus(), ev.Created(), ev.AttemptStarted(1),
                ev.AttemptFailed(1, AttemptOutcome.TAMPERED, "tamper guard",
                                 files=(".github/workflows/ci.yml", "tests/test_a.py")))
    assert st.phase == Phase.NEEDS_REVIEW
    assert ".github/workflows/ci.yml, tests/test_a.py" in st.summary


def test_config_error_is_an_error_not_a_retry():
    st, ds = run(mk(), AmpTaskStatus(), ev.Created(),
                 ev.AttemptFailed(1, AttemptOutcome.CONFIG_ERROR, "AMP_API_KEY is not set"))
    assert st.phase == Phase.ERROR and "AMP_API_KEY is not set" in st.summary
    assert ds[-1].actions == ()


def test_worker_failures_exhaust_the_budget():
    spec = mk(max_attempts=2)
    st, _ = run(spec, AmpTaskStatus(), ev.Created(),
                ev.AttemptFailed(1, AttemptOutcome.TIMEOUT, "time limit 60 min"))
    assert st.phase == Phase.RETRYING
    assert "did not finish: time limit 60 min" in st.history[-1].prompt
    st, _ = run(spec, st, ev.AttemptFailed(2, AttemptOutcome.TIMEOUT, "time limit 60 min"))
    assert st.phase == Phase.NEEDS_REVIEW and "no attempts left" in st.summary
    st2, _ = run(spec, AmpTaskStatus(), ev.Created(),
                 ev.AttemptFailed(1, AttemptOutcome.PUSH_REJECTED, "stale info"),
                 ev.AttemptFailed(2, AttemptOutcome.PUSH_REJECTED, "stale info"))
    assert st2.phase == Phase.ERROR


def test_continue_while_running_is_queued_then_used_with_a_fresh_budget():
    spec = mk(max_attempts=1)
    st, _ = run(spec, AmpTaskStatus(), ev.Created(), ev.AttemptStarted(1),
                ev.AttemptPushed(1, sha(1)))
    spec = spec.model_copy(update={"follow_ups": [FollowUp(message="Restore the skipped test")]})
    d = decide(spec, st, ev.Continue(), NOW)
    assert not d.accepted and "queued behind attempt 1" in d.reason
    assert requested_events(spec, st) == []  # an active task does not re-derive it
    st, ds = run(spec, st, ev.CiRed(sha(1), 9, "u", "boom", "s"))
    # max_attempts=1 would have ended here, but the follow-up brings a fresh budget
    assert st.phase == Phase.RETRYING and st.attempts == 2 and st.budget_start == 1
    assert "Restore the skipped test" in st.history[-1].prompt and "boom" in st.history[-1].prompt
    assert st.follow_ups_seen == 1


def test_continue_after_needs_review_starts_attempt_n_plus_1():
    spec = mk(max_attempts=1)
    st, _ = run(spec, AmpTaskStatus(), ev.Created(), *push_and_fail(1, "E", "s"))
    assert st.phase == Phase.NEEDS_REVIEW
    spec = spec.model_copy(update={"follow_ups": [FollowUp(message="try X")]})
    assert requested_events(spec, st) == [ev.Continue()]
    st, ds = run(spec, st, ev.Continue())
    assert ds[-1].actions == (StartAttempt(2),)
    assert st.phase == Phase.QUEUED and st.history[-1].prompt.endswith("- try X")
    assert requested_events(spec, st) == []


def test_continue_after_merge_is_refused_and_not_seen_again():
    spec = mk()
    st, _ = run(spec, AmpTaskStatus(), ev.Created(), ev.AttemptPushed(1, sha(1)),
                ev.CiGreen(sha(1)), ev.PrOpened("u", 3), ev.MergeRequested("m1"), ev.MergeDone())
    assert st.pr_state == "merged"
    spec = spec.model_copy(update={"follow_ups": [FollowUp(message="more")],
                                   "merge_requested_at": "m1"})
    d = decide(spec, st, ev.Continue(), NOW)
    assert not d.accepted and "already merged" in d.reason
    assert requested_events(spec, d.status) == []


def test_merge_refused_changes_only_the_summary():
    spec = mk()
    st, _ = run(spec, AmpTaskStatus(), ev.Created(), ev.AttemptPushed(1, sha(1)),
                ev.CiGreen(sha(1)), ev.PrOpened("u", 3))
    st2, ds = run(spec, st, ev.MergeRequested("m1"))
    assert ds[-1].actions == (MergePullRequest(3, spec.policy.merge_method, True, sha(1)),)
    st3, _ = run(spec, st2, ev.MergeRefused("Pull Request is not mergeable"))
    assert st3.pr_state == "open" and st3.phase == Phase.SUCCESS
    assert st3.summary == "merge of PR #3 refused: Pull Request is not mergeable"
    assert st3.history == st.history


def test_abort_stops_the_job_and_later_reports_are_stale():
    spec = mk()
    st, _ = run(spec, AmpTaskStatus(), ev.Created(), ev.AttemptStarted(1))
    st, ds = run(spec, st, ev.Abort("a1"))
    assert ds[-1].actions == (StopAttempt(1),)
    assert st.phase == Phase.ABORTED and "during attempt 1" in st.summary
    d = decide(spec, st, ev.AttemptPushed(1, sha(1)), NOW)
    assert not d.accepted and "stale" in d.reason
    d = decide(spec, st, ev.Abort("a1"), NOW)
    assert not d.accepted and "already handled" in d.reason


def test_missing_ci_run_says_what_to_check():
    spec = mk()
    st, _ = run(spec, AmpTaskStatus(), ev.Created(), ev.AttemptPushed(1, sha(1)),
                ev.CiMissing(sha(1), 10))
    assert st.phase == Phase.ERROR
    assert st.summary == (f"no GitHub Actions run appeared for {sha(1)[:7]} in 10 min — do your "
                          "workflows run on push to `amp/*` branches?")


def test_ci_result_for_another_commit_is_ignored():
    spec = mk()
    st, _ = run(spec, AmpTaskStatus(), ev.Created(), ev.AttemptPushed(1, sha(1)))
    d = decide(spec, st, ev.CiGreen(sha(2)), NOW)
    assert not d.accepted and "waits on" in d.reason


def test_requested_events_order_and_idempotence():
    spec = mk(abort_requested_at="a1", merge_requested_at="m1")
    assert requested_events(spec, AmpTaskStatus()) == [
        ev.Abort("a1"), ev.Created(), ev.MergeRequested("m1")]
    st = AmpTaskStatus(phase=Phase.ABORTED, abort_handled_at="a1", merge_handled_at="m1")
    assert requested_events(spec, st) == []


def test_pending_ci_poll_without_news_changes_nothing():
    spec = mk()
    st, _ = run(spec, AmpTaskStatus(), ev.Created(), ev.AttemptPushed(1, sha(1)),
                ev.CiPending(sha(1), 4, "u"))
    d = decide(spec, st, ev.CiPending(sha(1), 4, "u"), "2026-11-25T11:00:00Z")
    assert d.accepted and d.status == st


def test_permanent_github_failures_are_judged_by_the_core():
    spec = mk(policy=Policy(flaky_retry=True))
    st, _ = run(spec, AmpTaskStatus(), ev.Created(), ev.AttemptPushed(1, sha(1)),
                ev.CiRed(sha(1), 5, "u", "boom", "s"))
    st2, _ = run(spec, st, ev.ForgeFailed("rerun", "403 actions: write needed"))
    assert st2.stage == Stage.CI and "could not re-run the failed jobs" in st2.summary
    st3, ds = run(spec, st2, ev.CiRed(sha(1), 5, "u", "boom", "s"))
    assert ds[-1].actions == (StartAttempt(2),), "the next red result spends an attempt"
    st, _ = run(spec, AmpTaskStatus(), ev.Created(), ev.AttemptPushed(1, sha(1)),
                ev.CiGreen(sha(1)), ev.ForgeFailed("pr", "Resource not accessible by integration"))
    assert st.phase == Phase.ERROR
    assert st.summary == "could not open the pull request: Resource not accessible by integration"


def test_conditions_for_kubectl_wait():
    spec = mk()
    st, _ = run(spec, AmpTaskStatus(), ev.Created())
    cond = {c.type: c for c in st.conditions}
    assert cond["Finished"].status == "False" and cond["Succeeded"].status == "False"
    assert cond["Finished"].reason == "Queued"
    st = decide(spec, st, ev.AttemptPushed(1, sha(1)), "2026-11-25T10:05:00Z").status
    assert {c.type: c for c in st.conditions}["Finished"].last_transition_time == NOW
    st, _ = run(spec, st, ev.CiGreen(sha(1)), ev.PrOpened("u", 1))
    cond = {c.type: c for c in st.conditions}
    assert cond["Finished"].status == "True" and cond["Succeeded"].status == "True"
    assert cond["Succeeded"].reason == "Success" and cond["Succeeded"].message == st.summary


def test_a_spec_ampx_cannot_run_is_an_error_that_is_finished():
    from ampx.core.decide import invalid_spec_status

    st = invalid_spec_status("invalid spec.branch: no", NOW)
    assert st.phase == Phase.ERROR and st.stage == Stage.IDLE and st.summary == "invalid spec.branch: no"
    assert {c.type: c.status for c in st.conditions} == {"Finished": "True", "Succeeded": "False"}


# ----------------------------------------------------------------- CI trigger modes (issue 11)

CI = ".github/workflows/ci.yml"


def pushed(n: int, push=(), pr=(), workflows=(CI,)):
    return ev.AttemptPushed(n, sha(n), workflows=workflows, push_workflows=push,
                            pull_request_workflows=pr)


def test_ci_trigger_chooses_which_runs_to_wait_on():
    from ampx.core.actions import OpenPullRequest
    from ampx.core.models import CiEvent, CiSpec, CiTrigger

    both, pr_only, push_only = dict(push=(CI,), pr=(CI,)), dict(pr=(CI,)), dict(push=(CI,))
    cases = [  # trigger, what runs, expected event (None: error at once)
        (CiTrigger.AUTO, both, CiEvent.PUSH), (CiTrigger.AUTO, pr_only, CiEvent.PULL_REQUEST),
        (CiTrigger.AUTO, push_only, CiEvent.PUSH), (CiTrigger.AUTO, {}, None),
        (CiTrigger.PUSH, both, CiEvent.PUSH), (CiTrigger.PUSH, pr_only, None),
        (CiTrigger.PULL_REQUEST, both, CiEvent.PULL_REQUEST), (CiTrigger.PULL_REQUEST, push_only, None),
    ]
    for trigger, runs, expected in cases:
        spec = mk(ci=CiSpec(trigger=trigger))
        st, _ = run(spec, AmpTaskStatus(), ev.Created())
        d = decide(spec, st, pushed(1, **runs), NOW)
        if expected is None:
            assert d.status.phase == Phase.ERROR, (trigger, runs)
            assert "ci.yml" in d.status.summary
            continue
        assert d.status.ci.event == expected, (trigger, runs)
        assert (OpenPullRequest(draft=True) in d.actions) == (expected == CiEvent.PULL_REQUEST)


def test_a_worker_that_does_not_say_keeps_the_old_push_wait():
    from ampx.core.models import CiEvent, CiSpec, CiTrigger

    st, _ = run(mk(), AmpTaskStatus(), ev.Created(), ev.AttemptPushed(1, sha(1)))
    assert st.ci.event == CiEvent.PUSH and st.phase == Phase.RUNNING
    spec = mk(ci=CiSpec(trigger=CiTrigger.PULL_REQUEST))
    st, _ = run(spec, AmpTaskStatus(), ev.Created(), ev.AttemptPushed(1, sha(1)))
    assert st.ci.event == CiEvent.PULL_REQUEST


def test_pull_request_story_draft_red_green_ready_then_merge_at_the_green_commit():
    from ampx.core.actions import MarkPullRequestReady, OpenPullRequest

    spec = mk()
    st, ds = run(spec, AmpTaskStatus(), ev.Created(), ev.AttemptStarted(1), pushed(1, pr=(CI,)),
                 ev.PrOpened("http://gh/pr/5", 5, draft=True))
    assert ds[2].actions[-1] == OpenPullRequest(draft=True)
    assert st.pr_state == "draft" and st.pr_number == 5 and "draft PR #5 opened" in st.summary
    assert resume_actions(spec, st) == [], "the draft is known: nothing to redo after a restart"
    st, _ = run(spec, st, ev.CiRed(sha(1), 11, "http://gh/runs/11", "boom", "sig1"),
                ev.AttemptStarted(2), pushed(2, pr=(CI,)))
    assert resume_actions(spec, st) == [OpenPullRequest(draft=True)]
    st, ds = run(spec, st, ev.PrOpened("http://gh/pr/5", 5, adopted=True, draft=True),
                 ev.CiGreen(sha(2), 12, "http://gh/runs/12"),
                 ev.PrOpened("http://gh/pr/5", 5, adopted=True, draft=True))
    assert ds[-1].actions == (MarkPullRequestReady(5),) and st.pr_state == "readying"
    assert resume_actions(spec, st) == [MarkPullRequestReady(5)]
    st, _ = run(spec, st, ev.PrReady(5))
    assert st.phase == Phase.SUCCESS and st.pr_state == "open"
    assert st.summary == "CI green after 2 attempt(s); PR #5 ready for review"
    st, ds = run(spec, st, ev.MergeRequested("m1"))
    assert ds[-1].actions[0].number == 5 and ds[-1].actions[0].sha == sha(2)


def test_pull_request_story_never_green_comments_once_and_continue_reuses_the_draft():
    from ampx.core.actions import CommentPullRequest, OpenPullRequest

    spec = mk(max_attempts=1)
    st, ds = run(spec, AmpTaskStatus(), ev.Created(), pushed(1, pr=(CI,)),
                 ev.PrOpened("http://gh/pr/5", 5, draft=True),
                 ev.CiRed(sha(1), 11, "http://gh/runs/11", "boom", "sig1"))
    assert st.phase == Phase.NEEDS_REVIEW and st.pr_state == "draft"
    assert ds[-1].actions == (CommentPullRequest(5, 1),)
    assert resume_actions(spec, st) == [CommentPullRequest(5, 1)]
    st, _ = run(spec, st, ev.PrCommented(1))
    assert resume_actions(spec, st) == [] and decide(spec, st, ev.PrCommented(1), NOW).accepted is False
    spec = spec.model_copy(update={"follow_ups": [FollowUp(message="use %")]})
    st, ds = run(spec, st, ev.Continue(), pushed(2, pr=(CI,)))
    assert st.pr_number == 5 and st.ci.pr_number is None and OpenPullRequest(draft=True) in ds[-1].actions
    st, _ = run(spec, st, ev.PrOpened("http://gh/pr/5", 5, adopted=True, draft=True))
    assert st.ci.pr_number == 5


def test_an_abort_leaves_the_draft_a_draft():
    spec = mk()
    st, ds = run(spec, AmpTaskStatus(), ev.Created(), pushed(1, pr=(CI,)),
                 ev.PrOpened("http://gh/pr/5", 5, draft=True), ev.Abort("a1"))
    assert st.phase == Phase.ABORTED and st.pr_state == "draft" and ds[-1].actions == ()
    assert resume_actions(spec, st) == [StopAttempt(1)]


def test_no_pull_request_run_says_what_to_check():
    spec = mk(base_branch="develop")
    st, _ = run(spec, AmpTaskStatus(), ev.Created(), pushed(1, pr=(CI,)),
                ev.PrOpened("http://gh/pr/5", 5, draft=True), ev.CiMissing(sha(1), 10))
    assert st.phase == Phase.ERROR
    assert "no pull_request run appeared for" in st.summary and "PR #5" in st.summary
    assert "on pull_request to develop?" in st.summary
