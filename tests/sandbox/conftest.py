"""Fixtures for tests that need a GitHub: a real emulator on a real socket whose every
REST response is checked against GitHub's OpenAPI document."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from ampx.sandbox.github_emulator import GitHubEmulator
from ampx.sandbox.github_emulator.contract import ResponseContract


@pytest.fixture
def github_emulator(tmp_path: Path, github_contract: ResponseContract) -> Iterator[GitHubEmulator]:
    """A started emulator; the test fails at teardown if any response broke the contract."""
    violations: list[str] = []
    emu = GitHubEmulator(tmp_path / "github", step_timeout=60)
    emu.start()
    emu.response_observers.append(github_contract.observer(violations, base_url=lambda: emu.url))
    emu.contract_violations = violations  # type: ignore[attr-defined]
    try:
        yield emu
    finally:
        emu.stop()
    if violations:
        pytest.fail(
            "GitHub emulator responses violate the OpenAPI document:\n" + "\n".join(violations[:30]), pytrace=False
        )


@dataclass
class GitClient:
    """Runs the real git CLI with credentials supplied only through GIT_ASKPASS."""

    home: Path
    env: dict[str, str]

    def __call__(self, *args: str, cwd: Path | None = None, check: bool = True, token: str | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if token is not None:
            env["AMPX_TEST_GIT_TOKEN"] = token
        return subprocess.run(
            ["git", *args], cwd=cwd, env=env, check=check, capture_output=True, text=True, timeout=60
        )

    def sha(self, cwd: Path, rev: str = "HEAD") -> str:
        return self("rev-parse", rev, cwd=cwd).stdout.strip()

    def commit_file(self, cwd: Path, path: str, content: str, message: str) -> str:
        target = cwd / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        self("add", path, cwd=cwd)
        self("commit", "-q", "-m", message, cwd=cwd)
        return self.sha(cwd)


@pytest.fixture
def git(tmp_path: Path) -> GitClient:
    """A git CLI isolated from the user's config, asking for credentials via GIT_ASKPASS."""
    home = tmp_path / "git-home"
    home.mkdir()
    askpass = home / "askpass.sh"
    askpass.write_text(
        '#!/bin/sh\ncase "$1" in\n  Username*) echo x-access-token ;;\n  *) echo "$AMPX_TEST_GIT_TOKEN" ;;\nesac\n'
    )
    askpass.chmod(0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        {
            "HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": str(home / "gitconfig"),
            "GIT_ASKPASS": str(askpass),
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "Test Author",
            "GIT_AUTHOR_EMAIL": "author@example.com",
            "GIT_COMMITTER_NAME": "Test Author",
            "GIT_COMMITTER_EMAIL": "author@example.com",
            "AMPX_TEST_GIT_TOKEN": "",
        }
    )
    (home / "gitconfig").write_text("[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n")
    return GitClient(home, env)


@pytest.fixture
def make_seed(tmp_path: Path):
    """Factory: write ``{relative path: content}`` into a fresh directory for ``create_repo``."""
    counter = iter(range(1000))

    def make(files: dict[str, str]) -> Path:
        root = tmp_path / f"seed-{next(counter)}"
        for name, content in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        return root

    return make


@pytest.fixture
def make_github(github_emulator: GitHubEmulator):
    """Factory for PyGithub clients pointed at the emulator (GitHub Enterprise style),
    without PyGithub's default client-side throttling (0.25 s/request, 1 s/write)."""
    from github import Auth, Github

    def make(token: str, **kwargs) -> Github:
        kwargs.setdefault("seconds_between_requests", 0)
        kwargs.setdefault("seconds_between_writes", 0)
        return Github(base_url=github_emulator.api_url, auth=Auth.Token(token), **kwargs)

    return make


@pytest.fixture(scope="session")
def app_key_pem() -> str:
    """One RSA key for every test app (key generation costs up to ~0.2 s)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
