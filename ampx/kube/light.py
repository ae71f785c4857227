"""Listing AmpTasks without the `kubernetes` client: `ampx ls` in kubectl's time.

Importing the `kubernetes` package costs ~0.5 s of a ~0.8 s `ampx ls` over 1,000 tasks; a list
is one GET. This module reads the kubeconfig (or the in-cluster account) for the common forms:
server, CA (file or data) or insecure-skip-tls-verify, bearer token (or tokenFile), client
certificate and key (file or data), basic auth. Anything else (exec plugins, auth providers)
makes `LightReader.from_kubeconfig` return None and the caller uses the full client.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
from typing import Any, Optional
from urllib.parse import urlencode, urlparse

from ..core.names import GROUP, PLURAL, VERSION
from ..settings import env
from .errors import KubeError

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def explain_http(status: int, body: Any, what: str, reason_phrase: str = "") -> KubeError:
    """One line a user can act on, from an API error (shared with `ampx.kube.api.explain`)."""
    message = reason = ""
    try:
        parsed = json.loads(body or "{}")
        message, reason = parsed.get("message", ""), parsed.get("reason", "")
    except (ValueError, TypeError, AttributeError):
        pass
    if status == 404 and "amptask" in what and "could not find the requested resource" in message:
        return KubeError("the AmpTask CRD is not installed (kubectl apply -f crds/amptask.yaml)",
                         404, "NotFound")
    if status == 403:
        return KubeError(f"permission denied: {message or what}", 403, "Forbidden")
    if status == 422:
        return KubeError(f"rejected by the API server: {message}", 422, "Invalid")
    if status == 409:
        return KubeError(f"conflict: {message or what}", 409, reason or "Conflict")
    if status == 404:
        return KubeError(f"not found: {message or what}", 404, "NotFound")
    return KubeError(f"{what} failed: HTTP {status} {message or reason_phrase}", status, reason)


def _data_file(data: str, suffix: str) -> str:
    import tempfile

    fh = tempfile.NamedTemporaryFile("wb", suffix=suffix, delete=False)
    with fh:
        fh.write(base64.b64decode(data))
    return fh.name


class LightReader:
    def __init__(self, server: str, namespace: str, headers: dict[str, str],
                 tls: Optional[dict] = None) -> None:
        # tls: how to build the TLS context, only when the server is https (loading the
        # system's CA bundle alone costs ~0.1 s): {"insecure"}, {"cafile"|"cadata"}, cert/key
        self.server, self.namespace, self.headers, self.tls = server, namespace, headers, tls or {}

    # ------------------------------------------------------------------ configuration
    @classmethod
    def from_kubeconfig(cls, context: Optional[str] = None,
                        path: Optional[str] = None) -> Optional["LightReader"]:
        path = path or env("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        if os.pathsep in path:
            return None  # merged kubeconfigs: the full client
        try:
            import yaml

            with open(path) as fh:
                cfg = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
        except OSError:
            return cls.in_cluster()
        except Exception:  # unreadable: the full client says why
            return None
        try:
            return cls._from(cfg, context, os.path.dirname(os.path.abspath(path)))
        except (KeyError, TypeError, ValueError, StopIteration, OSError):
            return None

    @classmethod
    def _from(cls, cfg: dict, context: Optional[str], base: str) -> Optional["LightReader"]:
        name = context or cfg.get("current-context")
        ctx = next(c for c in cfg.get("contexts") or [] if c.get("name") == name)["context"]
        cluster = next(c for c in cfg.get("clusters") or []
                       if c.get("name") == ctx.get("cluster"))["cluster"]
        user = next((u for u in cfg.get("users") or [] if u.get("name") == ctx.get("user")),
                    {}).get("user") or {}
        if set(user) - {"token", "tokenFile", "client-certificate", "client-key",
                        "client-certificate-data", "client-key-data", "username", "password"}:
            return None  # exec, auth-provider, impersonation...: the full client
        at = lambda p: p if os.path.isabs(p) else os.path.join(base, p)  # noqa: E731
        server = cluster["server"].rstrip("/")
        tls: dict = {}
        if cluster.get("insecure-skip-tls-verify"):
            tls["insecure"] = True
        elif cluster.get("certificate-authority-data"):
            tls["cadata"] = base64.b64decode(cluster["certificate-authority-data"]).decode()
        elif cluster.get("certificate-authority"):
            tls["cafile"] = at(cluster["certificate-authority"])
        if user.get("client-certificate-data") or user.get("client-certificate"):
            tls["cert"] = (user.get("client-certificate-data"), user.get("client-certificate")
                           and at(user["client-certificate"]))
            tls["key"] = (user.get("client-key-data"), user.get("client-key") and at(user["client-key"]))
        headers = {"Accept": "application/json"}
        token = user.get("token")
        if user.get("tokenFile"):
            with open(at(user["tokenFile"])) as fh:
                token = fh.read().strip()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif user.get("username"):
            pair = f"{user['username']}:{user.get('password', '')}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        return cls(server, ctx.get("namespace") or "default", headers, tls)

    @classmethod
    def in_cluster(cls) -> Optional["LightReader"]:
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            return None
        try:
            with open(f"{SA_DIR}/token") as fh:
                token = fh.read().strip()
            with open(f"{SA_DIR}/namespace") as fh:
                namespace = fh.read().strip() or "default"
        except OSError:
            return None
        host = f"[{host}]" if ":" in host else host
        return cls(f"https://{host}:{port}", namespace,
                   {"Accept": "application/json", "Authorization": f"Bearer {token}"},
                   {"cafile": f"{SA_DIR}/ca.crt"})

    def _ssl_context(self):
        import ssl

        tls = self.tls
        if tls.get("insecure"):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif tls.get("cadata") or tls.get("cafile"):  # the cluster's CA only, as kubectl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(cafile=tls.get("cafile"), cadata=tls.get("cadata"))
        else:
            ctx = ssl.create_default_context()
        if tls.get("cert"):
            temp: list[str] = []
            (cert_data, cert_file), (key_data, key_file) = tls["cert"], tls["key"]
            try:
                cert = _data_file(cert_data, ".crt") if cert_data else cert_file
                if cert_data:
                    temp.append(cert)
                key = _data_file(key_data, ".key") if key_data else key_file
                if key_data:
                    temp.append(key)
                ctx.load_cert_chain(cert, key)
            finally:
                for p in temp:
                    os.unlink(p)
        return ctx

    # ------------------------------------------------------------------ the one call
    def list_tasks(self, ns: Optional[str], label_selector: Optional[str] = None) -> dict:
        path = (f"/apis/{GROUP}/{VERSION}/{PLURAL}" if ns is None
                else f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}")
        if label_selector:
            path += "?" + urlencode({"labelSelector": label_selector})
        return self._get(path, "list amptasks")

    def _get(self, path: str, what: str) -> dict:
        url = urlparse(self.server)
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            if url.scheme == "https":
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                    url.hostname, port, context=self._ssl_context(), timeout=60)
            else:
                conn = http.client.HTTPConnection(url.hostname, port, timeout=60)
            conn.request("GET", (url.path or "") + path, headers=self.headers)
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise KubeError(f"cannot reach the Kubernetes API at {url.hostname}:{port} "
                            f"({exc.__class__.__name__}; is the cluster running?)") from None
        if resp.status >= 400:
            raise explain_http(resp.status, body, what, resp.reason)
        return json.loads(body or b"{}")
