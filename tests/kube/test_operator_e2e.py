"""The Kubernetes runtime end to end: the real operator process (kopf), the Kubernetes API
emulator, a kubelet stand-in running `ampx worker` for each Job, and the GitHub stand-in with
GitHub App auth (the key stays with the operator; each attempt gets a push token in its own
Secret, mounted only into the pod's prepare and publish containers)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pytest

from ampx.cli.backend import KubeBackend
from ampx.core.models import Phase
from ampx.history.db import HistoryDB
from ampx.sandbox.scenarios import Scenario, calc_with, scenarios, unit_test_file, write
from ampx.sandbox.world import DEMO_REPO

from ampx.kube.rbac import OPERATOR, WORKER
from e2e.checks import assert_story, start, wait_all
from kube.cluster import running_cluster
from kubeharness.server import write_kubeconfig

pytestmark = pytest.mark.e2e
AMPTASKS = "ampx.dev/v1alpha1/amptasks"
JOBS = "batch/v1/jobs"


@pytest.fixture
def cluster(world, kube_env, fake_kubelet, kube_spawn, tmp_path, monkeypatch):
    yield from running_cluster(world, kube_env, fake_kubelet, kube_spawn, tmp_path, monkeypatch)


def recorded(cluster, run) -> HistoryDB:
    """The history database once the operator recorded the final status (it writes the
    AmpTask first, the history row right after)."""
    history = HistoryDB(cluster.history_path)
    cluster.server.wait_for(
        lambda: (history.get_task(run.task_id) or {}).get("attempts") == run.task.status.attempts
        and history.get_task(run.task_id)["status"] == run.task.status.phase.value,
        timeout=10, message="history caught up")
    return history


def test_six_stories_on_kubernetes(cluster):
    # the endpoint the chart's liveness probe uses
    assert urllib.request.urlopen(cluster.liveness, timeout=10).status == 200
    backend = KubeBackend()
    runs = [start(backend, sc) for sc in scenarios()]
    wait_all(backend, runs)
    history = HistoryDB(cluster.history_path)
    for run in runs:
        assert_story(cluster.world, run, recorded(cluster, run))
        for n in range(1, run.task.status.attempts + 1):
            assert cluster.kubelet.starts[f"{run.task_id}-a{n}"] <= 1
    by = {r.scenario.key: r.task for r in runs}
    red = by["red-then-green"].status.history
    assert "AssertionError: 18 != 2" in red[1].prompt
    # CI on pull requests only: reached through a draft PR, marked ready (assert_story checked
    # the runs, the draft and the untouched workflows); the worker read the tree and said so
    pr_only = by["pr-only-ci"].status
    assert pr_only.reports["1"].push_workflows == [] and \
        pr_only.reports["1"].pull_request_workflows == [".github/workflows/tests.yml"]
    # Jobs: deterministic names, owned by their task, secrets only by reference
    job = cluster.server.get("batch", "v1", "jobs", "default", f"{runs[0].task_id}-a1")
    assert job["metadata"]["ownerReferences"][0]["uid"] == runs[0].task.metadata["uid"]
    containers = {c["name"]: c for c in job["spec"]["template"]["spec"]["containers"]}
    env = containers["agent"]["env"]
    assert {"name": "AMP_API_KEY", "valueFrom": {"secretKeyRef": {"name": "amp-api", "key": "api-key"}}} in env
    assert all("value" not in e for e in env if "KEY" in e["name"])
    assert runs[0].scenario.prompt not in str(job)
    # the reports came from the publish containers' termination messages
    pods = cluster.server.objects("pods", "default", label_selector=f"job-name={runs[0].task_id}-a1")
    (publish,) = [cs for cs in pods[0]["status"]["containerStatuses"] if cs["name"] == "publish"]
    assert '"outcome": "pushed"' in publish["state"]["terminated"]["message"].replace('":"', '": "')
    # each attempt's Secret (its push token) is gone once the attempt ended
    assert not [s for s in cluster.server.objects("secrets", "default")
                if s["metadata"]["name"].startswith(tuple(r.task_id for r in runs))]
    r = cluster.server.kubectl("wait", "--for=condition=Succeeded", f"amptask/{runs[0].task_id}",
                               "--timeout=20s", check=False)
    assert r.returncode == 0 and "condition met" in r.stdout, r.stderr
    green = backend.get(runs[0].task_id)
    assert green.status.observed_generation == green.metadata["generation"]
    # least privilege held: everything ran under the declared RBAC; workers made no API call
    used = cluster.server.call(lambda: set(cluster.server.emulator.rbac_used))
    assert not [u for u in used if u[0] == cluster.worker_user]
    op_used = {(g, r, v) for u, g, r, v in used if u == cluster.operator_user}
    assert op_used <= {(p.group, p.resource, p.verb) for p in OPERATOR}
    assert {("batch", "jobs", "create"), ("batch", "jobs", "delete"), ("ampx.dev", "amptasks", "watch"),
            ("ampx.dev", "amptasks/status", "patch"), ("", "secrets", "create"),
            ("", "secrets", "delete"), ("", "secrets", "get")} <= op_used, op_used
    # every container ran as the pod's user (10001) where the stand-in can run Python as it
    # (else uid 0), never with a capability (see kubeharness.kubelet)
    if os.geteuid() == 0:
        uids = {c.uid for p in cluster.kubelet.pods.values() for c in p.containers.values()}
        assert uids == {cluster.kubelet.usable_uid(10001)}
    # the aborted task's Job is gone, and the history outlives deleted tasks
    aborted = by["aborted"]
    cluster.server.wait_for_absence(JOBS, "default", f"{aborted.name}-a1")
    cluster.server.delete(AMPTASKS, "default", runs[0].task_id)
    cluster.server.wait_for(lambda: (history.get_task(runs[0].task_id) or {}).get("deleted_at"),
                            timeout=15, message="deleted_at recorded")
    assert history.get_task(runs[0].task_id)["status"] == "success"
    assert len(history.attempts(runs[0].task_id)) == 1


def test_operator_restart_mid_flight_creates_no_duplicate(cluster):
    backend = KubeBackend()
    sc = Scenario(
        key="restart", title="Add divide slowly",
        prompt="Add divide.\n@fake sleep 3\n" + write("calc.py", calc_with(
            "def divide(a, b):\n    return a * b")) + "\n"
        + write("test_divide.py", unit_test_file("divide", "divide(6, 3)", "2")) + "\n"
        + '@fake when "AssertionError: 18 != 2" write calc.py '
        + calc_with("def divide(a, b):\n    return a / b").replace("\n", "\\n"),
        expect_phase="success", expect_attempts=2, expect_pr="open")
    run = start(backend, sc)
    cluster.kubelet.wait_for_start(f"{run.task_id}-a1", timeout=30)
    cluster.operator.stop(grace=0)  # the operator dies while attempt 1 runs
    time.sleep(4)  # the attempt finishes and reports while no operator is watching
    cluster.start_operator()
    wait_all(backend, [run], timeout=120)
    assert_story(cluster.world, run, recorded(cluster, run))
    assert cluster.kubelet.starts[f"{run.task_id}-a1"] == 1
    assert cluster.kubelet.starts[f"{run.task_id}-a2"] == 1


def test_operator_restart_while_waiting_on_ci_loses_no_result(cluster):
    """The operator is down while CI runs and finishes red: the next operator reads the red
    result, starts attempt 2 exactly once and opens exactly one PR."""
    backend = KubeBackend()
    slow_test = unit_test_file("divide", "divide(6, 3)", "2").replace(
        "    def test_divide(self):\n", "    def test_divide(self):\n        import time; time.sleep(4)\n")
    sc = Scenario(
        key="restart-ci", title="Add divide with slow CI",
        prompt="Add divide.\n" + write("calc.py", calc_with("def divide(a, b):\n    return a * b"))
        + "\n" + write("test_divide.py", slow_test) + "\n"
        + '@fake when "AssertionError: 18 != 2" write calc.py '
        + calc_with("def divide(a, b):\n    return a / b").replace("\n", "\\n"),
        expect_phase="success", expect_attempts=2, expect_pr="open")
    run = start(backend, sc)
    cluster.server.wait_for(
        lambda: (lambda t: t.status.stage and t.status.stage.value == "ci")(backend.get(run.task_id)),
        timeout=60, message="attempt 1 pushed; waiting on CI")
    cluster.operator.stop(grace=0)  # the operator dies while CI runs
    runs = cluster.world.emulator.ci.runs(DEMO_REPO)
    cluster.server.wait_for(lambda: all(r.conclusion for r in cluster.world.emulator.ci.runs(DEMO_REPO))
                            and cluster.world.emulator.ci.runs(DEMO_REPO), timeout=60,
                            message="CI finished red while no operator was watching")
    assert backend.get(run.task_id).status.attempts == 1 and len(runs) <= 1
    cluster.start_operator()
    wait_all(backend, [run], timeout=120)
    assert_story(cluster.world, run, recorded(cluster, run))
    assert "AssertionError: 18 != 2" in run.task.status.history[1].prompt
    assert cluster.kubelet.starts[f"{run.task_id}-a1"] == 1
    assert cluster.kubelet.starts[f"{run.task_id}-a2"] == 1


def test_abort_continue_and_cli_listing(cluster):
    env = cluster.server.env(AMPX_BACKEND="kube", AMPX_OWNER="alice")

    def ampx(*args, owner="alice"):
        e = dict(env, AMPX_OWNER=owner)
        return subprocess.run([sys.executable, "-m", "ampx", *args], capture_output=True,
                              text=True, env=e, timeout=60)

    # the HTTPS form of the configured host (another host would be refused: issue 10)
    r = ampx("start", "--repo", f"{cluster.world.env['AMPX_GITHUB_URL']}/{DEMO_REPO}", "--task",
             "Take forever\n@fake sleep 120", owner="alice")
    assert r.returncode == 0, r.stderr
    slow = r.stdout.split()[1]
    r = ampx("start", "--repo", DEMO_REPO, "--max-attempts", "1", "--task",
             "Add broken subtract\n" + write("calc.py", calc_with("def subtract(a, b):\n    return a + b"))
             + "\n" + write("test_subtract.py", unit_test_file("subtract", "subtract(5, 3)", "2")),
             owner="bob")
    assert r.returncode == 0, r.stderr
    broken = r.stdout.split()[1]

    # ls: own tasks, everyone's, by phase; plain text when piped
    mine = ampx("ls").stdout  # short ids (unique prefixes), like git
    shown = [line.split()[0] for line in mine.splitlines()[1:]]
    assert mine.startswith("ID ") and len(shown) == 1 and slow.startswith(shown[0])
    assert not broken.startswith(shown[0])
    everyone = ampx("ls", "--all", "-o", "name").stdout.split()
    assert sorted(everyone) == sorted([f"amptask/{slow}", f"amptask/{broken}"])

    job = f"{slow}-a1"
    cluster.kubelet.wait_for_start(job, timeout=30)
    r = ampx("abort", slow[:16])
    assert r.returncode == 0, r.stderr
    cluster.server.wait_for_absence(JOBS, "default", job, timeout=20)
    backend = KubeBackend()
    cluster.server.wait_for(lambda: backend.get(slow).status.phase == Phase.ABORTED, timeout=20)
    slow_pods = cluster.kubelet.pods_of(job)
    assert slow_pods
    cluster.server.wait_for(lambda: all(p.exited() for p in slow_pods), timeout=20,
                            message="the aborted attempt's containers were killed")

    cluster.server.wait_for(lambda: backend.get(broken).status.phase == Phase.NEEDS_REVIEW,
                            timeout=90, message="broken task needs review")
    r = ampx("ls", "--all", "--status", "needs_review", "-o", "name")
    assert r.stdout.split() == [f"amptask/{broken}"]
    r = ampx("continue", broken[:16], "-m", "subtract must return a - b.\n"
             + write("calc.py", calc_with("def subtract(a, b):\n    return a - b")))
    assert r.returncode == 0 and "continuing with attempt 2" in r.stdout, r.stderr
    cluster.server.wait_for_object(JOBS, "default", f"{broken}-a2", timeout=20)
    cluster.server.wait_for(lambda: backend.get(broken).status.phase == Phase.SUCCESS,
                            timeout=90, message="continued task succeeds")
    task = backend.get(broken)
    assert task.status.attempts == 2 and task.status.budget_start == 1
    assert "subtract must return a - b." in task.status.history[1].prompt

    r = ampx("merge", broken[:16])
    assert r.returncode == 0, r.stderr
    cluster.server.wait_for(lambda: backend.get(broken).status.pr_state == "merged", timeout=30)
    r = ampx("get", broken[:16])
    assert "Attempt 2: pushed" in r.stdout and "(merged)" in r.stdout
    r = ampx("logs", broken[:16], "--attempt", "1")
    assert r.returncode == 0 and "[ampx] pushed" in r.stdout and "AssertionError: 8 != 2" in r.stdout, r.stderr

    # the history schema, exported from the AmpTasks in the cluster
    export = cluster.history_path.with_name("export.db")
    r = ampx("export", "--db", str(export))
    assert r.returncode == 0 and r.stdout.startswith("Exported 2 task(s) and 3 attempt(s)"), r.stderr
    exported = HistoryDB(export)
    assert exported.get_task(broken)["status"] == "success" and len(exported.attempts(broken)) == 2
    assert exported.get_task(slow)["status"] == "aborted"

    # one clear line for each kind of error
    assert ampx("get", "zz").stderr.strip() == "error: no task matches id 'zz'"
    r = ampx("abort", slow[:16])
    assert r.returncode == 1 and "already aborted" in r.stderr
    cluster.server.call(cluster.server.emulator.deny, "create", "amptasks.ampx.dev")
    r = ampx("start", "--repo", DEMO_REPO, "--task", "x")
    assert r.returncode == 1 and r.stderr.startswith("error: permission denied:")
    assert "Traceback" not in r.stderr


def test_watch_streams_changes(cluster):
    env = cluster.server.env(AMPX_BACKEND="kube", AMPX_OWNER="carol")
    proc = subprocess.Popen([sys.executable, "-m", "ampx", "ls", "-w"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        cluster.server.wait_for_watch(AMPTASKS, count=2, timeout=20)
        r = subprocess.run([sys.executable, "-m", "ampx", "start", "--repo", DEMO_REPO, "--task",
                            "Add multiply\n" + write("calc.py", calc_with("def multiply(a, b):\n    return a * b"))],
                           capture_output=True, text=True, env=env, timeout=60)
        tid = r.stdout.split()[1]
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if tid in line and "\tsuccess\t" in line:
                break
        assert any(tid in ln and "\tsuccess\t" in ln for ln in lines), lines
        assert any(tid in ln and ("\tqueued\t" in ln or "\tpending\t" in ln or "\trunning\t" in ln)
                   for ln in lines)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_kubectl_created_task_gets_defaults_and_bad_specs_are_refused(cluster):
    manifest = (
        "apiVersion: ampx.dev/v1alpha1\nkind: AmpTask\nmetadata:\n  name: 01jkubectl00000000000000000\n"
        "spec:\n  repo: demo/calculator\n  prompt: \"Tidy the README\\n@fake append README.md ok\\n\"\n")
    cluster.server.kubectl("apply", "-f", "-", input=manifest)
    backend = KubeBackend()
    task = cluster.server.wait_for(
        lambda: (lambda t: t if t.spec.branch and t.status.phase else None)(backend.get("01jkubectl00000000000000000")),
        timeout=30, message="defaults")
    assert task.spec.branch == "amp/tidy-the-readme-01jkubectl00000000000000000"
    assert task.metadata["labels"]["ampx.dev/owner"] == "unknown"
    r = cluster.server.kubectl("get", "amptasks", check=False)
    assert r.returncode == 0 and "01jkubectl00000000000000000" in r.stdout
    bad = manifest.replace("01jkubectl00000000000000000", "01jkubectl00000000000000001") + "  maxAttempts: 0\n"
    r = cluster.server.kubectl("apply", "-f", "-", input=bad, check=False)
    assert r.returncode != 0 and "maxAttempts" in r.stderr
    blank = manifest.replace("01jkubectl00000000000000000", "01jkubectl00000000000000002").replace(
        '"Tidy the README\\n@fake append README.md ok\\n"', '"   "')
    r = cluster.server.kubectl("apply", "-f", "-", input=blank, check=False)
    assert r.returncode != 0 and "prompt" in r.stderr
    # '.lock' is a CEL rule of the CRD, which this API emulator does not evaluate: the operator
    # refuses such a task itself, with the reason, instead of failing on it at every event
    locked = manifest.replace("01jkubectl00000000000000000", "01jkubectl00000000000000003") + \
        "  branch: amp/x.lock\n"
    cluster.server.kubectl("apply", "-f", "-", input=locked)
    task = cluster.server.wait_for(
        lambda: (lambda t: t if t.status.phase else None)(backend.get("01jkubectl00000000000000003")),
        timeout=30, message="refused")
    assert task.status.phase == Phase.ERROR and task.status.attempts == 0
    assert {c.type: c.status for c in task.status.conditions} == {"Finished": "True",
                                                                  "Succeeded": "False"}
    assert task.status.summary == ("invalid spec.branch: branch name 'amp/x.lock' must not end "
                                   "with '/', '.' or '.lock'")
    assert not [j for j in cluster.server.objects(JOBS)
                if j["metadata"]["name"].startswith("01jkubectl00000000000000003")]


def test_cli_errors_without_a_cluster(tmp_path):
    bad = tmp_path / "kubeconfig"
    bad.write_text("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'http://127.0.0.1:9'}\n"
                   "contexts:\n- name: c\n  context: {cluster: c, user: u, namespace: default}\n"
                   "current-context: c\nusers:\n- name: u\n  user: {token: t}\n")
    env = dict(os.environ, KUBECONFIG=str(bad), AMPX_BACKEND="kube")
    r = subprocess.run([sys.executable, "-m", "ampx", "ls"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip().startswith("error: cannot reach the Kubernetes API")
    assert "Traceback" not in r.stderr


def test_cli_says_when_the_crd_is_missing(tmp_path):
    from kubeharness.server import KubeServer

    with KubeServer(crd_path=None, workdir=tmp_path / "kube") as server:
        env = server.env(AMPX_BACKEND="kube")
        r = subprocess.run([sys.executable, "-m", "ampx", "ls"], capture_output=True, text=True,
                           env=env, timeout=60)
    assert r.returncode == 1, r.stdout
    assert r.stderr.strip() == "error: the AmpTask CRD is not installed (kubectl apply -f crds/amptask.yaml)"


def test_the_worker_identity_cannot_list_tasks(tmp_path):
    """The allow-list is enforced: the worker's rules do not include listing AmpTasks."""
    from kubeharness.server import KubeServer

    with KubeServer(workdir=tmp_path / "kube") as server:
        cfg = write_kubeconfig(tmp_path / "worker.kubeconfig", server.url, token="worker-token")

        def bind(emulator):
            emulator.tokens["worker-token"] = "system:serviceaccount:default:ampx-worker"
            emulator.rbac["system:serviceaccount:default:ampx-worker"] = frozenset(
                (p.group, p.resource, p.verb) for p in WORKER)

        server.call(bind, server.emulator)
        env = server.env(AMPX_BACKEND="kube", KUBECONFIG=str(cfg))
        r = subprocess.run([sys.executable, "-m", "ampx", "ls"], capture_output=True, text=True,
                           env=env, timeout=60)
    assert r.returncode == 1
    assert r.stderr.startswith("error: permission denied: ") and 'cannot list resource "amptasks"' in r.stderr


