"""Benchmark: what waiting on CI costs in GitHub requests, per task and per repository.

N tasks wait on CI across R repositories of the GitHub stand-in, in a steady state: every
task's run takes about `--ci-seconds` (spread ±50 %), and a task whose run finishes is replaced
by a new one pushed at once, so N tasks wait all the time and every repository's runs change
every few seconds (the worst case for conditional requests). Runs are the stand-in's timed
runs (no runner: a thousand real runs would measure the machine). The engine polls them:

- `--mode repo` (now): the local supervisor's loop, one conditional request per repository
  and tick (`Engine.poll_repository`, `RepoSchedule`, the shared ETag cache and budget);
- `--mode task` (before): the previous loop, one `Engine.poll_ci` per task on its own clock.

It prints GitHub requests per minute (all, and counted: not 304), per task-minute, and the
detection delay (a run's completion to its task leaving CI: median, p90). Only CI polling is
counted (runs, jobs, logs); what a green task does next (its pull request) is recorded in
memory, not sent.

Usage: python benchmarks/github_cost.py [--tasks 1000] [--repos 10] [--minutes 2]
       [--ci-seconds 180] [--mode repo|task] [--webhooks]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

from ampx.core.models import AmpTask, AmpTaskSpec, AmpTaskStatus, Policy, Stage, WorkerReport
from ampx.core.observe import AttemptState
from ampx.engine import Engine
from ampx.github.auth import AppAuth
from ampx.github.service import GitHubService
from ampx.local.supervisor import Supervisor
from ampx.sandbox.github_emulator import GitHubEmulator
from ampx.schedule import CiSchedule, PollSchedule

CI_ENDPOINTS = ("/actions/runs", "/actions/jobs")


class MemStore:
    """Tasks in memory; notes when each task leaves CI (for the detection delay)."""

    path = "(memory)"

    def __init__(self) -> None:
        self.tasks: dict[str, AmpTask] = {}
        self.lock = threading.Lock()
        self.left_ci: dict[str, float] = {}  # task -> monotonic time it left CI

    def list(self):
        with self.lock:
            return [t.model_copy() for t in self.tasks.values()]

    def load(self, name):
        with self.lock:
            t = self.tasks.get(name)
            return t.model_copy(deep=True) if t else None

    def save_status(self, task, status):
        with self.lock:
            stored = self.tasks[task.name]
            if stored.status.stage == Stage.CI and status.stage != Stage.CI:
                self.left_ci.setdefault(task.name, time.monotonic())
            stored.status = status.model_copy(update={"reports": stored.status.reports})
            return stored.model_copy(deep=True)


class MemLauncher:
    def start(self, task, number):
        return f"{task.name}-a{number}"

    def stop(self, task, number):
        pass

    def state(self, task, number):
        return AttemptState("missing")


class CiOnlyForge:
    """GitHub for CI; pull requests recorded here (their cost is not what is measured)."""

    def __init__(self, svc: GitHubService) -> None:
        self.svc = svc

    def __getattr__(self, name):
        return getattr(self.svc, name)

    def open_or_adopt(self, repo, head, base, title, body, draft=False):
        return SimpleNamespace(url=f"http://gh/{head}", number=1, adopted=False, draft=draft)


def ci_requests(emu: GitHubEmulator) -> tuple[int, int]:
    total = n304 = 0
    for key, s in emu.stats.snapshot().items():
        if any(e in key for e in CI_ENDPOINTS):
            total += s["requests"]
            n304 += s["not_modified"]
    return total, n304


class World:
    def __init__(self, root: Path, repos: int, ci_seconds: float) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.emu = GitHubEmulator(root).start()  # GitHub's quota: 5,000 requests an hour
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        self.emu.register_app(77, pem, slug="ampx")
        self.repos = [f"bench{i}/app" for i in range(repos)]
        for r in self.repos:
            self.emu.create_repo(r)
            self.emu.install_app(77, r)
        self.svc = GitHubService(AppAuth(77, pem, self.emu.api_url), self.emu.api_url,
                                 schedule=PollSchedule())
        self.store = MemStore()
        self.engine = Engine(store=self.store, launcher=MemLauncher(), forge=CiOnlyForge(self.svc))
        self.ci_seconds = ci_seconds
        self.rng = random.Random(7)
        self.completed_at: dict[str, float] = {}  # sha -> monotonic completion
        self.sha_task: dict[str, str] = {}
        self.lock = threading.Lock()
        self.emu.ci.on_run_completed.append(self._completed)
        self.replacing = True

    def _completed(self, run) -> None:
        with self.lock:
            self.completed_at[run.head_sha] = run.completed_monotonic or time.monotonic()
            repo = run.repo.full_name
        if self.replacing:  # steady state: a new task takes the finished one's place
            threading.Thread(target=self.new_task, args=(repo, 0.0), daemon=True).start()

    def new_task(self, repo: str, elapsed: float) -> None:
        """A task that pushed `elapsed` s of its run ago, waiting on CI."""
        name = "t" + uuid.uuid4().hex[:10]
        sha = uuid.uuid4().hex + uuid.uuid4().hex[:8]
        duration = self.ci_seconds * self.rng.uniform(0.5, 1.5)
        spec = AmpTaskSpec(repo=repo, prompt="bench", branch=f"amp/{name}",
                           policy=Policy(flaky_retry=False))
        task = AmpTask(metadata={"name": name}, spec=spec, status=AmpTaskStatus())
        with self.store.lock:
            self.store.tasks[name] = task
        self.engine.reconcile(name)
        self.store.tasks[name].status.reports["1"] = WorkerReport(started_at="x")
        self.engine.reconcile(name)
        self.store.tasks[name].status.reports["1"] = WorkerReport(outcome="pushed", commit=sha)
        self.engine.reconcile(name)
        with self.lock:
            self.sha_task[sha] = name
        self.emu.timed_runs.add(repo, sha, spec.branch, start_in=min(2.0, max(0.0, 2.0 - elapsed)),
                                duration=max(1.0, duration - elapsed))

    def delays(self) -> list[float]:
        out = []
        with self.lock:
            pairs = [(self.sha_task[s], t) for s, t in self.completed_at.items() if s in self.sha_task]
        for name, done in pairs:
            left = self.store.left_ci.get(name)
            if left is not None:
                out.append(max(0.0, left - done))
        return out

    def stop(self) -> None:
        self.replacing = False
        self.emu.stop()


def per_task_loop(world: World, stop: threading.Event, tick: float) -> None:
    """The loop before this change: one CI poll per task on its own clock."""
    from ampx.engine import parse_iso, utcnow

    schedule = CiSchedule(PollSchedule())
    while not stop.is_set():
        now = time.monotonic()
        for task in world.store.list():
            st = task.status
            if st.stage != Stage.CI or st.ci is None or not schedule.due(task.name, now):
                continue
            waited = (utcnow() - parse_iso(st.ci.since)).total_seconds() if st.ci.since else 0
            retry = world.engine.poll_ci(task.name)
            schedule.after_poll(task.name, time.monotonic(), waited, retry)
        stop.wait(tick)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round((len(ordered) - 1) * q)))]


def run(tasks: int, repos: int, minutes: float, ci_seconds: float, mode: str,
        webhooks: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="ampx-ghcost-") as tmp:
        world = World(Path(tmp), repos, ci_seconds)
        try:
            for i in range(tasks):  # a steady state: runs already under way
                world.new_task(world.repos[i % repos], world.rng.uniform(0, ci_seconds))
            stop = threading.Event()
            if mode == "repo":
                sup = Supervisor(world.store, MemLauncher(), CiOnlyForge(world.svc), tick_s=0.25)
                sup.engine = world.engine
                loop = threading.Thread(target=sup.run, daemon=True)
                sup.stop = stop
                if webhooks:  # the stand-in delivers signed events; polling is the safety net
                    from ampx.webhooks import DeliveryGate, WebhookListener

                    listener = WebhookListener(DeliveryGate(b"bench-secret"), sup.delivered,
                                               host="127.0.0.1", port=0).start()
                    world.emu.webhooks.subscribe(f"http://127.0.0.1:{listener.port}/",
                                                 "bench-secret", events=("workflow_run",))
            else:
                loop = threading.Thread(target=per_task_loop, args=(world, stop, 0.25), daemon=True)
            warm = 20.0  # the first polls of every task fill the caches: not steady state
            loop.start()
            time.sleep(warm)
            req0, n3040 = ci_requests(world.emu)
            t0 = time.monotonic()
            done0 = len(world.delays())
            time.sleep(minutes * 60)
            req1, n3041 = ci_requests(world.emu)
            elapsed = (time.monotonic() - t0) / 60
            stop.set()
            loop.join(timeout=30)
            delays = world.delays()[done0:] or world.delays()
            waiting = sum(1 for t in world.store.list() if t.status.stage == Stage.CI)
        finally:
            world.stop()
    made, n304 = req1 - req0, n3041 - n3040
    return {
        "mode": mode, "tasks": tasks, "repos": repos, "minutes": elapsed,
        "requests_per_min": made / elapsed, "counted_per_min": (made - n304) / elapsed,
        "per_task_min": made / elapsed / tasks, "counted_per_task_min": (made - n304) / elapsed / tasks,
        "detected": len(delays), "delay_median": statistics.median(delays) if delays else float("nan"),
        "delay_p90": percentile(delays, 0.9), "waiting_at_end": waiting,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--repos", type=int, default=10)
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--ci-seconds", type=float, default=180.0)
    p.add_argument("--mode", choices=("repo", "task"), default="repo")
    p.add_argument("--webhooks", action="store_true",
                   help="repo mode with the stand-in's signed deliveries to the supervisor")
    a = p.parse_args(argv)
    r = run(a.tasks, a.repos, a.minutes, a.ci_seconds, a.mode, a.webhooks)
    print(f"{r['mode']:>4} mode{' + webhooks' if a.webhooks else ''}, {r['tasks']} tasks waiting on CI across {r['repos']} repositories, "
          f"{r['minutes']:.1f} min measured:")
    print(f"  GitHub requests/min: {r['requests_per_min']:.0f} "
          f"({r['counted_per_min']:.0f} counted, not 304)")
    print(f"  per task-minute: {r['per_task_min']:.3f} requests, {r['counted_per_task_min']:.3f} counted")
    print(f"  CI completion noticed after: median {r['delay_median']:.1f} s, p90 {r['delay_p90']:.1f} s "
          f"({r['detected']} completions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
