"""HTTP plumbing: PyGithub clients per repository and a raw REST client for what PyGithub
cannot do (conditional requests with ETag / 304, the 302 ``Location`` of job logs).

Retries are never done inside a request: PyGithub's retry is disabled and every transient
failure surfaces as :class:`RetryLater` with a delay, so the caller (the operator's poll
loop) decides when to come back. The one exception is a 401: the cached token may have
expired or been revoked, so we ask the provider for a fresh one and retry once.

Nothing here logs request headers or response bodies; tokens only travel in the
``Authorization`` header.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, TypeVar
from urllib.parse import urlencode, urljoin, urlsplit

import requests

from ampx import __version__
from ampx.core.repo import RepoRef

from .budget import RequestBudget
from .errors import (
    GitHubAuthError,
    GitHubError,
    GitHubNotFound,
    GitHubPermissionError,
    RetryLater,
)

if TYPE_CHECKING:  # pragma: no cover
    from github import Github

    from .auth import TokenProvider

log = logging.getLogger(__name__)

USER_AGENT = f"ampx/{__version__}"
API_VERSION = "2022-11-28"
DEFAULT_TIMEOUT = 30.0
#: When GitHub says "rate limited" without saying until when.
DEFAULT_RATE_LIMIT_WAIT = 60.0
#: Conditional answers remembered (LRU). Keyed by request, so thousands of waiting commits
#: still get free 304s; an entry is a URL and a runs page.
ETAG_CACHE_SIZE = 8192

T = TypeVar("T")


def new_session() -> requests.Session:
    s = requests.Session()
    s.headers.update(
        {
            "User-Agent": USER_AGENT,
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
        }
    )
    # requests would read ~/.netrc and replace our Authorization header; never do that.
    s.trust_env = False
    return s


# --------------------------------------------------------------------------- errors


def _json_message(resp: requests.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return (resp.reason or "").strip()
    if isinstance(data, dict):
        msg = str(data.get("message") or resp.reason or "")
        errors = data.get("errors")
        if isinstance(errors, list):
            details = [
                str(e.get("message") or e.get("code") or "") if isinstance(e, dict) else str(e)
                for e in errors
            ]
            details = [d for d in details if d]
            if details:
                msg = f"{msg} ({'; '.join(details)})"
        return msg
    return (resp.reason or "").strip()


def rate_limit_delay(
    status: int, headers: Mapping[str, str], message: str, now: Optional[float] = None
) -> Optional[float]:
    """Seconds to wait when a 403/429 is a rate limit (primary or secondary), else None.

    GitHub's rules: honour ``Retry-After`` when present; when ``x-ratelimit-remaining`` is 0
    wait until ``x-ratelimit-reset`` (epoch seconds); a secondary limit without either header
    means "at least a minute".
    """
    if status not in (403, 429):
        return None
    h = {k.lower(): v for k, v in headers.items()}
    retry_after = h.get("retry-after")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            pass  # an HTTP date; fall through to the other signals
    if h.get("x-ratelimit-remaining") == "0":
        try:
            reset = float(h.get("x-ratelimit-reset", ""))
        except ValueError:
            return DEFAULT_RATE_LIMIT_WAIT
        now = time.time() if now is None else now
        return max(1.0, reset - now + 1.0)
    lowered = message.lower()
    if status == 429 or "rate limit" in lowered or "abuse" in lowered:
        return DEFAULT_RATE_LIMIT_WAIT
    return None


@dataclass
class Backoff:
    """Exponential back-off with jitter for 5xx and network errors: the n-th consecutive
    failure waits between half and all of ``min(cap, base * 2**(n-1))`` seconds."""

    base: float = 2.0
    cap: float = 120.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, failures: int) -> float:
        ceiling = min(self.cap, self.base * (2 ** max(0, failures - 1)))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)


def error_for_status(
    status: int,
    headers: Mapping[str, str],
    message: str,
    what: str,
    *,
    backoff_delay: Optional[Callable[[], float]] = None,
) -> Exception:
    """The exception for a non-success GitHub answer to ``what`` (e.g. "GET /repos/o/r")."""
    text = f"{what}: {status} {message}".rstrip()
    if status in (403, 429):
        wait = rate_limit_delay(status, headers, message)
        if wait is not None:
            return RetryLater(wait, f"GitHub rate limit on {text}", status=status)
        needs = {k.lower(): v for k, v in headers.items()}.get("x-accepted-github-permissions")
        hint = f" (the token needs {needs})" if needs else ""
        return GitHubPermissionError(f"GitHub refused {text}{hint}", status=status)
    if status >= 500:
        wait = backoff_delay() if backoff_delay else Backoff().delay(1)
        return RetryLater(wait, f"GitHub error on {text}", status=status)
    if status == 401:
        return GitHubAuthError(f"GitHub rejected the credentials for {text}", status=status)
    if status == 404:
        return GitHubNotFound(f"not found: {text}", status=status)
    return GitHubError(f"GitHub answered {text}", status=status)


# --------------------------------------------------------------------------- stats


class ApiStats:
    """Request counters (thread-safe). ``not_modified`` 304s cost nothing against the rate limit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.ok = 0
        self.not_modified = 0
        self.errors = 0
        self.by_status: Counter[int] = Counter()
        self.rate_limit_remaining: Optional[int] = None

    def record(self, status: Optional[int], headers: Optional[Mapping[str, str]] = None) -> None:
        with self._lock:
            self.requests += 1
            if status is None:
                self.errors += 1
                return
            self.by_status[status] += 1
            if status == 304:
                self.not_modified += 1
            elif status < 400:
                self.ok += 1
            else:
                self.errors += 1
            if headers is not None:
                remaining = headers.get("x-ratelimit-remaining")
                if remaining is not None and remaining.isdigit():
                    self.rate_limit_remaining = int(remaining)

    @property
    def counted(self) -> int:
        """Requests that count against the rate limit (everything but 304s)."""
        return self.requests - self.not_modified

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "ok": self.ok,
                "not_modified": self.not_modified,
                "errors": self.errors,
                "counted": self.requests - self.not_modified,
                "rate_limit_remaining": self.rate_limit_remaining,
            }


