"""Workflow runs that take minutes without a runner: Actions under load, for benchmarks.

A real run in the emulator clones the commit and executes its steps; a thousand of those at
once would measure the machine, not the client. A timed run is recorded like any push run
(same payloads, ids, run numbers, hooks) for a commit sha, goes ``queued`` ->
``in_progress`` -> ``completed`` at the wall-clock times it was given, and has no jobs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from ._util import utcnow
from .state import Store, Workflow, WorkflowRun


@dataclass
class _Timed:
    run: WorkflowRun
    start_at: float  # monotonic
    end_at: float
    conclusion: str


class TimedRuns:
    """Reach it as ``emulator.timed_runs``; a thread advances the runs every ``tick`` s."""

    def __init__(self, emulator, tick: float = 0.1) -> None:
        self.emu = emulator
        self.tick = tick
        self._lock = threading.Lock()
        self._pending: list[_Timed] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, full_name: str, head_sha: str, head_branch: str, *, start_in: float = 0.0,
            duration: float = 60.0, conclusion: str = "success", event: str = "push",
            workflow: str = "CI") -> WorkflowRun:
        """Record a run of ``workflow`` for ``head_sha`` that starts in ``start_in`` s and
        completes ``duration`` s later with ``conclusion``."""
        emu = self.emu
        repo = emu.repo(full_name)
        store: Store = emu.store
        with emu.ci._cond:
            key = (repo.full_name.lower(), f".github/workflows/{workflow.lower()}.yml")
            wf = store.workflows.get(key)
            if wf is None:
                wf = store.workflows[key] = Workflow(store.next_id(), repo.full_name, key[1], workflow)
            run = WorkflowRun(
                id=store.next_id(), repo=repo, workflow=wf, run_number=wf.next_run_number,
                head_sha=head_sha, head_branch=head_branch, ref=f"refs/heads/{head_branch}",
                event=event, actor=repo.owner, spec={}, display_title=f"{workflow} {head_sha[:7]}",
                head_commit={"id": head_sha, "tree_id": head_sha, "message": workflow,
                             "timestamp": utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
                             "author": {"name": "bench", "email": "bench@example.com"},
                             "committer": {"name": "bench", "email": "bench@example.com"}},
                check_suite_id=store.next_id(), exec_sha=head_sha,
            )
            wf.next_run_number += 1
            store.runs[run.id] = run
            emu.ci._cond.notify_all()
        for hook in list(emu.ci.on_run_created):
            emu.ci._call_hook(hook, run)
        now = time.monotonic()
        with self._lock:
            self._pending.append(_Timed(run, now + start_in, now + start_in + duration, conclusion))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="ghemu-timed", daemon=True)
                self._thread.start()
        return run

    def _loop(self) -> None:
        while not self._stop.wait(self.tick):
            self.advance()

    def advance(self) -> None:
        now = time.monotonic()
        done: list[WorkflowRun] = []
        with self._lock:
            items = list(self._pending)
        with self.emu.ci._cond:
            for t in items:
                run = t.run
                if run.status == "queued" and now >= t.start_at:
                    run.status = "in_progress"
                    run.run_started_at = run.updated_at = utcnow()
                if run.status == "in_progress" and now >= t.end_at:
                    run.status, run.conclusion = "completed", t.conclusion
                    run.completed_at = run.updated_at = utcnow()
                    run.completed_monotonic = now
                    done.append(run)
            self.emu.ci._cond.notify_all()
        if done:
            with self._lock:
                ids = {r.id for r in done}
                self._pending = [t for t in self._pending if t.run.id not in ids]
            for run in done:
                self.emu.ci._completed(run)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
