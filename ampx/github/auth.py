"""Credentials for GitHub: App installation tokens (the product) or a personal token (local).

App flow, per repository: sign a short RS256 JWT with the App's private key, look up the
installation on the repository (``GET /repos/{o}/{r}/installation``), then buy an
installation token restricted to that one repository and to the permissions ampx needs
(``POST /app/installations/{id}/access_tokens``). Tokens last an hour; we cache them and buy
a new one when less than five minutes remain. Concurrent callers for the same installation
share one request (one lock per installation).

The token endpoints are called with plain ``requests`` rather than PyGithub, because PyGithub
logs response bodies at DEBUG level and the access-token response body *is* the token.
Tokens handed out are registered with :func:`ampx.redact.register_secret`.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping, Optional
from urllib.parse import quote

import jwt
import requests
from cryptography.hazmat.primitives import serialization

from ampx.core.repo import RepoRef
from ampx.redact import register_secret
from ampx.settings import GitHubSettings

from .client import DEFAULT_TIMEOUT, _json_message, error_for_status, new_session
from .errors import (
    GitHubAuthError,
    GitHubConfigError,
    GitHubError,
    GitHubNotFound,
    GitHubPermissionError,
    RetryLater,
)

log = logging.getLogger(__name__)

#: What an installation token is restricted to. ``contents: write`` clones, pushes and merges,
#: ``pull_requests: write`` opens PRs, ``actions: read`` would read runs, jobs and logs, but
#: re-running failed jobs (the flaky guard) needs ``actions: write`` on GitHub. An App installed
#: with the PRD's ``actions: read`` still works: its tokens fall back to read (see `_mint`), and
#: only the flaky guard's re-runs are refused, with a summary saying so.
DEFAULT_PERMISSIONS: dict[str, str] = {
    "contents": "write",
    "pull_requests": "write",
    "actions": "write",
}
#: Renew an installation token when less than this many seconds remain.
RENEW_BEFORE = 300.0
#: JWT timing: backdate iat against clock drift; GitHub allows at most 10 minutes of life.
JWT_BACKDATE = 60
JWT_LIFETIME = 540  # exp = now + 9 min, so exp - iat = 10 min exactly

CONFIG_HINT = "set AMPX_GITHUB_APP_ID and a private key, or GITHUB_TOKEN"


class TokenProvider(ABC):
    """Hands out a token that can act on one repository."""

    kind: str = "token"

    @abstractmethod
    def token_for(self, repo: RepoRef) -> str:
        """A token valid for at least a few minutes for ``repo`` (may do network I/O)."""

    def invalidate(self, repo: RepoRef, token: Optional[str] = None) -> None:
        """Forget a cached token (GitHub answered 401 with it). Default: nothing cached."""

    def __repr__(self) -> str:  # never show secrets
        return f"<{type(self).__name__}>"


class TokenAuth(TokenProvider):
    """A personal access token (``GITHUB_TOKEN``), the local runtime's fallback."""

    kind = "personal-token"

    def __init__(self, token: str) -> None:
        token = (token or "").strip()
        if not token:
            raise GitHubConfigError(f"empty GitHub token: {CONFIG_HINT}")
        self.__token = token
        register_secret(token)

    def token_for(self, repo: RepoRef) -> str:
        return self.__token


@dataclass
class _Cached:
    token: str
    expires_at: float  # epoch seconds
    installation_id: int


def _parse_expiry(value: Any, fallback: float) -> float:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return fallback


