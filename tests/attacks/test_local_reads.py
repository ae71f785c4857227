"""What a hostile agent can read on the local runtime: not the environ of the worker or the
supervisor (non-dumpable, and the agent's own environment is scrubbed), and nothing outside
the checkout through a symbolic link (links are committed as links)."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time

from ampx.core.models import AttemptOutcome
from ampx.sandbox.world import DEMO_REPO
from ampx.worker.attempt import Exit

from attacklib import as_user, python_for_the_user, the_uid

SCAN = ("for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ; tr '\\0' ' ' < $p/cmdline; echo; "
        "done 2>/dev/null | grep -a -e ghp_ -e ghs_ -e GITHUB_TOKEN -e PRIVATE >> {loot}/scan; "
        "env >> {loot}/agent-env; true")


def test_the_agent_reads_no_credential_from_the_worker_or_the_supervisor(hostile, tmp_path):
    python, _ = python_for_the_user()
    control_token = "ghp_control" + secrets.token_hex(8)
    sup_home = hostile.base / "sup-home"
    sup_home.mkdir()
    from attacklib import give
    give(sup_home)
    sup_home.chmod(0o700)
    supervisor = subprocess.Popen([*as_user(the_uid()), python, "-m", "ampx", "daemon", "run"],
                                  env=dict(hostile.env, AMPX_HOME=str(sup_home)),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    plain = subprocess.Popen([*as_user(the_uid()), python, "-c", "import time; time.sleep(60)"],
                             env={"GITHUB_TOKEN": control_token, "PATH": "/usr/bin"})
    try:
        deadline = time.monotonic() + 20
        while not (sup_home / "supervisor.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (sup_home / "supervisor.pid").exists(), "the supervisor did not start"
        task = hostile.new_task("Look around\n@fake sh " + SCAN.format(loot=hostile.loot))
        r = hostile.run_worker(task.name)
        assert r.returncode == Exit.OK, r.stdout + r.stderr
        scan = (hostile.loot / "scan").read_text(errors="replace")
        assert control_token in scan, "control: the scan reads a plain process of its user"
        assert hostile.world.token not in scan
        agent_env = (hostile.loot / "agent-env").read_text()
        assert "GITHUB_TOKEN" not in agent_env and "AMPX_HOME" not in agent_env
        assert hostile.env["AMP_API_KEY"] in agent_env, "the agent keeps its own key"
    finally:
        plain.kill()
        supervisor.terminate()
        supervisor.wait(timeout=30)
        plain.wait()


def test_a_link_out_of_the_checkout_is_committed_as_a_link_never_as_its_target(hostile):
    secret = hostile.base / "secret.txt"
    marker = "TOPSECRET-" + secrets.token_hex(8)
    secret.write_text(marker + "\n")
    secret.chmod(0o644)
    task = hostile.new_task(
        f"Link things\n@fake sh ln -s {secret} leak.txt && ln -s /proc/self/environ env.txt "
        f"&& ln -s ../../private private && ln -s / root")
    env = dict(hostile.env, AMPX_KEEP_WORKSPACES="1")
    r = hostile.run_worker(task.name, env=env)
    assert r.returncode == Exit.OK, r.stdout + r.stderr
    rep = hostile.task(task.name).status.reports["1"]
    assert rep.outcome == AttemptOutcome.PUSHED
    entries = hostile.remote("ls-tree", rep.commit, "leak.txt", "env.txt", "private", "root")
    assert [line.split()[0] for line in entries.splitlines()] == ["120000"] * 4, entries
    assert hostile.remote("cat-file", "blob", f"{rep.commit}:leak.txt") == str(secret)
    objects = hostile.remote_objects()
    assert marker.encode() not in objects
    assert hostile.world.token.encode() not in objects
    assert hostile.world.emulator.branches(DEMO_REPO)[task.spec.branch] == rep.commit

    # control: a copy that follows links (shutil.copytree's default) takes the target along
    work = next((hostile.base / "world" / "workspaces").glob("*-a1-*/agent/work"))
    shutil.rmtree(work / "root", ignore_errors=True)
    (work / "root").unlink(missing_ok=True)
    (work / "private").unlink(missing_ok=True)
    (work / "env.txt").unlink(missing_ok=True)
    copy = hostile.base / "naive-copy"
    shutil.copytree(work, copy, ignore=shutil.ignore_patterns(".git"))
    assert marker in (copy / "leak.txt").read_text()
