"""The local runtime's operator: one process that reconciles every task in the SQLite file.

Started on demand by the CLI (`ampx start` launches it when none runs), stopped with
`ampx daemon stop`. An exclusive lock on `supervisor.lock` guarantees one supervisor per data
directory; the pid file is only for `status`/`stop`. It polls the database (cheap: a version
probe) and CI on the same schedule as the operator.
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

from ..core.models import ACTIVE_PHASES, Stage
from ..core.observe import pr_comment_due
from ..ci_poller import RepoSchedule, group_by_repository, seconds_since_push
from ..core.queueing import Limits
from ..engine import Engine
from ..settings import GitHubSettings, register_env_secrets
from ..slots import SlotBook
from ..worker.harden import forbid_inspection
from . import credentials, paths
from .home import private_file
from .launcher import LocalLauncher
from .store import LocalStore

log = logging.getLogger("ampx.supervisor")


def lock_path() -> Path:
    return paths.home() / "supervisor.lock"


def pid_path() -> Path:
    return paths.home() / "supervisor.pid"


def env_path() -> Path:
    """The running supervisor's credential fingerprint (see `ampx.local.credentials`)."""
    return paths.home() / "supervisor.env"


def _forge():
    gh = GitHubSettings.from_env()
    if not (gh.app_id and gh.private_key) and not gh.token:
        log.warning("GitHub is not configured (GITHUB_TOKEN or a GitHub App): tasks will wait at CI")
        return None
    from ..github.service import GitHubService

    return GitHubService.from_settings(gh)


def local_rules():
    """Task rules from the config file, read when a task is admitted (edits apply at once)."""
    from ..cli.config import task_rules

    return task_rules(GitHubSettings.from_env().git_url)


def local_limits() -> Limits:
    """maxConcurrentAttempts[PerRepo] from the config file, read every pass (edits apply at once)."""
    from ..cli.config import limits

    return limits()


def slot_state(task, launcher) -> str:
    """For the concurrency limits: "running" (the attempt's process holds a slot), "due" (it
    should run and has not started), or "" (neither)."""
    st = task.status
    if st.phase not in ACTIVE_PHASES or st.stage != Stage.AGENT or not st.attempts:
        return ""
    report = st.reports.get(str(st.attempts))
    if report is not None and report.outcome is not None:
        return ""  # reported: its process is ending, its slot is free
    state = launcher.state(task, st.attempts).state
    return "due" if state == "missing" else "running" if state in ("pending", "running") else ""


def needs_attention(task) -> bool:
    st, spec = task.status, task.spec
    if st.phase is None or st.phase in ACTIVE_PHASES or st.pr_state == "merging":
        return True
    if pr_comment_due(st):  # a draft left for review still needs its summary comment
        return True
    if spec.abort_requested_at and spec.abort_requested_at != st.abort_handled_at:
        return True
    if spec.merge_requested_at and spec.merge_requested_at != st.merge_handled_at:
        return True
    return len(spec.follow_ups) > st.follow_ups_seen


class Supervisor:
    def __init__(self, store: LocalStore, launcher: LocalLauncher, forge=None,
                 tick_s: float = 0.25, rules=None, limits=None) -> None:
        self.store = store
        self.launcher = launcher
        self.engine = Engine(store=store, launcher=launcher, forge=forge, rules=rules)
        self.limits = limits  # () -> Limits; None: no limits
        self.slots = SlotBook(Limits())
        self.tick_s = tick_s
        self.schedule = RepoSchedule()
        self.stop = threading.Event()
        self._last_warning: dict[str, str] = {}
        # repositories a webhook delivery named since the last step (polled at once)
        self._heard: "queue.SimpleQueue[str]" = queue.SimpleQueue()
        self._pending_heard: set[str] = set()

    def delivered(self, delivery) -> None:
        """A webhook delivery (`ampx.webhooks.Delivery`): its repository is polled on the next
        step (within `tick_s`), and then only as a safety net while deliveries keep coming."""
        if delivery.news:
            self._heard.put(delivery.repo)

    def _warn(self, name: str, message: str) -> None:
        """One line per task per distinct problem: a problem that lasts is not news 4x a second."""
        if self._last_warning.get(name) != message:
            self._last_warning[name] = message
            log.warning("task %s: %s", name, message)

    def _limit(self, tasks) -> None:
        """Give the engine this pass's picture of the slots (nothing when unlimited)."""
        try:
            limits = self.limits() if self.limits else Limits()
        except ValueError as exc:  # a hand-edited config file: keep the limits in effect
            self._warn("(config)", str(exc))
            limits = self.slots.limits
        if limits.unlimited:
            self.engine.capacity = None
            return
        self.slots.set_limits(limits)
        self.slots.set_world((task, state) for task in tasks
                             if (state := slot_state(task, self.launcher)))
        self.engine.capacity = self.slots

    def step(self) -> None:
        now = time.monotonic()
        every = self.store.list()
        self._limit(every)
        tasks = [t for t in every if needs_attention(t)]
        waiting = group_by_repository(tasks)
        while not self._heard.empty():
            repo = self._heard.get_nowait()
            self._pending_heard.add(repo)
            self.schedule.heard(repo)
        # a delivery's repository is polled at once, within the budget (else when it allows)
        heard = {r for r in self._pending_heard if self.schedule.may_poll(r, now)}
        self._pending_heard -= heard
        for task in tasks:
            if task.status.stage and task.status.stage.value == "ci" and task.status.ci:
                continue  # polled with its repository below
            try:
                self.engine.reconcile(task.name)
            except Exception as exc:  # one task's trouble must not stop the others
                self._warn(task.name, str(exc))
            else:
                self._last_warning.pop(task.name, None)
        for repo, group in waiting.items():
            if repo not in heard and not self.schedule.due(repo, now):
                continue
            try:  # one request for every task of the repository waiting on CI
                hint = self.engine.poll_repository(repo, [t.name for t in group])
            except Exception as exc:
                self._warn(repo, str(exc))
                hint = None
            else:
                self._last_warning.pop(repo, None)
            self.schedule.after_poll(repo, seconds_since_push(group), hint)
        self.schedule.forget(waiting)

    def run(self) -> None:
        log.info("supervisor running on %s", self.store.path)
        while not self.stop.is_set():
            self.step()
            self.stop.wait(self.tick_s)


