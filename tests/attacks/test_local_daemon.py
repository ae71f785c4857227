"""A daemon the agent leaves behind (setsid, double fork) on the local runtime: it must be dead
before the worker's first git command with the token, so it never sees the token in a git
child's environ or cmdline and never gets a late workflow into the pushed commit."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from ampx.core.models import AttemptOutcome
from ampx.worker.attempt import Exit

from attacklib import alive, as_user, the_uid

DAEMON = Path(__file__).with_name("daemon.py")
LEGIT = "@fake write calc.py def add(a, b):\\n    return a + b\\n\\n\\ndef mul(a, b):\\n    return a * b\\n"


def test_the_agents_daemon_is_killed_before_the_push(hostile):
    pidfile = hostile.loot / "daemon.pids"
    task = hostile.new_task(
        f"Add mul\n{LEGIT}\n"
        f"@fake sh setsid python3 {DAEMON} {hostile.loot} {pidfile} late-workflow "
        f">/dev/null 2>&1 </dev/null &\n@fake sh sleep 0.5")
    r = hostile.run_worker(task.name)
    rep = hostile.task(task.name).status.reports["1"]
    assert "killed 1 process(es) the agent left behind" in r.stdout, r.stdout + r.stderr
    pids = [int(p) for p in pidfile.read_text().split()]
    assert pids and not any(alive(p) for p in pids), "the daemon outlived the attempt"
    # the daemon writes the workflow 1 s in: usually after it was killed (the commit holds the
    # agent's work only), on a loaded machine sometimes before (the guard refuses the attempt);
    # either way the workflow never reaches the remote
    if rep.outcome == AttemptOutcome.TAMPERED:
        assert r.returncode == Exit.TAMPERED and rep.commit is None, r.stdout
        assert ".github/workflows/evil.yml" in (rep.files or [])
    else:
        assert r.returncode == Exit.OK and rep.outcome == AttemptOutcome.PUSHED, r.stdout + r.stderr
        files = hostile.remote("ls-tree", "-r", "--name-only", rep.commit).split()
        assert "calc.py" in files and ".github/workflows/evil.yml" not in files
    # the daemon scans every process of its uid on the machine (other tests' too): only this
    # attempt's credential counts
    loot = hostile.looted()
    assert hostile.world.token not in loot, loot
    assert hostile.world.token not in r.stdout + r.stderr


def test_control_a_process_the_worker_cannot_kill_reads_the_token_of_its_git(hostile):
    """Why the daemon must die: a process of the same user that is not the worker's
    descendant (so nothing kills it) finds the token in the environ of the worker's git."""
    pidfile = hostile.loot / "outsider.pids"
    subprocess.run([*as_user(the_uid()), sys.executable, str(DAEMON), str(hostile.loot),
                    str(pidfile), "scan"], cwd=str(hostile.loot), check=True, timeout=30)
    try:
        deadline = time.monotonic() + 10
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        task = hostile.new_task(f"Add mul\n{LEGIT}")
        r = hostile.run_worker(task.name)
        assert r.returncode == Exit.OK, r.stdout + r.stderr
        time.sleep(0.2)
        assert f"AMPX_GIT_TOKEN={hostile.world.token}" in hostile.looted()
    finally:
        for pid in (int(p) for p in pidfile.read_text().split()):
            subprocess.run(["kill", "-9", str(pid)], check=False)