class AppAuth(TokenProvider):
    """GitHub App installation tokens, cached and renewed, one per repository."""

    kind = "github-app"

    def __init__(
        self,
        app_id: int | str,
        private_key_pem: str | bytes,
        api_url: str,
        *,
        permissions: Optional[Mapping[str, str]] = None,
        renew_before: float = RENEW_BEFORE,
        clock: Callable[[], float] = time.time,
        session: Optional[requests.Session] = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        app_id_s = str(app_id).strip()
        if not app_id_s:
            raise GitHubConfigError(f"empty GitHub App id: {CONFIG_HINT}")
        self.app_id = app_id_s
        pem = private_key_pem.encode() if isinstance(private_key_pem, str) else private_key_pem
        try:
            # Keep the key object only: its repr never shows the key material.
            self.__key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise GitHubConfigError(
                f"the private key of GitHub App {self.app_id} is not a valid unencrypted PEM key "
                "(AMPX_GITHUB_APP_PRIVATE_KEY / AMPX_GITHUB_APP_PRIVATE_KEY_FILE)"
            ) from None
        self.api_url = api_url.rstrip("/")
        self.permissions = dict(DEFAULT_PERMISSIONS if permissions is None else permissions)
        self.renew_before = renew_before
        self.clock = clock
        self.session = session or new_session()
        self.timeout = timeout
        self._meta = threading.Lock()
        self._repo_locks: dict[str, threading.Lock] = {}
        self._inst_locks: dict[int, threading.Lock] = {}
        self._installations: dict[str, int] = {}
        self._tokens: dict[tuple[int, str], _Cached] = {}
        # installations that granted less than asked (actions: read): what they do grant
        self._granted: dict[int, dict[str, str]] = {}
        #: Counters for tests and diagnostics.
        self.token_requests = 0
        self.installation_lookups = 0

    def __repr__(self) -> str:
        return f"<AppAuth app_id={self.app_id} api_url={self.api_url}>"

    # -- JWT

    def app_jwt(self) -> str:
        """A fresh App JWT (RS256, iat backdated 60 s, 10 minutes of validity in total)."""
        now = int(time.time())  # GitHub checks against its own clock: always real time
        payload = {"iat": now - JWT_BACKDATE, "exp": now + JWT_LIFETIME, "iss": self.app_id}
        return jwt.encode(payload, self.__key, algorithm="RS256")

    def _app_request(self, method: str, path: str, what: str, json: Any = None) -> dict:
        headers = {"Authorization": f"Bearer {self.app_jwt()}"}
        try:
            resp = self.session.request(
                method, self.api_url + path, headers=headers, json=json,
                timeout=self.timeout, allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise RetryLater(5.0, f"cannot reach GitHub for {what}: {type(exc).__name__}") from None
        if resp.status_code in (200, 201):
            try:
                data = resp.json()
            except ValueError:
                data = None
            if not isinstance(data, dict):
                raise RetryLater(5.0, f"unexpected answer from GitHub for {what}", status=resp.status_code)
            return data
        message = _json_message(resp)
        if resp.status_code == 401:
            raise GitHubAuthError(
                f"GitHub rejected the JWT of App {self.app_id} for {what}: {message} "
                "(check AMPX_GITHUB_APP_ID, the private key and the system clock)",
                status=401,
            )
        raise error_for_status(resp.status_code, resp.headers, message, what, backoff_delay=lambda: 5.0)

    # -- locks

    def _repo_lock(self, key: str) -> threading.Lock:
        with self._meta:
            return self._repo_locks.setdefault(key, threading.Lock())

    def _inst_lock(self, inst: int) -> threading.Lock:
        with self._meta:
            return self._inst_locks.setdefault(inst, threading.Lock())

    # -- installation lookup

    def installation_id(self, repo: RepoRef) -> int:
        key = repo.full_name.lower()
        inst = self._installations.get(key)
        if inst is not None:
            return inst
        with self._repo_lock(key):
            inst = self._installations.get(key)
            if inst is not None:
                return inst
            path = f"/repos/{quote(repo.owner)}/{quote(repo.name)}/installation"
            self.installation_lookups += 1
            try:
                data = self._app_request("GET", path, f"GET {path}")
            except GitHubNotFound:
                raise GitHubNotFound(
                    f"GitHub App {self.app_id} is not installed on {repo.full_name} "
                    "(or the repository does not exist)",
                    status=404,
                ) from None
            inst = int(data["id"])
            self._installations[key] = inst
            return inst

    # -- tokens

    def _fresh(self, cached: Optional[_Cached]) -> bool:
        return cached is not None and cached.expires_at - self.clock() > self.renew_before

    def token_for(self, repo: RepoRef) -> str:
        key = repo.full_name.lower()
        inst = self.installation_id(repo)
        cached = self._tokens.get((inst, key))
        if self._fresh(cached):
            assert cached is not None
            return cached.token
        with self._inst_lock(inst):
            cached = self._tokens.get((inst, key))
            if self._fresh(cached):
                assert cached is not None
                return cached.token
            try:
                token, expires_at = self._mint(inst, repo)
            except RetryLater as exc:
                # renewing early is a courtesy: while the cached token still has a minute,
                # a GitHub hiccup must not stop the caller (the next call tries again)
                if cached is not None and cached.expires_at - self.clock() > 60:
                    log.info("token renewal for %s deferred (%s); the cached token has %.0f s left",
                             repo.full_name, exc, cached.expires_at - self.clock())
                    return cached.token
                raise
            self._tokens[(inst, key)] = _Cached(token, expires_at, inst)
            return token

    def _mint(self, inst: int, repo: RepoRef) -> tuple[str, float]:
        path = f"/app/installations/{inst}/access_tokens"
        what = f"POST {path} for {repo.full_name}"
        permissions = self._granted.get(inst, self.permissions)
        body = {"repositories": [repo.name], "permissions": permissions}
        self.token_requests += 1
        try:
            data = self._app_request("POST", path, what, json=body)
        except GitHubNotFound:
            # The installation went away (App uninstalled): look it up again next time.
            with self._meta:
                self._installations.pop(repo.full_name.lower(), None)
            raise GitHubNotFound(
                f"installation {inst} of GitHub App {self.app_id} no longer exists "
                f"(reinstall the App on {repo.full_name})",
                status=404,
            ) from None
        except GitHubError as exc:
            if exc.status == 422 and permissions.get("actions") == "write":
                log.warning(
                    "installation %s of GitHub App %s grants actions: read only; the flaky "
                    "guard cannot re-run failed jobs in %s (grant Actions: read & write to "
                    "enable it)", inst, self.app_id, repo.full_name)
                self._granted[inst] = {**permissions, "actions": "read"}
                return self._mint(inst, repo)
            if exc.status == 422:
                raise GitHubPermissionError(
                    f"GitHub App {self.app_id} cannot get a token for {repo.full_name} with "
                    f"permissions {permissions}: {exc} (grant them in the App's settings "
                    "and accept them on the installation)",
                    status=422,
                ) from None
            raise
        token = data.get("token")
        if not isinstance(token, str) or not token:
            raise RetryLater(5.0, f"GitHub returned no token for {what}")
        register_secret(token)
        expires_at = _parse_expiry(data.get("expires_at"), self.clock() + 3600)
        log.info(
            "installation token for %s from installation %s (expires %s)",
            repo.full_name, inst, data.get("expires_at"),
        )
        return token, expires_at

    def invalidate(self, repo: RepoRef, token: Optional[str] = None) -> None:
        key = repo.full_name.lower()
        with self._meta:
            inst = self._installations.get(key)
            if inst is None:
                return
            cached = self._tokens.get((inst, key))
            if cached is not None and (token is None or cached.token == token):
                del self._tokens[(inst, key)]

    def expires_at(self, repo: RepoRef) -> Optional[float]:
        """Expiry (epoch seconds) of the cached token for ``repo``, if any."""
        inst = self._installations.get(repo.full_name.lower())
        cached = self._tokens.get((inst, repo.full_name.lower())) if inst is not None else None
        return cached.expires_at if cached else None


def provider_from_settings(settings: GitHubSettings, **kwargs: Any) -> TokenProvider:
    """App auth when an App id and key are set, else ``GITHUB_TOKEN``, else a clear error."""
    if settings.app_id and settings.private_key:
        return AppAuth(settings.app_id, settings.private_key, settings.api_url, **kwargs)
    if settings.app_id and not settings.private_key and not settings.token:
        raise GitHubConfigError(
            "AMPX_GITHUB_APP_ID is set but no private key "
            "(AMPX_GITHUB_APP_PRIVATE_KEY or AMPX_GITHUB_APP_PRIVATE_KEY_FILE)"
        )
    if settings.token:
        return TokenAuth(settings.token)
    raise GitHubConfigError(CONFIG_HINT)