def run_foreground() -> int:
    """`ampx daemon run`: hold the lock and supervise until SIGTERM/SIGINT."""
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("urllib3", "github"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    forbid_inspection()  # it holds the GitHub credentials: no agent may read its environ
    register_env_secrets()  # excerpts and summaries it writes must not carry them
    lock = private_file(lock_path(), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("another supervisor is running for this data directory", file=sys.stderr)
        return 1
    with private_file(pid_path(), "w") as fh:
        fh.write(str(os.getpid()))
    credentials.record(env_path(), os.environ)
    store = LocalStore(paths.db_path())
    sup = Supervisor(store, LocalLauncher(paths.runs_dir()), _forge(), rules=local_rules,
                     limits=local_limits)
    from ..webhooks import from_env as webhooks_from_env

    try:  # AMPX_WEBHOOK_LISTEN: GitHub's deliveries wake the poll of their repository
        listener = webhooks_from_env(sup.delivered)
    except (OSError, ValueError) as exc:
        print(f"error: webhooks: {exc}", file=sys.stderr)
        pid_path().unlink(missing_ok=True)
        env_path().unlink(missing_ok=True)
        lock.close()
        return 1
    if listener is not None:
        listener.start()
    signal.signal(signal.SIGTERM, lambda *_: sup.stop.set())
    signal.signal(signal.SIGINT, lambda *_: sup.stop.set())
    try:
        sup.run()
    finally:
        if listener is not None:
            listener.stop()
        pid_path().unlink(missing_ok=True)
        env_path().unlink(missing_ok=True)
        lock.close()
    return 0


def running_pid() -> Optional[int]:
    """The supervisor's pid if one holds the lock, else None."""
    try:
        lock = private_file(lock_path(), "a")
    except OSError:
        return None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            return int(pid_path().read_text().strip())
        except (OSError, ValueError):
            return -1
    else:
        fcntl.flock(lock, fcntl.LOCK_UN)
        return None
    finally:
        lock.close()


def start_background(wait_s: float = 10.0) -> int:
    """Start a detached supervisor with this process's environment; return its pid."""
    pid = running_pid()
    if pid:
        return pid
    log_file = private_file(paths.home() / "supervisor.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "ampx", "daemon", "run"],
                            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=str(paths.home()))
    log_file.close()
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if running_pid():
            return proc.pid
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"the supervisor did not start; see {paths.home() / 'supervisor.log'}")


def ensure_current(environ=None) -> tuple[int, list[str]]:
    """A supervisor running with the credentials of `environ` (this process's by default):
    started if none runs, restarted if it holds other values. Returns (pid, the variables that
    changed, empty when it kept running or was started fresh)."""
    environ = os.environ if environ is None else environ
    pid = running_pid()
    if pid:
        differ = credentials.changed(env_path(), environ)
        if differ == []:
            return pid, []
        stop_background()
        return start_background(), differ or ["(unknown)"]
    return start_background(), []


def stop_background(timeout_s: float = 10.0) -> Optional[int]:
    pid = running_pid()
    if not pid or pid < 0:
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and running_pid():
        time.sleep(0.05)
    return pid
