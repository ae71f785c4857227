"""End every process the agent left behind before the worker touches a credential again.

The agent may start daemons (`setsid`, double forks) that leave its process group and session.
As a child subreaper (`prctl(PR_SET_CHILD_SUBREAPER)`) the worker inherits every such orphan
instead of init, so all of them stay its descendants: `kill_descendants` walks `/proc` for the
worker's descendants, SIGKILLs them and reaps them, until none are left.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make orphaned descendants this process's children (Linux); False where impossible."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def _parents() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, state) of every visible process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        table[int(entry.name)] = (int(fields[1]), fields[0])
    return table


def descendants(root: int | None = None, *, live_only: bool = True) -> list[int]:
    """Every descendant of ``root`` (default: this process), zombies excluded by default."""
    root = os.getpid() if root is None else root
    table = _parents()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _state) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    if live_only:
        found = [p for p in found if table.get(p, (0, "Z"))[1] not in ("Z", "X")]
    return found


def _reap() -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_descendants(timeout_s: float = 10.0) -> int:
    """SIGKILL every descendant of this process and reap them; returns how many were killed.
    Raises RuntimeError if some are still there after ``timeout_s`` (none may outlive this)."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while True:
        _reap()
        live = descendants()
        if not live:
            return len(killed)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {live[:10]} survived SIGKILL")
        for pid in live:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.01)
