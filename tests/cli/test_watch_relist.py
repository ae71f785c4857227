"""`ampx ls -w` outlives a watch whose resource version expired (HTTP 410 Gone)."""

from __future__ import annotations

from ampx.cli.backend import KubeBackend
from ampx.kube.api import KubeError


def task(name: str, rv: str, phase: str | None = None) -> dict:
    return {"apiVersion": "ampx.dev/v1alpha1", "kind": "AmpTask",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": rv},
            "spec": {"repo": "acme/api", "prompt": "x"},
            "status": {"phase": phase} if phase else {}}


class ExpiringApi:
    """A stand-in API server: the first watch delivers one change and then expires."""

    def __init__(self):
        self.lists = [
            {"items": [task("a", "1"), task("b", "2")], "metadata": {"resourceVersion": "2"}},
            # while the watch was gone: a changed, b deleted, c created
            {"items": [task("a", "5", "running"), task("c", "6")], "metadata": {"resourceVersion": "6"}},
        ]
        self.watches = 0

    def list_tasks(self, ns, selector=None):
        return self.lists.pop(0)

    def watch_tasks(self, ns, selector, rv, timeout=None):
        self.watches += 1
        if self.watches == 1:
            assert rv == "2"
            yield {"type": "MODIFIED", "object": task("a", "3", "queued")}
            raise KubeError("watch amptasks failed: HTTP 410 Gone", 410, "Expired")
        assert rv == "6", "the second watch starts from the new listing"
        yield {"type": "MODIFIED", "object": task("c", "7", "queued")}


def test_watch_lists_again_after_410_and_reports_only_what_changed():
    backend = object.__new__(KubeBackend)
    backend.api, backend.namespace, backend.all_namespaces = ExpiringApi(), "default", False
    events = []
    for kind, t in backend.watch(True, "me"):
        events.append((kind, t.name if t else None, t.status.phase.value if t and t.status.phase else None))
        if len(events) == 7:
            break
    assert events == [
        ("ADDED", "a", None), ("ADDED", "b", None), ("SYNCED", None, None),
        ("MODIFIED", "a", "queued"),
        ("MODIFIED", "a", "running"), ("ADDED", "c", None), ("DELETED", "b", None),
    ]


def test_other_watch_errors_still_surface():
    class Refusing(ExpiringApi):
        def watch_tasks(self, ns, selector, rv, timeout=None):
            raise KubeError("permission denied: watch amptasks", 403, "Forbidden")
            yield  # pragma: no cover

    backend = object.__new__(KubeBackend)
    backend.api, backend.namespace, backend.all_namespaces = Refusing(), "default", False
    stream = backend.watch(True, "me")
    assert [next(stream)[0] for _ in range(3)] == ["ADDED", "ADDED", "SYNCED"]
    try:
        next(stream)
    except KubeError as exc:
        assert exc.status == 403
    else:
        raise AssertionError("a 403 must not be swallowed")
