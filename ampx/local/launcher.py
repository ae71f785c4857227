"""Attempts of the local runtime as local processes: `ampx worker --backend local`.

Each attempt runs in its own process group with its log under `runs/`, and a small JSON file
records its pid and the pid's start time. A supervisor restarted after a crash (even kill -9)
finds a still-running attempt by that file instead of starting it again, and recognises a
reused pid by its different start time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

from ..core.models import AmpTask
from ..core.observe import AttemptState
from .home import private_dir, private_file


def _proc_start_time(pid: int) -> Optional[str]:
    """Field 22 of /proc/<pid>/stat: identifies a process across pid reuse (Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, start_time: Optional[str]) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if start_time is None:
        return True
    current = _proc_start_time(pid)
    if current is None or current != start_time:
        return False
    try:  # a zombie is not running
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def split_credentials(environ: dict) -> tuple[dict, dict]:
    """The worker's environment without the credential variables, and those apart: they reach
    the worker on its stdin once it is non-dumpable, never in its (readable) initial environ."""
    from ..settings import SECRET_ENV_VARS

    return ({k: v for k, v in environ.items() if k not in SECRET_ENV_VARS},
            {k: v for k, v in environ.items() if k in SECRET_ENV_VARS and v})


def hand_over(proc: subprocess.Popen, credentials: dict) -> None:
    try:
        proc.stdin.write(json.dumps(credentials).encode())  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]
    except (BrokenPipeError, OSError):
        pass  # the worker died at once; its state says so


class LocalLauncher:
    def __init__(self, runs_dir: Path, env: Optional[dict] = None, grace_s: float = 15.0) -> None:
        self.runs_dir = Path(runs_dir)
        private_dir(self.runs_dir)
        self.env = env
        self.grace_s = grace_s
        self._children: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def _key(self, task: str, number: int) -> str:
        return f"{task}-a{number}"

    def meta_path(self, task: str, number: int) -> Path:
        return self.runs_dir / f"{self._key(task, number)}.json"

    def log_path(self, task: str, number: int) -> Path:
        return self.runs_dir / f"{self._key(task, number)}.log"

    def _meta(self, task: str, number: int) -> Optional[dict]:
        try:
            return json.loads(self.meta_path(task, number).read_text())
        except (OSError, ValueError):
            return None

    def _worker_env(self) -> dict:
        """The worker's environment: clones go under the data directory unless told otherwise."""
        worker_env = dict(os.environ if self.env is None else self.env)
        if not worker_env.get("AMPX_WORKSPACE"):
            worker_env["AMPX_WORKSPACE"] = str(private_dir(self.runs_dir.parent / "workspaces"))
        Path(worker_env["AMPX_WORKSPACE"]).mkdir(parents=True, exist_ok=True)
        return worker_env

    def start(self, task: AmpTask, number: int) -> str:
        key = self._key(task.name, number)
        with self._lock:
            if self._meta(task.name, number) is not None:
                return key  # launched before (maybe by a previous supervisor)
            log = private_file(self.log_path(task.name, number), "ab")
            worker_env, credentials = split_credentials(self._worker_env())
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "ampx", "worker", "--backend", "local",
                     "--task", task.name, "--attempt", str(number), "--credentials-stdin"],
                    stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True, env=worker_env, cwd=str(self.runs_dir),
                )
            finally:
                log.close()
            hand_over(proc, credentials)
            self._children[key] = proc
            tmp = self.meta_path(task.name, number).with_suffix(".tmp")
            with private_file(tmp, "w") as fh:
                fh.write(json.dumps({"pid": proc.pid, "start": _proc_start_time(proc.pid),
                                     "started": time.time()}))
            tmp.replace(self.meta_path(task.name, number))
        return key

    def state(self, task: AmpTask, number: int) -> AttemptState:
        key = self._key(task.name, number)
        meta = self._meta(task.name, number)
        if meta is None:
            return AttemptState("missing")
        proc = self._children.get(key)
        if proc is not None:
            code = proc.poll()
            if code is None:
                return AttemptState("running", job=key)
            if code == 0:
                return AttemptState("succeeded", job=key)
            return AttemptState("failed", f"worker exited with code {code}", job=key)
        if _alive(meta["pid"], meta.get("start")):
            return AttemptState("running", job=key)
        return AttemptState("failed", "the worker process ended without a report", job=key)

    def stop(self, task: AmpTask, number: int) -> None:
        """SIGTERM the attempt's process group (the worker keeps its work), SIGKILL later."""
        meta = self._meta(task.name, number)
        if meta is None or not _alive(meta["pid"], meta.get("start")):
            return
        pgid = meta["pid"]
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            return

        def reap() -> None:
            deadline = time.monotonic() + self.grace_s
            proc = self._children.get(self._key(task.name, number))
            while time.monotonic() < deadline:
                if proc is not None and proc.poll() is not None:
                    break
                if proc is None and not _alive(meta["pid"], meta.get("start")):
                    break
                time.sleep(0.1)
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

        threading.Thread(target=reap, daemon=True).start()

    def running(self) -> list[str]:
        return [k for k, p in self._children.items() if p.poll() is None]
