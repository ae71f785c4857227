"""`ampx demo`: the whole loop on this machine, with no account, cluster or network.

Six tasks run through the local runtime (a real supervisor process, real worker processes,
real git) against the GitHub stand-in and the scripted agent, while a live table shows them;
then a summary with attempts and time-to-green. Exit 0 only when every task ended as expected.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..cli import output
from ..cli.visible import visible
from ..cli.backend import add_follow_up, now_iso, owner_name
from ..core.ids import default_branch, new_task_id, short_ids
from ..core.models import AmpTask, AmpTaskSpec, Phase
from .scenarios import Scenario, scenarios
from .world import DEMO_REPO, PR_ONLY_REPO, applied, start_world


@dataclass
class Run:
    scenario: Scenario
    task_id: str
    created: float
    green_at: Optional[float] = None
    finished_at: Optional[float] = None
    actions: list[str] = field(default_factory=list)
    task: Optional[AmpTask] = None

    def done(self) -> bool:
        """Finished, with nothing pending and no developer step of the story left to take."""
        from ..local.supervisor import needs_attention

        t = self.task
        if t is None or needs_attention(t):
            return False
        st, sc = t.status, self.scenario
        if sc.continue_with and "continue" not in self.actions:
            return st.phase != Phase.NEEDS_REVIEW and st.phase is not None
        if sc.merge and st.phase == Phase.SUCCESS and "merge" not in self.actions:
            return False
        return True

    def ok(self) -> bool:
        t = self.task
        if t is None or t.status.phase is None:
            return False
        sc = self.scenario
        pr_ok = (t.status.pr_state == sc.expect_pr) if sc.expect_pr else t.status.pr_url is None
        return (t.status.phase.value == sc.expect_phase and t.status.attempts == sc.expect_attempts
                and pr_ok)


def _spec(sc: Scenario, task_id: str) -> AmpTaskSpec:
    spec = AmpTaskSpec(repo=sc.repo, prompt=sc.prompt, title=sc.title,
                       max_attempts=sc.max_attempts)
    return spec.model_copy(update={"branch": default_branch(sc.title, task_id)})


def drive(backend, runs: list[Run]) -> None:
    """The developer's side of the stories: abort one, continue and merge another."""
    for run in runs:
        t = backend.get(run.task_id)
        run.task = t
        st = t.status
        now = time.monotonic()
        if st.phase == Phase.SUCCESS and run.green_at is None:
            run.green_at = now
        sc = run.scenario
        if sc.abort_when_running and "abort" not in run.actions and st.history \
                and st.history[-1].started_at and st.phase and st.phase.active:
            backend.update_spec(t, lambda x: x.spec.model_copy(update={"abort_requested_at": now_iso()}))
            run.actions.append("abort")
        if sc.continue_with and st.phase == Phase.NEEDS_REVIEW and "continue" not in run.actions:
            backend.update_spec(t, add_follow_up(sc.continue_with, owner_name()))
            run.actions.append("continue")
        if sc.merge and st.phase == Phase.SUCCESS and st.pr_state == "open" \
                and "merge" not in run.actions:
            backend.update_spec(t, lambda x: x.spec.model_copy(update={"merge_requested_at": now_iso()}))
            run.actions.append("merge")
        if run.actions and run.actions[-1] != run.task.metadata.get("_seen_action"):
            run.task = backend.get(run.task_id)  # judge the task after our own request
            run.task.metadata["_seen_action"] = run.actions[-1]
        if run.done() and run.finished_at is None:
            run.finished_at = now


def summary_rows(runs: list[Run]) -> list[list[str]]:
    short = short_ids(r.task_id for r in runs)
    rows = []
    for r in runs:
        t = r.task
        ttg = f"{r.green_at - r.created:.1f}s" if r.green_at else "-"
        rows.append([
            r.scenario.key, short[r.task_id],
            t.status.phase.value if t and t.status.phase else "-",
            f"{r.scenario.expect_phase}",
            str(t.status.attempts if t else 0), ttg,
            (t.status.pr_state or "-") if t else "-",
            "ok" if r.ok() else "UNEXPECTED",
        ])
    return rows


SUMMARY_HEADERS = ["SCENARIO", "TASK", "PHASE", "EXPECTED", "ATTEMPTS", "TIME-TO-GREEN", "PR", "RESULT"]


