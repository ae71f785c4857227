"""
Pytest fixtures of the Kubernetes harness. Use them with
``pytest_plugins = ['kubeharness.fixtures']`` (in a root conftest.py, with ``tests/`` importable)
or ``from kubeharness.fixtures import *`` in a test module.
"""

from __future__ import annotations

import pathlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .emulator import AmpxKubernetesEmulator
from .kubelet import FakeKubelet
from .server import DEFAULT_CRD, KubeServer, ManagedProcess

__all__ = ['kube_server', 'kube_emulator', 'kubeconfig', 'kube_env', 'kube_api_client',
           'fake_kubelet', 'kube_spawn']


@pytest.fixture
def kube_server(tmp_path: pathlib.Path) -> Iterator[KubeServer]:
    """A running emulator (namespaces ``default`` & ``team-a``, the AmpTask CRD) on a local port."""
    with KubeServer(crd_path=DEFAULT_CRD, workdir=tmp_path / 'kube') as server:
        yield server
    errors = server.emulator.server_errors
    assert not errors, f'The Kubernetes emulator failed internally: {errors!r}'


@pytest.fixture
def kube_emulator(kube_server: KubeServer) -> AmpxKubernetesEmulator:
    """The emulator object (mutate it only via ``kube_server.call(...)``: it lives in another thread)."""
    return kube_server.emulator


@pytest.fixture
def kubeconfig(kube_server: KubeServer) -> pathlib.Path:
    """The path of a kubeconfig file pointing at the emulator (context ``emulator``, ns ``default``)."""
    return kube_server.kubeconfig


@pytest.fixture
def kube_env(kube_server: KubeServer, monkeypatch: pytest.MonkeyPatch) -> KubeServer:
    """Set ``KUBECONFIG`` for the test process (for code under test that loads the default config)."""
    monkeypatch.setenv('KUBECONFIG', str(kube_server.kubeconfig))
    return kube_server


@pytest.fixture
def kube_api_client(kube_server: KubeServer) -> Iterator[Any]:
    """A ``kubernetes.client.ApiClient`` for the emulator (no global configuration touched)."""
    from kubernetes import config
    client = config.new_client_from_config(config_file=str(kube_server.kubeconfig))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def fake_kubelet(kube_server: KubeServer, tmp_path: pathlib.Path) -> Iterator[FakeKubelet]:
    """A started kubelet stand-in; set ``fake_kubelet.extra_env[...]`` to pass env to all pods."""
    # Outside pytest's basetemp: its root is 0700 (reset by any pytest run of the same user),
    # and the pods' user must be able to reach its volumes
    base = pathlib.Path(tempfile.mkdtemp(prefix='kubeharness-'))
    base.chmod(0o755)
    kubelet = FakeKubelet(kube_server, extra_env={}, workdir=base / 'pods', grace_period=2.0)
    try:
        with kubelet:
            yield kubelet
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert not kubelet.errors, f'The kubelet stand-in failed internally: {kubelet.errors!r}'


@pytest.fixture
def kube_spawn(kube_server: KubeServer) -> Iterator[Callable[..., ManagedProcess]]:
    """``kube_spawn(argv, env=...)``: start a subprocess with KUBECONFIG set; stopped at teardown."""
    procs: list[ManagedProcess] = []

    def spawn(argv: Any, **kwargs: Any) -> ManagedProcess:
        proc = kube_server.spawn(argv, **kwargs)
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        proc.stop()
