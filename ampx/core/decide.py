"""The decision core: (spec, status, one observed event) -> next status and actions.

Pure: no clock (the caller passes `now`), no I/O, never raises for a legal input. An event
that does not apply in the current phase is refused with a reason and leaves the status as
it was (except that a user request is marked as handled, so it is not seen again).
Both runtimes (the kopf operator and the local supervisor) carry out what this decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from . import events as ev
from .actions import (
    Action,
    CommentPullRequest,
    MarkPullRequestReady,
    MergePullRequest,
    OpenPullRequest,
    RerunFailedJobs,
    StartAttempt,
    StopAttempt,
    WatchCi,
)
from .models import (
    ACTIVE_PHASES,
    EXCERPT_MAX,
    RESUMABLE_PHASES,
    AmpTaskSpec,
    AmpTaskStatus,
    AttemptOutcome,
    AttemptRecord,
    CiEvent,
    CiTrigger,
    CiWait,
    Condition,
    Phase,
    Stage,
)
from .prompts import ci_failure_prompt, continue_prompt, first_prompt, resume_prompt
from .queueing import waiting_summary


@dataclass(frozen=True)
class Decision:
    status: AmpTaskStatus
    actions: tuple[Action, ...] = ()
    accepted: bool = True
    reason: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.actions) or self.accepted


@dataclass
class _Ctx:
    spec: AmpTaskSpec
    st: AmpTaskStatus
    now: str
    actions: list[Action] = field(default_factory=list)

    # -- helpers -------------------------------------------------------------------------
    def pending_follow_ups(self):
        return self.spec.follow_ups[self.st.follow_ups_seen :]

    def budget_left(self) -> bool:
        return self.st.attempts_in_budget() < self.spec.max_attempts

    def start_attempt(self, prompt: str, phase: Phase, fresh_budget: bool = False) -> None:
        st = self.st
        if fresh_budget or st.attempts == 0:
            st.budget_start = st.attempts
            st.run_started_at = self.now
        st.attempts += 1
        st.history.append(AttemptRecord(number=st.attempts, prompt=prompt, queued_at=self.now))
        st.queue_position = None
        st.follow_ups_seen = len(self.spec.follow_ups)
        st.phase = phase
        st.stage = Stage.AGENT
        st.ci = None
        self.actions.append(StartAttempt(st.attempts))

    def finish(self, phase: Phase, summary: str) -> None:
        self.st.phase = phase
        self.st.stage = Stage.IDLE
        self.st.ci = None
        self.st.queue_position = None
        self.st.summary = summary
        if (phase == Phase.NEEDS_REVIEW and self.st.pr_state == "draft"
                and self.st.pr_number is not None):
            # the draft stays open for a person, with a comment summarising the attempts
            self.actions.append(CommentPullRequest(self.st.pr_number, self.st.attempts))

    def follow_up_attempt(self) -> str:
        """Start an attempt for instructions `continue` queued behind the previous one."""
        n = self.st.attempts + 1
        self.start_attempt(
            continue_prompt(self.pending_follow_ups(), self.spec.prompt, bool(self.st.thread_id)),
            Phase.RUNNING,
            fresh_budget=True,
        )
        self.st.summary = f"attempt {n} started for the developer's new instructions"
        return self.st.summary


def _refuse(status: AmpTaskStatus, reason: str) -> Decision:
    return Decision(status=status, actions=(), accepted=False, reason=reason)


def _short(sha: str) -> str:
    return sha[:7]


def _guard_attempt(st: AmpTaskStatus, number: int) -> Optional[str]:
    """Why an attempt report cannot apply now, or None when it can."""
    if st.phase not in ACTIVE_PHASES:
        return f"task is {_phase(st)}; attempt {number}'s report is stale"
    if number != st.attempts:
        return f"attempt {number} is not the current attempt ({st.attempts})"
    if st.stage != Stage.AGENT:
        return f"attempt {number} already reported (task is waiting on {_stage(st)})"
    return None


def _guard_ci(st: AmpTaskStatus, sha: str) -> Optional[str]:
    if st.phase not in ACTIVE_PHASES:
        return f"task is {_phase(st)}; not waiting on CI"
    if st.stage != Stage.CI or st.ci is None:
        return f"task is not waiting on CI (it is waiting on {_stage(st)})"
    if st.ci.sha != sha:
        return f"CI result for {_short(sha)} but the task waits on {_short(st.ci.sha)}"
    return None


def _phase(st: AmpTaskStatus) -> str:
    return st.phase.value if st.phase else "not started"


def _stage(st: AmpTaskStatus) -> str:
    return st.stage.value if st.stage else "nothing"


def _branch_glob(branch: Optional[str]) -> str:
    if not branch:
        return "the task"
    head = branch.split("/", 1)[0]
    return f"`{head}/*`" if "/" in branch else f"`{branch}`"


# --------------------------------------------------------------------------- handlers


def _created(c: _Ctx, e: ev.Created) -> Optional[str]:
    if c.st.phase is not None or c.st.attempts:
        return f"task already started (phase {_phase(c.st)})"
    c.start_attempt(first_prompt(c.spec.prompt, c.pending_follow_ups()), Phase.QUEUED)
    c.st.summary = "attempt 1 queued"
    return None


def _attempt_started(c: _Ctx, e: ev.AttemptStarted) -> Optional[str]:
    if why := _guard_attempt(c.st, e.number):
        return why
    rec = c.st.history[-1]
    rec.started_at = rec.started_at or c.now
    rec.job = e.job or rec.job
    c.st.queue_position = None
    if c.st.phase == Phase.QUEUED:
        c.st.phase = Phase.RUNNING
    c.st.summary = f"attempt {e.number} running the agent"
    return None


def _attempt_pushed(c: _Ctx, e: ev.AttemptPushed) -> Optional[str]:
    if why := _guard_attempt(c.st, e.number):
        return why
    st, rec = c.st, c.st.history[-1]
    rec.started_at = rec.started_at or c.now
    rec.finished_at = c.now
    rec.outcome = AttemptOutcome.PUSHED
    rec.commit = e.sha
    rec.tokens_in, rec.tokens_out = e.tokens_in, e.tokens_out
    st.thread_id = st.thread_id or e.thread_id
    if st.phase == Phase.QUEUED:
        st.phase = Phase.RUNNING
    event, why = ci_event_for(c.spec, e)
    if event is None:
        rec.ci_conclusion = "none"
        c.finish(Phase.ERROR, f"attempt {e.number} pushed {_short(e.sha)}, but {why}")
        return None
    st.stage = Stage.CI
    st.ci = CiWait(sha=e.sha, since=c.now, event=event)
    st.ci_run_id = st.ci_run_url = None
    c.actions.append(WatchCi(e.sha))
    if event == CiEvent.PULL_REQUEST:
        st.summary = (f"attempt {e.number} pushed {_short(e.sha)}; waiting for the pull "
                      f"request's CI")
        c.actions.append(OpenPullRequest(draft=True))
    else:
        st.summary = f"attempt {e.number} pushed {_short(e.sha)}; waiting for CI"
    return None


def _names(paths) -> str:
    return ", ".join(p.rsplit("/", 1)[-1] for p in paths)


def ci_event_for(spec: AmpTaskSpec, e: ev.AttemptPushed) -> tuple[Optional[CiEvent], str]:
    """Which runs to wait on for a push (spec.ci.trigger and what the worker read), or None
    and why none will come."""
    trigger = spec.ci.trigger
    if e.workflows is None:  # the worker did not say: wait, as ampx always did
        return (CiEvent.PULL_REQUEST if trigger == CiTrigger.PULL_REQUEST else CiEvent.PUSH), ""
    branch, base = spec.branch or "the task branch", spec.base_branch or "the base branch"
    if trigger in (CiTrigger.AUTO, CiTrigger.PUSH) and e.push_workflows:
        return CiEvent.PUSH, ""
    if trigger in (CiTrigger.AUTO, CiTrigger.PULL_REQUEST) and e.pull_request_workflows:
        return CiEvent.PULL_REQUEST, ""
    read = (f"workflows read: {_names(e.workflows)}" if e.workflows
            else "the tree has no .github/workflows/*.yml")
    if trigger == CiTrigger.PUSH:
        other = (f" (on pull_request: {_names(e.pull_request_workflows)}; use --ci-trigger auto)"
                 if e.pull_request_workflows else "")
        return None, f"no workflow runs on push to {branch}{other}; {read}"
    if trigger == CiTrigger.PULL_REQUEST:
        other = (f" (on push: {_names(e.push_workflows)}; use --ci-trigger auto)"
                 if e.push_workflows else "")
        return None, f"no workflow runs on pull_request to {base}{other}; {read}"
    return None, (f"no workflow runs on push to {branch} or on pull_request to {base}; {read}")


def _attempt_no_change(c: _Ctx, e: ev.AttemptNoChange) -> Optional[str]:
    if why := _guard_attempt(c.st, e.number):
        return why
    rec = c.st.history[-1]
    rec.finished_at, rec.outcome = c.now, AttemptOutcome.NO_CHANGE
    rec.tokens_in, rec.tokens_out = e.tokens_in, e.tokens_out
    c.st.thread_id = c.st.thread_id or e.thread_id
    if c.pending_follow_ups():
        c.follow_up_attempt()
        return None
    c.finish(Phase.NEEDS_REVIEW, f"attempt {e.number}: the agent made no changes")
    return None


_RETRYABLE = {
    AttemptOutcome.AGENT_FAILED,
    AttemptOutcome.TIMEOUT,
    AttemptOutcome.PUSH_REJECTED,
    AttemptOutcome.GIT_FAILED,
    AttemptOutcome.INTERRUPTED,
    AttemptOutcome.ABORTED,
}


def _attempt_failed(c: _Ctx, e: ev.AttemptFailed) -> Optional[str]:
    if why := _guard_attempt(c.st, e.number):
        return why
    st, rec = c.st, c.st.history[-1]
    rec.finished_at, rec.outcome, rec.reason = c.now, e.outcome, e.reason
    rec.commit = e.commit or rec.commit
    rec.tokens_in, rec.tokens_out = e.tokens_in, e.tokens_out
    st.thread_id = st.thread_id or e.thread_id
    if e.outcome == AttemptOutcome.TAMPERED:
        files = ", ".join(e.files) if e.files else "protected files"
        what = ("it contains a credential" if "credential" in e.reason
                else "it changed protected files")
        c.finish(Phase.NEEDS_REVIEW, f"attempt {e.number} was not pushed: {what} ({files})")
        return None
    if e.outcome == AttemptOutcome.CONFIG_ERROR or e.outcome not in _RETRYABLE:
        c.finish(Phase.ERROR, f"attempt {e.number} could not run: {e.reason}")
        return None
    if c.pending_follow_ups() or c.budget_left():
        fresh = bool(c.pending_follow_ups())
        prompt = resume_prompt(
            e.reason, c.spec.prompt, c.pending_follow_ups(), bool(st.thread_id)
        )
        c.start_attempt(prompt, Phase.RETRYING, fresh_budget=fresh)
        st.summary = f"attempt {e.number} failed ({e.reason}); attempt {st.attempts} queued"
        return None
    final = Phase.ERROR if e.outcome == AttemptOutcome.PUSH_REJECTED else Phase.NEEDS_REVIEW
    c.finish(final, f"attempt {e.number} failed ({e.reason}); no attempts left")
    return None


def _ci_pending(c: _Ctx, e: ev.CiPending) -> Optional[str]:
    if why := _guard_ci(c.st, e.sha):
        return why
    if e.run_id is not None:
        c.st.ci_run_id, c.st.ci_run_url = e.run_id, e.run_url
        rec = c.st.history[-1]
        rec.ci_run_id, rec.ci_run_url = e.run_id, e.run_url
    run = f" (run {e.run_id})" if e.run_id is not None else ""
    c.st.summary = f"waiting for CI on {_short(e.sha)}{run}"
    return None


def _ci_green(c: _Ctx, e: ev.CiGreen) -> Optional[str]:
    if why := _guard_ci(c.st, e.sha):
        return why
    st, rec = c.st, c.st.history[-1]
    assert st.ci is not None
    rec.ci_conclusion = "success"
    rec.ci_run_id, rec.ci_run_url = e.run_id or rec.ci_run_id, e.run_url or rec.ci_run_url
    rec.flaky = True if st.ci.rerun_requested else None
    st.ci_run_id, st.ci_run_url = rec.ci_run_id, rec.ci_run_url
    if c.pending_follow_ups():
        c.follow_up_attempt()
        return None
    st.stage = Stage.PR
    st.ci = None
    flaky = " after re-running a flaky job" if rec.flaky else ""
    st.summary = f"CI green on {_short(e.sha)}{flaky}; opening the pull request"
    c.actions.append(OpenPullRequest())
    return None


def _same_failure_as_before(c: _Ctx, signature: str) -> bool:
    """Non-convergence: the previous attempt of this budget failed CI with the same error."""
    if not signature or not c.spec.policy.stop_on_repeated_failure:
        return False
    earlier = [r for r in c.st.history[:-1] if r.number > c.st.budget_start]
    if not earlier:
        return False
    prev = earlier[-1]
    return prev.ci_conclusion == "failure" and prev.signature == signature


def _content_lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("== ")
            and "Process completed with exit code" not in ln]


def _headline(excerpt: str, signature: str) -> str:
    """The line a person should read first: an error line of the excerpt (the real text), else
    of the signature (normalised), else the excerpt's first line."""
    for text in (excerpt, signature):
        found = next((ln for ln in _content_lines(text) if "error" in ln.lower()), None)
        if found:
            return found
    lines = _content_lines(excerpt) or _content_lines(signature)
    return lines[0] if lines else ""


