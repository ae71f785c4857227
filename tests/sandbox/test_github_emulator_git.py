"""Git smart HTTP through the emulator with the real git client and real credentials flow."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import requests

from ampx.sandbox.github_emulator import GitHubEmulator


def _setup(emu: GitHubEmulator, make_seed, key: str) -> tuple[str, int]:
    emu.create_repo("acme/api", make_seed({"README.md": "hello\n"}))
    creds = emu.create_app(77, private_key_pem=key)
    installation_id = emu.install_app(creds.app_id, "acme/api")
    return emu.create_installation_token(installation_id), installation_id


def test_clone_and_push_with_askpass_credentials(github_emulator: GitHubEmulator, git, make_seed, app_key_pem, tmp_path: Path) -> None:
    token, _ = _setup(github_emulator, make_seed, app_key_pem)
    url = github_emulator.clone_url("acme/api")
    wc = tmp_path / "wc"
    git("clone", "-q", url, str(wc), token=token)
    assert (wc / "README.md").read_text() == "hello\n"
    # The credential never lands in the remote URL or the config.
    assert git("remote", "get-url", "origin", cwd=wc).stdout.strip() == url
    assert token not in (wc / ".git" / "config").read_text()

    git("checkout", "-q", "-b", "amp/feature", cwd=wc)
    sha = git.commit_file(wc, "src/app.py", "print('hi')\n", "Add app")
    git("push", "-q", "origin", "amp/feature", cwd=wc, token=token)
    assert github_emulator.branches("acme/api")["amp/feature"] == sha
    assert github_emulator.stats["GIT git-receive-pack"].ok == 1
    assert github_emulator.stats["GIT info/refs"].by_status[401] >= 1  # git first tries without credentials

    # Fetch back through a second clone.
    wc2 = tmp_path / "wc2"
    git("clone", "-q", "--branch", "amp/feature", url, str(wc2), token=token)
    assert git.sha(wc2) == sha


def test_push_without_valid_credentials_is_rejected(github_emulator: GitHubEmulator, git, make_seed, app_key_pem, tmp_path: Path) -> None:
    token, installation_id = _setup(github_emulator, make_seed, app_key_pem)
    wc = tmp_path / "wc"
    git("clone", "-q", github_emulator.clone_url("acme/api"), str(wc), token=token)
    git.commit_file(wc, "a.txt", "a\n", "a")

    failed = git("push", "origin", "HEAD:refs/heads/nope", cwd=wc, token="", check=False)
    assert failed.returncode != 0
    assert "Authentication failed" in failed.stderr or "Invalid username or token" in failed.stderr
    assert "nope" not in github_emulator.branches("acme/api")

    resp = requests.get(f"{github_emulator.url}/acme/api.git/info/refs?service=git-receive-pack", timeout=10)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="GitHub"'

    read_only = github_emulator.create_installation_token(installation_id, permissions={"contents": "read"})
    denied = git("push", "origin", "HEAD:refs/heads/nope", cwd=wc, token=read_only, check=False)
    assert denied.returncode != 0 and "403" in denied.stderr

    github_emulator.create_repo("acme/secret")
    hidden = git("clone", github_emulator.clone_url("acme/secret"), str(tmp_path / "s"), token=token, check=False)
    assert hidden.returncode != 0 and "not found" in hidden.stderr.lower()


def test_large_push_uses_chunked_encoding(github_emulator: GitHubEmulator, git, make_seed, app_key_pem, tmp_path: Path) -> None:
    token, _ = _setup(github_emulator, make_seed, app_key_pem)
    wc = tmp_path / "wc"
    git("clone", "-q", github_emulator.clone_url("acme/api"), str(wc), token=token)
    (wc / "blob.bin").write_bytes(os.urandom(300_000))  # incompressible: the pack exceeds postBuffer
    git("add", "blob.bin", cwd=wc)
    git("commit", "-q", "-m", "big", cwd=wc)
    sha = git.sha(wc)
    # With a small http.postBuffer git streams the pack with Transfer-Encoding: chunked.
    git("-c", "http.postBuffer=65536", "push", "-q", "origin", "HEAD:refs/heads/big", cwd=wc, token=token)
    assert github_emulator.branches("acme/api")["big"] == sha


def test_gzip_chunked_upload_pack_request(github_emulator: GitHubEmulator, make_seed, app_key_pem) -> None:
    token, _ = _setup(github_emulator, make_seed, app_key_pem)
    sha = github_emulator.branches("acme/api")["main"]
    want = f"want {sha}\n"
    request = f"{len(want) + 4:04x}{want}00000009done\n".encode()

    def body():
        yield gzip.compress(request)  # a generator body makes requests send chunked

    resp = requests.post(
        f"{github_emulator.url}/acme/api.git/git-upload-pack",
        data=body(),
        auth=("x-access-token", token),
        headers={"Content-Type": "application/x-git-upload-pack-request", "Content-Encoding": "gzip"},
        timeout=10,
    )
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/x-git-upload-pack-result"
    assert b"PACK" in resp.content


def test_file_push_then_notify(github_emulator: GitHubEmulator, git, make_seed, app_key_pem, tmp_path: Path) -> None:
    """Tests may push with file:// for speed; notify_push makes the emulator notice."""
    seed = make_seed(
        {
            "README.md": "x\n",
            ".github/workflows/ci.yml": "on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n      - run: true\n",
        }
    )
    github_emulator.create_repo("acme/api", seed)
    bare = github_emulator.git_path("acme/api")
    wc = tmp_path / "wc"
    git("clone", "-q", f"file://{bare}", str(wc))
    sha = git.commit_file(wc, "b.txt", "b\n", "b")
    git("push", "-q", "origin", "HEAD:refs/heads/feature", cwd=wc)
    runs = github_emulator.notify_push("acme/api")
    assert [(r.head_branch, r.head_sha, r.event) for r in runs] == [("feature", sha, "push")]
    assert github_emulator.notify_push("acme/api") == []  # nothing changed since
    github_emulator.ci.wait_idle(30)
    assert runs[0].conclusion == "success"


def test_cli_serves_repos_until_terminated(tmp_path: Path, make_seed, git) -> None:
    import json
    import signal
    import subprocess
    import sys

    seed = make_seed({"README.md": "from the CLI\n"})
    token_file = tmp_path / "token"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ampx.sandbox.github_emulator", "--root", str(tmp_path / "root"), "--json",
         "--repo", "acme/demo", "--seed", str(seed), "--app-id", "12", "--app-private-key-out", str(tmp_path / "app.pem"),
         "--token-file", str(token_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        info = json.loads(proc.stdout.readline())
        token = token_file.read_text().strip()
        assert token.startswith("ghp_") and token not in json.dumps(info)
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        assert requests.get(info["url"] + "/_emulator/health", timeout=10).text == "ok\n"
        resp = requests.get(f"{info['api_url']}/repos/acme/demo", headers={"Authorization": f"token {token}"}, timeout=10)
        assert resp.status_code == 200 and resp.json()["default_branch"] == "main"
        assert set(info["installations"]) == {"acme/demo"}
        wc = tmp_path / "wc"
        git("clone", "-q", info["repos"]["acme/demo"]["clone_url"], str(wc), token=token)
        assert (wc / "README.md").read_text() == "from the CLI\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
