"""A GitHub Actions stand-in: turns pushes into workflow runs and really executes them.

For every push (over smart HTTP, by a merge, or announced with
``GitHubEmulator.notify_push`` after a ``file://`` push) the workflow files of
the pushed commit are read from ``.github/workflows/*.yml|yaml``; those whose
``on`` selects the event (with ``branches``/``branches-ignore``/``tags``/
``paths`` filters evaluated like GitHub does) get a workflow run. Runs go
``queued`` -> ``in_progress`` -> ``completed`` on a small thread pool; each job
runs its ``run:`` steps with bash in a fresh clone of the commit, with GitHub's
default environment variables, and writes a log in GitHub's raw log format
(timestamped lines, ``##[group]``/``##[endgroup]``, ``##[error]``). ``uses:``
steps are logged but not executed.

Deliberately out of scope: matrices (one job per matrix-less job definition),
containers/services, reusable workflows, artifacts and caches.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from . import gitrepo
from ._util import as_list, filter_matches, log_timestamp, utcnow
from .expressions import ExpressionError, condition, substitute
from .payloads import Urls, head_commit
from .state import Account, Job, PullRequest, Repo, Step, Store, Workflow, WorkflowRun

log = logging.getLogger(__name__)

ZERO_SHA = "0" * 40
DEFAULT_PR_TYPES = ("opened", "synchronize", "reopened")
#: Environment variables a step inherits from the emulator process; nothing
#: else leaks in (the host environment may hold credentials).
INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "SHELL", "TERM", "PYTHONPATH", "VIRTUAL_ENV")


@dataclass
class WorkflowFile:
    path: str
    spec: dict[str, Any] | None
    error: str | None = None

    @property
    def name(self) -> str:
        if self.spec and isinstance(self.spec.get("name"), str):
            return self.spec["name"]
        return self.path


def parse_workflow(path: str, text: bytes) -> WorkflowFile:
    """Parse a workflow file; PyYAML reads the ``on`` key as boolean True."""
    try:
        spec = yaml.safe_load(text.decode("utf-8", errors="replace"))
    except yaml.YAMLError as exc:
        return WorkflowFile(path, None, f"Invalid workflow file: {exc}")
    if not isinstance(spec, dict):
        return WorkflowFile(path, None, "Invalid workflow file: the file is not a mapping")
    if True in spec and "on" not in spec:
        spec["on"] = spec.pop(True)
    if "on" not in spec:
        return WorkflowFile(path, None, "Invalid workflow file: No event triggers defined in `on`")
    if not isinstance(spec.get("jobs"), dict) or not spec["jobs"]:
        return WorkflowFile(path, None, "Invalid workflow file: No jobs defined in `jobs`")
    return WorkflowFile(path, spec)


def event_filters(spec: dict[str, Any], event: str) -> dict[str, Any] | None:
    """The filter mapping for ``event`` under ``on``, or None if not triggered."""
    on = spec.get("on")
    if isinstance(on, str):
        return {} if on == event else None
    if isinstance(on, list):
        return {} if event in on else None
    if isinstance(on, dict) and event in on:
        value = on[event]
        return value if isinstance(value, dict) else {}
    return None


def ref_matches(filters: dict[str, Any], ref: str) -> bool:
    """GitHub's branches/tags filter semantics for a push to ``ref``."""
    if ref.startswith("refs/heads/"):
        name, inc_key, exc_key, other = ref[len("refs/heads/") :], "branches", "branches-ignore", ("tags", "tags-ignore")
    elif ref.startswith("refs/tags/"):
        name, inc_key, exc_key, other = ref[len("refs/tags/") :], "tags", "tags-ignore", ("branches", "branches-ignore")
    else:
        return False
    inc, exc = filters.get(inc_key), filters.get(exc_key)
    if inc is None and exc is None and any(k in filters for k in other):
        return False  # only the other kind of ref was filtered: this kind never matches
    if inc is not None and not filter_matches(as_list(inc), name):
        return False
    if exc is not None and filter_matches(as_list(exc), name):
        return False
    return True


def paths_match(filters: dict[str, Any], files: Callable[[], list[str]]) -> bool:
    inc, exc = filters.get("paths"), filters.get("paths-ignore")
    if inc is None and exc is None:
        return True
    changed = files()
    if inc is not None:
        return any(filter_matches(as_list(inc), f) for f in changed)
    return any(not filter_matches(as_list(exc), f) for f in changed)


