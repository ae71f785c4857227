"""
A Kubernetes test harness for ampx (no cluster needed).

* :class:`AmpxKubernetesEmulator` (``emulator.py``) — kmock's in-memory Kubernetes API with
  real API-server semantics: uid/resourceVersion/generation, Status errors, the status
  subresource, merge/strategic/JSON patches, optimistic concurrency, CRD schema pruning,
  defaulting and validation, selectors, watches from a resourceVersion (410 when too old),
  bookmarks, garbage collection, discovery/OpenAPI for kubectl, Table output, pod logs, RBAC denials.
* :class:`KubeServer` (``server.py``) — runs it on 127.0.0.1 in a background thread, writes a
  kubeconfig, offers thread-safe helpers, ``kubectl(...)``, ``spawn(...)``, ``run_kopf(...)``.
* :class:`FakeKubelet` (``kubelet.py``) — runs the Jobs' containers as local processes and
  reports Pod/Job status like the kubelet and the Job controller do.
* ``fixtures.py`` — pytest fixtures: ``kube_server``, ``kube_emulator``, ``kubeconfig``,
  ``kube_env``, ``kube_api_client``, ``fake_kubelet``, ``kube_spawn``.
"""

from .emulator import AmpxKubernetesEmulator, ApiError, ResourceMeta, WatchSubscription
from .kubelet import FakeKubelet, PodRun
from .server import KubeServer, ManagedProcess, write_kubeconfig

__all__ = ['AmpxKubernetesEmulator', 'ApiError', 'ResourceMeta', 'WatchSubscription',
           'FakeKubelet', 'PodRun', 'KubeServer', 'ManagedProcess', 'write_kubeconfig']
