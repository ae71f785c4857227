"""`ampx worker` as a real process: one attempt against the GitHub stand-in over HTTP git."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ampx.core import events as ev
from ampx.core.decide import decide
from ampx.core.models import AmpTaskSpec, AttemptOutcome
from ampx.local import paths
from ampx.local.store import LocalStore
from ampx.sandbox.world import DEMO_REPO
from ampx.worker.attempt import Exit

pytestmark = pytest.mark.e2e
NOW = "2026-11-25T10:00:00Z"


def new_task(store: LocalStore, prompt: str, name: str = "01jtask0000000000000000000", **kw):
    spec = AmpTaskSpec(repo=DEMO_REPO, prompt=prompt, branch=f"amp/test-{name[-6:]}", **kw)
    task = store.create(name, spec, "tester", NOW)
    return store.save_status(task, decide(task.spec, task.status, ev.Created(), NOW).status)


def next_attempt(store: LocalStore, name: str, prompt_event) -> None:
    """Move the task to its next attempt the way the engine would (push, then CI red)."""
    task = store.get(name)
    st = task.status
    rep = st.reports[str(st.attempts)]
    d = decide(task.spec, st, ev.AttemptPushed(st.attempts, rep.commit, rep.thread_id), NOW)
    d = decide(task.spec, d.status, prompt_event(rep.commit), NOW)
    store.save_status(task, d.status)


def run_worker(name: str, attempt: int, env=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ampx", "worker", "--backend", "local",
                           "--task", name, "--attempt", str(attempt)],
                          capture_output=True, text=True, env=env or os.environ.copy(),
                          timeout=120, **kw)


@pytest.fixture
def store(world):
    return LocalStore(paths.db_path())


def remote_branch(world, branch: str):
    return world.emulator.branches(DEMO_REPO).get(branch)


def test_attempts_share_one_thread_and_push_to_the_task_branch(world, store):
    task = new_task(store, "Add multiply\n@fake write calc.py def multiply(a, b):\\n    return a * b\\n")
    r = run_worker(task.name, 1)
    assert r.returncode == Exit.OK, r.stdout + r.stderr
    rep = store.get(task.name).status.reports["1"]
    assert rep.outcome == AttemptOutcome.PUSHED and rep.thread_id.startswith("T-")
    assert remote_branch(world, task.spec.branch) == rep.commit
    msg = subprocess.run(["git", "--git-dir", str(world.emulator.git_path(DEMO_REPO)), "log", "-1",
                          "--format=%B%an", rep.commit], capture_output=True, text=True).stdout
    assert msg.startswith("ampx: Add multiply (attempt 1)\n\nAmpx-Task: 01jtask0000000000000000000")
    assert "ampx[bot]" in msg
    assert "[agent] thread T-" in r.stdout and "[ampx] pushed" in r.stdout
    assert list(Path(os.environ["AMPX_WORKSPACE"]).iterdir()) == [], "the spent clone is removed"

    next_attempt(store, task.name, lambda sha: ev.CiRed(sha, 1, "http://ci/1", "AssertionError: x",
                                                        "sig", rerunnable=False))
    r = run_worker(task.name, 2)
    assert r.returncode == Exit.OK, r.stdout + r.stderr
    st = store.get(task.name).status
    assert st.reports["2"].outcome == AttemptOutcome.NO_CHANGE
    assert st.reports["2"].tokens_in > 0, "a turn that changed nothing still cost tokens"
    assert f"amp threads continue {rep.thread_id}" in r.stdout
    thread = json.loads((Path(os.environ["AMP_FAKE_HOME"]) / "threads" / f"{rep.thread_id}.json").read_text())
    users = [m["content"] for m in thread["messages"] if m["role"] == "user"]
    assert len(users) == 2 and "AssertionError: x" in users[1]


def test_token_never_in_argv_logs_or_git_config(world, store, tmp_path):
    task = new_task(store, "Add a line\n@fake append README.md more\\n\n@fake sleep 1")
    seen: list[str] = []
    stop = threading.Event()

    def scan():
        while not stop.is_set():
            for proc in Path("/proc").iterdir():
                if proc.name.isdigit():
                    try:
                        cmd = (proc / "cmdline").read_bytes().decode("utf-8", "replace")
                    except OSError:
                        continue
                    if world.token in cmd:
                        seen.append(cmd)
            time.sleep(0.01)

    t = threading.Thread(target=scan, daemon=True)
    t.start()
    try:
        r = run_worker(task.name, 1, env=dict(os.environ, AMPX_KEEP_WORKSPACES="1"))
    finally:
        stop.set()
        t.join()
    assert r.returncode == Exit.OK, r.stdout + r.stderr
    assert seen == []
    assert world.token not in r.stdout + r.stderr
    configs = list(Path(os.environ["AMPX_WORKSPACE"]).glob("*/**/.git/config"))
    assert len(configs) == 2, configs  # the private clone and the agent's checkout
    assert all(world.token not in c.read_text() for c in configs)
    kept = [p for p in Path(os.environ["AMPX_WORKSPACE"]).rglob("*") if p.is_file()]
    assert all(world.token.encode() not in p.read_bytes() for p in kept)
    assert world.token not in store.get(task.name).model_dump_json()


def test_tamper_guard_refuses_and_names_files(world, store):
    task = new_task(store, "Speed up CI\n@fake touch-workflow\n@fake delete-tests")
    r = run_worker(task.name, 1)
    assert r.returncode == Exit.TAMPERED
    rep = store.get(task.name).status.reports["1"]
    assert rep.outcome == AttemptOutcome.TAMPERED
    assert rep.files == [".github/workflows/ci.yml", "test_calc.py"]
    assert remote_branch(world, task.spec.branch) is None, "nothing may be pushed"


def test_sigterm_keeps_the_work_as_a_wip_commit_and_kills_the_agent_group(world, store, tmp_path):
    pidfile = tmp_path / "agent.pids"
    task = new_task(store, f"Long job\n@fake write calc.py # half done\\n\n@fake hang {pidfile}")
    proc = subprocess.Popen([sys.executable, "-m", "ampx", "worker", "--backend", "local",
                             "--task", task.name, "--attempt", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    agent_pids = [int(p) for p in pidfile.read_text().split()]
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == Exit.INTERRUPTED, out
    rep = store.get(task.name).status.reports["1"]
    assert rep.outcome == AttemptOutcome.INTERRUPTED and rep.commit
    assert remote_branch(world, task.spec.branch) == rep.commit
    subject = subprocess.run(["git", "--git-dir", str(world.emulator.git_path(DEMO_REPO)), "log",
                              "-1", "--format=%s", rep.commit], capture_output=True, text=True).stdout
    assert subject.strip() == "ampx: WIP Long job (attempt 1, interrupted)"
    for pid in agent_pids:  # the agent and the child it spawned are gone
        assert not Path(f"/proc/{pid}").exists() or \
            Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"


def test_agent_failure_and_missing_key_have_their_own_exit_codes(world, store):
    task = new_task(store, "Break\n@fake fail the model gave up")
    r = run_worker(task.name, 1)
    assert r.returncode == Exit.AGENT_FAILED
    rep = store.get(task.name).status.reports["1"]
    assert rep.outcome == AttemptOutcome.AGENT_FAILED and "exit 1" in rep.reason

    other = new_task(store, "Anything", name="01jtask0000000000000000001")
    env = {k: v for k, v in os.environ.items() if k != "AMP_API_KEY"}
    r = run_worker(other.name, 1, env=env)
    assert r.returncode == Exit.CONFIG
    assert store.get(other.name).status.reports["1"].reason.startswith("AMP_API_KEY is not set")
    r = run_worker(other.name, 7)
    assert r.returncode == Exit.CONFIG and "has no attempt 7" in r.stdout


def test_missing_base_branch_and_a_bad_agent_template_are_configuration_errors(world, store):
    task = new_task(store, "Anything", base_branch="no-such-branch")
    r = run_worker(task.name, 1)
    assert r.returncode == Exit.CONFIG, r.stdout + r.stderr
    rep = store.get(task.name).status.reports["1"]
    assert rep.outcome == AttemptOutcome.CONFIG_ERROR
    assert rep.reason == "base branch 'no-such-branch' does not exist on the remote"

    other = new_task(store, "Anything", name="01jtask0000000000000000002")
    env = dict(os.environ, AMPX_AGENT_COMMAND="mycli --resume {thread_id} --json")
    r = run_worker(other.name, 1, env=env)
    assert r.returncode == Exit.CONFIG, r.stdout + r.stderr
    rep = store.get(other.name).status.reports["1"]
    assert rep.outcome == AttemptOutcome.CONFIG_ERROR and rep.finished_at
    assert "needs a thread id but has no way to create one" in rep.reason
    assert "Traceback" not in r.stdout + r.stderr


def test_an_unreachable_git_host_is_its_own_failure_class(world, store):
    task = new_task(store, "Anything")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    r = run_worker(task.name, 1, env=dict(os.environ, AMPX_GITHUB_URL=dead))
    assert r.returncode == Exit.GIT_FAILED, r.stdout + r.stderr
    rep = store.get(task.name).status.reports["1"]
    assert rep.outcome == AttemptOutcome.GIT_FAILED
    assert rep.reason.startswith("could not check out the repository: ")


def test_the_new_thread_is_reported_before_the_turn_ends(world, store, tmp_path):
    """A worker killed mid-turn (OOM, node loss) must not lose the thread: the next attempt
    continues it instead of starting over."""
    pidfile = tmp_path / "agent.pids"
    task = new_task(store, f"Long job\n@fake hang {pidfile}")
    proc = subprocess.Popen([sys.executable, "-m", "ampx", "worker", "--backend", "local",
                             "--task", task.name, "--attempt", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        rep = store.get(task.name).status.reports["1"]
        assert rep.thread_id and rep.thread_id.startswith("T-") and rep.outcome is None
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_a_change_that_contains_a_credential_is_never_pushed(world, store):
    key = os.environ["AMP_API_KEY"]
    task = new_task(store, f"Configure the client\n@fake write settings.py AMP_KEY = '{key}'\\n")
    r = run_worker(task.name, 1)
    assert r.returncode == Exit.TAMPERED, r.stdout + r.stderr
    rep = store.get(task.name).status.reports["1"]
    assert rep.outcome == AttemptOutcome.TAMPERED and rep.files == ["settings.py"]
    assert rep.reason == "the change contains a credential"
    assert remote_branch(world, task.spec.branch) is None, "nothing may be pushed"
    assert key not in r.stdout
    d = decide(task.spec, store.get(task.name).status,
               ev.AttemptFailed(1, rep.outcome, rep.reason, files=tuple(rep.files)), NOW)
    assert d.status.summary == "attempt 1 was not pushed: it contains a credential (settings.py)"


def test_time_limit_keeps_the_work_and_ends_the_agent_group(world, store, tmp_path):
    """The shortest limit a spec allows (1 min): the agent's whole group ends, the work is kept
    as a WIP commit on the branch (without protected files) and the exit code says timeout."""
    from ampx.core.models import Limits

    pidfile = tmp_path / "agent.pids"
    key = os.environ["AMP_API_KEY"]
    task = new_task(store, f"Long job\n@fake write calc.py # half done\\n\n@fake touch-workflow\n"
                           f"@fake write settings.py KEY = '{key}'\\n\n"
                           f"@fake hang-stubborn {pidfile}", limits=Limits(attempt_timeout_minutes=1))
    r = subprocess.run([sys.executable, "-m", "ampx", "worker", "--backend", "local",
                        "--task", task.name, "--attempt", "1"], capture_output=True, text=True,
                       timeout=150)
    assert r.returncode == Exit.TIMEOUT, r.stdout + r.stderr
    rep = store.get(task.name).status.reports["1"]
    assert rep.outcome == AttemptOutcome.TIMEOUT and rep.reason == "time limit of 1 min reached"
    assert rep.commit and remote_branch(world, task.spec.branch) == rep.commit
    files = subprocess.run(["git", "--git-dir", str(world.emulator.git_path(DEMO_REPO)), "show",
                            "--name-only", "--format=%s", rep.commit], capture_output=True,
                           text=True).stdout.split()
    assert files[:2] == ["ampx:", "WIP"] and "calc.py" in files
    assert ".github/workflows/ci.yml" not in files, "protected files stay out of the WIP commit"
    assert "settings.py" not in files, "a file with a credential stays out of the WIP commit"
    for pid in (int(p) for p in pidfile.read_text().split()):  # SIGKILL got even the stubborn ones
        assert not Path(f"/proc/{pid}").exists() or \
            Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
