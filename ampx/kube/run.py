"""Start the kopf operator in this process (`ampx operator`), once it leads.

Replicas elect a leader with a Lease (`ampx.kube.leader`): a standby answers its liveness
probe and waits; the leader runs kopf; a leader that loses the Lease exits at once (the pod
restarts as a standby), so two replicas never act on a task together.
"""

from __future__ import annotations

import asyncio
import http.server
import logging
import os
import socket
import threading
from typing import Optional
from urllib.parse import urlparse

log = logging.getLogger("ampx.operator")


def lease_namespace(namespaces: list[str], all_namespaces: bool, current: str) -> str:
    """Where the Lease lives: AMPX_LEASE_NAMESPACE, else the first watched namespace (the
    operator's Role there grants it), else (cluster-wide) the operator's own namespace."""
    from ..settings import env

    explicit = env("AMPX_LEASE_NAMESPACE")
    if explicit:
        return explicit
    if not all_namespaces and namespaces:
        return namespaces[0]
    return current


def replica_identity() -> str:
    from ..settings import env

    return env("AMPX_OPERATOR_ID") or socket.gethostname()


class StandbyHealth:
    """The liveness endpoint while standing by (kopf serves it once this replica leads)."""

    def __init__(self, url: Optional[str]) -> None:
        self.server: Optional[http.server.ThreadingHTTPServer] = None
        if not url:
            return
        where = urlparse(url)

        class Ok(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"standby\n")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((where.hostname or "0.0.0.0", where.port or 80), Ok)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def _lost(why: str) -> None:
    log.error("leadership lost (%s): exiting so that only one replica acts", why)
    logging.shutdown()
    os._exit(75)


def run_operator(namespaces: list[str], all_namespaces: bool, liveness: Optional[str],
                 verbose: bool = False) -> None:
    import kopf

    from . import operator  # noqa: F401  (registers the handlers)
    from .api import KubeApi, current_namespace, load_config
    from .leader import LeaderElector

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # kopf.objects: one "Handler ... succeeded" line per watch event (warnings still show)
    for noisy in ("kubernetes", "urllib3", "github", "kopf.objects"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from ..task_rules import rules_from_env

    rules_from_env(warn=False)  # a task rule it cannot read stops the operator here, with the reason
    from .capacity import limits_from_env

    limits_from_env()  # so does a concurrency limit
    if not all_namespaces and not namespaces:
        namespaces = [current_namespace()]
    elector = LeaderElector(KubeApi(load_config()),
                            lease_namespace(namespaces, all_namespaces, current_namespace()),
                            replica_identity())
    standby = StandbyHealth(liveness)
    try:
        elector.acquire()
    finally:
        standby.close()
    elector.hold(_lost)
    try:
        asyncio.run(kopf.operator(
            standalone=True,
            clusterwide=all_namespaces,
            namespaces=[] if all_namespaces else namespaces,
            liveness_endpoint=liveness,
        ))
    finally:
        elector.release()