def _ci_red(c: _Ctx, e: ev.CiRed) -> Optional[str]:
    if why := _guard_ci(c.st, e.sha):
        return why
    st, rec = c.st, c.st.history[-1]
    assert st.ci is not None
    if e.run_id is not None:
        st.ci_run_id, st.ci_run_url = e.run_id, e.run_url
        rec.ci_run_id, rec.ci_run_url = e.run_id, e.run_url
    if (
        c.spec.policy.flaky_retry
        and e.rerunnable
        and e.run_id is not None
        and not st.ci.rerun_requested
    ):
        st.ci.rerun_requested = True
        st.ci.rerun_run_id = e.run_id
        st.summary = f"CI red on {_short(e.sha)}; re-running the failed jobs once (flaky guard)"
        c.actions.append(RerunFailedJobs(e.run_id))
        return None
    if st.ci.rerun_requested and not st.ci.rerun_sent:
        return (f"the flaky guard's re-run of run {st.ci.rerun_run_id} has not reached GitHub "
                f"yet; it is retried before the red result counts")
    rec.ci_conclusion = "failure"
    rec.excerpt = e.excerpt[:EXCERPT_MAX]
    rec.signature = e.signature or None
    if c.pending_follow_ups():
        prompt = ci_failure_prompt(
            e.sha, e.run_url, rec.excerpt, c.pending_follow_ups(),
            None if st.thread_id else c.spec.prompt,
        )
        c.start_attempt(prompt, Phase.RETRYING, fresh_budget=True)
        st.summary = f"CI red on {_short(e.sha)}; attempt {st.attempts} queued with new instructions"
        return None
    if _same_failure_as_before(c, e.signature):
        first = _headline(e.excerpt, e.signature)
        c.finish(
            Phase.NEEDS_REVIEW,
            f"stopped early: attempts {rec.number - 1} and {rec.number} failed CI with the same "
            f"error ({first[:160]})",
        )
        return None
    if c.budget_left():
        prompt = ci_failure_prompt(
            e.sha, e.run_url, rec.excerpt, (), None if st.thread_id else c.spec.prompt
        )
        c.start_attempt(prompt, Phase.RETRYING)
        st.summary = f"CI red on {_short(e.sha)}; attempt {st.attempts} queued with the failure"
        return None
    url = f" ({e.run_url})" if e.run_url else ""
    c.finish(
        Phase.NEEDS_REVIEW,
        f"CI still red after {_attempts_of_run(st)}{url}",
    )
    return None