def test_abort_keeps_the_work_as_a_wip_commit(cluster):
    """Abort deletes the Job: every container gets SIGTERM at once; publish still holds its
    token (mounted at start) and pushes what the agent did as a WIP commit."""
    env = cluster.server.env(AMPX_BACKEND="kube", AMPX_OWNER="alice")
    r = subprocess.run([sys.executable, "-m", "ampx", "start", "--repo", DEMO_REPO, "--task",
                        "Half done\n@fake append README.md half\n@fake sleep 120"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    tid = r.stdout.split()[1]
    backend = KubeBackend()
    job = f"{tid}-a1"
    cluster.kubelet.wait_for_start(job, timeout=30)
    # wait until the agent has written (its thread announced: it is in its turn)
    cluster.server.wait_for(lambda: getattr(backend.get(tid).status.reports.get("1"), "thread_id", None),
                            timeout=30, message="the agent's thread id reached the status")
    time.sleep(1)
    r = subprocess.run([sys.executable, "-m", "ampx", "abort", tid], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    branch = backend.get(tid).spec.branch
    git_dir = cluster.world.emulator.git_path(DEMO_REPO)

    def subject():
        out = subprocess.run(["git", "--git-dir", str(git_dir), "log", "-1", "--format=%s", branch],
                             capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    cluster.server.wait_for(lambda: "WIP" in subject(), timeout=30,
                            message="the WIP commit on the task branch")
    assert subject() == "ampx: WIP Half done (attempt 1, interrupted)"
    assert backend.get(tid).status.phase == Phase.ABORTED
