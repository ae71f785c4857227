"""What the CLI needs from a runtime, and the Kubernetes implementation.

The CLI never talks to the API server or the local database directly: `Backend` is the seam
that lets `ampx` drive either runtime with the same commands and output.
"""

from __future__ import annotations

import datetime as dt
import getpass
import re
import time
from typing import Iterator, Optional, Protocol

from typing import TYPE_CHECKING

from ..core.ids import IdError, resolve_prefix
from ..core.names import API_VERSION, KIND, OWNER_LABEL
from ..kube.errors import KubeError
from ..settings import env

if TYPE_CHECKING:  # the models (pydantic) load only when a command needs them
    from ..core.models import AmpTask, AmpTaskSpec


def _shown(obj: dict):
    """Tasks as the CLI shows them: one the operator refused for a bad spec still lists."""
    from ..kube.jobs import to_task

    return to_task(obj, lenient=True)


class CliError(Exception):
    """Anything the user must fix: printed as one line, exit code 1."""


def owner_name() -> str:
    """The owner label of new tasks: AMPX_OWNER, else the login name, made label-safe."""
    raw = env("AMPX_OWNER") or getpass.getuser() or "unknown"
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", raw)[:63].strip("-_.")
    return safe or "unknown"


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Backend(Protocol):
    name: str
    namespace: str

    def create(self, task_id: str, spec: AmpTaskSpec, owner: str) -> AmpTask: ...

    def list(self, all_owners: bool, owner: str) -> list[AmpTask]: ...

    def watch(self, all_owners: bool, owner: str) -> Iterator[tuple[str, AmpTask]]: ...

    def get(self, name: str) -> AmpTask: ...

    def resolve(self, prefix: str) -> AmpTask: ...

    def update_spec(self, task: AmpTask, change, refresh_credentials: bool = False) -> AmpTask: ...

    def list_docs(self, all_owners: bool, owner: str) -> list[dict]: ...

    def all_ids(self) -> list[str]: ...

    def worker_log(self, task: AmpTask, attempt: int, follow: bool) -> Iterator[str]: ...


