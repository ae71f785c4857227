"""The local runtime end to end: a real supervisor process, real worker processes, real git,
the GitHub stand-in with its Actions runner, and the scripted agent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ampx.core.models import Phase
from ampx.history.db import HistoryDB
from ampx.local import paths
from ampx.local.backend import LocalBackend
from ampx.local.supervisor import running_pid, stop_background
from ampx.sandbox.demo import run_demo
from ampx.sandbox.scenarios import Scenario, calc_with, scenarios, unit_test_file, write

from e2e.checks import assert_story, start, wait_all

pytestmark = pytest.mark.e2e




@pytest.fixture
def backend(world):
    b = LocalBackend.from_env(ensure_supervisor=True)
    yield b
    stop_background()




def test_six_stories(world, backend):
    runs = [start(backend, sc) for sc in scenarios()]
    wait_all(backend, runs)
    history = HistoryDB(paths.db_path())
    for run in runs:
        assert_story(world, run, history)
    by = {r.scenario.key: r.task for r in runs}
    # the excerpt reached the agent: attempt 2's prompt carries the assertion from the CI log
    red = by["red-then-green"].status.history
    assert red[0].ci_conclusion == "failure" and "AssertionError: 18 != 2" in red[0].excerpt
    assert red[1].prompt.startswith(f"CI failed on {red[0].commit[:12]}")
    assert "AssertionError: 18 != 2" in red[1].prompt
    assert "stopped early" in by["never-green"].status.summary
    pr_only = by["pr-only-ci"].status
    assert pr_only.reports["1"].workflows == [".github/workflows/ready.yml",
                                              ".github/workflows/tests.yml"]
    assert pr_only.reports["1"].push_workflows == []
    assert "ready for review" in pr_only.summary
    assert "during attempt 1" in by["aborted"].status.summary
    assert by["continued-merged"].status.history[1].prompt.endswith(
        by["continued-merged"].spec.follow_ups[0].message.splitlines()[-1])
    # every attempt ran once (an aborted one may have been stopped before it said anything)
    for run in runs:
        for n in range(1, run.task.status.attempts + 1):
            log = (paths.runs_dir() / f"{run.task_id}-a{n}.log").read_text()
            starts = log.count(f"attempt {n} on ")
            assert starts == 1 or (run.scenario.key == "aborted" and starts == 0), (run.scenario.key, n)
    # the token never reached a log, the history or a status
    blob = "".join(p.read_text(errors="replace") for p in paths.runs_dir().glob("*.log"))
    blob += paths.db_path().read_bytes().decode("utf-8", "replace")
    assert world.token not in blob


def test_supervisor_killed_mid_attempt_resumes_without_duplicates(world, backend):
    sc = Scenario(
        key="restart", title="Add divide slowly",
        prompt="Add divide.\n@fake sleep 3\n" + write("calc.py", calc_with(
            "def divide(a, b):\n    return a * b")) + "\n"
        + write("test_divide.py", unit_test_file("divide", "divide(6, 3)", "2")) + "\n"
        + '@fake when "AssertionError: 18 != 2" write calc.py '
        + calc_with("def divide(a, b):\n    return a / b").replace("\n", "\\n"),
        expect_phase="success", expect_attempts=2, expect_pr="open")
    run = start(backend, sc)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        t = backend.store.get(run.task_id)
        if t.status.history and t.status.history[0].started_at:
            break
        time.sleep(0.1)
    pid = running_pid()
    assert pid and pid > 0
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    assert running_pid() is None
    # any ampx command brings the supervisor back; the attempt process kept running meanwhile
    cli = subprocess.run([sys.executable, "-m", "ampx", "ls", "--all", "-o", "wide"], capture_output=True,
                         text=True, env=os.environ.copy(), timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert run.task_id in cli.stdout
    assert running_pid()
    wait_all(backend, [run], timeout=90)
    assert_story(world, run, HistoryDB(paths.db_path()))
    for n in (1, 2):
        log = (paths.runs_dir() / f"{run.task_id}-a{n}.log").read_text()
        assert log.count(f"attempt {n} on ") == 1


def test_cli_subprocess_start_get_abort(world, backend):
    """The real `ampx` executable: start, get by prefix, abort, and clear errors."""
    env = os.environ.copy()

    def ampx(*args):
        return subprocess.run([sys.executable, "-m", "ampx", *args], capture_output=True,
                              text=True, env=env, timeout=60)

    r = ampx("start", "--repo", "demo/calculator", "--task", "Wait a while\n@fake sleep 60",
             "--budget", "90")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Task ") and " created on branch amp/wait-a-while-" in r.stdout
    tid = r.stdout.split()[1]
    assert backend.store.get(tid).spec.limits.task_timeout_minutes == 90
    r = ampx("get", tid[:20].upper())
    assert r.returncode == 0 and f"Task:        {tid}" in r.stdout
    r = ampx("--backend", "local", "ls", "-o", "name")  # kubectl-style: flags before the command
    assert r.returncode == 0 and tid in r.stdout, r.stderr
    follow = subprocess.Popen([sys.executable, "-m", "ampx", "logs", "-f", tid[:20]], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert follow.stdout.readline() == "==> attempt 1 worker log <==\n"
    assert f"[ampx] task {tid} attempt 1 on " in follow.stdout.readline()
    r = ampx("abort", tid[:20])
    assert r.returncode == 0 and "abort requested" in r.stdout
    out, err = follow.communicate(timeout=60)  # following ends when the attempt ends
    assert follow.returncode == 0, err
    deadline = time.monotonic() + 30
    while backend.store.get(tid).status.phase != Phase.ABORTED and time.monotonic() < deadline:
        time.sleep(0.2)
    assert backend.store.get(tid).status.phase == Phase.ABORTED
    r = ampx("abort", tid[:20])
    assert r.returncode == 1 and r.stderr.strip() == f"error: task {tid} is already aborted; nothing to abort"
    # shell completion of task ids, and export of the history schema
    comp = subprocess.run([sys.executable, "-m", "ampx"], capture_output=True, text=True,
                          env=dict(env, _AMPX_COMPLETE="bash_complete", COMP_WORDS="ampx get 01",
                                   COMP_CWORD="2"), timeout=60)
    assert f"plain,{tid}" in comp.stdout.splitlines()
    export = Path(env["AMPX_HOME"]) / "export.db"
    r = ampx("export", "--db", str(export))
    assert r.returncode == 0 and r.stdout.startswith("Exported 1 task(s)")
    assert HistoryDB(export).get_task(tid)["status"] == "aborted"
    assert ampx("export", "--db", str(export)).stderr.startswith("error: ")
    for bad, msg in [(("get", "zzz"), "error: no task matches id 'zzz'"),
                     (("start", "--repo", "not a repo", "--task", "x"),
                      "error: invalid --repo: not a GitHub repository"),
                     (("start", "--repo", "a/b", "--task", "  "), "error: the task is empty"),
                     (("merge", tid[:20]), f"error: task {tid} is aborted; only a task in success")]:
        r = ampx(*bad)
        assert r.returncode != 0 and r.stderr.startswith(msg), (bad, r.stderr)
        assert "Traceback" not in r.stderr
    # a data directory that is a file is one clear line
    env["AMPX_HOME"] = str(export)
    r = ampx("ls")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.strip() == f"error: AMPX_HOME {export} is not a directory"


def test_demo_command_exits_zero(tmp_path, monkeypatch):
    monkeypatch.setenv("AMPX_OWNER", "demo-test")
    out = tmp_path / "out.txt"
    with open(out, "w") as fh:
        rc = run_demo(keep=False, workdir=tmp_path / "demo", timeout_s=240, out=fh)
    text = out.read_text()
    assert rc == 0, text
    assert "6/6 tasks ended as expected; 4 pull request(s) opened, 1 merged." in text
    assert "pr-only-ci" in text
    told = text.split("What the agent was told after CI went red (red-then-green, attempt 2", 1)[1]
    assert "  | CI failed on " in told and "AssertionError: 18 != 2" in told
    assert not (tmp_path / "demo").exists()