# --------------------------------------------------------------------------- raw REST


@dataclass
class ApiResponse:
    status: int
    data: Any
    headers: Mapping[str, str]
    #: True when GitHub answered 304 and ``data`` is the cached body.
    not_modified: bool = False
    #: ETag of ``data`` (conditional requests only).
    etag: Optional[str] = None


class RestClient:
    """Raw REST calls with the repository's token, ETag cache, 401 refresh and error mapping."""

    def __init__(
        self,
        api_url: str,
        provider: "TokenProvider",
        *,
        session: Optional[requests.Session] = None,
        timeout: float = DEFAULT_TIMEOUT,
        stats: Optional[ApiStats] = None,
        backoff: Optional[Backoff] = None,
        etag_cache_size: int = ETAG_CACHE_SIZE,
        budget: Optional[RequestBudget] = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.provider = provider
        self.session = session or new_session()
        self.timeout = timeout
        self.stats = stats or ApiStats()
        self.backoff = backoff or Backoff()
        #: shared by every request of this client (the operator has one): see budget.py
        self.budget = budget or RequestBudget()
        # request (URL + query) -> (ETag, body), least recently used first: one entry per
        # repository page and per commit still asked for by head_sha
        self._etags: dict[str, tuple[str, Any]] = {}
        self._etag_cache_size = etag_cache_size
        self._lock = threading.Lock()
        self._failures: Counter[str] = Counter()

    # -- helpers

    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.api_url + path

    @staticmethod
    def _cache_key(url: str, params: Optional[Mapping[str, Any]]) -> str:
        return url + ("?" + urlencode(sorted(params.items())) if params else "")

    def _transient(self, repo: RepoRef, what: str, exc: Exception) -> RetryLater:
        delay = self._note_failure(repo)
        # requests' messages name host, port and path - never headers.
        return RetryLater(delay, f"cannot reach GitHub for {what}: {type(exc).__name__}: {exc}")

    def _note_failure(self, repo: RepoRef) -> float:
        with self._lock:
            self._failures[repo.full_name] += 1
            n = self._failures[repo.full_name]
        return self.backoff.delay(n)

    def _note_success(self, repo: RepoRef) -> None:
        with self._lock:
            self._failures.pop(repo.full_name, None)

    def same_host(self, url: str) -> bool:
        a, b = urlsplit(self.api_url), urlsplit(url)
        return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)

    # -- requests

    def request(
        self,
        method: str,
        repo: RepoRef,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json: Any = None,
        conditional: bool = False,
        ok: tuple[int, ...] = (200, 201, 202, 204),
        allow: tuple[int, ...] = (),
    ) -> ApiResponse:
        """Call the API for ``repo``. Status codes in ``ok``/``allow`` are returned, anything
        else is raised (RetryLater or a GitHubError). With ``conditional``, the ETag of the last
        200 for the same URL is sent and a 304 returns the cached body."""
        url = self._url(path)
        what = f"{method} {urlsplit(url).path}"
        key = self._cache_key(url, params)
        last_token: Optional[str] = None
        for attempt in (1, 2):
            hold = self.budget.hold(optional=conditional)
            if hold > 0:  # GitHub said wait, or we are about to use up what it allows
                raise RetryLater(hold, f"holding {what} back: GitHub rate limit budget")
            token = self.provider.token_for(repo)
            if attempt == 2 and token == last_token:
                break  # no fresher token to try
            last_token = token
            headers = {"Authorization": f"Bearer {token}"}
            cached = None
            if conditional:
                with self._lock:
                    cached = self._etags.pop(key, None)
                    if cached is not None:  # most recently used goes last
                        self._etags[key] = cached
                if cached is not None:
                    headers["If-None-Match"] = cached[0]
            self.budget.sent(method)
            try:
                resp = self.session.request(
                    method, url, params=params, json=json, headers=headers,
                    timeout=self.timeout, allow_redirects=False,
                )
            except requests.RequestException as exc:
                self.stats.record(None)
                raise self._transient(repo, what, exc) from None
            self.stats.record(resp.status_code, resp.headers)
            status = resp.status_code
            self.budget.answered(status, resp.headers, rate_limit_delay(
                status, resp.headers, "rate limit" if status == 429 else _json_message(resp))
                if status in (403, 429) else None)
            if status == 401:
                self.provider.invalidate(repo, token)
                resp.close()
                continue
            if status == 304 and cached is not None:
                self._note_success(repo)
                return ApiResponse(304, cached[1], resp.headers, not_modified=True, etag=cached[0])
            if status in ok or status in allow:
                self._note_success(repo)
                data: Any = None
                if resp.content and "json" in resp.headers.get("Content-Type", ""):
                    try:
                        data = resp.json()
                    except ValueError:
                        data = None
                elif resp.content:
                    data = resp.text
                if conditional and status == 200 and resp.headers.get("ETag"):
                    with self._lock:
                        self._etags.pop(key, None)
                        while len(self._etags) >= self._etag_cache_size:
                            self._etags.pop(next(iter(self._etags)))
                        self._etags[key] = (resp.headers["ETag"], data)
                return ApiResponse(status, data, resp.headers, etag=resp.headers.get("ETag"))
            message = _json_message(resp)
            if status >= 500:
                raise error_for_status(
                    status, resp.headers, message, what, backoff_delay=lambda: self._note_failure(repo)
                )
            raise error_for_status(status, resp.headers, message, what)
        raise GitHubAuthError(
            f"GitHub rejected the credentials for {what} (401), also with a fresh token", status=401
        )

    def get_json(self, repo: RepoRef, path: str, **kw: Any) -> ApiResponse:
        return self.request("GET", repo, path, **kw)

    def get_redirected_text(self, repo: RepoRef, path: str, *, max_bytes: int = 8 << 20) -> Optional[str]:
        """GET an endpoint that answers ``302 Location`` (job logs) and fetch the target, keeping
        its last ``max_bytes``. Returns None when it is gone (404/410). See
        :meth:`stream_redirected`, which sees all of it."""
        chunks: list[bytes] = []
        size = 0

        def keep(chunk: bytes) -> None:
            nonlocal chunks, size
            chunks.append(chunk)
            size += len(chunk)
            if size >= max_bytes:  # keep the end
                joined = b"".join(chunks)[-max_bytes:]
                chunks, size = [joined], len(joined)

        if not self.stream_redirected(repo, path, keep):
            return None
        return b"".join(chunks).decode("utf-8", errors="replace")

    def stream_redirected(self, repo: RepoRef, path: str, sink: Callable[[bytes], None]) -> bool:
        """GET an endpoint that answers ``302 Location`` (job logs) and pass the target's body
        to ``sink`` chunk by chunk, so a reader can keep what it needs of a log of any size.

        The token is sent to the target only when it is on the API's own host (GitHub
        Enterprise, the emulator); GitHub.com's log URLs are pre-signed blob URLs that must not
        see it. Returns False when the log is gone (404/410).
        """
        resp = self.request("GET", repo, path, ok=(200,), allow=(301, 302, 303, 307, 308, 410))
        if resp.status == 200:
            if isinstance(resp.data, str):
                sink(resp.data.encode("utf-8"))
                return True
            return False
        if resp.status == 410:
            return False
        location = resp.headers.get("Location")
        if not location:
            return False
        target = urljoin(self._url(path), location)
        what = f"GET {urlsplit(target).path}"  # never the query: it may carry a signature
        headers = {}
        if self.same_host(target):
            headers["Authorization"] = f"Bearer {self.provider.token_for(repo)}"
        try:
            with self.session.get(
                target, headers=headers, timeout=self.timeout, stream=True, allow_redirects=True
            ) as r:
                self.stats.record(r.status_code, r.headers)
                if r.status_code in (404, 410):
                    return False
                if r.status_code != 200:
                    raise error_for_status(r.status_code, r.headers, r.reason or "", what,
                                           backoff_delay=lambda: self._note_failure(repo))
                for chunk in r.iter_content(65536):
                    sink(chunk)
        except requests.RequestException as exc:
            self.stats.record(None)
            raise self._transient(repo, what, exc) from None
        return True


