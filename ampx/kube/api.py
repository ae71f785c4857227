"""Every Kubernetes API call ampx makes, each method naming the permission it needs.

The operator and the worker use only these methods; `permissions_used(role)` collects what a
role calls so a test can compare it with the RBAC declared in `ampx.kube.rbac` and granted by
the Helm chart.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterator, Optional

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from ..core.names import GROUP, PLURAL, VERSION
from ..settings import env
from .errors import KubeError
from .rbac import AGENT_KEY_SECRET, Permission

_REGISTRY: dict[str, tuple[str, Permission]] = {}


def needs(roles: str, group: str, resource: str, verb: str, names: tuple[str, ...] = ()) -> Callable:
    """Declare the permission a method uses, and which roles (operator, worker, cli) call it.
    `names`: the call is allowed on these objects only (RBAC resourceNames)."""

    def mark(fn: Callable) -> Callable:
        _REGISTRY[fn.__name__] = (roles, Permission(group, resource, verb, names))
        fn.permission = Permission(group, resource, verb, names)
        return fn

    return mark


def permissions_used(role: str) -> frozenset[Permission]:
    return frozenset(p for roles, p in _REGISTRY.values() if role in roles.split(","))


def _kubeconfig(explicit: Optional[str]) -> Optional[str]:
    """KUBECONFIG read now (the client library reads it once, at import)."""
    return explicit or env("KUBECONFIG")


def load_config(context: Optional[str] = None, kubeconfig: Optional[str] = None) -> client.ApiClient:
    """Like kubectl: the kubeconfig (KUBECONFIG, ~/.kube/config), else the in-cluster account."""
    kubeconfig = _kubeconfig(kubeconfig)
    try:
        cfg = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
    except (config.ConfigException, FileNotFoundError, TypeError) as exc:
        try:
            cfg = client.Configuration()
            config.load_incluster_config(client_configuration=cfg)
        except config.ConfigException:
            raise KubeError(f"no Kubernetes configuration: {exc}") from None
    return client.ApiClient(cfg)


def current_namespace(context: Optional[str] = None, kubeconfig: Optional[str] = None) -> str:
    """The namespace of the kubeconfig context (or the pod's own), default `default`."""
    kubeconfig = _kubeconfig(kubeconfig)
    try:
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)
        if context:
            contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
            active = next((c for c in contexts if c["name"] == context), None)
            if active is None:
                raise KubeError(f"context {context!r} not found in the kubeconfig")
        return (active or {}).get("context", {}).get("namespace") or "default"
    except (config.ConfigException, FileNotFoundError, TypeError):
        try:
            with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as fh:
                return fh.read().strip() or "default"
        except OSError:
            return "default"


def explain(exc: ApiException, what: str) -> KubeError:
    """One line a user can act on, from an API error."""
    import json

    message = ""
    try:
        body = json.loads(exc.body or "{}")
        message = body.get("message", "")
        reason = body.get("reason", "")
    except (ValueError, TypeError):
        reason = ""
    if exc.status == 404 and "amptask" in what and "could not find the requested resource" in message:
        return KubeError("the AmpTask CRD is not installed (kubectl apply -f crds/amptask.yaml)",
                         404, "NotFound")
    if exc.status == 403:
        return KubeError(f"permission denied: {message or what}", 403, "Forbidden")
    if exc.status == 422:
        return KubeError(f"rejected by the API server: {message}", 422, "Invalid")
    if exc.status == 409:
        return KubeError(f"conflict: {message or what}", 409, reason or "Conflict")
    if exc.status == 404:
        return KubeError(f"not found: {message or what}", 404, "NotFound")
    return KubeError(f"{what} failed: HTTP {exc.status} {message or exc.reason}", exc.status, reason)


def _raw(what: str, fn: Callable, *args: Any, **kwargs: Any) -> dict:
    """Call without the client's model classes: plain JSON, robust to version skew."""
    import json

    resp = _call(what, fn, *args, _preload_content=False, **kwargs)
    return json.loads(resp.data or b"{}")


