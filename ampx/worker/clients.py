"""How a worker reads its task and writes its report, in each runtime."""

from __future__ import annotations

from typing import Optional

from ..core.models import AmpTask, WorkerReport


class KubeTaskClient:
    """Through the API server, with the worker's service account (get amptasks, patch status)."""

    # what to tell a user whose credential is missing (the Job gets it from a Secret)
    credential_hint = " (mount it from a Secret)"

    def __init__(self, namespace: str) -> None:
        from ..kube.api import KubeApi, load_config

        self.api = KubeApi(load_config())
        self.namespace = namespace

    def get(self, name: str) -> Optional[AmpTask]:
        from ..kube.api import KubeError
        from ..kube.jobs import to_task

        try:
            return to_task(self.api.get_task(self.namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def report(self, name: str, number: int, report: WorkerReport) -> None:
        # a merge patch of this attempt's sub-object only: single writer per field
        self.api.patch_task_status(self.namespace, name, {"reports": {str(number): report.wire()}})


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