def _ci_missing(c: _Ctx, e: ev.CiMissing) -> Optional[str]:
    if why := _guard_ci(c.st, e.sha):
        return why
    c.st.history[-1].ci_conclusion = "missing"
    assert c.st.ci is not None
    if c.st.ci.event == CiEvent.PULL_REQUEST:
        pr = f"PR #{c.st.ci.pr_number}" if c.st.ci.pr_number else "the pull request"
        c.finish(
            Phase.ERROR,
            f"no pull_request run appeared for {_short(e.sha)} on {pr} in {e.waited_minutes} "
            f"min — do your workflows run on pull_request to "
            f"{c.spec.base_branch or 'the default branch'}?",
        )
        return None
    c.finish(
        Phase.ERROR,
        f"no GitHub Actions run appeared for {_short(e.sha)} in {e.waited_minutes} min — do "
        f"your workflows run on push to {_branch_glob(c.spec.branch)} branches?",
    )
    return None


def _pr_opened(c: _Ctx, e: ev.PrOpened) -> Optional[str]:
    st = c.st
    how = "adopted" if e.adopted else "opened"
    kind = "draft PR" if e.draft else "PR"
    if (st.phase in ACTIVE_PHASES and st.stage == Stage.CI and st.ci is not None
            and st.ci.event == CiEvent.PULL_REQUEST):
        if st.ci.pr_number is not None:
            return f"PR #{st.ci.pr_number} is already recorded for {_short(st.ci.sha)}"
        st.ci.pr_number = e.number
        st.pr_url, st.pr_number, st.pr_state = e.url, e.number, "draft" if e.draft else "open"
        st.summary = f"{kind} #{e.number} {how}; waiting for its CI on {_short(st.ci.sha)}"
        return None
    if st.phase not in ACTIVE_PHASES or st.stage != Stage.PR:
        return f"task is not opening a pull request (phase {_phase(st)}, stage {_stage(st)})"
    if st.pr_state == "readying":
        return f"PR #{st.pr_number} is already being marked ready for review"
    st.pr_url, st.pr_number = e.url, e.number
    if e.draft:
        st.pr_state = "readying"
        st.summary = f"CI green; marking draft PR #{e.number} ready for review"
        c.actions.append(MarkPullRequestReady(e.number))
        return None
    st.pr_state = "open"
    c.finish(Phase.SUCCESS, f"CI green after {_attempts_of_run(st)}; PR #{e.number} {how}")
    return None


