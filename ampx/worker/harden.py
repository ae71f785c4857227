"""Keep the agent out of the worker's memory and environment.

The agent runs as the same user as the worker, so by default it could read
`/proc/<worker pid>/environ` (the App key or token the worker holds, from its Secret) or
attach a debugger to it. Marking the worker non-dumpable, as ssh-agent and gpg-agent do, makes
its `/proc` files root-owned and forbids ptrace by other processes of that user. Children
(the agent, git) start dumpable again at exec: they hold no ampx credential in their
environment, and the token reaches git only through its askpass pipe.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger("ampx.worker")

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def forbid_inspection() -> bool:
    """Make this process non-dumpable. Returns False (and logs) where that is not possible."""
    if not sys.platform.startswith("linux"):
        log.warning("cannot protect the worker's memory from the agent on %s", sys.platform)
        return False
    libc = _libc()
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_DUMPABLE) failed: errno %d", ctypes.get_errno())
        return False
    return True


def is_dumpable() -> bool:
    """Whether this process may be inspected by others of its user (Linux)."""
    return bool(_libc().prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))


PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int) -> bool:
    """Be sent ``sig`` when the parent process ends (Linux): a step started by a worker that
    was killed outright must not run on unsupervised. False where that is not possible."""
    if not sys.platform.startswith("linux"):
        return False
    return _libc().prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0
