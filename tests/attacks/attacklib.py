"""Helpers for the attacker tests. A hostile agent on the local runtime: the worker and its agent run as a non-root uid with no
capabilities (as a developer's own account would), the agent is the sandbox's fake amp told to
run shell commands (`@fake sh`), and the remote is the GitHub stand-in.

Under root the processes drop to uid 10001 with `setpriv`; run as an ordinary user they simply
run as that user. Assertions are on what reaches the remote and on what the attacker collected.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ampx.core import events as ev
from ampx.core.decide import decide
from ampx.core.models import AmpTaskSpec
from ampx.local.store import LocalStore
from ampx.sandbox.world import DEMO_REPO, World

ATTACKER_UID = 10001
OTHER_UID = 10002
NOW = "2026-11-25T10:00:00Z"
REPO_ROOT = Path(__file__).resolve().parents[2]


def as_user(uid: int) -> list[str]:
    """The argv prefix that runs a command as ``uid`` without any capability (root only)."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without util-linux's setpriv to drop to a non-root uid")
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--"]


_PYTHON: dict = {}


def python_for_the_user(uid: int | None = None) -> tuple[str, str]:
    """An interpreter the unprivileged user (``uid``, default the attacker) can execute (and
    start again from itself: setpriv execs with root's capabilities, the worker's children do
    not), and the PYTHONPATH that gives it this tree and this environment's packages (a pyenv
    under a 0700 /root is out of the user's reach)."""
    uid = the_uid() if uid is None else uid
    if uid in _PYTHON:
        return _PYTHON[uid]
    import site

    path = os.pathsep.join([str(REPO_ROOT), *site.getsitepackages()])
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        if not os.path.exists(candidate):
            continue
        ok = subprocess.run([*as_user(uid), candidate, "-c",
                             "import subprocess, sys; subprocess.run([sys.executable, '-c', "
                             "'import ampx, pydantic'], check=True)"],
                            env={"PYTHONPATH": path, "PATH": os.defpath}, cwd="/",
                            capture_output=True).returncode == 0
        if ok:
            _PYTHON[uid] = (candidate, path)
            return _PYTHON[uid]
    pytest.skip(f"no {version} interpreter uid {uid} can run")


def the_uid() -> int:
    return ATTACKER_UID if os.geteuid() == 0 else os.geteuid()


def give(path: Path, uid: int | None = None) -> Path:
    """Make ``path`` (recursively) the unprivileged user's."""
    uid = the_uid() if uid is None else uid
    if os.geteuid() == 0:
        for root, dirs, files in os.walk(path):
            os.chown(root, uid, uid)
            for name in dirs + files:
                os.lchown(os.path.join(root, name), uid, uid)
    return path


@dataclass
class Hostile:
    base: Path          # world-traversable scratch root (0755)
    world: World
    env: dict           # the worker's environment
    loot: Path          # where the attacker collects what it finds (the attacker's)
    home: Path          # the worker's user's HOME

    @property
    def db(self) -> Path:
        return Path(self.env["AMPX_HOME"]) / "ampx.db"

    def new_task(self, prompt: str, name: str = "01jattack00000000000000000", **kw):
        store = LocalStore(self.db)
        try:
            spec = AmpTaskSpec(repo=DEMO_REPO, prompt=prompt, branch=f"amp/{name[-6:]}", **kw)
            task = store.create(name, spec, "victim", NOW)
            task = store.save_status(task, decide(task.spec, task.status, ev.Created(), NOW).status)
        finally:
            store.close()
        give(Path(self.env["AMPX_HOME"]))
        return task

    def store(self) -> LocalStore:
        return LocalStore(self.db)

    def task(self, name: str):
        store = self.store()
        try:
            return store.get(name)
        finally:
            store.close()
            give(Path(self.env["AMPX_HOME"]))

    def next_attempt(self, name: str) -> None:
        """Move the task to attempt 2 the way the engine would (pushed, then CI red)."""
        store = self.store()
        try:
            task = store.get(name)
            st = task.status
            rep = st.reports[str(st.attempts)]
            d = decide(task.spec, st, ev.AttemptPushed(st.attempts, rep.commit, rep.thread_id), NOW)
            d = decide(task.spec, d.status, ev.CiRed(rep.commit, 1, "http://ci/1", "boom", "sig",
                                                     rerunnable=False), NOW)
            store.save_status(task, d.status)
        finally:
            store.close()
        give(Path(self.env["AMPX_HOME"]))

    def run_worker(self, name: str, attempt: int = 1, env: dict | None = None,
                   timeout: float = 150) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*as_user(the_uid()), python_for_the_user()[0], "-m", "ampx", "worker", "--backend", "local",
             "--task", name, "--attempt", str(attempt)],
            capture_output=True, text=True, env=env or self.env, timeout=timeout,
            cwd=str(self.base))

    def remote(self, *args: str) -> str:
        git_dir = str(self.world.emulator.git_path(DEMO_REPO))
        return subprocess.run(["git", "--git-dir", git_dir, *args], capture_output=True,
                              text=True).stdout

    def remote_objects(self) -> bytes:
        git_dir = str(self.world.emulator.git_path(DEMO_REPO))
        return subprocess.run(["git", "--git-dir", git_dir, "cat-file", "--batch-all-objects",
                               "--batch"], capture_output=True).stdout

    def looted(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.loot.iterdir() if p.is_file())


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")
