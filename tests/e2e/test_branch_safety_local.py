"""Issue 10 on the local runtime: tasks cannot hurt each other or the default branch.

The real CLI, supervisor and workers against the GitHub stand-in."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from ampx.cli.backend import owner_name
from ampx.core.ids import new_task_id
from ampx.history.db import HistoryDB
from ampx.local import paths
from ampx.local.backend import LocalBackend
from ampx.local.supervisor import stop_background
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

pytestmark = pytest.mark.e2e


@pytest.fixture
def backend(world):
    b = LocalBackend.from_env(ensure_supervisor=True)
    yield b
    stop_background()


def ampx(*args):
    return subprocess.run([sys.executable, "-m", "ampx", *args], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=60)


def one_error_line(r, fragment):
    assert r.returncode == 1, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], r.stderr


@pytest.mark.parametrize("args,fragment", [
    (("--branch", "main"), "outside the task branch prefix 'amp/'"),
    (("--branch", "HEAD"), "not a branch name"),
    (("--branch", "refs/heads/amp/x"), "not a branch name"),
    (("--base", "HEAD"), "not a branch name"),
    (("--base", "amp/x", "--branch", "amp/x"), "is the base branch"),
])
def test_start_refuses_branches_a_task_may_not_push(world, args, fragment):
    main = world.emulator.branches(DEMO_REPO)["main"]
    one_error_line(ampx("start", "--repo", DEMO_REPO, "--task", "x", *args), fragment)
    assert world.emulator.branches(DEMO_REPO) == {"main": main}
    assert not paths.db_path().exists() or not LocalBackend.from_env(False).store.ids()


@pytest.mark.parametrize("repo,fragment", [
    ("git@gitlab.com:demo/calculator.git", "not on the configured GitHub host"),
    ("https://evil.example.com/demo/calculator", "not on the configured GitHub host"),
    ("../..", "dot segment"),
    ("demo/..", "dot segment"),
    ("-x/y", "starting with '-'"),
])
def test_start_refuses_foreign_hosts_and_bad_names(world, repo, fragment):
    one_error_line(ampx("start", "--repo", repo, "--task", "x"), fragment)


def test_the_configured_hosts_forms_are_accepted(world, backend):
    url = world.env["AMPX_GITHUB_URL"]
    r = ampx("start", "--repo", f"{url}/{DEMO_REPO}.git", "--task", "Wait\n@fake sleep 30",
             "-o", "name")
    assert r.returncode == 0, r.stderr
    ampx("abort", r.stdout.strip().removeprefix("amptask/"))


def test_the_allow_list_of_the_config_file(world, backend):
    assert ampx("config", "set", "allowedRepos", "acme/*,tools/ci-*").returncode == 0
    config = yaml.safe_load((paths.home() / "config.yaml").read_text())
    assert config["allowedRepos"] == ["acme/*", "tools/ci-*"]
    one_error_line(ampx("start", "--repo", DEMO_REPO, "--task", "x"),
                   "repository demo/calculator is not in the allow-list of namespace local "
                   "(allowed: acme/*, tools/ci-*)")
    # a task that reached the runtime anyway (written by an older CLI, say) never runs
    tid = new_task_id()
    backend.create(tid, spec(f"amp/outside-{tid}"), owner_name())
    task = finished(backend, tid)
    assert_refused(task, "not in the allow-list of namespace local")
    assert f"amp/outside-{tid}" not in world.emulator.branches(DEMO_REPO)
    one_error_line(ampx("config", "set", "allowedRepos", "nonsense"), "not an owner/name glob")
    # allowed again: the same repository starts
    assert ampx("config", "set", "allowedRepos", "demo/*").returncode == 0
    r = ampx("start", "--repo", DEMO_REPO, "--task", "Wait\n@fake sleep 30", "-o", "name")
    assert r.returncode == 0, r.stderr
    ampx("abort", r.stdout.strip().removeprefix("amptask/"))


def test_the_branch_prefix_of_the_config_file(world, backend):
    assert ampx("config", "set", "branchPrefix", "bots/").returncode == 0
    one_error_line(ampx("start", "--repo", DEMO_REPO, "--task", "x", "--branch", "amp/x"),
                   "outside the task branch prefix 'bots/'")
    r = ampx("start", "--repo", DEMO_REPO, "--task", "Wait\n@fake sleep 30")
    assert r.returncode == 0 and " created on branch bots/wait-" in r.stdout, r.stderr
    ampx("abort", r.stdout.split()[1])
    one_error_line(ampx("config", "set", "branchPrefix", "refs/"), "prefix 'refs/' is not usable")


def test_the_repositorys_default_branch_is_refused_before_any_attempt(world, backend):
    add_trunk_repo(world)
    before = world.emulator.branches(TRUNK_REPO)
    r = ampx("start", "--repo", TRUNK_REPO, "--task", "x", "--branch", TRUNK, "-o", "name")
    assert r.returncode == 0, r.stderr  # only GitHub knows; the supervisor asks it
    task = finished(backend, r.stdout.strip().removeprefix("amptask/"))
    assert_refused(task, "'amp/trunk' is the repository's default branch")
    assert world.emulator.branches(TRUNK_REPO) == before
    assert world.emulator.pulls(TRUNK_REPO) == []


def test_two_tasks_with_one_title_started_together_get_their_own_branches_and_prs(world, backend):
    ids = start_together(os.environ.copy(), 2, "Same title")
    assert ids[0][:6] == ids[1][:6], "the old scheme would have given them one branch"
    tasks = [finished(backend, tid) for tid in ids]
    assert_own_prs(world, tasks)
    history = HistoryDB(paths.db_path())
    assert {history.get_task(t, "local")["branch"] for t in ids} == {t.spec.branch for t in tasks}


def test_a_task_naming_another_tasks_branch_stops_without_pushing(world, backend):
    first = new_task_id()
    backend.create(first, spec(f"amp/first-{first}"), owner_name())
    a = finished(backend, first)
    assert a.status.phase.value == "success", a.status.summary
    tip = world.emulator.branches(DEMO_REPO)[a.spec.branch]
    r = ampx("start", "--repo", DEMO_REPO, "--task", "Overwrite it\n@fake append README.md x\\n",
             "--branch", a.spec.branch, "-o", "name")
    assert r.returncode == 0, r.stderr
    b = finished(backend, r.stdout.strip().removeprefix("amptask/"))
    assert_refused(b, f"tip {tip[:12]} is task {first}'s commit", attempted=True)
    assert b.status.attempts == 1 and b.status.history[0].outcome.value == "branch_refused"
    assert world.emulator.branches(DEMO_REPO)[a.spec.branch] == tip
    assert [p.number for p in world.emulator.pulls(DEMO_REPO) if p.head_ref == a.spec.branch] \
        == [a.status.pr_number]


def test_the_worker_refuses_the_default_branch_by_itself(world):
    """Defence in depth: even when nobody asked GitHub first (no forge configured, a task
    admitted by an older ampx), the worker sees the remote's default branch and pushes nothing."""
    from ampx.core import events as ev
    from ampx.core.decide import decide
    from ampx.core.models import AttemptOutcome
    from ampx.local.store import LocalStore

    add_trunk_repo(world)
    before = world.emulator.branches(TRUNK_REPO)
    store = LocalStore(paths.db_path())
    tid, now = new_task_id(), "2026-11-25T10:00:00Z"
    task = store.create(tid, spec(TRUNK, repo=TRUNK_REPO), "tester", now)
    store.save_status(task, decide(task.spec, task.status, ev.Created(), now).status)
    r = subprocess.run([sys.executable, "-m", "ampx", "worker", "--backend", "local", "--task", tid,
                        "--attempt", "1"], capture_output=True, text=True, env=os.environ.copy(),
                       timeout=120)
    assert r.returncode == 2, r.stderr  # the configuration class of exit codes
    report = store.get(tid).status.reports["1"]
    assert report.outcome == AttemptOutcome.BRANCH_REFUSED
    assert "amp/trunk is the repository's default branch" in report.reason
    assert world.emulator.branches(TRUNK_REPO) == before
