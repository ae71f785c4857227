"""`ampx ls` lists through a reader that needs no `kubernetes` import: same answer, same errors,
and the full client for kubeconfigs it does not handle."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ampx.kube.api import KubeApi
from ampx.kube.errors import KubeError
from ampx.kube.light import LightReader

AMPTASKS = "ampx.dev/v1alpha1/amptasks"


def task(name, owner):
    return {"apiVersion": "ampx.dev/v1alpha1", "kind": "AmpTask",
            "metadata": {"name": name, "labels": {"ampx.dev/owner": owner}},
            "spec": {"repo": "acme/api", "prompt": "x", "branch": f"amp/{name}"}}


def test_lists_what_the_full_client_lists(kube_server, kube_api_client):
    for i, owner in enumerate(["alice", "bob", "alice"]):
        kube_server.create(task(f"01jlight{i:018d}", owner), namespace="default")
    reader = LightReader.from_kubeconfig(path=str(kube_server.kubeconfig))
    assert reader is not None and reader.namespace == "default"
    full = KubeApi(kube_api_client)
    for ns, sel in ((None, None), ("default", None), ("default", "ampx.dev/owner=alice")):
        assert reader.list_tasks(ns, sel)["items"] == full.list_tasks(ns, sel)["items"]
    assert len(reader.list_tasks("default", "ampx.dev/owner=alice")["items"]) == 2
    kube_server.call(kube_server.emulator.deny, "list", "amptasks.ampx.dev")
    with pytest.raises(KubeError) as refused:
        reader.list_tasks("default")
    assert refused.value.status == 403 and str(refused.value).startswith("permission denied:")


def test_kubeconfigs_it_does_not_handle_go_to_the_full_client(tmp_path):
    cfg = tmp_path / "kubeconfig"
    cfg.write_text("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://k:6443'}\n"
                   "contexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n"
                   "users:\n- name: u\n  user:\n    exec: {command: get-token, apiVersion: "
                   "client.authentication.k8s.io/v1}\n")
    assert LightReader.from_kubeconfig(path=str(cfg)) is None
    token = cfg.read_text().replace("    exec: {command: get-token, apiVersion: client.authentication.k8s.io/v1}",
                                    "    token: abc")
    cfg.write_text(token)
    reader = LightReader.from_kubeconfig(path=str(cfg))
    assert reader.headers["Authorization"] == "Bearer abc" and reader.server == "https://k:6443"


def test_ls_never_imports_the_kubernetes_client(kube_server):
    code = ("import sys\nfrom ampx.cli.main import main\n"
            "try:\n    main(['ls', '--all'])\nexcept SystemExit:\n    pass\n"
            "print('kubernetes' in sys.modules, file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=kube_server.env(AMPX_BACKEND="kube"), timeout=60)
    assert r.stderr.strip().splitlines()[-1] == "False", r.stderr
