"""The workspace against the GitHub emulator's smart HTTP with an installation token."""

from __future__ import annotations

import pytest

from ampx.gitops import GitAuth, PushRejected, Workspace, remote_url
from ampx.sandbox.github_emulator import GitHubEmulator


@pytest.fixture
def emulator(tmp_path):
    seed = tmp_path / "seed"
    (seed / "tests").mkdir(parents=True)
    (seed / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (seed / "tests" / "test_calc.py").write_text("from calc import add\n")
    emu = GitHubEmulator(tmp_path / "github")
    emu.start()
    try:
        emu.create_repo("octo/demo", seed)
        app = emu.create_app()
        emu.installation = emu.install_app(app.app_id, "octo/demo")  # type: ignore[attr-defined]
        yield emu
    finally:
        emu.stop()


def test_installation_token_clone_commit_push(emulator, tmp_path):
    token = emulator.create_installation_token(emulator.installation)
    url = remote_url(emulator.url, "https://github.com/octo/demo")
    with GitAuth(token) as auth:
        ws = Workspace.clone(url, tmp_path / "ws", auth=auth)
        checkout = ws.prepare("amp/emu", attempt=1)
        assert checkout.base_branch == "main"
        (ws.path / "calc.py").write_text("def add(a, b):\n    return a + b\n")
        sha = ws.commit("ampx", "ampx@example.com", "ampx: emu (attempt 1)", {"Ampx-Task": "t"})
        ws.push("amp/emu", checkout.lease_sha)
    assert emulator.branches("octo/demo")["amp/emu"] == sha
    config = (ws.path / ".git" / "config").read_text()
    assert token not in config and "@" not in config


def test_read_only_token_push_is_rejected(emulator, tmp_path):
    token = emulator.create_installation_token(emulator.installation,
                                               permissions={"contents": "read", "metadata": "read"})
    with GitAuth(token) as auth:
        ws = Workspace.clone(f"{emulator.url}/octo/demo.git", tmp_path / "ws", auth=auth)
        checkout = ws.prepare("amp/ro", attempt=1)
        (ws.path / "x.txt").write_text("x\n")
        ws.commit("ampx", "ampx@example.com", "m")
        with pytest.raises(PushRejected) as err:
            ws.push("amp/ro", checkout.lease_sha)
    assert err.value.reason == "permission", err.value.stderr
    assert "amp/ro" not in emulator.branches("octo/demo")
