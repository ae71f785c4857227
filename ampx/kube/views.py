"""What the operator's watch streams have shown it: AmpTasks and attempt Jobs, read without GETs.

The engine reads tasks through `TaskStore` and Jobs through `Launcher`; in the operator both are
fed by watches (kopf hands every AmpTask body to an event handler, and kopf's index keeps the
attempt Jobs by task), so a reconcile with nothing to do sends no request. Writes still go to
the API server, and what a write returns is kept too (it is never older than the watch).
"""

from __future__ import annotations

import copy
import threading
from typing import Any, Callable, Iterator, Optional


def rv_newer(candidate: Optional[str], held: Optional[str]) -> bool:
    """Is `candidate` at least as new as `held`? resourceVersions are opaque strings, but every
    API server in use (etcd's revision) makes them integers; anything else counts as newer."""
    if held is None or candidate is None:
        return True
    try:
        return int(candidate) >= int(held)
    except ValueError:
        return True


class TaskCache:
    """AmpTask bodies by name (names are ULIDs: unique across namespaces), newest wins."""

    def __init__(self) -> None:
        self._bodies: dict[str, dict] = {}
        self._lock = threading.Lock()

    def put(self, body: Any) -> None:
        meta = body.get("metadata") or {}
        name = meta.get("name")
        if not name:
            return
        plain = copy.deepcopy(dict(body))
        with self._lock:
            held = self._bodies.get(name)
            if held is None or rv_newer(meta.get("resourceVersion"),
                                        (held.get("metadata") or {}).get("resourceVersion")):
                self._bodies[name] = plain

    def drop(self, name: str) -> None:
        with self._lock:
            self._bodies.pop(name, None)

    def get(self, name: str) -> Optional[dict]:
        with self._lock:
            return self._bodies.get(name)

    def namespace_of(self, name: str) -> Optional[str]:
        body = self.get(name)
        return (body or {}).get("metadata", {}).get("namespace") if body else None

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self._bodies.values())

    def __len__(self) -> int:
        return len(self._bodies)


def job_summary(name: str, namespace: str, status: Any) -> dict:
    """What the index keeps of a Job: enough for `job_state`, nothing more."""
    return {"metadata": {"name": name, "namespace": namespace},
            "status": copy.deepcopy(dict(status or {}))}


class JobView:
    """Attempt Jobs by task, from kopf's index once the operator has it.

    kopf runs no handler before every index is fully listed, so once a handler has handed the
    index over, a Job absent from it is absent from the cluster (as of the watch). Before that
    (a caller outside the handlers), a GET answers."""

    def __init__(self, get_job: Callable[[str, str], Optional[dict]]) -> None:
        self._get_job = get_job
        self._index: Any = None
        # Jobs this operator created that the watch has not shown yet: without them an attempt
        # would look missing right after its start, and be started again
        self._created: dict[tuple[str, str], dict] = {}
        self._lock = threading.Lock()

    def created(self, namespace: str, task: str, job: str) -> None:
        with self._lock:
            self._created[(namespace, job)] = job_summary(job, namespace, {})

    def attach(self, index: Any) -> None:
        self._index = index

    @property
    def attached(self) -> bool:
        return self._index is not None

    def read(self, namespace: str, task: str, job: str) -> Optional[dict]:
        if self._index is None:
            return self._get_job(namespace, job)
        for body in _retrying(lambda: list(self._index.get(task, ()))):
            meta = body.get("metadata") or {}
            if meta.get("name") == job and meta.get("namespace") == namespace:
                with self._lock:  # shown by the watch: from now on the index alone says
                    self._created.pop((namespace, job), None)
                return body
        with self._lock:
            return self._created.get((namespace, job))


def _retrying(read: Callable[[], list]) -> list:
    """Read a structure the event loop may be changing in another thread."""
    for _ in range(5):
        try:
            return read()
        except RuntimeError:  # changed size during iteration: read again
            continue
    return read()


def index_items(index: Any) -> Iterator[tuple[Any, list]]:
    """(key, values) of a kopf index, read safely from a thread."""
    if index is None:
        return iter(())
    return iter(_retrying(lambda: [(k, list(v)) for k, v in list(index.items())]))
