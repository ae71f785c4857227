"""Fixtures for the GitHub layer's tests: the sandbox's emulator fixtures (every response
checked against GitHub's OpenAPI document) plus a repository with an installed App."""

from __future__ import annotations

import importlib.util
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from ampx.core.repo import RepoRef
from ampx.github.auth import AppAuth
from ampx.github.ci import CiObservation
from ampx.github.service import GitHubService
from ampx.sandbox.github_emulator import GitHubEmulator

# Reuse tests/sandbox/conftest.py's fixtures (github_emulator, git, make_seed; github_contract is tests/conftest.py's)
# without making tests/ a package.
_spec = importlib.util.spec_from_file_location(
    "_ampx_sandbox_conftest", Path(__file__).resolve().parent.parent / "sandbox" / "conftest.py"
)
assert _spec and _spec.loader
_sandbox = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _sandbox
_spec.loader.exec_module(_sandbox)
github_emulator = _sandbox.github_emulator
git = _sandbox.git
make_seed = _sandbox.make_seed

REPO = RepoRef("acme", "widgets")
PY = sys.executable


def workflow(name: str, steps: list[str], job: str = "test") -> str:
    body = "".join(f"      - run: |\n          {s}\n" for s in steps)
    return f"name: {name}\non: push\njobs:\n  {job}:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n{body}"


@dataclass
class Sandbox:
    emu: GitHubEmulator
    app_id: int
    private_key_pem: str
    installation_id: int
    work: Path
    git: object

    @property
    def repo(self) -> RepoRef:
        return REPO

    # helpers, reached through the fixture (test modules cannot import a conftest reliably)
    workflow = staticmethod(lambda *a, **kw: workflow(*a, **kw))
    wait_ci = staticmethod(lambda *a, **kw: wait_ci(*a, **kw))

    def auth(self, **kw) -> AppAuth:
        return AppAuth(self.app_id, self.private_key_pem, self.emu.api_url, **kw)

    def service(self, **kw) -> GitHubService:
        kw.setdefault("mergeable_wait", 0.05)
        return GitHubService(self.auth(), self.emu.api_url, git_url=self.emu.url, **kw)

    def push(self, branch: str, files: dict[str, str], message: str = "change") -> str:
        """Commit ``files`` on ``branch`` (created from main) and push it; returns the sha."""
        g = self.git
        if not (self.work / ".git").exists():
            g("clone", "-q", f"file://{self.emu.git_path(REPO.full_name)}", str(self.work))
        g("fetch", "-q", "origin", cwd=self.work)
        existing = g("ls-remote", "--heads", "origin", branch, cwd=self.work).stdout.strip()
        g("checkout", "-q", "-B", branch, f"origin/{branch}" if existing else "origin/main", cwd=self.work)
        for path, content in files.items():
            target = self.work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            g("add", path, cwd=self.work)
        g("commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
        g("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=self.work)
        self.emu.notify_push(REPO.full_name)
        return g.sha(self.work)


@pytest.fixture(scope="session")
def app_key_pem() -> str:
    """One RSA key for the whole session (generating one per test costs ~0.2 s)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


APP_ID = 4711


@pytest.fixture
def sandbox(github_emulator: GitHubEmulator, git, make_seed, tmp_path: Path, app_key_pem: str) -> Sandbox:
    emu = github_emulator
    seed = make_seed({"README.md": "# widgets\n", "src/widgets.py": "def total(xs):\n    return sum(xs)\n"})
    emu.create_repo(REPO.full_name, seed)
    emu.create_repo("acme/other")
    emu.register_app(APP_ID, app_key_pem, slug="ampx")
    inst = emu.install_app(APP_ID, REPO.full_name)
    emu.install_app(APP_ID, "acme/other")
    return Sandbox(emu, APP_ID, app_key_pem, inst, tmp_path / "work", git)


def wait_ci(poll: Callable[[], CiObservation], timeout: float = 30.0) -> CiObservation:
    """Poll (quickly: the emulator's CI takes about a second) until green or red."""
    deadline = time.monotonic() + timeout
    while True:
        obs = poll()
        if obs.state in ("green", "red"):
            return obs
        if time.monotonic() > deadline:
            raise AssertionError(f"CI still {obs.state} after {timeout}s")
        time.sleep(0.1)
