"""``GitHubEmulator``: a local stand-in for GitHub (REST API, git over HTTP, Actions).

It exists so ampx can be tested and demonstrated end to end without network
access: clients talk to it with their real libraries (PyGithub, git) over a
real socket, configured exactly as for GitHub Enterprise Server
(``base_url = emulator.api_url``). It is not a security boundary and not a
complete GitHub; see the package docstring for what it covers.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlencode

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from . import gitrepo
from ._util import utcnow as _now
from .api import RestApi
from .auth import digest, new_stateless_installation_token, new_token
from .ci import CI
from .faults import Faults
from .payloads import Urls
from .server import EmulatorHTTPServer, handler_for
from .state import (
    DEFAULT_INSTALLATION_PERMISSIONS,
    Account,
    App,
    Installation,
    PullRequest,
    Repo,
    Store,
    Token,
    WorkflowRun,
)
from .stats import Stats
from .timed_runs import TimedRuns
from .webhooks import Webhooks

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")

#: ``callable(method, path, status, headers, body)``; ``body`` is None for
#: streamed (git) responses, ``b""`` when there is no body.
ResponseObserver = Callable[[str, str, int, dict, Any], None]


@dataclass(frozen=True)
class AppCredentials:
    """A generated GitHub App: its id and the PEM private key clients sign JWTs with."""

    app_id: int
    private_key_pem: str

    def __repr__(self) -> str:  # never print the key
        return f"AppCredentials(app_id={self.app_id}, private_key_pem=<redacted>)"


class GitHubEmulator:
    """A GitHub stand-in on ``127.0.0.1``.

    Layout of ``root_dir``: ``git/<owner>/<repo>.git`` (bare repositories) and
    ``ci/`` (job workspaces). URLs: ``{url}/api/v3/...`` (REST),
    ``{url}/<owner>/<repo>.git`` (git smart HTTP), ``{url}/_emulator/...``
    (signed log downloads, health check).
    """

    def __init__(
        self,
        root_dir: Path | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token_ttl: float = 3600,
        rate_limit: int = 5000,
        ci_concurrency: int = 2,
        step_timeout: float = 600.0,
        log_url_ttl: float = 60.0,
        keep_workspaces: bool = False,
        stateless_tokens: bool = False,
    ) -> None:
        self.root_dir = Path(root_dir).resolve()
        self.git_root = self.root_dir / "git"
        self.git_root.mkdir(parents=True, exist_ok=True)
        self.host = host
        self._requested_port = port
        #: Lifetime of installation tokens, seconds (GitHub: 3600).
        self.token_ttl = token_ttl
        #: Mint installation tokens in the stateless ghs_<APPID>_<JWT> format (GitHub's 2026
        #: rollout) instead of the classic 40 characters.
        self.stateless_tokens = stateless_tokens
        #: Hourly request quota per token owner (GitHub: 5000).
        self.rate_limit = rate_limit
        #: Validity of the signed log URLs the 302s point to (GitHub: 1 minute).
        self.log_url_ttl = log_url_ttl
        self.store = Store()
        self.stats = Stats()
        self.faults = Faults()
        self.response_observers: list[ResponseObserver] = []
        self.ci = CI(
            self.store, self.root_dir, concurrency=ci_concurrency, step_timeout=step_timeout, keep_workspaces=keep_workspaces
        )
        self._api = RestApi(self)
        #: Runs that take minutes without executing anything (benchmarks), see timed_runs.py.
        self.timed_runs = TimedRuns(self)
        #: Signed webhook deliveries to subscribed URLs, see webhooks.py.
        self.webhooks = Webhooks(self)
        self._blob_secret = secrets.token_bytes(32)
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.urls = Urls(f"http://{host}:{port or 0}")

    # -------------------------------------------------------------- lifecycle
    def start(self) -> "GitHubEmulator":
        if self._server is not None:
            return self
        gitrepo.check_git_version()
        self._server = EmulatorHTTPServer((self.host, self._requested_port), handler_for(self))
        port = self._server.server_address[1]
        self.urls = Urls(f"http://{self.host}:{port}")
        self.ci.urls = self.urls
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="ghemu-http", daemon=True
        )
        self._thread.start()
        log.info("GitHub emulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving, cancel CI work and wait for worker threads."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.timed_runs.stop()
        self.webhooks.stop()
        self.ci.shutdown()

    def __enter__(self) -> "GitHubEmulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (web and git root)."""
        return self.urls.web

    @property
    def api_url(self) -> str:
        """REST base URL, GitHub Enterprise style: pass as PyGithub ``base_url``."""
        return self.urls.api

    @property
    def port(self) -> int:
        return int(self.urls.web.rsplit(":", 1)[1])

    # ---------------------------------------------------------- repositories
    def create_repo(
        self,
        full_name: str,
        seed_dir: Path | str | None = None,
        *,
        default_branch: str = "main",
        private: bool = True,
        description: str | None = None,
        owner_type: str = "User",
        seed_message: str = "Initial commit",
    ) -> Repo:
        """Create a bare repository, optionally with one commit of ``seed_dir``'s files.

        Seeding is setup, not a push: it triggers no workflow run.
        """
        if not _NAME.match(full_name):
            raise ValueError(f"invalid repository name {full_name!r}")
        owner_login, name = full_name.split("/")
        with self.store.lock:
            if self.store.repo(full_name) is not None:
                raise ValueError(f"repository {full_name} already exists")
            owner = self.store.account(owner_login, owner_type)
            git_dir = self.git_root / owner.login / f"{name}.git"
            repo = Repo(
                id=self.store.next_id(), owner=owner, name=name, default_branch=default_branch,
                private=private, git_dir=git_dir, description=description,
            )
            self.store.repos[full_name.lower()] = repo
            self.store.pulls[full_name.lower()] = {}
        gitrepo.init_bare(git_dir, default_branch)
        if seed_dir is not None:
            gitrepo.seed(git_dir, Path(seed_dir), default_branch, seed_message)
            repo.pushed_at = repo.created_at
        with self.store.lock:
            repo.refs = self._read_refs(repo)
        return repo

    def repo(self, full_name: str) -> Repo:
        with self.store.lock:
            repo = self.store.repo(full_name)
        if repo is None:
            raise KeyError(full_name)
        return repo

    def git_path(self, full_name: str) -> Path:
        """Path of the bare repository (for ``file://`` pushes in tests)."""
        return self.repo(full_name).git_dir

    def clone_url(self, full_name: str) -> str:
        repo = self.repo(full_name)
        return f"{self.url}/{repo.full_name}.git"

    def branches(self, full_name: str) -> dict[str, str]:
        """Current branch heads of a repository, read from git (name -> sha)."""
        refs = gitrepo.list_refs(self.git_path(full_name))
        return {k[len("refs/heads/") :]: v for k, v in refs.items() if k.startswith("refs/heads/")}

    def notify_push(self, full_name: str, actor: str | None = None) -> list[WorkflowRun]:
        """Announce refs changed behind the emulator's back (e.g. a ``file://`` push).

        Returns the workflow runs the push created.
        """
        repo = self.repo(full_name)
        acct = self._account(actor or repo.owner.login)
        with repo.write_lock:
            return self._sync_refs(repo, acct)

    def _read_refs(self, repo: Repo) -> dict[str, str]:
        return {
            k: v for k, v in gitrepo.list_refs(repo.git_dir).items() if k.startswith(("refs/heads/", "refs/tags/"))
        }

    def _sync_refs(self, repo: Repo, actor: Account) -> list[WorkflowRun]:
        """Diff refs against the last snapshot and raise the matching events.

        Callers hold ``repo.write_lock``. Updates PR heads (synchronize),
        closes PRs whose head branch vanished, marks PRs merged when their head
        reached the base branch by a plain push, and feeds pushes to CI.
        """
        new = self._read_refs(repo)
        with self.store.lock:
            old, repo.refs = repo.refs, new
            changes = [(ref, old.get(ref), new.get(ref)) for ref in sorted(set(old) | set(new)) if old.get(ref) != new.get(ref)]
            if not changes:
                return []
            repo.pushed_at = repo.updated_at = _now()
            pulls = list(self.store.pulls.get(repo.full_name.lower(), {}).values())
        synchronized: list[PullRequest] = []
        for ref, _before, after in changes:
            if not ref.startswith("refs/heads/"):
                continue
            branch = ref[len("refs/heads/") :]
            for pr in pulls:
                if pr.state != "open":
                    continue
                with self.store.lock:
                    if pr.head_ref == branch:
                        if after is None:
                            pr.state, pr.closed_at = "closed", _now()
                            pr.updated_at = pr.closed_at
                        elif after != pr.head_sha:
                            pr.head_sha, pr.updated_at = after, _now()
                            synchronized.append(pr)
                if pr.base_ref == branch and after is not None and pr.state == "open":
                    if gitrepo.is_ancestor(repo.git_dir, pr.head_sha, after):
                        with self.store.lock:
                            now = _now()
                            pr.state, pr.merged_at, pr.closed_at, pr.updated_at = "closed", now, now, now
                            pr.merge_commit_sha, pr.merged_by, pr.base_sha = after, actor, after
        runs: list[WorkflowRun] = []
        for ref, before, after in changes:
            runs += self.ci.on_push(repo, ref, before, after, actor)
        for pr in synchronized:
            runs += self.ci.on_pull_request(pr, "synchronize", actor)
        return runs

    def _resolve_ref(self, repo: Repo, ref: str) -> str | None:
        candidates = [f"refs/heads/{ref}", f"refs/tags/{ref}", ref]
        if re.fullmatch(r"[0-9a-fA-F]{7,40}", ref):
            candidates.insert(0, ref)
        for cand in candidates:
            sha = gitrepo.rev_parse(repo.git_dir, cand)
            if sha:
                return sha
        return None

    # ------------------------------------------------------------------ auth
    def _account(self, login: str, type: str = "User") -> Account:
        with self.store.lock:
            return self.store.account(login, type)

    def register_app(
        self, app_id: int, public_key_pem: str | bytes, *, slug: str | None = None, name: str | None = None, owner: str = "ampx"
    ) -> App:
        """Register a GitHub App whose JWTs are verified with ``public_key_pem``."""
        key_bytes = public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
        try:
            public_key = serialization.load_pem_public_key(key_bytes)
        except ValueError:
            # Accept a private key too and derive its public half.
            public_key = serialization.load_pem_private_key(key_bytes, password=None).public_key()
        slug = slug or f"app-{app_id}"
        with self.store.lock:
            app = App(
                id=int(app_id), slug=slug, name=name or slug, owner=self.store.account(owner, "Organization"),
                public_key=public_key, client_id=f"Iv1.{hashlib.sha1(str(app_id).encode()).hexdigest()[:16]}",
            )
            self.store.apps[app.id] = app
        return app

    def create_app(
        self, app_id: int | None = None, *, slug: str | None = None, private_key_pem: str | None = None
    ) -> AppCredentials:
        """Register an app and return its credentials, generating an RSA key pair
        unless ``private_key_pem`` is given (tests reuse one key to save time)."""
        if private_key_pem is None:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
            ).decode()
        else:
            pem = private_key_pem
            key = serialization.load_pem_private_key(pem.encode(), password=None)
        public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        with self.store.lock:
            app_id = app_id if app_id is not None else self.store.next_id()
        self.register_app(app_id, public, slug=slug)
        return AppCredentials(int(app_id), pem)

    def install_app(self, app_id: int, full_name: str, *, permissions: dict[str, str] | None = None) -> int:
        """Install an app on a repository; returns the installation id.

        Like GitHub there is one installation per (app, account): installing on
        another repository of the same owner adds it to that installation.
        """
        repo = self.repo(full_name)
        with self.store.lock:
            app = self.store.apps[int(app_id)]
            inst = next(
                (i for i in self.store.installations.values() if i.app.id == app.id and i.account is repo.owner), None
            )
            if inst is None:
                inst = Installation(
                    id=self.store.next_id(), app=app, account=repo.owner, repos=set(),
                    permissions=dict(permissions or DEFAULT_INSTALLATION_PERMISSIONS),
                )
                inst.permissions.setdefault("metadata", "read")
                self.store.installations[inst.id] = inst
            elif permissions is not None:
                inst.permissions = {"metadata": "read", **permissions}
            inst.repos.add(repo.full_name.lower())
            return inst.id

    def app_bot(self, app: App) -> Account:
        return self._account(f"{app.slug}[bot]", "Bot")

    def add_personal_token(
        self,
        token: str,
        *,
        login: str = "octocat",
        repos: list[str] | None = None,
        permissions: dict[str, str] | None = None,
        expires_in: float | None = None,
    ) -> None:
        """Accept ``token`` as a personal access token of ``login``.

        ``repos=None`` and ``permissions=None`` mean a classic token with full
        access; otherwise it behaves like a fine-grained token.
        """
        acct = self._account(login)
        tok = Token(
            "personal", acct, dict(permissions) if permissions is not None else None,
            {r.lower() for r in repos} if repos is not None else None,
            time.time() + expires_in if expires_in is not None else None,
        )
        self._store_token(token, tok)

    def create_installation_token(
        self, installation_id: int, *, repos: list[str] | None = None, permissions: dict[str, str] | None = None
    ) -> str:
        """Shortcut for tests: mint an installation token without the JWT exchange."""
        with self.store.lock:
            inst = self.store.installations[installation_id]
        tok = Token(
            "installation", self.app_bot(inst.app), dict(permissions or inst.permissions),
            {r.lower() for r in repos} if repos is not None else None, time.time() + self.token_ttl, installation=inst,
        )
        value = self.installation_token_value(inst.app)
        self._store_token(value, tok)
        return value

    def installation_token_value(self, app: Any) -> str:
        if self.stateless_tokens:
            return new_stateless_installation_token(app.id)
        return new_token("ghs_")

    def expire_token(self, token: str) -> None:
        """Make ``token`` expired now (later use answers 401 Bad credentials)."""
        with self.store.lock:
            tok = self.store.tokens.get(digest(token))
            if tok is not None:
                tok.expires_at = time.time() - 1

    def revoke_token(self, token: str) -> None:
        with self.store.lock:
            self.store.tokens.pop(digest(token), None)

    def _store_token(self, value: str, token: Token) -> None:
        with self.store.lock:
            self.store.tokens[digest(value)] = token

    def token_can_see(self, token: Token, repo: Repo) -> bool:
        name = repo.full_name.lower()
        with self.store.lock:
            if token.installation is not None:
                if name not in token.installation.repos:
                    return False
                return token.repos is None or name in token.repos
            if token.repos is not None:
                return name in token.repos
            return True

    def reset_rate_limits(self) -> None:
        """Forget every quota counter (e.g. after changing :attr:`rate_limit`)."""
        with self.store.lock:
            self.store.buckets.clear()

    # --------------------------------------------------------- pull requests
    def pulls(self, full_name: str) -> list[PullRequest]:
        """Every pull request of a repository, by number."""
        with self.store.lock:
            return sorted(self.store.pulls.get(full_name.lower(), {}).values(), key=lambda p: p.number)

    def comments(self, full_name: str, number: int) -> list[str]:
        """The bodies of the comments on pull request ``number``, oldest first."""
        with self.store.lock:
            return [c.body for c in self.store.comments.get(full_name.lower(), []) if c.number == number]

    def set_mergeable(self, full_name: str, number: int, value: bool | None) -> None:
        """Force ``mergeable`` of a PR: False makes merges answer 405, None
        reports "still computing" (``mergeable: null``)."""
        with self.store.lock:
            self.store.pulls[full_name.lower()][number].mergeable_override = value

    def clear_mergeable(self, full_name: str, number: int) -> None:
        with self.store.lock:
            self.store.pulls[full_name.lower()][number].mergeable_override = ...

    # ------------------------------------------------------------ log blobs
    def signed_blob_url(self, kind: str, ident: int) -> str:
        expires = str(int(time.time() + self.log_url_ttl))
        sig = hmac.new(self._blob_secret, f"{kind}/{ident}/{expires}".encode(), hashlib.sha256).hexdigest()
        return f"{self.url}/_emulator/blobs/{kind}/{ident}?{urlencode({'expires': expires, 'signature': sig})}"

    def verify_blob(self, kind: str, ident: int, expires: str, signature: str) -> bool:
        if not expires.isdigit() or int(expires) < time.time():
            return False
        expected = hmac.new(self._blob_secret, f"{kind}/{ident}/{expires}".encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature)

