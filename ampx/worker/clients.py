"""How the local runtime's worker reads its task and writes its report (on Kubernetes the
operator records the report it reads from the attempt's pod: the pod holds no API credential)."""

from __future__ import annotations

from typing import Optional

from ..core.models import AmpTask, WorkerReport


class LocalTaskClient:
    """Through the local runtime's SQLite file."""

    # the supervisor hands attempts the credentials of the shell of the last `ampx start`
    credential_hint = " (export it in the shell, then `ampx continue` the task)"

    def __init__(self, store) -> None:
        self.store = store

    def get(self, name: str) -> Optional[AmpTask]:
        return self.store.get(name)

    def report(self, name: str, number: int, report: WorkerReport) -> None:
        self.store.write_report(name, number, report.model_dump(exclude_none=True))
