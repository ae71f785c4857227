"""Token auth over real smart HTTP: the token reaches the server and nowhere else.

A tiny server in front of ``git http-backend`` demands HTTP Basic auth like GitHub and, while
each request is in flight (the client's git processes are alive), scans every process's
command line for the token.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ampx.gitops import GitAuth, GitError, PushRejected, Workspace, remote_url
from ampx.gitops.auth import TOKEN_ENV
from ampx.redact import redact

TOKEN = "ghs_" + "Q7x" * 12


def processes_mentioning(secret: bytes) -> list[str]:
    hits = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if secret in cmdline:
            hits.append(f"{entry}: {cmdline!r}")
    return hits


class GitHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, token: str):
        super().__init__(("127.0.0.1", 0), GitHandler)
        self.root = root
        self.expected = "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()
        self.token = token.encode()
        self.authorized = 0
        self.unauthorized = 0
        self.argv_leaks: list[str] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class GitHandler(BaseHTTPRequestHandler):
    server: GitHTTPServer

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self):
        self.server.argv_leaks += processes_mentioning(self.server.token)
        body = self._body()
        if self.headers.get("Authorization") != self.server.expected:
            self.server.unauthorized += 1
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="GitHub"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.server.authorized += 1
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ["PATH"],
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "x-access-token",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(": ")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def http_remote(remote):
    server = GitHTTPServer(remote.host_dir, TOKEN)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_clone_and_push_over_http_with_askpass(remote, http_remote, tmp_path):
    url = remote_url(http_remote.base_url, "git@github.com:octo/demo.git")
    assert url == f"{http_remote.base_url}/octo/demo.git"
    lines: list[str] = []
    with GitAuth(TOKEN) as auth:
        askpass = auth.askpass_path
        assert TOKEN not in askpass.read_text()
        assert auth.env()[TOKEN_ENV] == TOKEN and "GIT_ASKPASS" in auth.env()
        assert TOKEN not in repr(auth)
        ws = Workspace.clone(url, tmp_path / "ws", auth=auth, log=lines.append)
        checkout = ws.prepare("amp/http", attempt=1)
        assert checkout.start_sha == remote.head("main")
        (ws.path / "calc.py").write_text("def add(a, b):\n    return a + b\n")
        sha = ws.commit("ampx", "ampx@example.com", "ampx: http (attempt 1)")
        ws.push("amp/http", checkout.lease_sha)
    assert not askpass.exists()  # the script is removed with the auth object
    assert remote.head("amp/http") == sha
    assert http_remote.authorized >= 3 and http_remote.unauthorized >= 1
    assert http_remote.argv_leaks == []
    for path in (ws.path / ".git").rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert lines and all(TOKEN not in line for line in lines)
    assert redact(f"https://x-access-token:{TOKEN}@github.com") == "https://x-access-token:***@github.com"


def test_wrong_token_is_refused(remote, http_remote, tmp_path):
    with GitAuth("ghs_" + "wrong" * 8) as auth:
        ws = Workspace.clone(f"{http_remote.base_url}/octo/demo.git", tmp_path / "ws", auth=auth)
        with pytest.raises(GitError) as err:
            ws.prepare("amp/x", attempt=1)
    assert "Authentication failed" in str(err.value) and "wrong" not in str(err.value)


def test_push_with_a_revoked_token_is_rejected_not_transport(remote, http_remote, tmp_path):
    with GitAuth(TOKEN) as auth:
        ws = Workspace.clone(f"{http_remote.base_url}/octo/demo.git", tmp_path / "ws", auth=auth)
        checkout = ws.prepare("amp/revoked", attempt=1)
        (ws.path / "r.txt").write_text("r\n")
        ws.commit("ampx", "ampx@example.com", "m")
        http_remote.expected = "Basic revoked"
        with pytest.raises(PushRejected) as err:
            ws.push("amp/revoked", checkout.lease_sha)
    assert err.value.reason == "auth"


def test_the_argv_scan_would_catch_a_token_in_a_url(remote, http_remote):
    """Control: a token in the URL (what ampx must never do) shows up in the scan."""
    host = http_remote.base_url.replace("http://", f"http://x-access-token:{TOKEN}@")
    out = subprocess.run(["git", "ls-remote", f"{host}/octo/demo.git"], capture_output=True,
                         env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    assert out.returncode == 0
    assert http_remote.argv_leaks