class KubeBackend:
    """AmpTasks in a cluster, through the kubeconfig's current (or given) context."""

    name = "kube"
    notices: list[str] = []  # the cluster's credentials are its Secrets: nothing to say here

    def __init__(self, namespace: Optional[str] = None, context: Optional[str] = None,
                 all_namespaces: bool = False) -> None:
        from ..kube.api import KubeApi, current_namespace, load_config  # only for a cluster

        self.api = KubeApi(load_config(context=context))
        self.namespace = namespace or current_namespace(context=context)
        self.all_namespaces = all_namespaces

    def _ns(self) -> Optional[str]:
        return None if self.all_namespaces else self.namespace

    def create(self, task_id: str, spec: AmpTaskSpec, owner: str) -> AmpTask:
        body = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": task_id, "namespace": self.namespace,
                         "labels": {OWNER_LABEL: owner}},
            "spec": spec.wire(),
        }
        return _shown(self.api.create_task(self.namespace, body))

    def _selector(self, all_owners: bool, owner: str) -> Optional[str]:
        return None if all_owners else f"{OWNER_LABEL}={owner}"

    def list(self, all_owners: bool, owner: str) -> list[AmpTask]:
        items = self.api.list_tasks(self._ns(), self._selector(all_owners, owner))["items"]
        return sorted((_shown(i) for i in items), key=lambda t: t.name)

    def list_docs(self, all_owners: bool, owner: str) -> list[dict]:
        """The AmpTasks as the API server sends them (what `ls` prints)."""
        items = self.api.list_tasks(self._ns(), self._selector(all_owners, owner))["items"]
        return sorted(items, key=lambda i: i["metadata"]["name"])

    def all_ids(self) -> list[str]:
        """Every task name `resolve` could match: short ids are unique among these."""
        return [i["metadata"]["name"] for i in self.api.list_tasks(self._ns())["items"]]

    def watch(self, all_owners: bool, owner: str) -> Iterator[tuple[str, AmpTask]]:
        """List, then follow the watch stream; when the server has compacted the resource
        version away (410 Gone, after a long watch) list again and go on, reporting only what
        changed meanwhile, like client-go's reflector."""
        selector = self._selector(all_owners, owner)
        seen: dict[str, tuple[str, AmpTask]] = {}  # name -> (resourceVersion, task)

        def rv_of(obj: dict) -> str:
            return obj.get("metadata", {}).get("resourceVersion", "")

        synced = False
        while True:
            listing = self.api.list_tasks(self._ns(), selector)
            present = set()
            for item in listing["items"]:
                task = _shown(item)
                present.add(task.name)
                before = seen.get(task.name)
                if before is None or before[0] != rv_of(item):
                    seen[task.name] = (rv_of(item), task)
                    yield ("MODIFIED" if before else "ADDED"), task
            for name in [n for n in seen if n not in present]:
                yield "DELETED", seen.pop(name)[1]
            if not synced:
                synced = True
                yield "SYNCED", None  # type: ignore[misc]
            rv = listing.get("metadata", {}).get("resourceVersion", "")
            try:
                for event in self.api.watch_tasks(self._ns(), selector, rv):
                    obj = event["object"]
                    if isinstance(obj, dict):
                        rv = rv_of(obj) or rv
                        task = _shown(obj)
                        if event["type"] == "DELETED":
                            seen.pop(task.name, None)
                        else:
                            seen[task.name] = (rv_of(obj), task)
                        yield event["type"], task
            except KubeError as exc:
                if exc.status != 410:
                    raise
            # the stream ended (server timeout) or expired: list again

    def get(self, name: str) -> AmpTask:
        return _shown(self.api.get_task(self.namespace, name))

    def resolve(self, prefix: str) -> AmpTask:
        items = self.api.list_tasks(self._ns())["items"]
        by_name = {i["metadata"]["name"]: i for i in items}
        try:
            return _shown(by_name[resolve_prefix(prefix, by_name)])
        except IdError as exc:
            raise CliError(str(exc)) from None

    def update_spec(self, task: AmpTask, change, refresh_credentials: bool = False) -> AmpTask:
        """Read-modify-write of the spec, guarded by resourceVersion (retried on conflict)."""
        for _ in range(5):
            fresh = _shown(self.api.get_task(task.namespace, task.name))
            new_spec = change(fresh)
            body = {"metadata": {"resourceVersion": fresh.metadata.get("resourceVersion")},
                    "spec": new_spec.wire()}
            try:
                return _shown(self.api.patch_task(task.namespace, task.name, body))
            except KubeError as exc:
                if exc.status != 409:
                    raise
                time.sleep(0.2)
        raise CliError(f"task {task.name} keeps changing; try again")

    def worker_log(self, task: AmpTask, attempt: int, follow: bool) -> Iterator[str]:
        from ..kube.jobs import job_name

        job = job_name(task.name, attempt)
        pods = self.api.list_pods(task.namespace, f"job-name={job}")
        if not pods:
            raise CliError(f"no pod for attempt {attempt} (Job {job}); it may have been cleaned up")
        pod = sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")[-1]
        name = pod["metadata"]["name"]
        spec = pod.get("spec") or {}
        # the attempt's steps in order (prepare, agent, publish), each container's own log
        steps = [c["name"] for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]
        for step in steps:
            if len(steps) > 1:
                yield f"--- {step} ---\n"
            try:
                if follow:
                    for chunk in self.api.follow_pod_log(task.namespace, name, container=step):
                        yield chunk.decode("utf-8", "replace")
                else:
                    yield self.api.pod_log(task.namespace, name, container=step)
            except KubeError as exc:
                if exc.status != 400:  # a step that has not started yet: nothing to show
                    raise


def add_follow_up(message: str, by: str):
    from ..core.models import FollowUp

    def change(task: AmpTask) -> AmpTaskSpec:
        ups = list(task.spec.follow_ups) + [FollowUp(message=message, at=now_iso(), by=by)]
        return task.spec.model_copy(update={"follow_ups": ups})
    return change