def _scalar(value: Any) -> str:
    """A YAML scalar as the Actions runner sees it (YAML 1.1 booleans are plain text there)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _step_name(step: dict[str, Any]) -> str:
    if step.get("name"):
        return str(step["name"])
    if step.get("uses"):
        return f"Run {step['uses']}"
    return f"Run {_first_line(_scalar(step.get('run')))}"


def _parse_env_file(path: Path) -> dict[str, str]:
    """Parse GITHUB_ENV/GITHUB_OUTPUT syntax: ``K=V`` lines and ``K<<DELIM`` heredocs."""
    result: dict[str, str] = {}
    if not path.exists():
        return result
    lines = path.read_text(errors="replace").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delim = line.split("<<", 1)
            body: list[str] = []
            i += 1
            while i < len(lines) and lines[i] != delim:
                body.append(lines[i])
                i += 1
            result[key] = "\n".join(body)
        elif "=" in line:
            key, value = line.split("=", 1)
            result[key] = value
        i += 1
    return result


class _Cancelled(Exception):
    pass


class CI:
    """The Actions engine of one emulator. Reach it as ``emulator.ci``."""

    def __init__(
        self,
        store: Store,
        work_root: Path,
        *,
        concurrency: int = 2,
        step_timeout: float = 600.0,
        keep_workspaces: bool = False,
    ) -> None:
        self.store = store
        self.work_root = work_root
        self.step_timeout = step_timeout
        self.keep_workspaces = keep_workspaces
        #: Callables invoked (in the worker thread) with each run that completes.
        self.on_run_completed: list[Callable[[WorkflowRun], None]] = []
        #: Callables invoked with each run as it is created (status ``queued``).
        self.on_run_created: list[Callable[[WorkflowRun], None]] = []
        self.urls: Urls | None = None
        self._held: set[str] = set()
        self._paused = False
        self._parked: list[tuple[int, int]] = []
        self._cond = threading.Condition(store.lock)
        self._executor = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="ghemu-ci")
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._procs_lock = threading.Lock()
        self._stopping = threading.Event()
        self._hostname = socket.gethostname()

    # ------------------------------------------------------------------ knobs
    def hold(self, repo: str) -> None:
        """Stop creating runs for ``repo`` (pushes are then ignored, as if Actions were down)."""
        with self.store.lock:
            self._held.add(repo.lower())

    def release(self, repo: str) -> None:
        """Undo :meth:`hold`; later pushes create runs again."""
        with self.store.lock:
            self._held.discard(repo.lower())

    def pause(self) -> None:
        """Keep new runs ``queued`` (created but not started) until :meth:`resume`."""
        with self.store.lock:
            self._paused = True

    def resume(self) -> None:
        with self.store.lock:
            self._paused = False
            parked, self._parked = self._parked, []
        for run_id, attempt in parked:
            self._executor.submit(self._execute, run_id, attempt)

    def runs(self, repo: str | None = None) -> list[WorkflowRun]:
        """Every run (newest first), optionally of one repository."""
        with self.store.lock:
            runs = [r for r in self.store.runs.values() if repo is None or r.repo.full_name.lower() == repo.lower()]
        return sorted(runs, key=lambda r: r.id, reverse=True)

    def _busy(self) -> bool:
        return any(r.status != "completed" for r in self.store.runs.values())

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Block until no run is queued or in progress; raises TimeoutError."""
        with self._cond:
            if not self._cond.wait_for(lambda: not self._busy(), timeout):
                busy = [f"{r.repo.full_name}#{r.id}:{r.status}" for r in self.store.runs.values() if r.status != "completed"]
                raise TimeoutError(f"CI still busy after {timeout}s: {busy}")

    def wait_for_run(
        self, predicate: Callable[[WorkflowRun], bool], timeout: float = 30.0
    ) -> WorkflowRun:
        """Block until some run satisfies ``predicate``; returns it."""
        with self._cond:
            found: list[WorkflowRun] = []

            def check() -> bool:
                found[:] = [r for r in self.store.runs.values() if predicate(r)]
                return bool(found)

            if not self._cond.wait_for(check, timeout):
                raise TimeoutError(f"no matching workflow run within {timeout}s")
            return found[0]

    # --------------------------------------------------------------- triggers
    def _load_workflows(self, repo: Repo, sha: str) -> list[WorkflowFile]:
        files = [
            p
            for p in gitrepo.list_dir(repo.git_dir, sha, ".github/workflows")
            if p.endswith((".yml", ".yaml"))
        ]
        result = []
        for path in sorted(files):
            blob = gitrepo.read_blob(repo.git_dir, sha, path)
            if blob is not None:
                result.append(parse_workflow(path, blob))
        return result

    def on_push(self, repo: Repo, ref: str, before: str | None, after: str | None, actor: Account) -> list[WorkflowRun]:
        """Create (and schedule) the runs a push of ``ref`` triggers."""
        with self.store.lock:
            if repo.full_name.lower() in self._held or self._stopping.is_set():
                return []
        if not after or after == ZERO_SHA:
            return []  # branch deletions do not trigger push workflows
        cache: list[list[str]] = []

        def changed() -> list[str]:
            if not cache:
                base = before if before and before != ZERO_SHA else None
                if base is None:
                    default = repo.refs.get(f"refs/heads/{repo.default_branch}")
                    if default and default != after:
                        base = gitrepo.merge_base(repo.git_dir, default, after)
                cache.append(gitrepo.changed_files(repo.git_dir, base, after))
            return cache[0]

        info = gitrepo.commit_info(repo.git_dir, after)
        created = []
        for wf in self._load_workflows(repo, after):
            if wf.spec is not None:
                filters = event_filters(wf.spec, "push")
                if filters is None or not ref_matches(filters, ref):
                    continue
                # GitHub does not evaluate path filters for tag pushes.
                if not ref.startswith("refs/tags/") and not paths_match(filters, changed):
                    continue
            branch = ref[len("refs/heads/") :] if ref.startswith("refs/heads/") else (ref.split("/", 2)[-1])
            created.append(
                self._create_run(repo, wf, event="push", ref=ref, head_branch=branch, head_sha=after, exec_sha=after, actor=actor, info=info)
            )
        for run in created:
            self._schedule(run)
        return created

    def on_pull_request(self, pr: PullRequest, action: str, actor: Account) -> list[WorkflowRun]:
        """Create the ``pull_request`` runs for a PR being opened or synchronised.

        Like GitHub, the jobs test the merge of head into base
        (``refs/pull/N/merge``); no run is created when that merge conflicts.
        """
        repo = pr.repo
        with self.store.lock:
            if repo.full_name.lower() in self._held or self._stopping.is_set() or pr.state != "open":
                return []
            base_sha = repo.refs.get(f"refs/heads/{pr.base_ref}")
            head_sha = pr.head_sha
        if base_sha is None:
            return []
        gitrepo.update_ref(repo.git_dir, f"refs/pull/{pr.number}/head", head_sha)
        clean, tree = gitrepo.merge_tree(repo.git_dir, base_sha, head_sha)
        if not clean or tree is None:
            return []
        merge_sha = gitrepo.commit_tree(
            repo.git_dir, tree, [base_sha, head_sha], f"Merge {head_sha} into {base_sha}"
        )
        gitrepo.update_ref(repo.git_dir, f"refs/pull/{pr.number}/merge", merge_sha)
        info = gitrepo.commit_info(repo.git_dir, head_sha)
        created = []
        for wf in self._load_workflows(repo, merge_sha):
            if wf.spec is None:
                continue
            filters = event_filters(wf.spec, "pull_request")
            if filters is None:
                continue
            types = as_list(filters.get("types")) or list(DEFAULT_PR_TYPES)
            if action not in types or not ref_matches(
                {k: v for k, v in filters.items() if k in ("branches", "branches-ignore")}, f"refs/heads/{pr.base_ref}"
            ):
                continue
            if not paths_match(filters, lambda: gitrepo.changed_files(repo.git_dir, base_sha, merge_sha)):
                continue
            run = self._create_run(
                repo, wf, event="pull_request", ref=f"refs/pull/{pr.number}/merge", head_branch=pr.head_ref,
                head_sha=head_sha, exec_sha=merge_sha, actor=actor, info=info, pull=pr,
            )
            created.append(run)
        for run in created:
            self._schedule(run)
        return created

    def _create_run(
        self,
        repo: Repo,
        wf: WorkflowFile,
        *,
        event: str,
        ref: str,
        head_branch: str | None,
        head_sha: str,
        exec_sha: str,
        actor: Account,
        info: gitrepo.CommitInfo,
        pull: PullRequest | None = None,
    ) -> WorkflowRun:
        with self._cond:
            key = (repo.full_name.lower(), wf.path)
            workflow = self.store.workflows.get(key)
            if workflow is None:
                workflow = self.store.workflows[key] = Workflow(self.store.next_id(), repo.full_name, wf.path, wf.name)
            workflow.name = wf.name
            run = WorkflowRun(
                id=self.store.next_id(),
                repo=repo,
                workflow=workflow,
                run_number=workflow.next_run_number,
                head_sha=head_sha,
                head_branch=head_branch,
                ref=ref,
                event=event,
                actor=actor,
                spec=wf.spec or {},
                display_title=pull.title if pull else _first_line(info.message),
                head_commit=head_commit(info),
                check_suite_id=self.store.next_id(),
                exec_sha=exec_sha,
                pull_number=pull.number if pull else None,
            )
            workflow.next_run_number += 1
            self.store.runs[run.id] = run
            if wf.error:
                # GitHub records a failed run with no jobs for an invalid workflow file.
                run.status, run.conclusion = "completed", "failure"
                run.completed_at, run.completed_monotonic = utcnow(), time.monotonic()
                run.display_title = wf.error
            else:
                for key_, spec in wf.spec["jobs"].items():
                    self._new_job(run, str(key_), spec if isinstance(spec, dict) else {}, 1)
            self._cond.notify_all()
        for hook in list(self.on_run_created):
            self._call_hook(hook, run)
        if wf.error:
            self._completed(run)
        return run

    def _new_job(self, run: WorkflowRun, key: str, spec: dict[str, Any], attempt: int) -> Job:
        labels = [str(x) for x in as_list(spec.get("runs-on"))] or ["ubuntu-latest"]
        job = Job(
            id=self.store.next_id(),
            run=run,
            run_attempt=attempt,
            key=key,
            name=str(spec.get("name") or key),
            spec=spec,
            labels=labels,
            continue_on_error=bool(spec.get("continue-on-error") is True),
        )
        run.jobs.append(job)
        self.store.jobs[job.id] = job
        return job

    def _schedule(self, run: WorkflowRun) -> None:
        with self.store.lock:
            if run.status == "completed":
                return
            if self._paused:
                self._parked.append((run.id, run.run_attempt))
                return
            attempt = run.run_attempt
        self._executor.submit(self._execute, run.id, attempt)

    # ------------------------------------------------------------------ rerun
    def rerun_failed_jobs(self, run: WorkflowRun) -> None:
        """Start a new attempt re-running failed jobs and the jobs that need them.

        The caller validates that the run is completed and has failed jobs.
        """
        with self._cond:
            latest = run.latest_jobs()
            failed = {j.key for j in latest if j.conclusion in ("failure", "cancelled", "timed_out")}
            # Dependents of failed jobs were skipped; they run again too.
            changed = True
            while changed:
                changed = False
                for j in latest:
                    needs = {str(n) for n in as_list(j.spec.get("needs"))}
                    if j.key not in failed and needs & failed:
                        failed.add(j.key)
                        changed = True
            attempt = run.run_attempt + 1
            for old in latest:
                new = self._new_job(run, old.key, old.spec, attempt)
                if old.key not in failed:
                    # Successful jobs are carried into the new attempt as they were.
                    new.status, new.conclusion = old.status, old.conclusion
                    new.created_at, new.started_at, new.completed_at = old.created_at, old.started_at, old.completed_at
                    new.steps = [Step(**vars(s)) for s in old.steps]
                    new.log_lines = list(old.log_lines)
                    new.step_ranges = dict(old.step_ranges)
            run.run_attempt = attempt
            run.status, run.conclusion = "queued", None
            run.completed_at = run.completed_monotonic = None
            run.updated_at = utcnow()
            self._cond.notify_all()
        self._schedule(run)

    # -------------------------------------------------------------- execution
    def _execute(self, run_id: int, attempt: int) -> None:
        try:
            self._execute_run(run_id, attempt)
        except Exception:  # pragma: no cover - defensive: never lose a run silently
            log.exception("workflow run %s crashed", run_id)
            with self._cond:
                run = self.store.runs.get(run_id)
                if run is not None and run.status != "completed":
                    run.status, run.conclusion = "completed", "failure"
                    run.completed_at, run.completed_monotonic = utcnow(), time.monotonic()
                    for j in run.latest_jobs():
                        if j.status != "completed":
                            j.status, j.conclusion, j.completed_at = "completed", "failure", utcnow()
                    self._cond.notify_all()
            if run is not None:
                self._completed(run)

    def _execute_run(self, run_id: int, attempt: int) -> None:
        with self._cond:
            run = self.store.runs[run_id]
            if run.run_attempt != attempt or run.status == "completed":
                return
            run.status = "in_progress"
            run.run_started_at = run.updated_at = utcnow()
            jobs = run.latest_jobs()
            self._cond.notify_all()
        results: dict[str, str | None] = {j.key: j.conclusion for j in jobs if j.status == "completed"}
        pending = [j for j in jobs if j.status != "completed"]
        while pending:
            ready = [
                j for j in pending
                if all(str(n) in results for n in as_list(j.spec.get("needs")))
            ] or pending[:1]  # a dependency cycle or unknown need: run in file order
            job = ready[0]
            pending.remove(job)
            # A job whose needs did not all succeed is skipped (unless its if: says otherwise).
            needs_failed = any(results.get(str(n)) != "success" for n in as_list(job.spec.get("needs")))
            if self._stopping.is_set():
                self._finish_job(job, "cancelled")
            else:
                self._run_job(run, job, needs_failed)
            results[job.key] = job.conclusion
        with self._cond:
            if run.run_attempt != attempt:
                return
            conclusions = [j.conclusion for j in run.latest_jobs() if not j.continue_on_error]
            if "failure" in conclusions or "timed_out" in conclusions:
                conclusion = "failure"
            elif "cancelled" in conclusions:
                conclusion = "cancelled"
            else:
                conclusion = "success"
            run.status, run.conclusion = "completed", conclusion
            run.completed_at = run.updated_at = utcnow()
            run.completed_monotonic = time.monotonic()
            self._cond.notify_all()
        self._completed(run)

    def _completed(self, run: WorkflowRun) -> None:
        for hook in list(self.on_run_completed):
            self._call_hook(hook, run)

    @staticmethod
    def _call_hook(hook: Callable[[WorkflowRun], None], run: WorkflowRun) -> None:
        try:
            hook(run)
        except Exception:
            log.exception("CI hook %r failed", hook)

    def _finish_job(self, job: Job, conclusion: str) -> None:
        with self._cond:
            now = utcnow()
            job.status, job.conclusion = "completed", conclusion
            job.started_at = job.started_at or now
            job.completed_at = now
            for s in job.steps:
                if s.status != "completed":
                    s.status, s.conclusion = "completed", "skipped" if conclusion != "cancelled" else "cancelled"
                    s.completed_at = now
            job.run.updated_at = now
            self._cond.notify_all()

    def _log(self, job: Job, line: str) -> None:
        with self.store.lock:
            job.log_lines.append(f"{log_timestamp()} {line}")

    def _contexts(self, run: WorkflowRun, job: Job, workspace: Path, env: dict[str, str], steps: dict[str, Any]) -> dict[str, Any]:
        urls = self.urls
        ref_name = run.ref.split("/", 2)[-1] if run.ref.startswith(("refs/heads/", "refs/tags/")) else run.ref
        return {
            "github": {
                "sha": run.exec_sha,
                "ref": run.ref,
                "ref_name": ref_name,
                "ref_type": "tag" if run.ref.startswith("refs/tags/") else "branch",
                "head_ref": run.head_branch if run.event == "pull_request" else "",
                "repository": run.repo.full_name,
                "repository_owner": run.repo.owner.login,
                "run_id": str(run.id),
                "run_number": str(run.run_number),
                "run_attempt": str(job.run_attempt),
                "event_name": run.event,
                "workflow": run.workflow.name,
                "job": job.key,
                "actor": run.actor.login,
                "server_url": urls.web if urls else "",
                "api_url": urls.api if urls else "",
                "workspace": str(workspace),
                "token": "",
            },
            "env": dict(env),
            "runner": {"os": "Linux", "arch": "X64", "name": "ampx-emulator-runner", "temp": str(workspace.parent / "tmp")},
            "job": {"status": "success"},
            "steps": steps,
            "secrets": {},
            "vars": {},
            "inputs": {},
            "matrix": {},
            "strategy": {},
            "needs": {},
        }

    def _base_env(self, run: WorkflowRun, job: Job, workspace: Path, tmp: Path) -> dict[str, str]:
        urls = self.urls
        ref_name = run.ref.split("/", 2)[-1] if run.ref.startswith(("refs/heads/", "refs/tags/")) else run.ref
        env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        event_path = tmp / "event.json"
        event_path.write_text(json.dumps({"ref": run.ref, "after": run.head_sha, "repository": {"full_name": run.repo.full_name}}))
        env.update(
            {
                "CI": "true",
                "GITHUB_ACTIONS": "true",
                "GITHUB_SHA": run.exec_sha,
                "GITHUB_REF": run.ref,
                "GITHUB_REF_NAME": ref_name,
                "GITHUB_REF_TYPE": "tag" if run.ref.startswith("refs/tags/") else "branch",
                "GITHUB_REPOSITORY": run.repo.full_name,
                "GITHUB_REPOSITORY_OWNER": run.repo.owner.login,
                "GITHUB_REPOSITORY_ID": str(run.repo.id),
                "GITHUB_RUN_ID": str(run.id),
                "GITHUB_RUN_NUMBER": str(run.run_number),
                "GITHUB_RUN_ATTEMPT": str(job.run_attempt),
                "GITHUB_WORKFLOW": run.workflow.name,
                "GITHUB_WORKFLOW_REF": f"{run.repo.full_name}/{run.workflow.path}@{run.ref}",
                "GITHUB_JOB": job.key,
                "GITHUB_EVENT_NAME": run.event,
                "GITHUB_EVENT_PATH": str(event_path),
                "GITHUB_ACTOR": run.actor.login,
                "GITHUB_TRIGGERING_ACTOR": run.actor.login,
                "GITHUB_WORKSPACE": str(workspace),
                "GITHUB_SERVER_URL": urls.web if urls else "",
                "GITHUB_API_URL": urls.api if urls else "",
                "GITHUB_GRAPHQL_URL": (urls.api + "/graphql") if urls else "",
                "GITHUB_HEAD_REF": (run.head_branch or "") if run.event == "pull_request" else "",
                "GITHUB_BASE_REF": self._base_ref(run),
                "RUNNER_OS": "Linux",
                "RUNNER_ARCH": "X64",
                "RUNNER_NAME": "ampx-emulator-runner",
                "RUNNER_TEMP": str(tmp),
                "RUNNER_TOOL_CACHE": str(tmp / "toolcache"),
                "RUNNER_WORKSPACE": str(workspace.parent),
            }
        )
        return env

    def _base_ref(self, run: WorkflowRun) -> str:
        if run.pull_number is None:
            return ""
        with self.store.lock:
            pr = self.store.pulls.get(run.repo.full_name.lower(), {}).get(run.pull_number)
            return pr.base_ref if pr else ""

    def _run_job(self, run: WorkflowRun, job: Job, needs_failed: bool) -> None:
        spec = job.spec
        steps_spec = [s for s in as_list(spec.get("steps")) if isinstance(s, dict)]
        jobdir = Path(tempfile.mkdtemp(prefix=f"job-{job.id}-", dir=self._workdir()))
        workspace, tmp = jobdir / run.repo.name, jobdir / "tmp"
        tmp.mkdir()
        (jobdir / "home").mkdir()
        env = self._base_env(run, job, workspace, tmp)
        env["HOME"] = str(jobdir / "home")  # like a fresh runner: steps cannot touch the host's ~
        wf_env = run.spec.get("env") if isinstance(run.spec.get("env"), dict) else {}
        job_env = spec.get("env") if isinstance(spec.get("env"), dict) else {}
        step_ctx: dict[str, Any] = {}
        try:
            contexts = self._contexts(run, job, workspace, env, step_ctx)
            if needs_failed and not _mentions_status(spec.get("if")):
                self._finish_job(job, "skipped")
                return
            try:
                if spec.get("if") is not None and not condition(spec.get("if"), contexts, failed=needs_failed):
                    self._finish_job(job, "skipped")
                    return
            except ExpressionError as exc:
                self._log(job, f"##[error]{exc}")
                self._finish_job(job, "failure")
                return
            with self._cond:
                now = utcnow()
                job.status, job.started_at = "in_progress", now
                job.steps = [Step(1, "Set up job", "in_progress", None, now)]
                job.steps += [Step(i + 2, _step_name(s)) for i, s in enumerate(steps_spec)]
                job.steps.append(Step(len(steps_spec) + 2, "Complete job"))
                job.log_lines = []
                job.step_ranges = {}
                self._cond.notify_all()
            self._setup_job(run, job, workspace)
            for name, value in {**wf_env, **job_env}.items():
                env[str(name)] = substitute(_scalar(value), self._contexts(run, job, workspace, env, step_ctx))
            deadline = None
            if spec.get("timeout-minutes") is not None:
                deadline = time.monotonic() + float(spec["timeout-minutes"]) * 60
            failed = False
            pgids: list[int] = []
            masks: list[str] = []
            defaults = {**_defaults(run.spec), **_defaults(spec)}
            for index, step_spec in enumerate(steps_spec):
                step = job.steps[index + 1]
                ctx = self._contexts(run, job, workspace, env, step_ctx)
                try:
                    should_run = condition(step_spec.get("if"), ctx, failed=failed, cancelled=self._stopping.is_set())
                except ExpressionError as exc:
                    self._log(job, f"##[error]{exc}")
                    should_run, failed = False, True
                if not should_run:
                    with self._cond:
                        step.status, step.conclusion = "completed", "skipped"
                        self._cond.notify_all()
                    continue
                outcome = self._run_step(run, job, step, step_spec, env, ctx, workspace, tmp, defaults, deadline, pgids, masks)
                if step_spec.get("id"):
                    outputs = _parse_env_file(tmp / f"output_{step.number}")
                    step_ctx[str(step_spec["id"])] = {"outputs": outputs, "outcome": outcome, "conclusion": step.conclusion}
                if outcome != "success" and step.conclusion != "success":
                    failed = True
                if deadline is not None and time.monotonic() >= deadline:
                    self._log(
                        job,
                        f"##[error]The job running on runner ampx-emulator-runner has exceeded the maximum execution time of {spec['timeout-minutes']} minutes.",
                    )
                    failed = True
                    break
            self._complete_step(job, pgids)
            self._finish_job(job, "cancelled" if self._stopping.is_set() else ("failure" if failed else "success"))
        finally:
            if not self.keep_workspaces:
                shutil.rmtree(jobdir, ignore_errors=True)

    def _workdir(self) -> Path:
        path = self.work_root / "ci"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _setup_job(self, run: WorkflowRun, job: Job, workspace: Path) -> None:
        start = len(job.log_lines)
        for line in (
            "Current runner version: '2.321.0'",
            "Runner name: 'ampx-emulator-runner'",
            "Runner group name: 'Default'",
            f"Machine name: '{self._hostname}'",
            "##[group]Operating System",
            "Linux (GitHub emulator by ampx; workflows run on the host)",
            "##[endgroup]",
            f"Requested labels: {', '.join(job.labels)}",
            f"Job defined at: {run.repo.full_name}/{run.workflow.path}@{run.ref}",
            "Prepare workflow directory",
            f"Complete job name: {job.name}",
        ):
            self._log(job, line)
        gitrepo.run_git(["clone", "--quiet", "--shared", "--no-checkout", str(run.repo.git_dir), str(workspace)])
        gitrepo.run_git(["checkout", "--quiet", "--detach", run.exec_sha], cwd=workspace)
        self._log(job, f"Checked out {run.exec_sha} into {workspace}")
        with self._cond:
            s = job.steps[0]
            s.status, s.conclusion, s.completed_at = "completed", "success", utcnow()
            job.step_ranges[1] = (start, len(job.log_lines))
            self._cond.notify_all()

    def _complete_step(self, job: Job, pgids: list[int]) -> None:
        step = job.steps[-1]
        start = len(job.log_lines)
        with self._cond:
            step.status, step.started_at = "in_progress", utcnow()
        self._log(job, "Cleaning up orphan processes")
        for pgid in pgids:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        with self._cond:
            step.status, step.conclusion, step.completed_at = "completed", "success", utcnow()
            job.step_ranges[step.number] = (start, len(job.log_lines))
            self._cond.notify_all()

    def _run_step(
        self,
        run: WorkflowRun,
        job: Job,
        step: Step,
        spec: dict[str, Any],
        env: dict[str, str],
        ctx: dict[str, Any],
        workspace: Path,
        tmp: Path,
        defaults: dict[str, Any],
        deadline: float | None,
        pgids: list[int],
        masks: list[str],
    ) -> str:
        """Run one step; returns its outcome (success/failure). Updates ``step``."""
        start = len(job.log_lines)
        with self._cond:
            step.status, step.started_at = "in_progress", utcnow()
            self._cond.notify_all()
        step_env = dict(env)
        try:
            for name, value in (spec.get("env") or {}).items():
                step_env[str(name)] = substitute(_scalar(value), ctx)
        except (ExpressionError, AttributeError) as exc:
            self._log(job, f"##[error]{exc}")
            return self._end_step(job, step, start, "failure", spec)
        if "uses" in spec:
            self._log(job, f"##[group]Run {spec['uses']}")
            with_args = spec.get("with") if isinstance(spec.get("with"), dict) else {}
            if with_args:
                self._log(job, "with:")
                for k, v in with_args.items():
                    self._log(job, f"  {k}: {_scalar(v)}")
            self._log(job, "##[endgroup]")
            self._log(job, f"GitHub emulator: action '{spec['uses']}' is not executed (the workspace is already checked out).")
            return self._end_step(job, step, start, "success", spec)
        script_src = _scalar(spec.get("run"))
        try:
            script = substitute(script_src, ctx)
        except ExpressionError as exc:
            self._log(job, f"##[error]{exc}")
            return self._end_step(job, step, start, "failure", spec)
        shell = spec.get("shell") or defaults.get("shell")
        argv, display, suffix = _shell_command(shell)
        self._log(job, f"##[group]Run {_first_line(script)}")
        for line in script.splitlines() or [""]:
            self._log(job, f"\x1b[36;1m{line}\x1b[0m")
        self._log(job, f"shell: {display}")
        if spec.get("env"):
            self._log(job, "env:")
            for name in spec["env"]:
                self._log(job, f"  {name}: {step_env.get(str(name), '')}")
        self._log(job, "##[endgroup]")
        if argv is None:
            self._log(job, f"##[error]Shell '{shell}' is not supported by the GitHub emulator.")
            return self._end_step(job, step, start, "failure", spec)
        script_path = tmp / f"step_{step.number}{suffix}"
        script_path.write_text(script)
        files = {
            "GITHUB_ENV": tmp / f"env_{step.number}",
            "GITHUB_PATH": tmp / f"path_{step.number}",
            "GITHUB_OUTPUT": tmp / f"output_{step.number}",
            "GITHUB_STEP_SUMMARY": tmp / f"summary_{step.number}",
            "GITHUB_STATE": tmp / f"state_{step.number}",
        }
        for key, path in files.items():
            path.touch()
            step_env[key] = str(path)
        cwd = workspace
        wd = spec.get("working-directory") or defaults.get("working-directory")
        if wd:
            cwd = workspace / substitute(str(wd), ctx)
        timeout = self.step_timeout
        if spec.get("timeout-minutes") is not None:
            timeout = min(timeout, float(spec["timeout-minutes"]) * 60)
        if deadline is not None:
            timeout = max(0.0, min(timeout, deadline - time.monotonic()))
        cmd = [a.replace("{0}", str(script_path)) for a in argv]
        try:
            proc = subprocess.Popen(
                cmd, cwd=cwd, env=step_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError as exc:
            self._log(job, f"##[error]An error occurred trying to start process '{cmd[0]}' with working directory '{cwd}'. {exc.strerror}")
            return self._end_step(job, step, start, "failure", spec)
        pgids.append(proc.pid)
        with self._procs_lock:
            self._procs.add(proc)
        reader = threading.Thread(target=self._pump, args=(job, proc, masks), daemon=True)
        reader.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc.pid)
            proc.wait()
        finally:
            with self._procs_lock:
                self._procs.discard(proc)
        reader.join(timeout=0.5)  # background children may keep the pipe open
        env.update(_parse_env_file(files["GITHUB_ENV"]))
        for entry in files["GITHUB_PATH"].read_text().splitlines():
            if entry.strip():
                env["PATH"] = entry.strip() + os.pathsep + env.get("PATH", "")
        if timed_out:
            minutes = timeout / 60
            self._log(job, f"##[error]The action '{step.name}' has timed out after {minutes:g} minutes.")
            return self._end_step(job, step, start, "failure", spec)
        if self._stopping.is_set():
            self._log(job, "##[error]The operation was canceled.")
            return self._end_step(job, step, start, "cancelled", spec)
        if proc.returncode != 0:
            code = proc.returncode if proc.returncode > 0 else 128 - proc.returncode
            self._log(job, f"##[error]Process completed with exit code {code}.")
            return self._end_step(job, step, start, "failure", spec)
        return self._end_step(job, step, start, "success", spec)

    def _end_step(self, job: Job, step: Step, start: int, outcome: str, spec: dict[str, Any]) -> str:
        conclusion = outcome
        if outcome == "failure" and spec.get("continue-on-error") is True:
            conclusion = "success"
        with self._cond:
            step.status, step.conclusion, step.completed_at = "completed", conclusion, utcnow()
            job.step_ranges[step.number] = (start, len(job.log_lines))
            job.run.updated_at = utcnow()
            self._cond.notify_all()
        return outcome

    def _pump(self, job: Job, proc: subprocess.Popen[bytes], masks: list[str]) -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            line = _workflow_command(line, masks)
            if line is None:
                continue
            for secret in masks:
                if secret:
                    line = line.replace(secret, "***")
            self._log(job, line)
        proc.stdout.close()

    # --------------------------------------------------------------- shutdown
    def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel queued work, kill running steps and wait for the workers."""
        self._stopping.set()
        with self._procs_lock:
            procs = list(self._procs)
        for proc in procs:
            _kill_group(proc.pid)
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._cond:
            now = utcnow()
            for run in self.store.runs.values():
                if run.status != "completed":
                    run.status, run.conclusion, run.completed_at = "completed", "cancelled", now
                    for j in run.latest_jobs():
                        if j.status != "completed":
                            j.status, j.conclusion, j.completed_at = "completed", "cancelled", now
            self._cond.notify_all()


def _mentions_status(expr: Any) -> bool:
    text = str(expr or "")
    return any(f in text for f in ("always()", "failure()", "cancelled()"))


def _defaults(spec: dict[str, Any]) -> dict[str, Any]:
    d = spec.get("defaults")
    if isinstance(d, dict) and isinstance(d.get("run"), dict):
        return d["run"]
    return {}


def _shell_command(shell: Any) -> tuple[list[str] | None, str, str]:
    """(argv with ``{0}`` placeholder, how GitHub displays it, script suffix)."""
    bash = shutil.which("bash") or "/bin/bash"
    if shell is None:
        return [bash, "-e", "{0}"], f"{bash} -e {{0}}", ".sh"
    shell = str(shell)
    if shell == "bash":
        return [bash, "--noprofile", "--norc", "-eo", "pipefail", "{0}"], f"{bash} --noprofile --norc -eo pipefail {{0}}", ".sh"
    if shell == "sh":
        sh = shutil.which("sh") or "/bin/sh"
        return [sh, "-e", "{0}"], f"{sh} -e {{0}}", ".sh"
    if shell == "python":
        py = shutil.which("python3") or shutil.which("python") or "python3"
        return [py, "{0}"], f"{py} {{0}}", ".py"
    if "{0}" in shell:
        argv = shlex.split(shell)
        return argv, shell, ""
    return None, shell, ""


def _workflow_command(line: str, masks: list[str]) -> str | None:
    """Render ``::command::`` lines the way the Actions log shows them."""
    if not line.startswith("::"):
        return line
    head, sep, message = line[2:].partition("::")
    if not sep:
        return line
    name = head.split(" ", 1)[0]
    if name == "add-mask":
        masks.append(message)
        return None
    if name in ("error", "warning", "notice"):
        return f"##[{name}]{message}"
    if name == "group":
        return f"##[group]{message}"
    if name == "endgroup":
        return "##[endgroup]"
    if name in ("debug", "set-output", "save-state", "stop-commands", "add-matcher", "remove-matcher"):
        return None
    return line


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def iter_run_logs(run: WorkflowRun, jobs: Iterable[Job]) -> Iterable[tuple[str, str]]:
    """(file name, content) pairs of a run's log archive, laid out like GitHub's."""
    for index, job in enumerate(jobs, start=1):
        safe = job.name.replace("/", "_")
        yield f"{index}_{safe}.txt", job.log_text()
        for step in job.steps:
            rng = job.step_ranges.get(step.number)
            if rng is None:
                continue
            lines = job.log_lines[rng[0] : rng[1]]
            step_name = step.name.replace("/", "_")[:80]
            yield f"{safe}/{step.number}_{step_name}.txt", "\ufeff" + "".join(line + "\n" for line in lines)
