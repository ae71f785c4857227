"""
A Kubernetes test harness for ampx: an in-memory API server (kmock-based), a thread/kubeconfig
wrapper for synchronous tests and subprocesses, and a kubelet stand-in that runs Jobs locally.
"""

from .emulator import AmpxKubernetesEmulator, ApiError, ResourceMeta, WatchSubscription

__all__ = ['AmpxKubernetesEmulator', 'ApiError', 'ResourceMeta', 'WatchSubscription']