def _attempts_of_run(st: AmpTaskStatus) -> str:
    """`2 attempt(s)`; after a `continue`, which attempts, so the count matches ATTEMPTS."""
    n = st.attempts_in_budget()
    if not st.budget_start:
        return f"{n} attempt(s)"
    return f"{n} attempt(s) since the last continue ({st.attempts} in all)"


def _reported_thread(st: AmpTaskStatus) -> Optional[str]:
    """The latest thread a worker reported: an attempt stopped (abort) before its report was
    judged still created the thread, and the next attempt must continue it."""
    for key in sorted(st.reports, key=lambda k: int(k) if k.isdigit() else 0, reverse=True):
        if st.reports[key].thread_id:
            return st.reports[key].thread_id
    return None


def _pr_ready(c: _Ctx, e: ev.PrReady) -> Optional[str]:
    st = c.st
    if st.phase not in ACTIVE_PHASES or st.stage != Stage.PR or st.pr_state != "readying":
        return f"no draft is being marked ready (phase {_phase(st)}, PR state {st.pr_state or 'none'})"
    if e.number != st.pr_number:
        return f"PR #{e.number} is not the task's PR (#{st.pr_number})"
    st.pr_state = "open"
    c.finish(Phase.SUCCESS, f"CI green after {_attempts_of_run(st)}; PR #{e.number} ready for review")
    return None


