"""The HTTP front door: one threaded server speaking REST, git smart HTTP and blob downloads.

Request bodies may be ``Transfer-Encoding: chunked`` and/or
``Content-Encoding: gzip`` (git uses both for pushes). Git requests are handed
to the real ``git http-backend`` as a CGI program after HTTP Basic
authentication, like GitHub's git endpoints.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from . import graphql, web
from .api import ApiRequest, ApiResponse
from .auth import ApiError, basic_credentials, lookup_token
from .gitrepo import git_env
from .state import grants

if TYPE_CHECKING:
    from .emulator import GitHubEmulator

log = logging.getLogger(__name__)

GIT_ROUTE = re.compile(
    r"^/(?P<owner>[A-Za-z0-9_.-]+)/(?P<repo>[A-Za-z0-9_.-]+?)(?:\.git)?"
    r"/(?P<rest>info/refs|git-upload-pack|git-receive-pack|HEAD|objects/.+)$"
)
SPOOL_MAX = 8 << 20
_CHUNK = 1 << 16


class BodyError(ValueError):
    pass


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


class RequestHandler(BaseHTTPRequestHandler):
    """Dispatches by path prefix; bound to one emulator via :func:`handler_for`."""

    protocol_version = "HTTP/1.1"
    server_version = "GitHub.com"
    sys_version = ""
    emulator: "GitHubEmulator"

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        # Request lines never contain credentials (tokens travel in headers).
        log.debug("%s %s", self.address_string(), format % args)

    # ------------------------------------------------------------- plumbing
    def _read_body(self) -> tuple[IO[bytes], int]:
        """Read the request body (de-chunked, decompressed) into a spooled file."""
        spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX)
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise BodyError("truncated chunked body")
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise BodyError("bad chunk size") from None
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                self._copy(size, spool)
                self.rfile.readline()
        else:
            length = self.headers.get("Content-Length")
            if length:
                try:
                    self._copy(int(length), spool)
                except ValueError:
                    raise BodyError("bad Content-Length") from None
        spool.seek(0)
        encoding = (self.headers.get("Content-Encoding") or "").lower().strip()
        if encoding in ("gzip", "x-gzip", "deflate"):
            wbits = 16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS
            inflater = zlib.decompressobj(wbits)
            out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX)
            try:
                for chunk in iter(lambda: spool.read(_CHUNK), b""):
                    out.write(inflater.decompress(chunk))
                out.write(inflater.flush())
            except zlib.error:
                raise BodyError("bad compressed body") from None
            spool.close()
            spool = out
        size = spool.seek(0, os.SEEK_END)
        spool.seek(0)
        return spool, size

    def _copy(self, n: int, dest: IO[bytes]) -> None:
        while n > 0:
            data = self.rfile.read(min(n, _CHUNK))
            if not data:
                raise BodyError("truncated body")
            dest.write(data)
            n -= len(data)

    def _notify(self, status: int, headers: dict[str, str], body: bytes | None, key: str) -> None:
        """Stats and observers run before the response leaves, so a client that
        has its answer can rely on them having seen it."""
        self.emulator.stats.record(key, status)
        for observer in list(self.emulator.response_observers):
            try:
                observer(self.command, self.path, status, dict(headers), body)
            except Exception:
                log.exception("response observer failed")

    def _send(self, status: int, headers: dict[str, str], body: bytes | None, key: str) -> None:
        headers = dict(headers)
        headers.setdefault("X-GitHub-Request-Id", uuid.uuid4().hex[:20].upper())
        payload = body or b""
        if status in (204, 304):
            payload = b""
        headers["Content-Length"] = str(len(payload))
        if status in (204, 304):
            headers.pop("Content-Length")
        self._notify(status, headers, payload if status not in (204, 304) else b"", key)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)

    def _text(self, status: int, text: str, key: str, headers: dict[str, str] | None = None) -> None:
        h = {"Content-Type": "text/plain; charset=utf-8", **(headers or {})}
        self._send(status, h, text.encode(), key)

    # ------------------------------------------------------------- dispatch
    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        path = split.path
        try:
            body, size = self._read_body()
        except BodyError as exc:
            self.close_connection = True
            self._text(400, f"Bad Request: {exc}", "BAD_REQUEST")
            return
        try:
            if path == "/api/graphql" and self.command == "POST":
                status, data = graphql.handle(self.emulator, self.headers.get("Authorization"), body.read())
                self._send(status, {"Content-Type": "application/json; charset=utf-8"},
                           json.dumps(data).encode(), "POST /graphql")
                return
            if path == "/api/v3" or path.startswith("/api/v3/"):
                req = ApiRequest(
                    method=self.command,
                    path=path[len("/api/v3") :] or "/",
                    query=parse_qs(split.query, keep_blank_values=True),
                    headers=self.headers,
                    body=body.read(),
                )
                resp: ApiResponse = self.emulator._api.handle(req)
                self._send(resp.status, resp.headers, resp.body, f"{self.command} {resp.template}")
                return
            m = GIT_ROUTE.match(path)
            if m:
                self._git(m.group("owner"), m.group("repo"), m.group("rest"), split.query, body, size)
                return
            if path.startswith("/_emulator/"):
                self._internal(path, parse_qs(split.query))
                return
            page = web.render(self.emulator, path) if self.command in ("GET", "HEAD") else None
            if page is not None:
                status, content_type, payload = page
                self._send(status, {"Content-Type": content_type}, payload, "WEB")
                return
            self._text(404, "Not Found", "OTHER")
        finally:
            body.close()

    def _internal(self, path: str, query: dict[str, list[str]]) -> None:
        emu = self.emulator
        if path == "/_emulator/health":
            self._text(200, "ok\n", "GET /_emulator/health")
            return
        m = re.match(r"^/_emulator/blobs/(?P<kind>job-logs|run-logs)/(?P<id>\d+)$", path)
        if not m:
            self._text(404, "Not Found", "OTHER")
            return
        kind, ident = m.group("kind"), int(m.group("id"))
        key = f"GET /_emulator/blobs/{kind}"
        if not emu.verify_blob(kind, ident, (query.get("expires") or [""])[0], (query.get("signature") or [""])[0]):
            self._send(403, {"Content-Type": "application/xml"}, b"<Error><Code>AuthenticationFailed</Code></Error>", key)
            return
        with emu.store.lock:
            if kind == "job-logs":
                job = emu.store.jobs.get(ident)
                data = job.log_text().encode() if job else None
            else:
                run = emu.store.runs.get(ident)
        if kind == "job-logs":
            if data is None:
                self._text(404, "Not Found", key)
            else:
                self._send(200, {"Content-Type": "text/plain; charset=utf-8"}, data, key)
            return
        if run is None:
            self._text(404, "Not Found", key)
            return
        blob = emu._api.run_logs_zip(run)
        self._send(
            200,
            {"Content-Type": "application/zip", "Content-Disposition": f"attachment; filename=logs_{run.id}.zip"},
            blob,
            key,
        )

    # ------------------------------------------------------------------ git
    def _git(self, owner: str, name: str, rest: str, query: str, body: IO[bytes], size: int) -> None:
        emu = self.emulator
        service = "receive-pack" if rest == "git-receive-pack" or "service=git-receive-pack" in query else "upload-pack"
        key = f"GIT {rest if rest in ('info/refs', 'git-upload-pack', 'git-receive-pack') else 'dumb'}"
        challenge = {"WWW-Authenticate": 'Basic realm="GitHub"'}
        credential = basic_credentials(self.headers.get("Authorization"))
        if credential is None:
            self._text(401, "Authentication required\n", key, challenge)
            return
        try:
            token = lookup_token(emu.store, credential)
        except ApiError:
            self._text(
                401,
                "Invalid username or token. Password authentication is not supported for Git operations.\n",
                key,
                challenge,
            )
            return
        with emu.store.lock:
            repo = emu.store.repo(f"{owner}/{name}")
        if repo is None or not emu.token_can_see(token, repo):
            self._text(404, "Repository not found.\n", key)
            return
        level = "write" if service == "receive-pack" else "read"
        if not grants(token.permissions, "contents", level):
            self._text(403, f"Permission to {repo.full_name}.git denied to {token.actor.login}.\n", key)
            return
        env = git_env(
            {
                "GIT_PROJECT_ROOT": str(emu.git_root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "PATH_INFO": f"/{repo.owner.login}/{repo.name}.git/{rest}",
                "QUERY_STRING": query,
                "REQUEST_METHOD": self.command,
                "CONTENT_TYPE": self.headers.get("Content-Type") or "",
                "REMOTE_USER": token.actor.login,
                "REMOTE_ADDR": self.client_address[0],
                "SERVER_PROTOCOL": self.request_version,
                "GATEWAY_INTERFACE": "CGI/1.1",
                "SERVER_SOFTWARE": "ampx-github-emulator",
            }
        )
        if self.command in ("POST", "PUT"):
            env["CONTENT_LENGTH"] = str(size)
        protocol = self.headers.get("Git-Protocol")
        if protocol:
            env["GIT_PROTOCOL"] = env["HTTP_GIT_PROTOCOL"] = protocol
        if service == "receive-pack" and rest == "git-receive-pack":
            # Pushes are serialised per repository so the before/after ref diff
            # is attributable, and the runs it triggers exist before git's push
            # command returns (the response is only sent afterwards).
            with repo.write_lock:
                status, headers, out = self._cgi(env, body, stream=False)
                if status == 200:
                    emu._sync_refs(repo, token.actor)
            self._send(status, headers, out, key)
            return
        self._cgi(env, body, stream=True, key=key)

    def _cgi(
        self, env: dict[str, str], body: IO[bytes], *, stream: bool, key: str = ""
    ) -> tuple[int, dict[str, str], bytes]:
        """Run ``git http-backend``; stream its output or return it."""
        git = shutil.which("git") or "git"
        with tempfile.TemporaryFile() as errfile:
            proc = subprocess.Popen(
                [git, "http-backend"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errfile
            )

            def feed() -> None:
                assert proc.stdin is not None
                try:
                    for chunk in iter(lambda: body.read(_CHUNK), b""):
                        proc.stdin.write(chunk)
                except (BrokenPipeError, ValueError):
                    pass
                finally:
                    try:
                        proc.stdin.close()
                    except BrokenPipeError:
                        pass

            feeder = threading.Thread(target=feed, daemon=True)
            feeder.start()
            assert proc.stdout is not None
            status, headers = 200, {}
            while True:
                line = proc.stdout.readline()
                if not line or line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode("latin-1").rstrip("\r\n").partition(":")
                if name.lower() == "status":
                    status = int(value.strip().split()[0])
                else:
                    headers[name.strip()] = value.strip()
            if not stream:
                out = proc.stdout.read()
                proc.wait()
                feeder.join()
                if proc.returncode != 0:
                    errfile.seek(0)
                    log.warning("git http-backend failed: %s", errfile.read().decode(errors="replace")[-2000:])
                return status, headers, out
            headers["X-GitHub-Request-Id"] = uuid.uuid4().hex[:20].upper()
            chunked = "Content-Length" not in headers
            if chunked:
                headers["Transfer-Encoding"] = "chunked"
            self._notify(status, headers, None, key)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            try:
                while True:
                    data = proc.stdout.read1(_CHUNK)  # type: ignore[attr-defined]
                    if not data:
                        break
                    if chunked:
                        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    else:
                        self.wfile.write(data)
                if chunked:
                    self.wfile.write(b"0\r\n\r\n")
            finally:
                proc.stdout.close()
                proc.wait()
                feeder.join()
            return status, headers, b""


def handler_for(emulator: "GitHubEmulator") -> type[RequestHandler]:
    return type("BoundRequestHandler", (RequestHandler,), {"emulator": emulator})
