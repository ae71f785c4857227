"""An offline world for `ampx demo` and the end-to-end tests.

It starts the GitHub stand-in (REST + git + Actions runner) with a small Python project whose
workflow runs its unit tests, puts the scripted agent on PATH as `amp`, and returns the
environment under which ampx's real code (CLI, supervisor or operator, workers) talks to them.
Nothing here is used by a real deployment.
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .fake_amp import install_fake_amp
from .github_emulator import GitHubEmulator

DEMO_REPO = "demo/calculator"
#: The same project, but its CI runs on pull requests (and on push to main) only, as most
#: repositories' CI does: ampx reaches it through a draft pull request.
PR_ONLY_REPO = "demo/calculator-pr"

CALC = '''\
"""A tiny calculator: the demo project ampx's agent works on."""


def add(a, b):
    return a + b
'''

TEST_CALC = '''\
import unittest

from calc import add


class AddTest(unittest.TestCase):
    def test_add(self):
        self.assertEqual(add(2, 3), 5)


if __name__ == "__main__":
    unittest.main()
'''

WORKFLOW = '''\
name: tests
on:
  push:
    branches: ["amp/**"]
jobs:
  unit:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - name: Run the unit tests
        run: python3 -m unittest discover -v -p "test_*.py"
'''


WORKFLOW_PR_ONLY = '''\
name: tests
on:
  push:
    branches: [main]
  pull_request:
jobs:
  unit:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - name: Run the unit tests
        run: python3 -m unittest discover -v -p "test_*.py"
'''

# Runs once, when a draft becomes ready for review: what a team's "request reviewers" job does.
WORKFLOW_ON_READY = '''\
name: ready
on:
  pull_request:
    types: [ready_for_review]
jobs:
  announce:
    runs-on: ubuntu-latest
    steps:
      - run: echo "ready for review"
'''


def seed_project(dest: Path, *, pr_only: bool = False) -> Path:
    (dest / ".github" / "workflows").mkdir(parents=True, exist_ok=True)
    (dest / "calc.py").write_text(CALC)
    (dest / "test_calc.py").write_text(TEST_CALC)
    (dest / ".github" / "workflows" / "tests.yml").write_text(WORKFLOW_PR_ONLY if pr_only else WORKFLOW)
    if pr_only:
        (dest / ".github" / "workflows" / "ready.yml").write_text(WORKFLOW_ON_READY)
    (dest / "README.md").write_text("# calculator\n\nThe ampx demo repository.\n")
    return dest


@dataclass
class World:
    root: Path
    emulator: GitHubEmulator
    token: str
    env: dict = field(default_factory=dict)
    repos: tuple = (DEMO_REPO, PR_ONLY_REPO)

    def stop(self) -> None:
        self.emulator.stop()


def start_world(root: Path, *, repo: str = DEMO_REPO, ci_concurrency: int = 2,
                poll_seconds: int = 1, extra_env: Optional[dict] = None,
                stateless_tokens: bool = True) -> World:
    """Start the stand-ins under `root` and return the environment that points ampx at them.

    Installation tokens come in GitHub's stateless `ghs_<APPID>_<JWT>` format by default (the
    format GitHub is rolling out), so nothing in ampx may assume 40-character tokens."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    emulator = GitHubEmulator(root / "github", ci_concurrency=ci_concurrency,
                              stateless_tokens=stateless_tokens).start()
    token = "ghp_" + secrets.token_hex(18)
    emulator.add_personal_token(token, login="demo")
    emulator.create_repo(repo, seed_project(root / "seed"))
    emulator.create_repo(PR_ONLY_REPO, seed_project(root / "seed-pr-only", pr_only=True))
    bin_dir = root / "bin"
    install_fake_amp(bin_dir)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "AMP_API_KEY": "sandbox-" + secrets.token_hex(8),
        "AMP_FAKE_HOME": str(root / "amp-threads"),
        "AMPX_AGENT_ENV": "AMP_FAKE_HOME",  # the agent's scrubbed env keeps its thread store
        "GITHUB_TOKEN": token,
        "AMPX_GITHUB_API_URL": emulator.api_url,
        "AMPX_GITHUB_URL": emulator.url,
        "AMPX_HOME": str(root / "ampx-home"),
        "AMPX_CI_POLL_SECONDS": str(poll_seconds),
        "AMPX_CI_POLL_MAX_SECONDS": str(max(poll_seconds, 5)),
        "AMPX_WORKSPACE": str(root / "workspaces"),
    }
    (root / "workspaces").mkdir(exist_ok=True)
    env.update(extra_env or {})
    return World(root=root, emulator=emulator, token=token, env=env, repos=(repo, PR_ONLY_REPO))


@contextmanager
def applied(env: dict):
    """Set `env` in this process (the supervisor it starts inherits it); restore it after."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
