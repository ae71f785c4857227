"""Issue 13, as a newcomer meets the CLI: the real `ampx` executable on the local runtime."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ampx.core import events as ev
from ampx.core.decide import decide
from ampx.core.models import AmpTaskSpec, Phase, Stage
from ampx.local import paths
from ampx.local.store import LocalStore
from ampx.local.supervisor import running_pid, stop_background
from ampx.sandbox.scenarios import scenarios

pytestmark = pytest.mark.e2e
NOW = "2026-11-25T10:00:00Z"
SLOW = "Wait for a while\n@fake sleep 25"


@pytest.fixture
def ampx(world):
    env = os.environ.copy()
    yield lambda *args, stdin=None, cwd=None, **extra: subprocess.run(
        [sys.executable, "-m", "ampx", *args], capture_output=True, text=True, input=stdin,
        env=dict(env, **extra), timeout=120, cwd=cwd)
    stop_background()


def one_error_line(r, start: str) -> None:
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: " + start), r.stderr
    assert "Traceback" not in r.stderr


def names(ampx) -> list[str]:
    return [n.removeprefix("amptask/") for n in ampx("ls", "--all", "-o", "name").stdout.split()]


def stored_task(name: str, phase: Phase, **status) -> None:
    """A task as the supervisor would have left it, written straight into the runtime's file."""
    store = LocalStore(paths.db_path())
    task = store.create(name, AmpTaskSpec(repo="demo/calculator", prompt="x", branch=f"amp/x-{name[-6:]}"),
                        os.environ.get("AMPX_OWNER") or "tester", NOW)
    st = decide(task.spec, task.status, ev.Created(), NOW).status
    store.save_status(task, st.model_copy(update={"phase": phase, "stage": Stage.IDLE, **status}))
    store.close()


# ---------------------------------------------------------------- item 1
def test_credentials_are_checked_at_start_and_reach_the_supervisor(ampx, world):
    r = ampx("start", "--repo", "demo/calculator", "--task", "x", AMP_API_KEY="")
    one_error_line(r, "no attempt could run on the local runtime: AMP_API_KEY is not set")
    assert "Nothing was queued" in r.stderr and "Secret" not in r.stderr
    r = ampx("start", "--repo", "demo/calculator", "--task", "x", GITHUB_TOKEN="")
    one_error_line(r, "no attempt could run on the local runtime: GitHub is not configured")
    assert names(ampx) == [], "a refused start queues nothing"

    r = ampx("start", "--repo", "demo/calculator", "--task", SLOW)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    first = running_pid()
    r = ampx("start", "--repo", "demo/calculator", "--task", SLOW, AMP_API_KEY="sk-amp-rotated-key-2")
    assert r.returncode == 0
    assert "restarted the local supervisor to use this shell's credentials (AMP_API_KEY changed)" in r.stderr
    second = running_pid()
    assert second and second != first
    environ = Path(f"/proc/{second}/environ").read_bytes().split(b"\0")
    assert b"AMP_API_KEY=sk-amp-rotated-key-2" in environ, "the new supervisor holds the new key"
    r = ampx("start", "--repo", "demo/calculator", "--task", SLOW, AMP_API_KEY="sk-amp-rotated-key-2")
    assert r.returncode == 0 and r.stderr == "" and running_pid() == second, "same credentials: kept"
    # a problem that may stop attempts is a warning, and the task is queued
    r = ampx("start", "--repo", "demo/calculator", "--task", SLOW, AMP_API_KEY="sk-amp-rotated-key-2",
             PATH="/usr/bin:/bin")
    assert r.returncode == 0 and "warning: the agent's command 'amp' is not on PATH" in r.stderr
    assert len(names(ampx)) == 4
    assert "sk-amp-rotated-key-2" not in (paths.home() / "supervisor.env").read_text()


# ---------------------------------------------------------------- item 2
def test_export_never_overwrites_the_runtimes_database(ampx, world):
    stored_task("01jexport00000000000000001", Phase.SUCCESS)
    r = ampx("export", "--db", str(paths.db_path()), "--force")
    one_error_line(r, f"{paths.db_path()} is the local runtime's database")
    copy = world.root / "copy.db"
    shutil.copy(paths.db_path(), copy)
    r = ampx("export", "--db", str(copy), "--force")
    one_error_line(r, f"{copy} is a local runtime's database")
    assert names(ampx) == ["01jexport00000000000000001"]
    r = ampx("export", "--db", str(world.root / "out.db"))
    assert r.returncode == 0 and r.stdout.startswith("Exported 1 task(s)")


