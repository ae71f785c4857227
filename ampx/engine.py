"""Carry out the decision core's verdicts: one engine, two runtimes.

The engine reads a task, derives the events its status and the outside world stand for,
asks `decide()`, persists the new status, then performs the actions. It is written against
three small interfaces so the Kubernetes operator and the local supervisor share it:

- `TaskStore`: read a task, write the operator-owned part of its status;
- `Launcher`: start/stop/inspect attempt N (a Job, or a local process);
- `Forge`: GitHub (CI polling, re-runs, pull requests).

Every action is idempotent and `resume_actions` re-derives what must be in effect, so a
restart at any point neither repeats nor loses work.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

from .core import events as ev
from .core.actions import (
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
from .core.admission import TaskRules, branch_problem, repo_problem
from .core.decide import Decision, decide, invalid_spec_status, requested_events
from .core.merge_guard import merge_refusal
from .core.models import AmpTask, AmpTaskStatus, Phase, Stage
from .core.observe import AttemptState, process_event, report_event, resume_actions
from .core.repo import parse_repo
from .github.errors import GitHubConfigError, GitHubError, RetryLater

log = logging.getLogger("ampx.engine")


class Deferred(RetryLater):
    """An action GitHub asked us to hold off (Retry-After) and whose time has not come."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


class TaskStore(Protocol):
    def load(self, name: str) -> Optional[AmpTask]: ...

    def save_status(self, task: AmpTask, status: AmpTaskStatus) -> AmpTask: ...


class Launcher(Protocol):
    def start(self, task: AmpTask, number: int) -> str: ...

    def stop(self, task: AmpTask, number: int) -> None: ...

    def state(self, task: AmpTask, number: int) -> AttemptState: ...


class Capacity(Protocol):
    """The concurrency limits (`ampx.slots.SlotBook`): may this attempt start now?"""

    def claim(self, task: AmpTask, number: int) -> Optional[int]:
        """None: start attempt `number` now (its slot is taken); else its place in line."""
        ...

    def release(self, task: AmpTask, number: int) -> None:
        """The launch failed: give the slot back."""
        ...

    def seen(self, task: AmpTask, waiting: bool) -> None:
        """The engine looked at `task`; `waiting`: its attempt is due and not started."""
        ...


class Forge(Protocol):
    def default_branch(self, repo: Any) -> str: ...

    def poll_ci(self, repo: Any, sha: str, branch: Optional[str] = None,
                event: str = "push") -> Any: ...

    def poll_repository(self, repo: Any, wanted: list[tuple[str, str]]) -> Any: ...

    def rerun_failed_jobs(self, repo: Any, run_id: int) -> None: ...

    def open_or_adopt(self, repo: Any, head: str, base: Optional[str], title: str, body: str,
                      draft: bool = False) -> Any: ...

    def pull_for_branch(self, repo: Any, head: str) -> Any: ...

    def mark_ready(self, repo: Any, number: int, body: Optional[str] = None) -> bool: ...

    def comment_pr(self, repo: Any, number: int, body: str) -> None: ...

    def merge_pr(self, repo: Any, number: int, method: Any, sha: Optional[str],
                 delete_branch: bool, branch: str) -> Any: ...


def ci_event(obs: Any, sha: str, since: Optional[str], grace_minutes: int,
             now: dt.datetime) -> Optional[ev.Event]:
    """One CI observation -> the event it stands for (None: nothing new, keep waiting)."""
    state = obs.state
    if state == "none":
        if since and (now - parse_iso(since)).total_seconds() >= grace_minutes * 60:
            return ev.CiMissing(sha, grace_minutes)
        return None
    if state == "pending":
        return ev.CiPending(sha, obs.run_id, obs.run_url)
    if state == "green":
        return ev.CiGreen(sha, obs.run_id, obs.run_url)
    if state == "red":
        return ev.CiRed(sha, obs.run_id, obs.run_url, obs.excerpt or "", obs.signature or "",
                        rerunnable=getattr(obs, "rerunnable", True))
    raise ValueError(f"unknown CI state {state!r}")


