from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

IDENTITY = ["-c", "user.name=Seed", "-c", "user.email=seed@example.com"]


def run_git_cli(*args: str, cwd: Path | str | None = None) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, f"git {' '.join(args)}: {out.stderr}"
    return out.stdout.strip()


@dataclass
class Remote:
    """A bare repository ``owner/repo.git`` under ``host_dir`` plus a seeding clone."""

    host_dir: Path
    bare: Path
    seed: Path

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def head(self, branch: str) -> str | None:
        out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
                             cwd=self.bare, capture_output=True, text=True)
        return out.stdout.strip() or None

    def commit_on(self, branch: str, path: str, text: str, message: str = "seed change") -> str:
        """Push a commit to ``branch`` from the seed clone, as someone else would."""
        run_git_cli("fetch", "-q", "origin", cwd=self.seed)
        if self.head(branch):
            run_git_cli("checkout", "-q", "-B", branch, f"origin/{branch}", cwd=self.seed)
        else:
            run_git_cli("checkout", "-q", "-B", branch, "origin/main", cwd=self.seed)
        file = self.seed / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
        run_git_cli("add", "-A", cwd=self.seed)
        run_git_cli(*IDENTITY, "commit", "-q", "-m", message, cwd=self.seed)
        run_git_cli("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=self.seed)
        return run_git_cli("rev-parse", "HEAD", cwd=self.seed)

    def show(self, rev: str, fmt: str = "%B") -> str:
        return run_git_cli("log", "-1", f"--format={fmt}", rev, cwd=self.bare)


@pytest.fixture
def remote(tmp_path) -> Remote:
    host = tmp_path / "host"
    bare = host / "octo" / "demo.git"
    bare.parent.mkdir(parents=True)
    run_git_cli("init", "-q", "--bare", "-b", "main", str(bare))
    seed = tmp_path / "seed"
    run_git_cli("clone", "-q", str(bare), str(seed))
    run_git_cli("checkout", "-q", "-b", "main", cwd=seed)
    files = {
        "README.md": "demo\n",
        "calc.py": "def add(a, b):\n    return a - b\n",
        "tests/test_calc.py": "from calc import add\n\ndef test_add():\n    assert add(1, 2) == 3\n",
        ".github/workflows/ci.yml": "on: push\njobs: {}\n",
    }
    for i, (name, text) in enumerate(files.items()):
        (seed / name).parent.mkdir(parents=True, exist_ok=True)
        (seed / name).write_text(text)
        run_git_cli("add", "-A", cwd=seed)
        run_git_cli(*IDENTITY, "commit", "-q", "-m", f"seed {i}", cwd=seed)
    run_git_cli("push", "-q", "origin", "main", cwd=seed)
    run_git_cli("push", "-q", "origin", "main:develop", cwd=seed)
    return Remote(host_dir=host, bare=bare, seed=seed)


@pytest.fixture
def git():
    """Run the git CLI in a directory and return its stdout (asserting success)."""
    return run_git_cli