def _call(what: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ApiException as exc:
        raise explain(exc, what) from None
    except Exception as exc:  # urllib3 connection errors and the like
        if type(exc).__module__.startswith(("urllib3", "socket", "ssl")) or isinstance(exc, OSError):
            pool = getattr(exc, "pool", None)
            where = f" at {pool.host}:{pool.port}" if getattr(pool, "host", None) else ""
            raise KubeError(f"cannot reach the Kubernetes API{where} "
                            f"({exc.__class__.__name__}; is the cluster running?)") from None
        raise


class KubeApi:
    """The calls, with AmpTasks as plain dicts (the wire form)."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.custom = client.CustomObjectsApi(api_client)

    # Built on first use: `ampx ls` needs only the custom objects API.
    @functools.cached_property
    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.api_client)

    @functools.cached_property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api_client)

    # ---------------------------------------------------------------- AmpTasks
    @needs("operator,cli", GROUP, PLURAL, "get")
    def get_task(self, ns: str, name: str) -> dict:
        return _call(f"get amptask {name}", self.custom.get_namespaced_custom_object,
                     GROUP, VERSION, ns, PLURAL, name)

    @needs("operator,cli", GROUP, PLURAL, "list")
    def list_tasks(self, ns: Optional[str], label_selector: Optional[str] = None) -> dict:
        kw = {"label_selector": label_selector} if label_selector else {}
        if ns is None:
            return _call("list amptasks", self.custom.list_cluster_custom_object,
                         GROUP, VERSION, PLURAL, **kw)
        return _call("list amptasks", self.custom.list_namespaced_custom_object,
                     GROUP, VERSION, ns, PLURAL, **kw)

    @needs("operator,cli", GROUP, PLURAL, "watch")
    def watch_tasks(self, ns: Optional[str], label_selector: Optional[str],
                    resource_version: str, timeout: Optional[int] = None) -> Iterator[dict]:
        w = watch.Watch()
        kw: dict[str, Any] = {"resource_version": resource_version}
        if label_selector:
            kw["label_selector"] = label_selector
        if timeout:
            kw["timeout_seconds"] = timeout
        if ns is None:
            fn, args = self.custom.list_cluster_custom_object, (GROUP, VERSION, PLURAL)
        else:
            fn, args = self.custom.list_namespaced_custom_object, (GROUP, VERSION, ns, PLURAL)
        try:
            yield from w.stream(fn, *args, **kw)
        except ApiException as exc:
            raise explain(exc, "watch amptasks") from None

    @needs("cli", GROUP, PLURAL, "create")
    def create_task(self, ns: str, body: dict) -> dict:
        return _call("create amptask", self.custom.create_namespaced_custom_object,
                     GROUP, VERSION, ns, PLURAL, body)

    @needs("operator,cli", GROUP, PLURAL, "patch")
    def patch_task(self, ns: str, name: str, body: dict) -> dict:
        return _call(f"patch amptask {name}", self.custom.patch_namespaced_custom_object,
                     GROUP, VERSION, ns, PLURAL, name, body)

    @needs("operator", GROUP, PLURAL + "/status", "patch")
    def patch_task_status(self, ns: str, name: str, status: dict) -> dict:
        return _call(f"patch amptask {name} status",
                     self.custom.patch_namespaced_custom_object_status,
                     GROUP, VERSION, ns, PLURAL, name, {"status": status})


    # ---------------------------------------------------------------- Jobs and pods
    @needs("operator", "batch", "jobs", "create")
    def create_job(self, ns: str, body: dict) -> dict:
        return _call("create job", self.batch.create_namespaced_job, ns, body)

    @needs("operator", "batch", "jobs", "get")
    def get_job(self, ns: str, name: str) -> Optional[dict]:
        try:
            return _raw(f"get job {name}", self.batch.read_namespaced_job, name, ns)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    @needs("operator", "batch", "jobs", "list")
    def list_jobs(self, ns: str, label_selector: str) -> list[dict]:
        return _raw("list jobs", self.batch.list_namespaced_job, ns,
                    label_selector=label_selector).get("items", [])

    @needs("operator", "batch", "jobs", "delete")
    def delete_job(self, ns: str, name: str) -> bool:
        try:
            self.batch.delete_namespaced_job(name, ns, propagation_policy="Background")
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise explain(exc, f"delete job {name}") from None



    # ---------------------------------------------------------------- Secrets
    @needs("operator", "", "secrets", "create")
    def create_secret(self, ns: str, body: dict) -> None:
        _call("create secret", self.core.create_namespaced_secret, ns, body,
              _preload_content=False)

    @needs("operator", "", "secrets", "patch")
    def patch_secret(self, ns: str, name: str, body: dict) -> None:
        _call(f"patch secret {name}", self.core.patch_namespaced_secret, name, ns, body,
              _preload_content=False)

    @needs("operator", "", "secrets", "delete")
    def delete_secret(self, ns: str, name: str) -> bool:
        try:
            self.core.delete_namespaced_secret(name, ns, _preload_content=False)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise explain(exc, f"delete secret {name}") from None

    @needs("operator", "", "secrets", "get", names=(AGENT_KEY_SECRET,))
    def agent_key(self, ns: str, name: str, key: str) -> Optional[str]:
        """The agent's key from its Secret (the one Secret the operator may read), to mask it."""
        import base64

        try:
            data = _raw(f"get secret {name}", self.core.read_namespaced_secret, name, ns)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        value = (data.get("data") or {}).get(key)
        return base64.b64decode(value).decode("utf-8", "replace") if value else None

    @needs("operator,cli", "", "pods", "list")
    def list_pods(self, ns: str, label_selector: str) -> list[dict]:
        return _raw("list pods", self.core.list_namespaced_pod, ns,
                    label_selector=label_selector).get("items", [])


    @needs("operator,cli", "", "pods/log", "get")
    def pod_log(self, ns: str, name: str, tail_lines: Optional[int] = None,
                container: Optional[str] = None, limit_bytes: Optional[int] = None) -> str:
        kw: dict[str, Any] = {"tail_lines": tail_lines} if tail_lines else {}
        if container:
            kw["container"] = container
        if limit_bytes:
            kw["limit_bytes"] = limit_bytes
        return _call(f"read log of pod {name}", self.core.read_namespaced_pod_log, name, ns, **kw)

    @needs("cli", "", "pods/log", "get")
    def follow_pod_log(self, ns: str, name: str, container: Optional[str] = None) -> Iterator[bytes]:
        kw = {"container": container} if container else {}
        try:
            resp = self.core.read_namespaced_pod_log(name, ns, follow=True, _preload_content=False, **kw)
        except ApiException as exc:
            raise explain(exc, f"follow log of pod {name}") from None
        yield from resp.stream(1024)


def _kopf_needs() -> None:
    """What kopf itself calls for the operator's handlers (`ampx.kube.operator`): it lists and
    watches AmpTasks and attempt Jobs, posts Kubernetes Events for warnings, and patches each
    AmpTask to add and remove its finalizer (a timer handler stops cleanly only with one)."""


for _perm in (("ampx.dev", PLURAL, "list"), ("ampx.dev", PLURAL, "watch"), ("ampx.dev", PLURAL, "patch"),
              ("batch", "jobs", "list"), ("batch", "jobs", "watch"), ("", "events", "create")):
    _REGISTRY[f"kopf:{'/'.join(_perm)}"] = ("operator", Permission(*_perm))
