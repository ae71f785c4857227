"""Mask what the attempts know and the operator does not hold: the agent's key.

The agent's key lives in a Secret of each task namespace (the agent container reads it through
`secretKeyRef`). CI can print it (verbatim, base64, URL-encoded), and the operator copies CI
output into the status, the history, events and logs; so the operator reads that one Secret
(its Role names it in `resourceNames`: no other Secret is readable) and registers the value
with `ampx.redact`, which masks it in every form from then on.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Optional

from ..redact import register_secret
from .errors import KubeError

log = logging.getLogger("ampx.operator")

#: re-read the key this often (it may be rotated)
REFRESH_S = 300.0


class AgentKeyMask:
    def __init__(self, api, secret: Optional[str], key: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.secret = secret
        self.key = key
        self.clock = clock
        self._read_at: dict[str, float] = {}

    def ensure(self, namespace: str) -> None:
        """Register the agent key of `namespace` for masking (cached; never raises)."""
        if not self.secret:
            return
        now = self.clock()
        last = self._read_at.get(namespace)
        if last is not None and now - last < REFRESH_S:
            return
        self._read_at[namespace] = now
        try:
            value = self.api.agent_key(namespace, self.secret, self.key)
        except KubeError as exc:
            log.warning("cannot read the agent key Secret %s/%s to mask it: %s",
                        namespace, self.secret, exc)
            return
        if value:
            register_secret(value.strip(), pinned=True)