def _pr_commented(c: _Ctx, e: ev.PrCommented) -> Optional[str]:
    st = c.st
    if st.phase != Phase.NEEDS_REVIEW or st.pr_state != "draft":
        return f"no comment is due (phase {_phase(st)}, PR state {st.pr_state or 'none'})"
    if e.attempt != st.attempts or st.pr_commented == e.attempt:
        return f"the comment for attempt {e.attempt} is not due"
    st.pr_commented = e.attempt
    return None


def _continue(c: _Ctx, e: ev.Continue) -> Optional[str]:
    st = c.st
    st.thread_id = st.thread_id or _reported_thread(st)
    if not c.pending_follow_ups():
        return "no new instructions to continue with"
    if st.phase is None:
        return "task has not started yet; its first attempt will include the instructions"
    if st.phase in ACTIVE_PHASES:
        return f"queued behind attempt {st.attempts}, which is still in flight"
    if st.pr_state == "merged":
        st.follow_ups_seen = len(c.spec.follow_ups)
        return "the task's pull request is already merged; start a new task instead"
    n = st.attempts + 1
    prompt = continue_prompt(c.pending_follow_ups(), c.spec.prompt, bool(st.thread_id))
    c.start_attempt(prompt, Phase.QUEUED, fresh_budget=True)
    st.summary = f"continued: attempt {n} queued"
    return None


