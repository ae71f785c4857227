"""The agent's key, printed by CI in base64, never reaches what the operator writes or shows.

The operator does not hold the agent's key (only the agent's container does); it reads the one
Secret its Role names (resourceNames) and registers the value for masking in every form. The
control: with that read refused, the same story leaks the base64 key into the status.
"""

from __future__ import annotations

import base64
import json
import urllib.parse

import pytest

from ampx.cli.backend import KubeBackend
from ampx.history.db import HistoryDB
from e2e.checks import assert_story, start, wait_all
from e2e.test_secret_sweep import cli_views, leaks, leaky_story
from kube.cluster import running_cluster

pytestmark = pytest.mark.e2e
AMPTASKS = "ampx.dev/v1alpha1/amptasks"


@pytest.fixture
def cluster(world, kube_env, fake_kubelet, kube_spawn, tmp_path, monkeypatch):
    yield from running_cluster(world, kube_env, fake_kubelet, kube_spawn, tmp_path, monkeypatch)


def _forms(key: str) -> dict[str, str]:
    return {"AMP_API_KEY base64": base64.b64encode(key.encode()).decode(),
            "AMP_API_KEY base64 after a byte": base64.b64encode(b"x" + key.encode()).decode(),
            "AMP_API_KEY url-encoded": urllib.parse.quote(key + "/&", safe="")}


def _views(cluster, tid: str) -> dict[str, bytes]:
    server = cluster.server
    seen: dict[str, bytes] = {"operator stdout/stderr": cluster.operator.output.encode()}
    for p in sorted(cluster.history_path.parent.glob(cluster.history_path.name + "*")):
        seen[f"file {p.name}"] = p.read_bytes()
    history = HistoryDB(cluster.history_path)
    seen["history rows"] = json.dumps([history.get_task(tid), history.attempts(tid)],
                                      default=str).encode()
    for resource in (AMPTASKS, "v1/events", "batch/v1/jobs"):
        seen[resource] = json.dumps(server.objects(resource), default=str).encode()
    task = KubeBackend().get(tid)
    seen.update(cli_views(tid, task.status.attempts, env=server.env(AMPX_BACKEND="kube")))
    return seen


def _run(cluster, key: str):
    forms = _forms(key)
    backend = KubeBackend()
    # CI prints the key in base64 (alone, and after another byte) and URL-encoded, never verbatim
    run = start(backend, leaky_story([], [forms[k] for k in forms], fix=False))
    wait_all(backend, [run], timeout=120)
    return run, forms


def test_the_agent_key_printed_by_ci_in_base64_is_masked_everywhere(cluster, world):
    key = world.env["AMP_API_KEY"]
    run, forms = _run(cluster, key)
    assert_story(cluster.world, run, HistoryDB(cluster.history_path))
    excerpt = run.task.status.history[0].excerpt
    assert "leaked ***" in excerpt  # the CI output came back, masked
    found = leaks({"AMP_API_KEY": key, **forms}, _views(cluster, run.task_id))
    assert not found, found


def test_control_without_reading_the_agent_key_the_base64_form_leaks(cluster, world):
    cluster.server.call(cluster.server.emulator.deny, "get", "secrets", None,
                        user=cluster.operator_user)
    cluster.operator.stop(grace=0)  # a fresh operator: nothing registered yet
    cluster.start_operator()
    key = world.env["AMP_API_KEY"]
    run, forms = _run(cluster, key)
    assert forms["AMP_API_KEY base64"] in run.task.status.history[0].excerpt
    assert "cannot read the agent key Secret" in cluster.operator.output
