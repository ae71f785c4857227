"""Issue 10 on Kubernetes: the real operator (with the chart's `tasks.*` settings as its
environment) on the API emulator, workers run by the kubelet stand-in, the GitHub stand-in."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ampx.cli.backend import KubeBackend, owner_name
from ampx.core.ids import new_task_id
from ampx.history.db import HistoryDB
from ampx.sandbox.world import DEMO_REPO

from e2e.branch_checks import (
    TRUNK,
    TRUNK_REPO,
    add_trunk_repo,
    assert_own_prs,
    assert_refused,
    finished,
    spec,
    start_together,
)
from kube.cluster import AMPTASKS, Cluster
from kube.test_operator_e2e import JOBS

pytestmark = pytest.mark.e2e
ALLOWED = '{"default": ["demo/*"], "other-team": ["tools/*"]}'


@pytest.fixture
def cluster(world, kube_env, fake_kubelet, kube_spawn, tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN")
    monkeypatch.delenv("AMP_API_KEY")
    monkeypatch.setenv("AMPX_BACKEND", "kube")
    c = Cluster(world, kube_env, fake_kubelet, kube_spawn, tmp_path)
    monkeypatch.setenv("AMP_FAKE_HOME", str(c.amp_home))  # where the agents keep their threads
    add_trunk_repo(world)
    world.emulator.install_app(c.app.app_id, TRUNK_REPO)
    c.op_env["AMPX_ALLOWED_REPOS"] = ALLOWED  # what the chart's tasks.allowedRepos renders
    c.start_operator()
    yield c
    assert "Traceback" not in c.operator.output, c.operator.output[-3000:]


def ampx(cluster, *args):
    env = cluster.server.env(AMPX_BACKEND="kube")
    return subprocess.run([sys.executable, "-m", "ampx", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def create(backend, **kw):
    """A task as kubectl or an old CLI could write it: past the CLI's own checks."""
    tid = new_task_id()
    kw.setdefault("branch", f"amp/test-{tid}")
    backend.create(tid, spec(**kw), owner_name())
    return tid


def no_jobs(cluster, tid):
    return not [j for j in cluster.server.objects(JOBS) if j["metadata"]["name"].startswith(tid)]


def test_the_operators_own_checks_refuse_before_any_job(cluster):
    backend = KubeBackend()
    main = cluster.world.emulator.branches(DEMO_REPO)["main"]
    cases = {
        create(backend, branch="main"): "outside the task branch prefix 'amp/'",
        create(backend, repo="git@gitlab.com:demo/calculator.git"): "not on the configured GitHub host",
        create(backend, repo="https://evil.example.com/demo/calculator"): "not on the configured GitHub host",
        create(backend, repo="elsewhere/api"): "not in the allow-list of namespace default",
        create(backend, repo=TRUNK_REPO, branch=TRUNK): "'amp/trunk' is the repository's default branch",
    }
    for tid, why in cases.items():
        assert_refused(finished(backend, tid), why)
        assert no_jobs(cluster, tid)
    assert cluster.world.emulator.branches(DEMO_REPO) == {"main": main}
    assert cluster.world.emulator.branches(TRUNK_REPO) == {TRUNK: cluster.world.emulator.branches(TRUNK_REPO)[TRUNK]}
    r = cluster.server.kubectl("wait", "--for=condition=Finished", f"amptask/{tid}", "--timeout=10s",
                               check=False)
    assert r.returncode == 0, r.stderr


def test_the_schema_refuses_dot_segments_and_the_cli_refuses_at_once(cluster):
    manifest = ("apiVersion: ampx.dev/v1alpha1\nkind: AmpTask\nmetadata:\n  name: {name}\n"
                "spec:\n  repo: \"{repo}\"\n  prompt: x\n")
    for i, repo in enumerate(["../..", "demo/..", "-x/y"]):
        r = cluster.server.kubectl("apply", "-f", "-", input=manifest.format(
            name=f"01jbad{i:020d}", repo=repo), check=False)
        assert r.returncode != 0 and "repo" in r.stderr, r.stderr
    for args, why in [(("--repo", DEMO_REPO, "--branch", "main"), "outside the task branch prefix"),
                      (("--repo", "git@gitlab.com:demo/calculator.git"), "not on the configured GitHub host"),
                      (("--repo", "demo/.."), "dot segment"),
                      (("--repo", DEMO_REPO, "--branch", "HEAD"), "not a branch name")]:
        r = ampx(cluster, "start", "--task", "x", *args)
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and why in r.stderr, r.stderr
    assert cluster.server.objects(AMPTASKS) == []


def test_two_tasks_with_one_title_started_together_get_their_own_branches_and_prs(cluster):
    backend = KubeBackend()
    ids = start_together(cluster.server.env(AMPX_BACKEND="kube"), 2, "Same title")
    assert ids[0][:6] == ids[1][:6], "the old scheme would have given them one branch"
    tasks = [finished(backend, tid, timeout=150) for tid in ids]
    assert_own_prs(cluster.world, tasks)


def test_a_task_naming_another_tasks_branch_stops_without_pushing(cluster):
    backend = KubeBackend()
    first = create(backend)
    a = finished(backend, first, timeout=150)
    assert a.status.phase.value == "success", a.status.summary
    tip = cluster.world.emulator.branches(DEMO_REPO)[a.spec.branch]
    second = create(backend, branch=a.spec.branch)
    b = finished(backend, second)
    assert_refused(b, f"tip {tip[:12]} is task {first}'s commit", attempted=True)
    assert b.status.history[0].outcome.value == "branch_refused"
    assert cluster.world.emulator.branches(DEMO_REPO)[a.spec.branch] == tip
    assert len([p for p in cluster.world.emulator.pulls(DEMO_REPO) if p.head_ref == a.spec.branch]) == 1
    # the history keeps both, keyed by namespace and name
    history = HistoryDB(cluster.history_path)
    assert history.get_task(second, "default")["status"] == "error"