def _abort(c: _Ctx, e: ev.Abort) -> Optional[str]:
    st = c.st
    if st.abort_handled_at == e.requested_at:
        return "abort request already handled"
    st.abort_handled_at = e.requested_at
    if st.phase is not None and st.phase not in ACTIVE_PHASES:
        return f"task already {st.phase.value}; nothing to abort"
    st.thread_id = st.thread_id or _reported_thread(st)
    rec = st.current()
    where = ""
    if rec is not None and st.stage == Stage.AGENT:
        c.actions.append(StopAttempt(rec.number))
        rec.outcome = rec.outcome or AttemptOutcome.ABORTED
        rec.finished_at = rec.finished_at or c.now
        where = f" during attempt {rec.number}"
    elif st.stage == Stage.CI:
        where = " while waiting on CI"
    c.finish(Phase.ABORTED, f"aborted by request{where}")
    return None


def _merge_requested(c: _Ctx, e: ev.MergeRequested) -> Optional[str]:
    st = c.st
    if st.merge_handled_at == e.requested_at:
        return "merge request already handled"
    st.merge_handled_at = e.requested_at
    if st.phase != Phase.SUCCESS:
        return f"only a task in success can be merged (phase {_phase(st)})"
    if st.pr_number is None or st.pr_state != "open":
        return f"the task has no open pull request (PR state {st.pr_state or 'none'})"
    c.actions.append(
        MergePullRequest(
            number=st.pr_number,
            method=c.spec.policy.merge_method,
            delete_branch=c.spec.policy.delete_branch_on_merge,
            sha=last_green_commit(st),
        )
    )
    st.pr_state = "merging"
    st.summary = f"merging PR #{st.pr_number} ({c.spec.policy.merge_method.value})"
    return None


def last_green_commit(st: AmpTaskStatus) -> Optional[str]:
    """The commit of the task's last attempt whose CI was green: the only one ampx merges."""
    return next((r.commit for r in reversed(st.history)
                 if r.ci_conclusion == "success" and r.commit), None)


def _merge_done(c: _Ctx, e: ev.MergeDone) -> Optional[str]:
    st = c.st
    if st.pr_state != "merging":
        return f"no merge in progress (PR state {st.pr_state or 'none'})"
    st.pr_state = "merged"
    st.summary = f"PR #{st.pr_number} merged ({c.spec.policy.merge_method.value})"
    return None


def _merge_refused(c: _Ctx, e: ev.MergeRefused) -> Optional[str]:
    st = c.st
    if st.pr_state != "merging":
        return f"no merge in progress (PR state {st.pr_state or 'none'})"
    st.pr_state = "open"
    st.summary = f"merge of PR #{st.pr_number} refused: {e.reason}"
    return None