def run_demo(keep: bool = False, workdir: Optional[Path] = None, timeout_s: float = 300.0,
             out=None) -> int:
    out = out or sys.stdout
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="ampx-demo-"))
    world = start_world(root)
    with applied(world.env):
        try:
            return _run(world, root, keep, timeout_s, out)
        finally:
            world.stop()
            if not keep:
                shutil.rmtree(root, ignore_errors=True)


def _run(world, root: Path, keep: bool, timeout_s: float, out) -> int:
    from ..local.backend import LocalBackend
    from ..local.supervisor import stop_background

    print(f"ampx demo: GitHub stand-in at {world.emulator.url}, repositories {DEMO_REPO} and "
          f"{PR_ONLY_REPO} (CI on pull requests only), data in {world.env['AMPX_HOME']}", file=out)
    backend = LocalBackend.from_env(ensure_supervisor=True)
    runs: list[Run] = []
    try:
        for sc in scenarios():
            tid = new_task_id()
            backend.create(tid, _spec(sc, tid), owner_name())
            runs.append(Run(sc, tid, time.monotonic()))
            print(f"Task {tid} created on branch {default_branch(sc.title, tid)}  [{sc.key}]",
                  file=out)
        deadline = time.monotonic() + timeout_s
        live = _live(out)
        try:
            while time.monotonic() < deadline:
                drive(backend, runs)
                live.show([r.task for r in runs if r.task])
                if all(r.done() for r in runs):
                    break
                time.sleep(0.5)
        finally:
            live.close([r.task for r in runs if r.task])
        rows = summary_rows(runs)
        print("", file=out)
        print(output.plain_table(rows, SUMMARY_HEADERS), file=out)
        ok = all(r.ok() for r in runs)
        pulls = [p for repo in world.repos for p in world.emulator.pulls(repo)]
        merged = [p for p in pulls if p.merged_at]
        print(f"\n{sum(r.ok() for r in runs)}/{len(runs)} tasks ended as expected; "
              f"{len(pulls)} pull request(s) opened, {len(merged)} merged.",
              file=out)
        _show_feedback(runs, out)
        if keep:
            print(f"\nKept everything. Try:\n  export AMPX_HOME={world.env['AMPX_HOME']}\n"
                  f"  ampx ls --all\n  ampx get {short_ids(r.task_id for r in runs)[runs[1].task_id]}"
                  f"\n  ampx logs {short_ids(r.task_id for r in runs)[runs[1].task_id]}"
                  f"\n(The GitHub stand-in stopped with the demo; history and logs remain.)",
                  file=out)
        return 0 if ok else 1
    finally:
        stop_background()


def _show_feedback(runs: list, out) -> None:
    """Show the CI excerpt as the agent itself received it (its thread's second message)."""
    from .fake_amp import load_thread

    for r in runs:
        t = r.task
        if r.scenario.key != "red-then-green" or t is None or not t.status.thread_id:
            continue
        thread = load_thread(t.status.thread_id) or {}
        told = [m["content"] for m in thread.get("messages", []) if m.get("role") == "user"]
        if len(told) < 2:
            continue
        lines = [ln for ln in str(told[1]).splitlines() if ln.strip()]
        print(f"\nWhat the agent was told after CI went red ({r.scenario.key}, attempt 2, "
              f"thread {t.status.thread_id}):", file=out)
        for ln in lines[:20]:
            print(f"  | {visible(ln[:110])}", file=out)
        if len(lines) > 20:
            print(f"  | … ({len(lines) - 20} more lines)", file=out)


class _live:
    """The live task table: rich on a terminal, a line per change otherwise."""

    def __init__(self, out) -> None:
        self.out = out
        self.tty = hasattr(out, "isatty") and out.isatty()
        self.last: dict[str, str] = {}
        self.live = None
        if self.tty:
            from rich.live import Live

            self.live = Live(output.rich_table([], False), auto_refresh=False)
            self.live.start()

    def show(self, tasks) -> None:
        short = short_ids(t.name for t in tasks)
        if self.live is not None:
            self.live.update(output.rich_table(tasks, False, short), refresh=True)
            return
        for t in tasks:
            line = f"{short[t.name]}  {t.status.phase.value if t.status.phase else 'queued':13} " \
                   f"{visible(t.status.summary or '')}"
            if self.last.get(t.name) != line:
                print(line, file=self.out, flush=True)
                self.last[t.name] = line

    def close(self, tasks) -> None:
        if self.live is not None:
            self.live.update(output.rich_table(tasks, False, short_ids(t.name for t in tasks)),
                             refresh=True)
            self.live.stop()