def ci_repository(task: AmpTask) -> Optional[str]:
    """The repository (``owner/name``, lower case) whose CI ``task`` waits on, or None: how
    the poll loops group tasks into one request per repository."""
    st = task.status
    if st.stage != Stage.CI or st.ci is None:
        return None
    try:
        return parse_repo(task.spec.repo).full_name.lower()
    except ValueError:
        return None


def pr_body(task: AmpTask) -> str:
    """The pull request's description: the task, every attempt with its CI run, the thread."""
    from .github.pulls import AttemptRow, render_pr_body

    st = task.status
    rows = [AttemptRow(r.number, r.commit, r.ci_conclusion, r.ci_run_url) for r in st.history]
    return render_pr_body(task.spec.prompt, rows, st.ci_run_url, st.thread_id, task_id=task.name)


def review_comment(task: AmpTask) -> str:
    """The comment on a draft PR left for review: why ampx stopped, and every attempt."""
    from .github.pulls import AttemptRow, render_review_comment

    st = task.status
    rows = [AttemptRow(r.number, r.commit, r.ci_conclusion, r.ci_run_url) for r in st.history]
    return render_review_comment(st.summary or "", rows, st.thread_id)


@dataclass
class Engine:
    store: TaskStore
    launcher: Launcher
    forge: Optional[Forge] = None
    on_change: Optional[Callable[[AmpTask], None]] = None  # history upserts, events
    clock: Callable[[], dt.datetime] = utcnow
    # the installation's rules for tasks (host, branch prefix, allow-list), read when a task
    # is admitted; None: no admission check (the decision core's tests)
    rules: Optional[Callable[[], TaskRules]] = None
    # the concurrency limits; None: every due attempt starts at once
    capacity: Optional[Capacity] = None
    _locks: dict[str, threading.Lock] = field(default_factory=lambda: defaultdict(threading.Lock))
    _guard: threading.Lock = field(default_factory=threading.Lock)
    # (task, action) -> not before: a GitHub action answered "retry later" is not repeated on
    # every tick, only when GitHub said (Retry-After, rate-limit reset, back-off)
    _not_before: dict[tuple[str, str], dt.datetime] = field(default_factory=dict)

    def lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks[name]

    # ------------------------------------------------------------------ applying events
    def apply(self, task: AmpTask, event: ev.Event) -> tuple[AmpTask, Decision]:
        d = decide(task.spec, task.status, event, iso(self.clock()))
        if d.status != task.status:
            task = self.store.save_status(task, d.status)
            if self.on_change:
                self.on_change(task)
        log.info("task %s: %s -> %s (%s)", task.name, type(event).__name__,
                 d.status.phase.value if d.status.phase else "-",
                 d.reason if d.accepted else f"refused: {d.reason}")
        for action in d.actions:
            try:
                follow = self.perform(task, action)
            except RetryLater as exc:  # the status says it is due: `ensure` repeats it later
                if not isinstance(exc, Deferred):
                    log.info("task %s: %s deferred: %s", task.name, type(action).__name__, exc)
                continue
            if follow is not None:
                task, _ = self.apply(task, follow)
        return task, d

    def perform(self, task: AmpTask, action: Action) -> Optional[ev.Event]:
        """Carry out one action; some produce the next event (PR opened, merge result).

        A permanent GitHub refusal becomes an event for the core to judge; a transient one
        (RetryLater) propagates and the action is retried from the status later.
        """
        key = (task.name, type(action).__name__)
        wait = (self._not_before[key] - self.clock()).total_seconds() if key in self._not_before else 0
        if wait > 0:
            raise Deferred(wait, f"{key[1]} held off until GitHub's retry time")
        try:
            result = self._perform(task, action)
        except RetryLater as exc:
            self._not_before[key] = self.clock() + dt.timedelta(seconds=exc.seconds)
            raise
        except GitHubError as exc:
            what = {OpenPullRequest: "pr", MergePullRequest: "merge", RerunFailedJobs: "rerun",
                    MarkPullRequestReady: "ready", CommentPullRequest: "comment"}.get(type(action))
            if what is None:
                raise
            return ev.ForgeFailed(what, str(exc))
        self._not_before.pop(key, None)
        return result

    def _perform(self, task: AmpTask, action: Action) -> Optional[ev.Event]:
        if isinstance(action, StartAttempt):
            return self._launch(task, action.number)
        elif isinstance(action, StopAttempt):
            self.launcher.stop(task, action.number)
        elif isinstance(action, WatchCi):
            pass  # the poll loop watches every task whose stage is "ci"
        elif isinstance(action, RerunFailedJobs):
            self._need_forge().rerun_failed_jobs(parse_repo(task.spec.repo), action.run_id)
            return ev.RerunStarted(action.run_id)
        elif isinstance(action, OpenPullRequest):
            pr = self._need_forge().open_or_adopt(
                parse_repo(task.spec.repo), task.spec.branch or "", task.spec.base_branch,
                task.spec.display_title(), pr_body(task), draft=action.draft)
            return ev.PrOpened(pr.url, pr.number, pr.adopted, draft=pr.draft)
        elif isinstance(action, MarkPullRequestReady):
            self._need_forge().mark_ready(parse_repo(task.spec.repo), action.number, pr_body(task))
            return ev.PrReady(action.number)
        elif isinstance(action, CommentPullRequest):
            self._need_forge().comment_pr(parse_repo(task.spec.repo), action.number,
                                          review_comment(task))
            return ev.PrCommented(action.attempt)
        elif isinstance(action, MergePullRequest):
            return self._merge(task, action)
        return None

    def _launch(self, task: AmpTask, number: int) -> Optional[ev.Event]:
        """Start attempt `number` if a slot is free; else the event that records its place in
        line (nothing when the place is what the status already says)."""
        if self.capacity is None:
            self.launcher.start(task, number)
            return None
        place = self.capacity.claim(task, number)
        if place is not None:
            st = task.status
            if st.queue_position == place and st.phase == Phase.QUEUED:
                return None
            return ev.WaitingForSlot(number, place)
        try:
            self.launcher.start(task, number)
        except BaseException:
            self.capacity.release(task, number)
            raise
        return ev.SlotGranted(number) if task.status.queue_position is not None else None

    def _merge(self, task: AmpTask, action: MergePullRequest) -> ev.Event:
        """Merge only what GitHub has for the task branch, at the last green commit: the
        status's PR number alone is never trusted (it may have been forged)."""
        repo, branch = parse_repo(task.spec.repo), task.spec.branch or ""
        found = self._need_forge().pull_for_branch(repo, branch)
        why = merge_refusal(branch, action.number, action.sha,
                            found.number if found else None, found.head_sha if found else None)
        if why is not None:
            log.warning("task %s: merge refused: %s", task.name, why)
            return ev.MergeRefused(why)
        result = self._need_forge().merge_pr(repo, found.number, action.method, action.sha,
                                             action.delete_branch, branch)
        if result.merged:
            return ev.MergeDone(result.sha)
        return ev.MergeRefused(result.reason)

    def _need_forge(self) -> Forge:
        if self.forge is None:
            # a permanent refusal the core judges (a merge goes back to open, with the reason),
            # not an exception retried four times a second
            raise GitHubConfigError("GitHub is not configured (set AMPX_GITHUB_APP_ID and a key, "
                                    "or GITHUB_TOKEN)")
        return self.forge

    # ------------------------------------------------------------------ reconciling
    def next_event(self, task: AmpTask, skip: set) -> Optional[ev.Event]:
        candidates: list[Optional[ev.Event]] = list(requested_events(task.spec, task.status))
        candidates.append(report_event(task.status))
        candidates.append(self.budget_event(task))
        st = task.status
        if st.stage == Stage.AGENT and st.attempts and st.phase and st.phase.active:
            candidates.append(process_event(st, self.launcher.state(task, st.attempts)))
        for e in candidates:
            if e is not None and e not in skip:
                return e
        return None

    def retry_due(self) -> set[str]:
        """Tasks with a GitHub action or admission held off whose time has come (handed out
        once: a retry that is refused again sets a new time)."""
        now = self.clock()
        due = [key for key, at in list(self._not_before.items()) if at <= now]
        for key in due:
            self._not_before.pop(key, None)
        return {name for name, _ in due}

    def forget(self, name: str) -> None:
        """A deleted task: drop what is held for it."""
        for key in [k for k in list(self._not_before) if k[0] == name]:
            self._not_before.pop(key, None)
        with self._guard:
            self._locks.pop(name, None)

    def budget_event(self, task: AmpTask) -> Optional[ev.Event]:
        """The whole-task time budget, if set and spent."""
        limit, st = task.spec.limits.task_timeout_minutes, task.status
        if not limit or not st.run_started_at or st.phase is None or not st.phase.active:
            return None
        if (self.clock() - parse_iso(st.run_started_at)).total_seconds() >= limit * 60:
            return ev.TimeBudgetSpent(limit)
        return None

    # ------------------------------------------------------------------ admission
    def admission(self, task: AmpTask) -> tuple[bool, Optional[str]]:
        """(decided, problem) for a task that never started. A problem ends it in `error`
        before any attempt; not decided (no branch yet, GitHub said wait) means ask later."""
        spec = task.spec
        if not spec.branch:
            return False, None  # the operator defaults it first
        try:
            rules = self.rules()  # type: ignore[misc]
        except ValueError as exc:  # a broken setting refuses rather than allowing everything
            return True, f"ampx's task rules cannot be read: {exc}"
        problem = repo_problem(spec, task.namespace, rules) or branch_problem(spec, rules)
        if problem or self.forge is None:  # without GitHub the worker checks the default
            return True, problem
        key = (task.name, "Admission")
        if key in self._not_before and self._not_before[key] > self.clock():
            return False, None
        try:  # the repository's default branch, as GitHub says, before anything is pushed
            default = self.forge.default_branch(parse_repo(spec.repo))
        except RetryLater as exc:
            self._not_before[key] = self.clock() + dt.timedelta(seconds=exc.seconds)
            log.info("task %s: admission deferred: %s", task.name, exc)
            return False, None
        except GitHubError as exc:
            return True, f"cannot use repository {parse_repo(spec.repo).full_name}: {exc}"
        self._not_before.pop(key, None)
        return True, branch_problem(spec, rules, default)

    def _admit(self, task: AmpTask) -> tuple[bool, AmpTask]:
        """True when the task may go on; a refused task is saved in `error`, finished."""
        if self.rules is None or task.status.phase is not None or task.status.attempts:
            return True, task
        decided, problem = self.admission(task)
        if not decided:
            return False, task
        if problem:
            log.warning("task %s refused: %s", task.name, problem)
            task = self.store.save_status(task, invalid_spec_status(problem, iso(self.clock())))
            if self.on_change:
                self.on_change(task)
            return False, task
        return True, task

    def reconcile(self, name: str) -> Optional[AmpTask]:
        """Bring one task up to date with everything observable. Safe to call any time."""
        with self.lock(name):
            task = self.store.load(name)
            if task is None:
                return None
            go, task = self._admit(task)
            if not go:
                return task
            skip: set = set()
            for _ in range(25):
                event = self.next_event(task, skip)
                if event is None:
                    break
                task, d = self.apply(task, event)
                if not d.accepted:
                    skip.add(event)
            self.ensure(task)
            return task

    def ensure(self, task: AmpTask) -> None:
        """Make the world match the status (after a restart, or a failed action)."""
        waits = False
        for action in resume_actions(task.spec, task.status):
            try:
                if isinstance(action, StartAttempt):
                    if self.launcher.state(task, action.number).state == "missing":
                        waits = True
                        follow = self._launch(task, action.number)
                        if follow is not None:
                            task, _ = self.apply(task, follow)
                elif isinstance(action, StopAttempt):
                    if self.launcher.state(task, action.number).state in ("pending", "running"):
                        self.launcher.stop(task, action.number)
                else:
                    follow = self.perform(task, action)
                    if follow is not None:
                        self.apply(task, follow)
            except RetryLater as exc:
                if not isinstance(exc, Deferred):
                    log.info("task %s: %s deferred: %s", task.name, type(action).__name__, exc)
            except Exception as exc:  # one task's failure must not stop the loop
                log.warning("task %s: %s failed: %s", task.name, type(action).__name__, exc)
        if self.capacity is not None:
            self.capacity.seen(task, waiting=waits)

    # ------------------------------------------------------------------ CI
    def poll_ci(self, name: str) -> Optional[float]:
        """Poll CI once for a task waiting on it. Returns a delay hint after a transient error."""
        with self.lock(name):
            task = self.store.load(name)
            if task is None or task.status.stage != Stage.CI or task.status.ci is None:
                return None
            budget = self.budget_event(task)
            if budget is not None:  # a long CI wait counts against the budget too
                task, _ = self.apply(task, budget)
                return None
            ci = task.status.ci
            try:
                obs = self._need_forge().poll_ci(parse_repo(task.spec.repo), ci.sha,
                                                 event=ci.event.value)
            except RetryLater as exc:
                log.info("task %s: CI poll deferred %.0fs: %s", name, exc.seconds, exc)
                return exc.seconds
            except GitHubError as exc:
                self.apply(task, ev.ForgeFailed("ci", str(exc)))
                return None
            event = ci_event(obs, ci.sha, ci.since, task.spec.limits.ci_grace_minutes, self.clock())
            if event is not None:
                task, _ = self.apply(task, event)
            self.ensure(task)
            return None

    def _waiting_on_ci(self, name: str) -> Optional[tuple[str, str]]:
        """(sha, event) a task waits on, or None; spends the task's time budget if it is up
        (a long CI wait counts against it too). Called with the task's lock held."""
        task = self.store.load(name)
        if task is None or task.status.stage != Stage.CI or task.status.ci is None:
            return None
        budget = self.budget_event(task)
        if budget is not None:
            self.apply(task, budget)
            return None
        return task.status.ci.sha, task.status.ci.event.value

    def poll_repository(self, repo_full_name: str, task_names: list[str]) -> Optional[float]:
        """Poll CI once for every task of one repository waiting on it, at the cost of one
        conditional request per CI event for them all (see CiWatcher.poll_repository), and
        apply each task's event as `poll_ci` does. Returns the least seconds before this
        repository should be polled again (GitHub's retry time, or the request budget's
        spacing after a counted answer), None when the caller's schedule decides."""
        waiting: dict[str, tuple[str, str]] = {}
        for name in task_names:
            with self.lock(name):
                found = self._waiting_on_ci(name)
            if found is not None:
                waiting[name] = found
        if not waiting:
            return None
        try:
            result = self._need_forge().poll_repository(parse_repo(repo_full_name),
                                                        list(waiting.values()))
        except RetryLater as exc:
            log.info("repository %s: CI poll deferred %.0fs: %s", repo_full_name, exc.seconds, exc)
            return exc.seconds
        except GitHubError as exc:
            result = None
            failure: Optional[GitHubError] = exc
        else:
            failure = None
        hints: list[float] = [result.spacing] if result is not None and result.spacing else []
        for name, (sha, event) in waiting.items():
            with self.lock(name):
                task = self.store.load(name)  # it may have moved on while GitHub answered
                ci = task.status.ci if task is not None else None
                if task is None or task.status.stage != Stage.CI or ci is None \
                        or ci.sha != sha or ci.event.value != event:
                    continue
                obs = failure if result is None else result.observations.get((sha, event))
                if obs is None:
                    continue
                if isinstance(obs, RetryLater):
                    hints.append(obs.seconds)
                    continue
                if isinstance(obs, Exception):
                    self.apply(task, ev.ForgeFailed("ci", str(obs)))
                    continue
                event_ = ci_event(obs, sha, ci.since, task.spec.limits.ci_grace_minutes,
                                  self.clock())
                if event_ is not None:
                    task, _ = self.apply(task, event_)
                self.ensure(task)
        return max(hints) if hints else None