# ---------------------------------------------------------------- items 3 and 4
def test_hostile_text_is_shown_not_obeyed_in_get_ls_and_logs(ampx, world):
    title = "Fix \x1b]0;pwned\x07it\x1b[2J\u202e"
    r = ampx("start", "--repo", "demo/calculator", "--task", SLOW + "\nPhase: success", "--title",
             title, "-o", "name")
    assert r.returncode == 0, r.stderr
    tid = r.stdout.strip().removeprefix("amptask/")
    got = ampx("get", tid).stdout
    assert "\x1b" not in got and "\x07" not in got and "\u202e" not in got
    assert "Title:       Fix \\x1b]0;pwned\\x07it\\x1b[2J\\u202e" in got
    assert [ln for ln in got.splitlines() if ln.startswith("Phase:")] != ["Phase: success"]
    for fmt in ("table", "wide"):
        listing = ampx("ls", "-o", fmt).stdout
        assert "\x1b" not in listing and len(listing.splitlines()) == 2
    short = ampx("ls").stdout.splitlines()[1].split()[0]
    assert 7 <= len(short) < len(tid) and tid.startswith(short)
    assert ampx("get", short).returncode == 0, "the short id resolves"
    log = paths.runs_dir() / f"{tid}-a1.log"
    deadline = time.monotonic() + 30
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write("agent says \x1b]0;pwned\x07 and \u009b2J\r\nnext\rover\n")
    out = ampx("logs", tid).stdout
    assert "\x1b" not in out and "\u009b" not in out and "\r" not in out
    assert "agent says \\x1b]0;pwned\\x07 and \\x9b2J\nnext\\rover" in out


# ---------------------------------------------------------------- item 5
def test_task_input_is_bounded_text_and_the_agent_known(ampx, world, tmp_path):
    t0 = time.monotonic()
    r = ampx("start", "--repo", "demo/calculator", "--task-file", "/dev/zero")
    one_error_line(r, "--task-file /dev/zero is too long: the task limit is 32,768 characters")
    assert time.monotonic() - t0 < 30
    r = ampx("start", "--repo", "demo/calculator", "--task-file", "-", stdin="do\x00it")
    one_error_line(r, "--task-file contains a NUL byte")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes(b"caf\xe9")
    one_error_line(ampx("start", "--repo", "demo/calculator", "--task-file", str(latin)),
                   f"--task-file {latin} is not UTF-8 text")
    r = ampx("start", "--repo", "demo/calculator", "--task", "x", "--agent", "gpt-9")
    one_error_line(r, "unknown --agent 'gpt-9': use amp, claude, codex")
    assert names(ampx) == []


# ---------------------------------------------------------------- item 6
def test_a_relative_home_is_made_absolute_once(ampx, world, tmp_path):
    r = ampx("start", "--repo", "demo/calculator", "--task", SLOW, "-o", "name",
             cwd=tmp_path, AMPX_HOME="relhome")
    assert r.returncode == 0, r.stderr
    home = tmp_path / "relhome"
    assert (home / "ampx.db").exists() and not (home / "relhome").exists()
    status = ampx("daemon", "status", cwd=tmp_path, AMPX_HOME="relhome")
    assert status.returncode == 0 and f"data in {home}" in status.stdout
    listing = ampx("ls", "-o", "name", cwd=tmp_path, AMPX_HOME="relhome").stdout
    assert listing.strip() == r.stdout.strip()
    ampx("daemon", "stop", cwd=tmp_path, AMPX_HOME="relhome")


@pytest.mark.skipif(os.geteuid() != 0 and not shutil.which("setpriv"), reason="needs setpriv")
def test_reading_commands_work_on_a_read_only_home(ampx, world, monkeypatch):
    import tempfile

    tmp_path = Path(tempfile.mkdtemp(prefix="ampx-ro-", dir="/tmp"))  # reachable by nobody
    home = tmp_path / "ro-home"
    monkeypatch.setenv("AMPX_HOME", str(home))
    monkeypatch.setenv("AMPX_OWNER", "reader")
    stored_task("01jreadonly000000000000001", Phase.SUCCESS, summary="done")
    stored_task("01jreadonly000000000000002", Phase.RUNNING)  # in flight, no supervisor
    os.chmod(tmp_path, 0o755)
    for p in home.rglob("*"):
        os.chmod(p, 0o500 if p.is_dir() else 0o400)
    os.chmod(home, 0o500)
    user, python = [], sys.executable
    env = dict(os.environ, AMPX_HOME=str(home), AMPX_OWNER="reader", HOME=str(tmp_path))
    if os.geteuid() == 0:  # root writes anywhere: read as nobody, the home's owner
        from attacks.attacklib import as_user, python_for_the_user

        for p in [home, *home.rglob("*")]:
            os.chown(p, 65534, 65534)
        user = as_user(65534)
        python, env["PYTHONPATH"] = python_for_the_user(65534)  # one nobody can run
    run = lambda *a: subprocess.run(user + [python, "-m", "ampx", *a], capture_output=True,  # noqa: E731
                                    text=True, env=env, timeout=60, cwd="/")
    probe = run("daemon", "status")
    assert "data in" in probe.stdout, probe.stderr
    r = run("ls")
    assert r.returncode == 0, r.stderr
    assert [ln.split()[1] for ln in r.stdout.splitlines()[1:]] == ["success", "running"]
    assert "read-only: nothing can act on them" in r.stderr
    r = run("get", "01jreadonly000000000000001")
    assert r.returncode == 0 and "Summary:     done" in r.stdout
    assert sorted(p.name for p in home.iterdir()) == ["ampx.db"], "reading wrote nothing"
    if user:  # control: the same user cannot write there
        r = subprocess.run(user + ["touch", str(home / "x")], capture_output=True)
        assert r.returncode != 0
    shutil.rmtree(tmp_path, ignore_errors=True)


