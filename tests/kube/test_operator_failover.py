"""Two operator replicas on the emulator: one leads (holds the Lease), the other stands by; the
leader is killed mid-attempt, then its successor mid-CI-wait. Each time the standby takes over
within 15 s, and the task still ends right with no duplicate Job, push or pull request."""

from __future__ import annotations

import sys
import time

import pytest

from ampx.cli.backend import KubeBackend
from ampx.history.db import HistoryDB
from ampx.sandbox.scenarios import Scenario, calc_with, unit_test_file, write
from e2e.checks import assert_story, start, wait_all

from kube.cluster import running_cluster

pytestmark = pytest.mark.e2e
LEASES = "coordination.k8s.io/v1/leases"


@pytest.fixture
def cluster(world, kube_env, fake_kubelet, kube_spawn, tmp_path, monkeypatch):
    """The e2e cluster with its first operator running (and leading)."""
    yield from running_cluster(world, kube_env, fake_kubelet, kube_spawn, tmp_path, monkeypatch)


def replica(cluster, identity):
    return cluster.spawn([sys.executable, "-m", "ampx", "operator", "-n", "default"],
                         env=dict(cluster.op_env, AMPX_OPERATOR_ID=identity))


def holder(cluster):
    lease = cluster.server.call(cluster.server.emulator.find_object, LEASES, "default", "ampx-operator")
    return ((lease or {}).get("spec") or {}).get("holderIdentity")


def take_over(cluster, dying, successor, name):
    """Kill the leader (no clean shutdown: the Lease is left held) and time the takeover."""
    dying.stop(grace=0)
    killed = time.monotonic()
    cluster.server.wait_for(lambda: holder(cluster) == name, timeout=30, interval=0.1,
                            message=f"{name} leads")
    successor.wait_for_output("leading as " + name, timeout=10)
    return time.monotonic() - killed


def test_standby_takes_over_mid_attempt_and_mid_ci_without_duplicates(cluster):
    first = holder(cluster)
    assert first  # the fixture's operator leads
    b = replica(cluster, "replica-b")
    b.wait_for_output("standing by", timeout=30)
    assert holder(cluster) == first

    backend = KubeBackend()
    slow_test = unit_test_file("divide", "divide(6, 3)", "2").replace(
        "    def test_divide(self):\n", "    def test_divide(self):\n        import time; time.sleep(4)\n")
    sc = Scenario(
        key="failover", title="Add divide across failovers",
        prompt="Add divide.\n@fake sleep 3\n" + write("calc.py", calc_with(
            "def divide(a, b):\n    return a * b")) + "\n" + write("test_divide.py", slow_test) + "\n"
        + '@fake when "AssertionError: 18 != 2" write calc.py '
        + calc_with("def divide(a, b):\n    return a / b").replace("\n", "\\n"),
        expect_phase="success", expect_attempts=2, expect_pr="open")
    run = start(backend, sc)

    # 1. the leader dies while attempt 1 runs
    cluster.kubelet.wait_for_start(f"{run.task_id}-a1", timeout=30)
    assert take_over(cluster, cluster.operator, b, "replica-b") <= 15
    c = replica(cluster, "replica-c")
    c.wait_for_output("standing by", timeout=30)

    # 2. the next leader dies while CI runs on attempt 1's push
    cluster.server.wait_for(
        lambda: (lambda t: t.status.stage and t.status.stage.value == "ci")(backend.get(run.task_id)),
        timeout=60, message="attempt 1 pushed; waiting on CI")
    assert take_over(cluster, b, c, "replica-c") <= 15

    wait_all(backend, [run], timeout=120)
    assert_story(cluster.world, run, HistoryDB(cluster.history_path))  # one PR, the right pushes
    assert cluster.kubelet.starts[f"{run.task_id}-a1"] == 1
    assert cluster.kubelet.starts[f"{run.task_id}-a2"] == 1
    for proc in (b, c):
        assert "Traceback" not in proc.output, proc.output[-3000:]
