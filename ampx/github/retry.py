"""Wait out GitHub's transient failures where there is no later tick to come back on.

The operator and the supervisor never sleep on a RetryLater: their next tick tries again. A
one-shot process (the worker getting its token before it clones) has no next tick: one 503
on the installation lookup or the token request would end the attempt as "could not run".
`with_retries` waits as GitHub asks (bounded) and tries again; a permanent refusal
(GitHubError: the App not installed, permissions refused) is raised at once, with its reason.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

from .errors import RetryLater

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Longest single wait, and the whole time spent waiting, before giving up.
MAX_WAIT = 30.0
TOTAL_WAIT = 180.0


def with_retries(fn: Callable[[], T], what: str, *, max_wait: float = MAX_WAIT,
                 total: float = TOTAL_WAIT, sleep: Callable[[float], None] = time.sleep) -> T:
    """``fn()``, tried again after each RetryLater for up to ``total`` seconds of waiting."""
    waited = 0.0
    while True:
        try:
            return fn()
        except RetryLater as exc:
            wait = min(max(exc.seconds, 0.5), max_wait)
            if waited + wait > total:
                raise
            log.info("%s: %s; trying again in %.1fs", what, exc.reason, wait)
            sleep(wait)
            waited += wait
