"""The real `ampx` executable on the local runtime: output formats, task files, config and the
supervisor's lifecycle."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from ampx.local.supervisor import running_pid, stop_background

pytestmark = pytest.mark.e2e


@pytest.fixture
def ampx(world):
    env = os.environ.copy()
    yield lambda *args, stdin=None, **extra: subprocess.run(
        [sys.executable, "-m", "ampx", *args], capture_output=True, text=True, input=stdin,
        env=dict(env, **extra), timeout=60)
    stop_background()


def test_formats_task_file_and_daemon(ampx, tmp_path):
    r = ampx("start", "--repo", "demo/calculator", "--task-file", "-", "--title", "Slow one",
             "-o", "name", stdin="Wait for a while\n@fake sleep 30\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("amptask/")
    tid = r.stdout.strip().removeprefix("amptask/")

    task_file = tmp_path / "task.md"
    task_file.write_text("Add a README line\n@fake append README.md more\\n\n")
    r = ampx("start", "--repo", "demo/calculator", "--task-file", str(task_file), "-o", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["kind"] == "AmpTask" and doc["spec"]["prompt"].startswith("Add a README line")
    other = doc["metadata"]["name"]

    listing = json.loads(ampx("ls", "-o", "json").stdout)
    assert listing["kind"] == "List" and {i["metadata"]["name"] for i in listing["items"]} == {tid, other}
    got = yaml.safe_load(ampx("get", tid, "-o", "yaml").stdout)
    assert got["spec"]["title"] == "Slow one" and got["metadata"]["name"] == tid
    wide = ampx("ls", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[:3] == ["ID", "PHASE", "ATTEMPTS"] and "OWNER" in wide[0]
    assert any(line.startswith(tid) for line in wide[1:])

    # the supervisor the first start launched, stopped and started again
    r = ampx("daemon", "status")
    assert r.returncode == 0 and f"pid {running_pid()}" in r.stdout
    assert ampx("daemon", "stop").stdout.startswith("supervisor (pid ")
    r = ampx("daemon", "status")
    assert r.returncode == 3 and r.stdout.startswith("no supervisor running")
    assert ampx("daemon", "start").returncode == 0 and running_pid()

    r = ampx("start", "--repo", "demo/calculator", "--task", "x", "--task-file", str(task_file))
    assert r.returncode == 1 and r.stderr.strip() == "error: give --task or --task-file, not both"
    r = ampx("ls", "-o", "toml")
    assert r.returncode == 2 and "Invalid value for '-o'" in r.stderr


def test_config_selects_the_runtime(ampx, world):
    r = ampx("config", "set", "backend", "kube")
    assert r.returncode == 0 and r.stdout.startswith("backend = kube (in ")
    assert "backend: kube" in ampx("config", "view").stdout
    # kube now, with no cluster configured: one clear line; the flag and the variable win
    r = ampx("ls", KUBECONFIG=str(world.root / "no-such-kubeconfig"))
    assert r.returncode == 1 and r.stderr.startswith("error: no Kubernetes configuration")
    assert ampx("--backend", "local", "ls").returncode == 0
    assert ampx("ls", AMPX_BACKEND="local").returncode == 0
    r = ampx("config", "set", "backend", "cloud")
    assert r.returncode == 1 and r.stderr.startswith("error: ")


def test_a_terminal_gets_a_rich_table_and_a_pipe_plain_text(ampx, world):
    import pty
    import select

    r = ampx("start", "--repo", "demo/calculator", "--task", "Wait\n@fake sleep 30", "-o", "name")
    tid = r.stdout.strip().removeprefix("amptask/")
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "ampx", "ls"], stdout=slave, stderr=slave,
                            env=dict(os.environ, COLUMNS="200", TERM="xterm-256color"))
    os.close(slave)
    out = b""
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=30)
    os.close(master)
    text = out.decode("utf-8", "replace")
    assert proc.returncode == 0, text
    assert "\x1b[" in text and tid[:7] in text and tid not in text, "styled, short ids on a terminal"
    piped = ampx("ls").stdout
    assert "\x1b[" not in piped and piped.startswith("ID ") and piped.splitlines()[1].split()[0] in tid


def test_ci_trigger_flag(ampx):
    r = ampx("start", "--repo", "demo/calculator-pr", "--task", "Wait\n@fake sleep 30",
             "--ci-trigger", "pull_request", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["spec"]["ci"] == {"trigger": "pull_request"}
    r = ampx("start", "--repo", "demo/calculator", "--task", "x", "-o", "json")
    assert json.loads(r.stdout)["spec"]["ci"] == {"trigger": "auto"}
    r = ampx("start", "--repo", "demo/calculator", "--task", "x", "--ci-trigger", "sometimes")
    assert r.returncode != 0 and "Invalid value for '--ci-trigger'" in r.stderr
