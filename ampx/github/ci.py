"""Waiting on GitHub Actions for one exact commit: one poll at a time, no sleeping here.

:meth:`CiWatcher.poll` makes one observation of the workflow runs of ``head_sha`` (event
``push``, or ``pull_request`` for a task whose CI runs on its draft pull request). The operator calls it on a timer (:func:`poll_interval`), acts on the state and
reschedules; when GitHub is rate limiting or failing, ``poll`` raises :class:`RetryLater`
with the delay to respect.

The runs list is fetched with a conditional request: the ETag of the last answer is sent in
``If-None-Match`` and a ``304 Not Modified`` (which GitHub does not count against the rate
limit) reuses the cached body. While the answer does not change, the previous observation is
returned as is - so a red commit's logs are fetched once, not on every poll.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional
from urllib.parse import quote

import requests

from ampx.core import events as ev
from ampx.core.repo import RepoRef
from ampx.schedule import PollSchedule, poll_interval  # noqa: F401  (re-exported)

from .auth import TokenProvider
from .client import ApiStats, Backoff, RestClient
from .errors import GitHubError, GitHubNotFound, GitHubPermissionError, RetryLater
from .excerpt import (
    EXCERPT_LIMIT, EXCERPT_SECONDS, JobLog, build_excerpt, signature, steps_from_api, target_ordinal,
)
from .joblog import LogDigest

log = logging.getLogger(__name__)

CiState = Literal["none", "pending", "green", "red"]

GREEN_CONCLUSIONS = frozenset({"success", "neutral", "skipped"})
RED_CONCLUSIONS = frozenset({"failure", "timed_out", "startup_failure", "cancelled"})
FAILED_JOB_CONCLUSIONS = frozenset({"failure", "timed_out"})
#: Conclusions for which re-running the failed jobs can help (a flaky test, a slow runner).
RERUNNABLE_CONCLUSIONS = frozenset({"failure", "timed_out"})
#: Logs fetched per red observation at most (one request each, plus the redirect).
MAX_LOGS = 6
#: Runs in the repository-wide page (GitHub's maximum page size).
REPO_PAGE = 100
#: Pages of a repository's runs read in one poll at most (then per-commit queries).
MAX_PAGES = 5
#: A commit whose oldest run sits this close to the end of a full page may have more runs on
#: the next page: it is asked for by ``head_sha`` instead of trusting the page.
PAGE_MARGIN = 10
#: Seconds between per-commit fallback queries of one commit (mostly free 304s).
FALLBACK_EVERY = 30.0
#: A repository polled within this many seconds shares the polling budget.
ACTIVE_WINDOW = 180.0
#: Observations remembered per commit (bounded: waiting commits are far fewer).
OBS_CACHE = 16384
#: After asking for a re-run, a run still showing its old completed attempt is reported as
#: pending for this long (GitHub takes a moment to queue the new attempt).
RERUN_GRACE_SECONDS = 120.0

# ----------------------------------------------------------------------------- schedule

# PollSchedule lives in ampx.schedule (the runtimes use it without the GitHub client).


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class RunInfo:
    id: int
    name: str
    workflow_id: Optional[int]
    status: str
    conclusion: Optional[str]
    html_url: Optional[str]
    run_attempt: int
    head_branch: Optional[str] = None

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def green(self) -> bool:
        return self.completed and self.conclusion in GREEN_CONCLUSIONS

    @property
    def red(self) -> bool:
        # A completed run that is not green is red (cancelled counts as red).
        return self.completed and self.conclusion not in GREEN_CONCLUSIONS


@dataclass(frozen=True)
class CiObservation:
    state: CiState
    runs: tuple[RunInfo, ...] = ()
    run_id: Optional[int] = None
    run_url: Optional[str] = None
    excerpt: Optional[str] = None
    signature: Optional[str] = None
    passed_jobs: tuple[str, ...] = ()
    failed_jobs: tuple[str, ...] = ()
    rerunnable: bool = False

    def to_event(self, sha: str) -> Optional[ev.Event]:
        """The decision core's event for this observation ("none": no event; the runtime
        turns a long "none" into CiMissing itself)."""
        if self.state == "green":
            return ev.CiGreen(sha, self.run_id, self.run_url)
        if self.state == "red":
            return ev.CiRed(
                sha, self.run_id, self.run_url, self.excerpt or "", self.signature or "",
                self.rerunnable,
            )
        if self.state == "pending":
            return ev.CiPending(sha, self.run_id, self.run_url)
        return None


@dataclass(frozen=True)
class RepoPoll:
    """One repository-wide poll: each ``(sha, event)``'s observation (or the error reading
    it), and the least seconds before the next counted poll of the repository (None: any
    time; the page had not changed)."""

    observations: dict[tuple[str, str], "CiObservation | Exception"]
    spacing: Optional[float] = None


_SLIM = ("id", "head_sha", "head_branch", "workflow_id", "path", "name", "display_title",
         "run_number", "status", "conclusion", "html_url", "run_attempt", "created_at")


def _slim(r: dict[str, Any]) -> dict[str, Any]:
    """What the watcher keeps of a run (a page's runs carry the whole repository object)."""
    return {k: r.get(k) for k in _SLIM}


def _run_info(r: dict[str, Any]) -> RunInfo:
    return RunInfo(
        id=int(r["id"]),
        name=str(r.get("name") or r.get("display_title") or r.get("path") or r["id"]),
        workflow_id=r.get("workflow_id"),
        status=str(r.get("status") or "queued"),
        conclusion=r.get("conclusion"),
        html_url=r.get("html_url"),
        run_attempt=int(r.get("run_attempt") or 1),
        head_branch=r.get("head_branch"),
    )


def latest_runs(raw_runs: list[dict[str, Any]], sha: str, branch: Optional[str]) -> list[RunInfo]:
    """The latest run of each workflow for ``sha`` (a re-push of the same commit starts new
    runs; the older ones no longer matter)."""
    best: dict[Any, dict[str, Any]] = {}
    for r in raw_runs:
        if r.get("head_sha") != sha:
            continue
        if branch is not None and r.get("head_branch") not in (None, branch):
            continue
        key = r.get("workflow_id") or r.get("path") or r.get("name") or r["id"]
        cur = best.get(key)
        rank = (int(r.get("run_number") or 0), int(r["id"]))
        if cur is None or rank > (int(cur.get("run_number") or 0), int(cur["id"])):
            best[key] = r
    runs = [_run_info(r) for r in best.values()]
    runs.sort(key=lambda x: x.id)
    return runs


# ----------------------------------------------------------------------------- watcher


class CiWatcher:
    """Polls the GitHub Actions runs of exact commits."""

    def __init__(
        self,
        token_provider: TokenProvider,
        api_url: str,
        clock: Callable[[], float] = time.monotonic,
        *,
        rest: Optional[RestClient] = None,
        session: Optional[requests.Session] = None,
        schedule: Optional[PollSchedule] = None,
        backoff: Optional[Backoff] = None,
        excerpt_limit: int = EXCERPT_LIMIT,
        max_logs: int = MAX_LOGS,
    ) -> None:
        self.provider = token_provider
        self.rest = rest or RestClient(api_url, token_provider, session=session, backoff=backoff)
        self.clock = clock
        self.schedule = schedule or PollSchedule.from_env()
        self.excerpt_limit = excerpt_limit
        self.max_logs = max_logs
        self._lock = threading.Lock()
        # (repo, sha, branch, event) -> (ETag of the runs list, observation)
        self._last: dict[tuple[str, str, Optional[str], str], tuple[Optional[str], CiObservation]] = {}
        self._reruns: dict[tuple[str, int], tuple[int, float]] = {}
        # (repo, sha, event) -> (fingerprint of the commit's latest runs, observation): a
        # repository-wide answer that changed for other commits reuses this one's observation
        self._by_commit: dict[tuple[str, str, str], tuple[tuple, CiObservation]] = {}
        # (repo, sha, event) -> clock of the last per-commit fallback query
        self._fallback_at: dict[tuple[str, str, str], float] = {}
        # (repo, sha, event) -> {run id: the run as last seen}: a waiting commit's runs, so
        # that one pushed off the first page by newer runs is looked for on the next
        self._known: dict[tuple[str, str, str], dict[int, dict[str, Any]]] = {}
        # (repo, sha, event) -> clock it was first missing from the repository's page
        self._missing: dict[tuple[str, str, str], float] = {}
        # repository -> clock of its last repository-wide poll (who shares the budget)
        self._active: dict[str, float] = {}
        #: Seconds between per-commit queries for a commit not in the repository's recent page.
        self.fallback_every = FALLBACK_EVERY
        #: Runs per repository-wide page (GitHub allows up to 100), and pages read at most.
        self.page_size = REPO_PAGE
        self.max_pages = MAX_PAGES

    @property
    def stats(self) -> ApiStats:
        """Requests made (all of them, including logs and re-runs) and 304s received."""
        return self.rest.stats

    def poll_interval(self, seconds_since_push: float) -> float:
        return self.schedule.interval(seconds_since_push)

    @staticmethod
    def _base(repo: RepoRef) -> str:
        return f"/repos/{quote(repo.owner)}/{quote(repo.name)}"

    # -- poll

    def poll(self, repo: RepoRef, sha: str, branch: Optional[str] = None,
             event: str = "push") -> CiObservation:
        """One observation of CI for ``sha``: the runs of ``event`` (``push`` to the branch, or
        ``pull_request`` for a pull request whose head is ``sha``). Raises RetryLater (rate
        limit, 5xx, network), GitHubNotFound (repository gone or not visible), GitHubAuthError."""
        try:
            resp = self.rest.get_json(
                repo,
                f"{self._base(repo)}/actions/runs",
                params={"head_sha": sha, "event": event, "per_page": 100, "exclude_pull_requests": "true"},
                conditional=True,
            )
        except GitHubNotFound:
            raise GitHubNotFound(
                f"repository {repo.full_name} not found (or the credentials cannot see it)", status=404
            ) from None
        body = resp.data if isinstance(resp.data, dict) else {}
        key = (repo.full_name.lower(), sha, branch, event)
        with self._lock:
            last = self._last.get(key)
            pending_rerun = any(k[0] == key[0] for k in self._reruns)
        if last is not None and resp.etag and last[0] == resp.etag and not pending_rerun:
            return last[1]
        runs = latest_runs(list(body.get("workflow_runs") or []), sha, branch)
        obs = self._observe(repo, runs)
        with self._lock:
            self._last[key] = (resp.etag, obs)
            if len(self._last) > 1024:
                self._last.pop(next(iter(self._last)))
        log.debug("CI %s@%s: %s (%d runs)", repo.full_name, sha[:12], obs.state, len(runs))
        return obs

    def poll_repository(self, repo: RepoRef, wanted: list[tuple[str, str]]) -> "RepoPoll":
        """One observation for each ``(sha, event)`` of ``repo``, for one conditional request
        per event for the whole repository: its most recent runs (``per_page=100``), matched
        to the commits.

        A waiting commit's runs are remembered from the answer they were first seen in. While
        a remembered run that has not completed is missing from the pages read so far (newer
        runs pushed it down), the next page is read too (conditional as well), up to
        ``max_pages``. A commit never seen with runs and not in the pages has none yet (a new
        run shows at the top of the first page) unless the pages hold only part of the
        repository's runs and the commit has been missing from them for ``fallback_every`` s:
        then it is asked for by ``head_sha`` (conditional), at most every ``fallback_every`` s
        (after a restart, the runs of a commit pushed long ago).

        RetryLater and GitHubNotFound for a repository-wide request are raised; a failed
        per-commit query or log read is returned in that commit's slot. ``RepoPoll.spacing``:
        after counted answers, the least seconds before the next poll of this repository, so
        that the active repositories together stay within the budget's share of the quota."""
        out: dict[tuple[str, str], CiObservation | Exception] = {}
        counted = 0
        now = self.clock()
        rkey = repo.full_name.lower()
        with self._lock:
            self._active[rkey] = now
            for k in [k for k, at in self._active.items() if now - at > ACTIVE_WINDOW]:
                del self._active[k]
            active = len(self._active)
        by_event: dict[str, list[str]] = {}
        for sha, event in dict.fromkeys(wanted):
            by_event.setdefault(event, []).append(sha)
        for event, shas in by_event.items():
            with self._lock:
                known = {sha: dict(self._known.get((rkey, sha, event), {})) for sha in shas}
                reruns = {rid for (r, rid) in self._reruns if r == rkey}
            # runs still to be seen: not completed when last seen, or re-run since
            unsettled = {rid for runs in known.values() for rid, r in runs.items()
                         if r.get("status") != "completed" or rid in reruns}
            page: list[dict[str, Any]] = []
            complete = False
            for number in range(1, self.max_pages + 1):
                more, complete, not_modified = self._runs_page(repo, event, number)
                counted += not not_modified
                page += more
                unsettled -= {int(r["id"]) for r in more}
                if complete or not unsettled or not more:
                    break
            positions: dict[str, list[int]] = {}
            for i, r in enumerate(page):
                positions.setdefault(str(r.get("head_sha")), []).append(i)
            margin = min(PAGE_MARGIN, len(page) // 10)
            found: dict[str, dict[int, dict[str, Any]]] = {}
            for sha in shas:
                key = (rkey, sha, event)
                at = positions.get(sha)
                runs = {**known[sha], **{int(page[i]["id"]): _slim(page[i]) for i in at or ()}}
                seen_whole = at is not None and (complete or max(at) < len(page) - 1 - margin)
                if known[sha] or seen_whole:
                    found[sha] = runs
                    continue
                with self._lock:
                    missing = self._missing.setdefault(key, now)
                if at is None and (complete or now - missing < self.fallback_every):
                    found[sha] = {}  # none yet (a new run shows at the top of the page)
                else:
                    out[(sha, event)] = self._fallback(repo, sha, event)
            for sha, runs in found.items():
                key = (rkey, sha, event)
                if runs:
                    with self._lock:
                        self._known[key] = runs
                try:
                    out[(sha, event)] = self._observe_commit(
                        repo, sha, event, latest_runs(list(runs.values()), sha, None))
                except (RetryLater, GitHubError) as exc:
                    out[(sha, event)] = exc
        spacing = self.rest.budget.poll_spacing(active) * counted if counted else None
        return RepoPoll(out, spacing)

    def _runs_page(self, repo: RepoRef, event: str, number: int
                   ) -> tuple[list[dict[str, Any]], bool, bool]:
        """(page ``number`` of the runs, newest first; whether no run is beyond it; whether
        GitHub said 304)."""
        params: dict[str, Any] = {"event": event, "per_page": self.page_size,
                                  "exclude_pull_requests": "true"}
        if number > 1:
            params["page"] = number
        try:
            resp = self.rest.get_json(repo, f"{self._base(repo)}/actions/runs", params=params,
                                      conditional=True)
        except GitHubNotFound:
            raise GitHubNotFound(
                f"repository {repo.full_name} not found (or the credentials cannot see it)", status=404
            ) from None
        body = resp.data if isinstance(resp.data, dict) else {}
        page = [r for r in body.get("workflow_runs") or [] if isinstance(r, dict) and "id" in r]
        return page, int(body.get("total_count") or 0) <= (number - 1) * self.page_size + len(page), \
            resp.not_modified

    def _fallback(self, repo: RepoRef, sha: str, event: str) -> CiObservation | Exception:
        """The per-commit query for a commit the recent page does not settle, spaced out."""
        key = (repo.full_name.lower(), sha, event)
        now = self.clock()
        with self._lock:
            last = self._fallback_at.get(key)
            cached = self._by_commit.get(key)
        if last is not None and cached is not None and now - last < self.fallback_every:
            return cached[1]
        try:
            obs = self.poll(repo, sha, None, event)
        except (RetryLater, GitHubError) as exc:
            return exc
        with self._lock:
            self._fallback_at[key] = now
            self._by_commit[key] = ((), obs)
            if obs.runs:  # seen whole: from now on the repository's pages keep it up to date
                self._known[key] = {r.id: {"id": r.id, "head_sha": sha, "head_branch": r.head_branch,
                                           "workflow_id": r.workflow_id, "name": r.name,
                                           "run_number": 0, "status": r.status,
                                           "conclusion": r.conclusion, "html_url": r.html_url,
                                           "run_attempt": r.run_attempt} for r in obs.runs}
            self._trim()
        return obs

    def _observe_commit(self, repo: RepoRef, sha: str, event: str, runs: list[RunInfo]) -> CiObservation:
        """The observation for a commit's latest runs, reused while they have not changed (a red
        commit's logs are read once) and no re-run is awaited in the repository."""
        key = (repo.full_name.lower(), sha, event)
        fingerprint = tuple((r.id, r.status, r.conclusion, r.run_attempt) for r in runs)
        with self._lock:
            cached = self._by_commit.get(key)
            pending_rerun = any(k[0] == key[0] for k in self._reruns)
        if cached is not None and cached[0] == fingerprint and not pending_rerun:
            return cached[1]
        obs = self._observe(repo, runs)
        with self._lock:
            self._by_commit[key] = (fingerprint, obs)
            self._trim()
        log.debug("CI %s@%s: %s (%d runs, repository page)", repo.full_name, sha[:12], obs.state, len(runs))
        return obs

    def _trim(self) -> None:
        for cache in (self._by_commit, self._known, self._missing):
            while len(cache) > OBS_CACHE:
                k = next(iter(cache))
                cache.pop(k)
                self._fallback_at.pop(k, None)

    def _awaiting_rerun(self, repo: RepoRef, run: RunInfo) -> bool:
        k = (repo.full_name.lower(), run.id)
        with self._lock:
            pending = self._reruns.get(k)
            if pending is None:
                return False
            before, at = pending
            if run.run_attempt > before or self.clock() - at > RERUN_GRACE_SECONDS:
                del self._reruns[k]
                return False
        return run.completed

    def _observe(self, repo: RepoRef, runs: list[RunInfo]) -> CiObservation:
        if not runs:
            return CiObservation("none")
        effective = [
            RunInfo(r.id, r.name, r.workflow_id, "requested", None, r.html_url, r.run_attempt, r.head_branch)
            if self._awaiting_rerun(repo, r) else r
            for r in runs
        ]
        red = [r for r in effective if r.red]
        if not red:
            first = next((r for r in effective if not r.completed), effective[0])
            state: CiState = "green" if all(r.green for r in effective) else "pending"
            return CiObservation(state, tuple(runs), first.id, first.html_url)
        return self._red(repo, tuple(runs), red, effective)

    def _red(
        self, repo: RepoRef, runs: tuple[RunInfo, ...], red: list[RunInfo], effective: list[RunInfo]
    ) -> CiObservation:
        base = self._base(repo)
        # name, job id, failed step's name, conclusion, the job's steps
        failed: list[tuple[str, int, Optional[str], str, Any]] = []
        cancelled: list[tuple[str, int, Optional[str], str, Any]] = []
        passed: list[str] = []
        notes: list[str] = []
        red_ids = {r.id for r in red}
        for run in effective:
            if not run.completed and run.id not in red_ids and run.status == "queued":
                continue  # nothing to learn from a queued run's jobs
            resp = self.rest.get_json(
                repo, f"{base}/actions/runs/{run.id}/jobs",
                params={"filter": "latest", "per_page": 100}, conditional=True,
            )
            jobs = (resp.data or {}).get("jobs") or [] if isinstance(resp.data, dict) else []
            for j in jobs:
                name = str(j.get("name") or j.get("id"))
                if len(red) > 1 and run.id in red_ids:
                    name = f"{run.name} / {name}"  # several red workflows: say which job is which
                conclusion = j.get("conclusion")
                if conclusion == "success":
                    passed.append(name)
                elif run.id in red_ids and conclusion in FAILED_JOB_CONCLUSIONS:
                    failed.append((name, int(j["id"]), _failed_step(j), conclusion, steps_from_api(j)))
                elif run.id in red_ids and conclusion == "cancelled":
                    cancelled.append((name, int(j["id"]), _failed_step(j), conclusion, steps_from_api(j)))
            if run.id in red_ids and not any(j.get("conclusion") in FAILED_JOB_CONCLUSIONS for j in jobs):
                if run.conclusion == "startup_failure" or not jobs:
                    notes.append(f"workflow {run.name}: {run.conclusion} (no job ran; check the workflow file)")
                elif run.conclusion == "cancelled":
                    notes.append(f"workflow {run.name}: cancelled")
        if not failed:
            failed = cancelled
        logs: list[JobLog] = []
        deadline = time.thread_time() + EXCERPT_SECONDS  # CPU for reading all the logs
        for name, job_id, step, conclusion, steps in failed[: self.max_logs]:
            # Read the whole log as it streams, keeping the failing step's section and the
            # failure's surroundings (bounded memory; a log of any size keeps its step headers).
            digest = LogDigest(target_ordinal(steps), deadline)
            try:
                found = self.rest.stream_redirected(repo, f"{base}/actions/jobs/{job_id}/logs", digest.feed)
            except GitHubError as exc:  # expired or forbidden log: say so, keep the rest
                log.warning("no log for job %s of %s: %s", job_id, repo.full_name, exc)
                found = False
            logs.append(JobLog(name, digest.close() if found else None, step, conclusion, steps))
        logs += [JobLog(n, None, s, c, st) for n, _, s, c, st in failed[self.max_logs:]]
        secrets = [self.provider.token_for(repo)]
        excerpt = build_excerpt(logs, passed, limit=self.excerpt_limit, secrets=secrets, notes=notes)
        primary = red[0]
        rerunnable = (
            len(red) == 1
            and primary.conclusion in RERUNNABLE_CONCLUSIONS
            and bool(failed)
        )
        return CiObservation(
            "red",
            runs,
            primary.id,
            primary.html_url,
            excerpt,
            signature(excerpt),
            tuple(dict.fromkeys(passed)),
            tuple(dict.fromkeys(n for n, *_ in failed)),
            rerunnable,
        )

    # -- actions

    def rerun_failed_jobs(self, repo: RepoRef, run_id: int) -> None:
        """Ask GitHub to re-run the failed jobs of ``run_id`` (a new attempt of the same run).
        Until the new attempt shows up, polls report that run as pending, not red."""
        base = self._base(repo)
        try:
            run = self.rest.get_json(repo, f"{base}/actions/runs/{run_id}").data or {}
            before = int(run.get("run_attempt") or 1)
        except GitHubNotFound:
            raise GitHubNotFound(f"workflow run {run_id} not found in {repo.full_name}", status=404) from None
        try:
            self.rest.request("POST", repo, f"{base}/actions/runs/{run_id}/rerun-failed-jobs", json={}, ok=(201,))
        except GitHubPermissionError as exc:
            if "already running" not in str(exc):
                raise
            log.info("run %s of %s is already running again", run_id, repo.full_name)
        with self._lock:
            self._reruns[(repo.full_name.lower(), run_id)] = (before, self.clock())
        log.info("re-running the failed jobs of run %s in %s", run_id, repo.full_name)


def _failed_step(job: dict[str, Any]) -> Optional[str]:
    for step in job.get("steps") or []:
        if step.get("conclusion") in ("failure", "timed_out", "cancelled"):
            return step.get("name")
    return None
