"""What every way of running an attempt shares: its exit codes and the interfaces it reports
through.

An attempt runs as three steps (`prepare_step`, `agent_step`, `publish_step`): on Kubernetes
as the containers of the attempt's pod, on the local runtime by `local_attempt`. Each exits
with a code that names the failure class, so a Job's or process's exit tells what happened
even without a report.
"""

from __future__ import annotations

import datetime as dt
from typing import Optional, Protocol

from ..core.models import AmpTask, WorkerReport


class Exit:
    """Worker exit codes (documented in the README)."""

    OK = 0  # pushed, or nothing to change
    ERROR = 1  # unexpected failure
    CONFIG = 2  # bad configuration: missing key/token, unknown task or attempt, refused branch
    AGENT_FAILED = 3
    TIMEOUT = 4
    PUSH_REJECTED = 5
    TAMPERED = 6
    INTERRUPTED = 7  # SIGTERM (abort, node drain); work kept as a WIP commit when allowed
    GIT_FAILED = 8  # clone, fetch or push could not reach the remote


class TaskClient(Protocol):
    """Where the local worker reads its task and writes its report (the local store)."""

    def get(self, name: str) -> Optional[AmpTask]: ...

    def report(self, name: str, number: int, report: WorkerReport) -> None: ...


class TokenSource(Protocol):
    def token_for(self, repo) -> str: ...


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ConfigProblem(Exception):
    """The attempt cannot run as configured (reported as config_error, exit 2)."""
