"""Reading an attempt's report from its pod: no credential in the pod can patch an AmpTask.

- The final report is the `publish` container's termination message (the kubelet keeps at most
  4096 bytes of `/dev/termination-log` in the pod's status). It is untrusted input: the
  operator accepts only a JSON object of at most 4096 bytes that the WorkerReport model accepts.
- The thread id, while the agent works, is a line `AMPX_THREAD <id>` in the agent container's
  log (printed as soon as the agent names its thread). The operator reads the head of that log
  at a bounded rate while the attempt runs without a known thread (see `ThreadProbe`), and once
  more when an attempt ends without a report.
"""

from __future__ import annotations

import json
import re
from typing import Optional

from pydantic import ValidationError

from ..core.models import WorkerReport
from ..redact import redact

MAX_MESSAGE = 4096
REPORT_CONTAINER = "publish"
PREPARE_CONTAINER = "prepare"  # reports only when the attempt could not start
AGENT_CONTAINER = "agent"
THREAD_LINE = re.compile(r"^AMPX_THREAD ([A-Za-z0-9_.:-]{1,200})\s*$", re.M)
#: how much of the agent's log head is searched for the thread line
THREAD_LOG_BYTES = 65536


class BadReport(ValueError):
    """A termination message that is not a report (one line: why)."""


def parse_report(message: Optional[str]) -> WorkerReport:
    """The WorkerReport in a termination message, or BadReport."""
    if not message or not message.strip():
        raise BadReport("empty termination message")
    raw = message.strip()
    if raw.startswith("AMPX_REPORT "):
        raw = raw[len("AMPX_REPORT "):]
    if len(raw.encode("utf-8")) > MAX_MESSAGE:
        raise BadReport(f"termination message larger than {MAX_MESSAGE} bytes")
    try:
        doc = json.loads(raw)
    except ValueError:
        raise BadReport("termination message is not JSON") from None
    if not isinstance(doc, dict):
        raise BadReport("termination message is not a JSON object")
    try:
        report = WorkerReport.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "report"
        raise BadReport(f"invalid report: {where}: {err.get('msg', 'invalid')}") from None
    return scrub(report)


def scrub(report: WorkerReport) -> WorkerReport:
    """Mask credentials in the free-text fields (the agent's words can reach them)."""
    update = {}
    if report.reason:
        update["reason"] = redact(report.reason)
    if report.files:
        update["files"] = [redact(f) or "" for f in report.files][:100]
    return report.model_copy(update=update) if update else report


def container_status(pod: dict, name: str) -> Optional[dict]:
    st = pod.get("status") or {}
    for cs in (st.get("containerStatuses") or []) + (st.get("initContainerStatuses") or []):
        if cs.get("name") == name:
            return cs
    return None


def terminated(pod: dict, name: str) -> Optional[dict]:
    cs = container_status(pod, name)
    return ((cs or {}).get("state") or {}).get("terminated")


def thread_in_log(text: str) -> Optional[str]:
    """The first thread id announced in a log (the agent's own, or None)."""
    m = THREAD_LINE.search(text or "")
    return m.group(1) if m else None