# --------------------------------------------------------------------------- PyGithub


class PyGithubFactory:
    """One PyGithub ``Github`` per repository token, with PyGithub's retry and throttling off."""

    def __init__(self, api_url: str, provider: "TokenProvider", *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.api_url = api_url.rstrip("/")
        self.provider = provider
        self.timeout = timeout
        self._lock = threading.Lock()
        self._clients: dict[str, tuple[str, "Github"]] = {}

    def for_token(self, token: str) -> "Github":
        from github import Auth, Github

        return Github(
            base_url=self.api_url,
            auth=Auth.Token(token),
            retry=None,
            timeout=int(self.timeout),
            user_agent=USER_AGENT,
            seconds_between_requests=None,
            seconds_between_writes=None,
            lazy=True,
        )

    def for_repo(self, repo: RepoRef) -> tuple[str, "Github"]:
        token = self.provider.token_for(repo)
        key = repo.full_name.lower()
        with self._lock:
            cached = self._clients.get(key)
            if cached is not None and cached[0] == token:
                return cached
            gh = self.for_token(token)
            self._clients[key] = (token, gh)
        if cached is not None:
            try:
                cached[1].close()
            except Exception:  # pragma: no cover - best effort
                pass
        return token, gh

    def call(self, repo: RepoRef, what: str, fn: Callable[["Github"], T]) -> T:
        """Run ``fn(github)`` for ``repo``; 401 → fresh token and one retry; map errors."""
        from github import GithubException

        last_token: Optional[str] = None
        for attempt in (1, 2):
            token, gh = self.for_repo(repo)
            if attempt == 2 and token == last_token:
                break
            last_token = token
            try:
                return fn(gh)
            except GithubException as exc:
                if exc.status == 401:
                    self.provider.invalidate(repo, token)
                    continue
                raise map_pygithub_error(exc, what) from None
            except requests.RequestException as exc:
                raise RetryLater(Backoff().delay(1), f"cannot reach GitHub for {what}: {type(exc).__name__}") from None
        raise GitHubAuthError(f"GitHub rejected the credentials for {what} (401), also with a fresh token", status=401)


def pygithub_message(exc: Exception) -> str:
    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        msg = str(data.get("message") or "")
        errors = data.get("errors")
        if isinstance(errors, list):
            details = [
                str(e.get("message") or e.get("code") or "") if isinstance(e, dict) else str(e)
                for e in errors
            ]
            details = [d for d in details if d]
            if details:
                msg = f"{msg} ({'; '.join(details)})"
        return msg
    return str(data or "")


def map_pygithub_error(exc: Exception, what: str) -> Exception:
    status = int(getattr(exc, "status", 0) or 0)
    headers = getattr(exc, "headers", None) or {}
    return error_for_status(status, headers, pygithub_message(exc), what)