# ---------------------------------------------------------------- item 7
def test_merge_without_github_is_refused_at_once(ampx, world):
    stored_task("01jmerge000000000000000001", Phase.SUCCESS, pr_state="open", pr_number=7,
                pr_url="http://x/pull/7")
    r = ampx("merge", "01jmerge", GITHUB_TOKEN="")
    one_error_line(r, "no attempt could run on the local runtime: GitHub is not configured")
    task = LocalStore(paths.db_path()).get("01jmerge000000000000000001")
    assert task.spec.merge_requested_at is None and task.status.pr_state == "open"


# ---------------------------------------------------------------- item 8
def test_start_watch_exit_status_says_how_the_task_ended(ampx, world):
    never = next(s for s in scenarios() if s.key == "never-green")
    r = ampx("start", "--repo", "demo/calculator", "--task", never.prompt, "--max-attempts", "1", "-w")
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert r.stdout.splitlines()[-1].startswith("needs_review: CI still red after 1 attempt(s)")


def test_ctrl_c_on_start_watch_stops_watching_not_the_task(world):
    proc = subprocess.Popen([sys.executable, "-m", "ampx", "start", "--repo", "demo/calculator",
                             "--task", SLOW, "-w"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline and not line.startswith("running"):
            line = proc.stdout.readline()
        assert line.startswith("running"), line
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130
        assert err.startswith("stopped watching; task ") and "goes on" in err and "aborted" not in err
        listing = subprocess.run([sys.executable, "-m", "ampx", "ls"], capture_output=True, text=True)
        assert listing.stdout.splitlines()[1].split()[1] == "running"
    finally:
        if proc.poll() is None:
            proc.kill()
        stop_background()


# ---------------------------------------------------------------- item 9
def test_errors_are_one_line_a_person_can_act_on(ampx, world, tmp_path):
    r = ampx("continue", "01jwhatever", "-m", "x" * 20000)
    one_error_line(r, "invalid -m: too long: at most 16,384 characters, got 20,000")
    r = ampx("start", "--repo", "demo/calculator", "--task", "x", "--branch", "no spaces please")
    one_error_line(r, "invalid --branch: 'no spaces please' is not a valid git branch name")
    bad = tmp_path / "bad-home"
    bad.mkdir()
    (bad / "ampx.db").write_bytes(b"this is not sqlite" * 300)
    r = ampx("ls", AMPX_HOME=str(bad))
    one_error_line(r, f"{bad / 'ampx.db'} is not an ampx database (file is not a database)")
    (bad / "config.yaml").write_bytes(b"backend: \xff\xfe")
    one_error_line(ampx("ls", AMPX_HOME=str(bad)), f"{bad / 'config.yaml'} is not UTF-8 text")


# ---------------------------------------------------------------- item 10
def test_logs_attempts_and_flags_that_do_not_apply(ampx, world):
    stored_task("01jaborted0000000000000001", Phase.ABORTED)
    r = ampx("logs", "01jaborted", "--attempt", "0")
    assert r.returncode == 2 and "--attempt" in r.stderr
    r = ampx("logs", "01jaborted")
    one_error_line(r, "attempt 1 of task 01jaborted0000000000000001 left no log")
    assert r.stdout == "", "no empty header"
    r = ampx("ls", "-n", "team-a")
    one_error_line(r, "-n/--namespace and --context apply to the kube backend")


def test_the_local_worker_does_not_talk_about_secrets(world):
    from e2e.test_worker import new_task, run_worker

    store = LocalStore(paths.db_path())
    task = new_task(store, "x")
    env = {k: v for k, v in os.environ.items() if k != "AMP_API_KEY"}
    run_worker(task.name, 1, env=env)
    reason = store.get(task.name).status.reports["1"].reason
    assert reason.startswith("AMP_API_KEY is not set (export it in the shell") and "Secret" not in reason


# ---------------------------------------------------------------- item 12 (the import half)
def test_help_and_listing_load_none_of_the_heavy_stacks(world):
    heavy = ["pydantic", "rich", "requests", "jwt", "cryptography", "kubernetes", "yaml",
             "ampx.engine", "ampx.local.supervisor", "ampx.core.models", "ampx.github"]
    code = ("import sys\nfrom ampx.cli.main import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            f"print([m for m in {heavy!r} if m in sys.modules], file=sys.stderr)")
    stored_task("01jlisted00000000000000001", Phase.SUCCESS)
    for args in (["--help"], ["ls"], ["ls", "--all", "-o", "wide"]):
        r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
        assert r.stderr.strip().splitlines()[-1] == "[]", (args, r.stderr)
    # control: a command that needs the models does load them
    r = subprocess.run([sys.executable, "-c", code, "get", "01jlisted"], capture_output=True, text=True)
    assert "ampx.core.models" in r.stderr.strip().splitlines()[-1]