def _forge_failed(c: _Ctx, e: ev.ForgeFailed) -> Optional[str]:
    st = c.st
    active = st.phase in ACTIVE_PHASES
    if e.what == "pr" and active and st.stage == Stage.PR:
        c.finish(Phase.ERROR, f"could not open the pull request: {e.reason}")
    elif e.what == "pr" and active and st.stage == Stage.CI and st.ci is not None \
            and st.ci.event == CiEvent.PULL_REQUEST and st.ci.pr_number is None:
        c.finish(Phase.ERROR, f"could not open the draft pull request: {e.reason}")
    elif e.what == "ready" and active and st.stage == Stage.PR and st.pr_state == "readying":
        c.finish(Phase.ERROR, f"CI is green, but PR #{st.pr_number} could not be marked ready "
                              f"for review: {e.reason}")
    elif e.what == "comment" and st.phase == Phase.NEEDS_REVIEW and st.pr_state == "draft" \
            and st.pr_commented != st.attempts:
        st.pr_commented = st.attempts  # said once here; not repeated on every tick
        st.summary = (f"{st.summary or 'needs review'} (could not comment on PR "
                      f"#{st.pr_number}: {e.reason})")
    elif e.what == "ci" and active and st.stage == Stage.CI:
        c.finish(Phase.ERROR, f"cannot read the CI results: {e.reason}")
    elif e.what == "rerun" and active and st.stage == Stage.CI and st.ci is not None:
        st.ci.rerun_sent = True
        st.summary = f"could not re-run the failed jobs ({e.reason}); the next red result counts"
    elif e.what == "merge" and st.pr_state == "merging":
        st.pr_state = "open"
        st.summary = f"merge of PR #{st.pr_number} failed: {e.reason}"
    else:
        return f"GitHub failure ({e.what}) does not apply: phase {_phase(st)}, stage {_stage(st)}"
    return None


def _rerun_started(c: _Ctx, e: ev.RerunStarted) -> Optional[str]:
    st = c.st
    if st.phase not in ACTIVE_PHASES or st.stage != Stage.CI or st.ci is None:
        return f"task is {_phase(st)} (waiting on {_stage(st)}); no re-run is expected"
    if not st.ci.rerun_requested or st.ci.rerun_run_id != e.run_id:
        return f"no re-run of run {e.run_id} was requested"
    if st.ci.rerun_sent:
        return f"the re-run of run {e.run_id} is already recorded"
    st.ci.rerun_sent = True
    return None


def _time_budget_spent(c: _Ctx, e: ev.TimeBudgetSpent) -> Optional[str]:
    st = c.st
    if st.phase not in ACTIVE_PHASES:
        return f"task is {_phase(st)}; no time budget is running"
    if st.stage == Stage.PR:
        return "CI is green; the pull request is being opened"
    rec = st.current()
    if rec is not None and st.stage == Stage.AGENT:
        c.actions.append(StopAttempt(rec.number))
        rec.outcome = rec.outcome or AttemptOutcome.TIMEOUT
        rec.finished_at = rec.finished_at or c.now
    c.finish(Phase.NEEDS_REVIEW, f"the task's time budget of {e.minutes} min is spent "
                                 f"(after {st.attempts_in_budget()} attempt(s))")
    return None


def _waiting_for_slot(c: _Ctx, e: ev.WaitingForSlot) -> Optional[str]:
    """A due attempt held back by the concurrency limit: the task shows `queued` and its place."""
    st = c.st
    if why := _guard_attempt(st, e.number):
        return why
    if st.history[-1].started_at:
        return f"attempt {e.number} already started"
    if st.queue_position == e.place and st.phase == Phase.QUEUED:
        return f"attempt {e.number} is already {e.place} in line"
    st.phase = Phase.QUEUED
    st.queue_position = e.place
    st.summary = waiting_summary(e.number, e.place)
    return None


def _slot_granted(c: _Ctx, e: ev.SlotGranted) -> Optional[str]:
    """The wait is over: a retry shows `retrying` again, a first or continued attempt `queued`
    until its Job or process runs."""
    st = c.st
    if why := _guard_attempt(st, e.number):
        return why
    if st.queue_position is None:
        return f"attempt {e.number} was not waiting for a slot"
    st.queue_position = None
    st.phase = Phase.RETRYING if st.attempts_in_budget() > 1 else Phase.QUEUED
    st.summary = f"attempt {e.number} starting (it waited for a free slot)"
    return None


