"""Issue 10's end-to-end checks, shared by the local and the Kubernetes runtime tests."""

from __future__ import annotations

import subprocess
import sys
import time

from ampx.core.models import ACTIVE_PHASES, AmpTask, AmpTaskSpec, Phase
from ampx.gitops.ownership import task_of
from ampx.sandbox.world import DEMO_REPO, seed_project

TRUNK_REPO = "demo/trunky"  # its default branch is under the task prefix: amp/trunk
TRUNK = "amp/trunk"
GREEN_PROMPT = "Add a README line\n@fake append README.md more\\n\n"


def add_trunk_repo(world) -> None:
    world.emulator.create_repo(TRUNK_REPO, seed_project(world.root / "trunk-seed"),
                               default_branch=TRUNK)


def finished(backend, tid: str, timeout: float = 120) -> AmpTask:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = backend.get(tid)
        st = task.status
        if st.phase is not None and st.phase not in ACTIVE_PHASES:
            return task
        time.sleep(0.2)
    raise AssertionError(f"task {tid} did not finish: {backend.get(tid).status}")


def assert_refused(task: AmpTask, *fragments: str, attempted: bool = False) -> None:
    """`error`, finished, the reason in the summary; no attempt unless the worker refused."""
    st = task.status
    assert st.phase == Phase.ERROR, st.summary
    assert {c.type: c.status for c in st.conditions}["Finished"] == "True"
    for fragment in fragments:
        assert fragment in (st.summary or ""), (fragment, st.summary)
    if not attempted:
        assert st.attempts == 0, st.summary


def commits_tasks(world, repo: str, base: str, head_sha: str) -> list:
    """The Ampx-Task trailer of every commit a PR adds to its base."""
    git_dir = world.emulator.git_path(repo)
    out = subprocess.run(["git", "--git-dir", str(git_dir), "log", "--format=%B%x00",
                          f"{base}..{head_sha}"], capture_output=True, text=True, check=True)
    return [task_of(m) for m in out.stdout.split("\0") if m.strip()]


def start_together(env: dict, n: int, title: str) -> list[str]:
    """`ampx start` n times at once with one title; the ids they print."""
    procs = [subprocess.Popen([sys.executable, "-m", "ampx", "start", "--repo", DEMO_REPO,
                               "--title", title, "--task", GREEN_PROMPT, "-o", "name"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(n)]
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        ids.append(out.strip().removeprefix("amptask/"))
    return ids


def assert_own_prs(world, tasks: list[AmpTask]) -> None:
    """Different branches; each task's PR holds its own task's commits and nothing else."""
    assert len({t.spec.branch for t in tasks}) == len(tasks)
    for t in tasks:
        assert t.status.phase == Phase.SUCCESS, t.status.summary
        prs = [p for p in world.emulator.pulls(DEMO_REPO) if p.head_ref == t.spec.branch]
        assert len(prs) == 1 and prs[0].number == t.status.pr_number
        owners = commits_tasks(world, DEMO_REPO, "main", prs[0].head_sha)
        assert owners and set(owners) == {t.name}, owners


def spec(branch=None, repo=DEMO_REPO, **kw) -> AmpTaskSpec:
    return AmpTaskSpec(repo=repo, prompt=GREEN_PROMPT, title="Branch test", branch=branch, **kw)
