"""The Kubernetes runtime as the tests run it: the real operator process (kopf) on the API
emulator, acting as its ServiceAccount with exactly the RBAC of `ampx/kube/rbac.py`; the kubelet
stand-in running each attempt's pod; the GitHub stand-in with a GitHub App whose key only the
operator holds (on a disk no pod sees)."""

from __future__ import annotations

import os
import socket
import sys


from ampx.kube.rbac import OPERATOR, WORKER, grants
from kubeharness.server import write_kubeconfig

AMPTASKS = "ampx.dev/v1alpha1/amptasks"


class Cluster:
    def __init__(self, world, server, kubelet, spawn, tmp_path):
        self.world, self.server, self.kubelet, self.spawn = world, server, kubelet, spawn
        app = world.emulator.create_app()
        for repo in world.repos:  # the demo project, and its pull-request-only twin
            world.emulator.install_app(app.app_id, repo)
        # only the agent's key is a Secret of the task namespace; the App key is the operator's
        server.create_secret("amp-api", {"api-key": world.env["AMP_API_KEY"]})
        self.app = app
        secrets_dir = tmp_path / "operator-secrets"  # the operator's own disk: no pod sees it
        secrets_dir.mkdir(mode=0o700)
        keyfile = secrets_dir / "app.pem"
        keyfile.write_text(app.private_key_pem)
        keyfile.chmod(0o600)
        kubelet.hidden_paths.append(secrets_dir)
        self.op_secrets = secrets_dir
        self.history_path = tmp_path / "history.db"
        self.op_env = {
            "AMPX_GITHUB_API_URL": world.env["AMPX_GITHUB_API_URL"],
            "AMPX_GITHUB_URL": world.env["AMPX_GITHUB_URL"],
            "AMPX_GITHUB_APP_ID": str(app.app_id),
            "AMPX_GITHUB_APP_PRIVATE_KEY_FILE": str(keyfile),
            "AMPX_AMP_SECRET": "amp-api",
            "AMPX_HISTORY_DB": str(self.history_path),
            "AMPX_WORKER_IMAGE": "ampx-worker:test",
            "AMPX_CI_POLL_SECONDS": "1",
            "AMPX_CI_POLL_MAX_SECONDS": "2",
            "GITHUB_TOKEN": "",
            "AMP_API_KEY": "",
        }
        # What the worker image provides: the amp CLI (the sandbox's fake, run by the image's
        # python3) first on PATH; and the fake's thread store. Both live in the kubelet's shared
        # directory, which the pods' user (10001 when the tests run as root) can reach.
        from ampx.sandbox import fake_amp
        image_bin = kubelet.shared_dir / "bin"
        image_bin.mkdir(parents=True, exist_ok=True)
        (image_bin / "amp").write_text(f'#!/bin/sh\nexec python3 {fake_amp.__file__} "$@"\n')
        (image_bin / "amp").chmod(0o755)
        self.amp_home = kubelet.shared_dir / "amp-threads"
        (self.amp_home / "threads").mkdir(parents=True, exist_ok=True)
        kubelet.share_with_pods(kubelet.shared_dir, writable=True)
        kubelet.extra_env.update({"PATH": f"{image_bin}{os.pathsep}{world.env['PATH']}",
                                  "AMP_FAKE_HOME": str(self.amp_home),
                                  "AMPX_AGENT_ENV": world.env["AMPX_AGENT_ENV"]})
        self.operator = None
        # The operator and the workers act as their own service accounts, allowed exactly what
        # ampx/kube/rbac.py (and so the Helm chart) grants: a call outside it is a 403.
        self.operator_user = "system:serviceaccount:default:ampx-operator"
        self.worker_user = "system:serviceaccount:default:ampx-worker"
        op_cfg = write_kubeconfig(tmp_path / "operator.kubeconfig", server.url, token="op-token")
        wk_cfg = write_kubeconfig(tmp_path / "worker.kubeconfig", server.url, token="worker-token")

        def bind(emulator):
            emulator.tokens.update({"op-token": self.operator_user, "worker-token": self.worker_user})
            emulator.rbac[self.operator_user] = grants(OPERATOR, "amp-api")
            emulator.rbac[self.worker_user] = grants(WORKER, "amp-api")

        server.call(bind, server.emulator)
        self.op_env["KUBECONFIG"] = str(op_cfg)
        kubelet.pod_kubeconfig = wk_cfg

    def start_operator(self):
        before = self.server.call(self.server.emulator.watch_count, AMPTASKS)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.liveness = f"http://127.0.0.1:{s.getsockname()[1]}/healthz"
        self.operator = self.spawn([sys.executable, "-m", "ampx", "operator", "-n", "default",
                                    "--liveness", self.liveness], env=self.op_env)
        self.server.wait_for(lambda: self.operator.returncode is not None or
                             self.server.call(self.server.emulator.watch_count, AMPTASKS) > before,
                             timeout=30, message="operator watch")
        assert self.operator.returncode is None, self.operator.output
        return self.operator


def running_cluster(world, kube_env, fake_kubelet, kube_spawn, tmp_path, monkeypatch):
    """A started Cluster (the body of a fixture); checks the operator's output at the end."""
    monkeypatch.delenv("GITHUB_TOKEN")
    monkeypatch.delenv("AMP_API_KEY")
    monkeypatch.setenv("AMPX_BACKEND", "kube")
    c = Cluster(world, kube_env, fake_kubelet, kube_spawn, tmp_path)
    monkeypatch.setenv("AMP_FAKE_HOME", str(c.amp_home))  # where the agents keep their threads
    c.start_operator()
    yield c
    assert "Traceback" not in c.operator.output, c.operator.output[-3000:]