_HANDLERS = {
    ev.Created: _created,
    ev.AttemptStarted: _attempt_started,
    ev.AttemptPushed: _attempt_pushed,
    ev.AttemptNoChange: _attempt_no_change,
    ev.AttemptFailed: _attempt_failed,
    ev.CiPending: _ci_pending,
    ev.CiGreen: _ci_green,
    ev.CiRed: _ci_red,
    ev.CiMissing: _ci_missing,
    ev.PrOpened: _pr_opened,
    ev.PrReady: _pr_ready,
    ev.PrCommented: _pr_commented,
    ev.Continue: _continue,
    ev.Abort: _abort,
    ev.MergeRequested: _merge_requested,
    ev.MergeDone: _merge_done,
    ev.MergeRefused: _merge_refused,
    ev.ForgeFailed: _forge_failed,
    ev.RerunStarted: _rerun_started,
    ev.TimeBudgetSpent: _time_budget_spent,
    ev.WaitingForSlot: _waiting_for_slot,
    ev.SlotGranted: _slot_granted,
}


def _condition(st: AmpTaskStatus, type_: str, value: bool, reason: str, now: str) -> None:
    """Set one condition; its transition time moves only when its value changes."""
    status = "True" if value else "False"
    old = next((c for c in st.conditions if c.type == type_), None)
    since = old.last_transition_time if old is not None and old.status == status else now
    new = Condition(type=type_, status=status, reason=reason, message=st.summary,
                    last_transition_time=since)
    st.conditions = [c for c in st.conditions if c.type != type_] + [new]


def _conditions(st: AmpTaskStatus, now: str) -> None:
    """`Finished` and `Succeeded`, for `kubectl wait --for=condition=...` and dashboards."""
    if st.phase is None:
        return
    reason = "".join(part.title() for part in st.phase.value.split("_"))
    _condition(st, "Finished", st.phase not in ACTIVE_PHASES, reason, now)
    _condition(st, "Succeeded", st.phase == Phase.SUCCESS, reason, now)


def invalid_spec_status(problem: str, now: str) -> AmpTaskStatus:
    """The status of a task whose spec ampx cannot run: `error`, finished, with the reason."""
    st = AmpTaskStatus(phase=Phase.ERROR, stage=Stage.IDLE, summary=problem, updated_at=now)
    _conditions(st, now)
    return st


def decide(spec: AmpTaskSpec, status: AmpTaskStatus, event: ev.Event, now: str) -> Decision:
    """Apply one event. The input status is never mutated."""
    handler = _HANDLERS.get(type(event))
    if handler is None:
        return _refuse(status, f"unknown event {type(event).__name__}")
    c = _Ctx(spec=spec, st=status.model_copy(deep=True), now=now)
    before_marks = (c.st.abort_handled_at, c.st.merge_handled_at, c.st.follow_ups_seen)
    why = handler(c, event)
    if why is not None:
        # Refused: keep the status, except the marks that say a request was seen.
        kept = status.model_copy(deep=True)
        kept.abort_handled_at, kept.merge_handled_at, kept.follow_ups_seen = (
            c.st.abort_handled_at,
            c.st.merge_handled_at,
            c.st.follow_ups_seen,
        )
        if (kept.abort_handled_at, kept.merge_handled_at, kept.follow_ups_seen) != before_marks:
            kept.updated_at = now
        return _refuse(kept, why)
    if c.actions or c.st != status:
        _conditions(c.st, now)
        c.st.updated_at = now
    return Decision(status=c.st, actions=tuple(c.actions), accepted=True, reason=c.st.summary or "")


def requested_events(spec: AmpTaskSpec, status: AmpTaskStatus) -> list[ev.Event]:
    """Level-triggered events a runtime derives by comparing the spec with the status.

    Abort first (it wins over everything), then creation, new instructions and merge.
    """
    out: list[ev.Event] = []
    if spec.abort_requested_at and spec.abort_requested_at != status.abort_handled_at:
        out.append(ev.Abort(spec.abort_requested_at))
    if status.phase is None and status.attempts == 0:
        out.append(ev.Created())
    if (
        status.phase in RESUMABLE_PHASES
        and len(spec.follow_ups) > status.follow_ups_seen
    ):
        out.append(ev.Continue())
    if spec.merge_requested_at and spec.merge_requested_at != status.merge_handled_at:
        out.append(ev.MergeRequested(spec.merge_requested_at))
    return out
