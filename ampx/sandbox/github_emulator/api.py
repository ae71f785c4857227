"""The REST operations of ``github-rest-subset.json``, implemented over the emulator state.

Each handler receives the parsed request and the authenticated principal and
returns ``(status, json_body, extra_headers)`` or raises :class:`ApiError`.
The cross-cutting parts (faults, authentication, primary rate limits,
conditional requests, rate-limit headers) live in :meth:`RestApi.handle`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import time
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import unquote, urlencode

from . import gitrepo, payloads
from ._util import dumps, iso, utcnow
from .auth import DOCS, ApiError, Principal, authenticate, not_found, requires_authentication
from .ci import iter_run_logs
from .state import (
    LEVELS,
    Account,
    IssueComment,
    Job,
    PullRequest,
    RateBucket,
    Repo,
    Token,
    WorkflowRun,
    grants,
)

if TYPE_CHECKING:
    from .emulator import GitHubEmulator

log = logging.getLogger(__name__)

PULLS_DOCS = "https://docs.github.com/rest/pulls/pulls"
API_VERSION_HEADERS = {
    "X-GitHub-Media-Type": "github.v3; format=json",
    "X-GitHub-Api-Version-Selected": "2022-11-28",
}
RUN_STATUSES = {"queued", "in_progress", "completed", "waiting", "requested", "pending"}


@dataclass
class ApiRequest:
    method: str
    path: str  # without the /api/v3 prefix and without the query string
    query: dict[str, list[str]]
    headers: Any  # email.message.Message-like, case-insensitive .get()
    body: bytes

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def json(self) -> Any:
        if not self.body.strip():
            return None
        import json

        try:
            return json.loads(self.body)
        except ValueError:
            raise ApiError(400, "Problems parsing JSON") from None


@dataclass
class ApiResponse:
    status: int
    body: bytes | None
    headers: dict[str, str] = field(default_factory=dict)
    template: str = ""


@dataclass
class Route:
    method: str
    template: str
    regex: re.Pattern[str]
    handler: Callable[..., tuple[int, Any, dict[str, str]]]
    jwt: bool = False
    anonymous: bool = False
    counts: bool = True  # whether the call is charged to the rate limit


def _compile(template: str) -> re.Pattern[str]:
    pattern = ""
    for part in re.split(r"(\{[^}]+\})", template):
        if part.startswith("{"):
            name = part[1:-1]
            # refs may contain slashes (heads/feature/x, amp/foo branch names)
            pattern += f"(?P<{name}>.+)" if name == "ref" else f"(?P<{name}>[^/]+)"
        else:
            pattern += re.escape(part)
    return re.compile("^" + pattern + "$")


def _int(value: str | None, default: int, *, lo: int = 1, hi: int | None = None) -> int:
    try:
        n = int(value) if value is not None else default
    except ValueError:
        n = default
    n = max(lo, n)
    return min(n, hi) if hi else n


class RestApi:
    def __init__(self, emulator: "GitHubEmulator") -> None:
        self.emu = emulator
        self.store = emulator.store
        self._facts: dict[tuple, tuple[bool, int, int, int, int]] = {}
        r = self._route
        self.routes: list[Route] = [
            r("POST", "/app/installations/{installation_id}/access_tokens", self.create_access_token, jwt=True),
            r("GET", "/repos/{owner}/{repo}/installation", self.get_repo_installation, jwt=True),
            r("GET", "/repos/{owner}/{repo}/actions/runs", self.list_runs),
            r("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}", self.get_run),
            r("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs", self.list_jobs),
            r("GET", "/repos/{owner}/{repo}/actions/jobs/{job_id}/logs", self.job_logs),
            r("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/logs", self.run_logs),
            r("POST", "/repos/{owner}/{repo}/actions/runs/{run_id}/rerun-failed-jobs", self.rerun_failed_jobs),
            r("POST", "/repos/{owner}/{repo}/pulls", self.create_pull),
            r("GET", "/repos/{owner}/{repo}/pulls", self.list_pulls),
            r("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", self.get_pull),
            r("PATCH", "/repos/{owner}/{repo}/pulls/{pull_number}", self.update_pull),
            r("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", self.create_comment),
            r("PUT", "/repos/{owner}/{repo}/pulls/{pull_number}/merge", self.merge_pull),
            r("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs", self.list_check_runs),
            r("DELETE", "/repos/{owner}/{repo}/git/refs/{ref}", self.delete_ref),
            r("GET", "/repos/{owner}/{repo}", self.get_repo),
            r("GET", "/rate_limit", self.rate_limit, anonymous=True, counts=False),
        ]

    @staticmethod
    def _route(method: str, template: str, handler, **kw) -> Route:
        return Route(method, template, _compile(template), handler, **kw)

    @property
    def urls(self) -> payloads.Urls:
        return self.emu.urls

    # ----------------------------------------------------------- dispatching
    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        for route in self.routes:
            m = route.regex.match(path)
            if m and (route.method == method or (method == "HEAD" and route.method == "GET")):
                return route, {k: unquote(v) for k, v in m.groupdict().items()}
        return None, {}

    def handle(self, req: ApiRequest) -> ApiResponse:
        route, params = self.match(req.method, req.path)
        template = route.template if route else req.path
        principal: Principal | None = None
        auth_error: ApiError | None = None
        try:
            principal = authenticate(self.store, req.headers.get("Authorization"), jwt_endpoint=bool(route and route.jwt))
        except ApiError as exc:
            auth_error = exc
        rate_key = principal.rate_key if principal else None
        fault = self.emu.faults.take(req.method, req.path, rate_key)
        if fault is not None:
            headers = dict(fault.headers)
            bucket = self._bucket(principal)
            headers.update(self._rate_headers(bucket, exhausted=fault.exhausted))
            if fault.exhausted:
                headers["x-ratelimit-reset"] = fault.headers["x-ratelimit-reset"]
            return self._json(fault.status, fault.body, headers, template)
        if route is None:
            # GitHub answers unknown routes (and unsupported methods) with 404.
            body = {"message": "Not Found", "documentation_url": DOCS, "status": "404"}
            return self._json(404, body, self._rate_headers(self._bucket(principal)), template)
        if auth_error is not None:
            return self._error(auth_error, self._rate_headers(self._bucket(None)), template)
        assert principal is not None
        if principal.kind == "anonymous" and not route.anonymous:
            return self._error(requires_authentication(), self._rate_headers(self._bucket(None)), template)
        bucket = self._bucket(principal)
        now = time.time()
        with self.store.lock:
            bucket.roll(now)
            exhausted = route.counts and bucket.remaining <= 0
        if exhausted:
            err = ApiError(
                403,
                f"API rate limit exceeded for {principal.rate_key or 'your IP address'}. If you reach out to GitHub "
                "Support for help, please include the request ID.",
                documentation_url="https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
            )
            return self._error(err, self._rate_headers(bucket), template)
        try:
            status, body, headers = route.handler(req, principal, **params)
        except ApiError as exc:
            status, body, headers = exc.status, exc.body(), dict(exc.headers)
        except Exception:
            # An emulator bug must surface as GitHub's 500, not a dropped connection.
            log.exception("%s %s failed", req.method, route.template)
            status, body, headers = 500, {"message": "Server Error", "documentation_url": DOCS}, {}
        raw = dumps(body) if body is not None else None
        if req.method in ("GET", "HEAD") and status == 200 and raw is not None:
            etag = 'W/"' + hashlib.sha256(raw).hexdigest() + '"'
            headers["ETag"] = etag
            headers.setdefault("Cache-Control", "private, max-age=60, s-maxage=60")
            headers["Vary"] = "Accept, Authorization, Cookie, X-GitHub-OTP"
            if _etag_matches(req.headers.get("If-None-Match"), etag):
                # Like GitHub: 304s are free, the quota is not charged.
                headers.update(self._rate_headers(bucket))
                return ApiResponse(304, None, headers, template)
        if route.counts:
            with self.store.lock:
                bucket.used += 1
        headers.update(self._rate_headers(bucket))
        if raw is None:
            return ApiResponse(status, None, headers, template)
        headers.setdefault("Content-Type", "application/json; charset=utf-8")
        return ApiResponse(status, raw, headers, template)

    def _json(self, status: int, body: Any, headers: dict[str, str], template: str) -> ApiResponse:
        headers = dict(headers)
        headers["Content-Type"] = "application/json; charset=utf-8"
        return ApiResponse(status, dumps(body), headers, template)

    def _error(self, err: ApiError, headers: dict[str, str], template: str) -> ApiResponse:
        merged = dict(headers)
        merged.update(err.headers)
        return self._json(err.status, err.body(), merged, template)

    def _bucket(self, principal: Principal | None) -> RateBucket:
        key = principal.rate_key if principal and principal.rate_key else "anonymous"
        limit = self.emu.rate_limit if key != "anonymous" else 60
        with self.store.lock:
            bucket = self.store.buckets.get(key)
            if bucket is None:
                bucket = self.store.buckets[key] = RateBucket(limit=limit)
            bucket.roll(time.time())
            return bucket

    @staticmethod
    def _rate_headers(bucket: RateBucket, *, exhausted: bool = False) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(bucket.limit),
            "x-ratelimit-remaining": "0" if exhausted else str(bucket.remaining),
            "x-ratelimit-reset": str(int(bucket.reset)),
            "x-ratelimit-used": str(bucket.limit if exhausted else bucket.used),
            "x-ratelimit-resource": "core",
        }

    # ------------------------------------------------------------ auth helpers
    def _repo(self, principal: Principal, owner: str, name: str, *perms: tuple[str, str]) -> Repo:
        """The repository if the token may see it and holds ``perms``; GitHub's 404/403 otherwise."""
        token = principal.token
        with self.store.lock:
            repo = self.store.repo(f"{owner}/{name}")
        if repo is None or token is None or not self.emu.token_can_see(token, repo):
            raise not_found()
        for perm, level in perms:
            if not grants(token.permissions, perm, level):
                who = "integration" if token.kind == "installation" else "personal access token"
                raise ApiError(
                    403,
                    f"Resource not accessible by {who}",
                    headers={"X-Accepted-GitHub-Permissions": f"{perm}={level}"},
                )
        return repo

    @staticmethod
    def _actor(principal: Principal) -> Account:
        assert principal.token is not None
        return principal.token.actor

    # ------------------------------------------------------------- pagination
    def _page(self, req: ApiRequest, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
        per_page = _int(req.arg("per_page"), 30, hi=100)
        page = _int(req.arg("page"), 1)
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        links = []

        def link(p: int, rel: str) -> str:
            query = {k: v[-1] for k, v in req.query.items()}
            query["page"] = str(p)
            query.setdefault("per_page", str(per_page))
            return f'<{self.urls.api}{req.path}?{urlencode(query)}>; rel="{rel}"'

        if page > 1:
            links += [link(page - 1, "prev"), link(1, "first")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        return chunk, ({"Link": ", ".join(links)} if links else {})

    # ------------------------------------------------------------------- apps
    def create_access_token(self, req: ApiRequest, principal: Principal, installation_id: str):
        app = principal.app
        assert app is not None
        with self.store.lock:
            inst = self.store.installations.get(int(installation_id)) if installation_id.isdigit() else None
        if inst is None or inst.app.id != app.id:
            raise not_found()
        body = req.json() or {}
        if not isinstance(body, dict):
            raise ApiError(400, "Problems parsing JSON")
        restrict: set[str] | None = None
        names = body.get("repositories")
        ids = body.get("repository_ids")
        if names or ids:
            restrict = set()
            with self.store.lock:
                for name in names or []:
                    full = f"{inst.account.login}/{name}".lower() if "/" not in str(name) else str(name).lower()
                    if full not in inst.repos:
                        raise _not_accessible_repos()
                    restrict.add(full)
                for rid in ids or []:
                    repo = next((r for r in self.store.repos.values() if r.id == rid), None)
                    if repo is None or repo.full_name.lower() not in inst.repos:
                        raise _not_accessible_repos()
                    restrict.add(repo.full_name.lower())
        requested = body.get("permissions") or {}
        if not isinstance(requested, dict):
            raise ApiError(422, "Invalid request.", errors=[{"resource": "Installation", "field": "permissions", "code": "invalid"}])
        for perm, level in requested.items():
            if level not in LEVELS or not grants(inst.permissions, perm, level):
                raise ApiError(
                    422,
                    "The permissions requested are not granted to this installation.",
                    documentation_url="https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app",
                )
        permissions = dict(requested) if requested else dict(inst.permissions)
        token_value = self.emu.installation_token_value(inst.app)
        expires = time.time() + self.emu.token_ttl
        bot = self.emu.app_bot(inst.app)
        token = Token("installation", bot, permissions, restrict, expires, installation=inst)
        self.emu._store_token(token_value, token)
        data: dict[str, Any] = {
            "token": token_value,
            "expires_at": iso(datetime.fromtimestamp(expires, timezone.utc)),
            "permissions": permissions,
            "repository_selection": "selected",
        }
        if restrict is not None:
            with self.store.lock:
                data["repositories"] = [payloads.repository(self.urls, self.store.repos[n]) for n in sorted(restrict)]
        return 201, data, {}

    def get_repo_installation(self, req: ApiRequest, principal: Principal, owner: str, repo: str):
        app = principal.app
        assert app is not None
        full = f"{owner}/{repo}".lower()
        with self.store.lock:
            inst = next(
                (i for i in self.store.installations.values() if i.app.id == app.id and full in i.repos), None
            )
            if inst is None or self.store.repo(full) is None:
                raise not_found()
            return 200, payloads.installation(self.urls, inst), {}

    # ---------------------------------------------------------------- actions
    def _run(self, repo: Repo, run_id: str) -> WorkflowRun:
        with self.store.lock:
            run = self.store.runs.get(int(run_id)) if run_id.isdigit() else None
        if run is None or run.repo is not repo:
            raise not_found()
        return run

    def _run_pulls(self, run: WorkflowRun) -> list[dict[str, Any]]:
        result = []
        for pr in self.store.pulls.get(run.repo.full_name.lower(), {}).values():
            if pr.state == "open" and pr.head_ref == run.head_branch:
                result.append(payloads.pull_request_minimal(self.urls, pr, self._base_sha(pr)))
        return result

    def list_runs(self, req: ApiRequest, principal: Principal, owner: str, repo: str):
        r = self._repo(principal, owner, repo, ("actions", "read"))
        actor, branch, event = req.arg("actor"), req.arg("branch"), req.arg("event")
        status, head_sha, suite = req.arg("status"), req.arg("head_sha"), req.arg("check_suite_id")
        exclude_prs = (req.arg("exclude_pull_requests") or "").lower() == "true"
        with self.store.lock:
            runs = [run for run in self.store.runs.values() if run.repo is r]
            runs = [
                run for run in runs
                if (not actor or run.actor.login.lower() == actor.lower())
                and (not branch or run.head_branch == branch)
                and (not event or run.event == event)
                and (not head_sha or run.head_sha == head_sha)
                and (not suite or str(run.check_suite_id) == suite)
                and (not status or (run.status == status if status in RUN_STATUSES else run.conclusion == status))
            ]
            runs.sort(key=lambda run: run.id, reverse=True)
            page, headers = self._page(req, runs)
            data = {
                "total_count": len(runs),
                "workflow_runs": [
                    payloads.workflow_run(self.urls, run, [] if exclude_prs else self._run_pulls(run)) for run in page
                ],
            }
        return 200, data, headers

    def get_run(self, req: ApiRequest, principal: Principal, owner: str, repo: str, run_id: str):
        r = self._repo(principal, owner, repo, ("actions", "read"))
        run = self._run(r, run_id)
        exclude_prs = (req.arg("exclude_pull_requests") or "").lower() == "true"
        with self.store.lock:
            return 200, payloads.workflow_run(self.urls, run, [] if exclude_prs else self._run_pulls(run)), {}

    def list_jobs(self, req: ApiRequest, principal: Principal, owner: str, repo: str, run_id: str):
        r = self._repo(principal, owner, repo, ("actions", "read"))
        run = self._run(r, run_id)
        flt = req.arg("filter", "latest")
        if flt not in ("latest", "all"):
            raise ApiError(422, "Validation Failed", errors=[{"resource": "Job", "field": "filter", "code": "invalid"}])
        with self.store.lock:
            jobs = list(run.jobs) if flt == "all" else run.latest_jobs()
            page, headers = self._page(req, jobs)
            data = {"total_count": len(jobs), "jobs": [payloads.job(self.urls, j) for j in page]}
        return 200, data, headers

    def job_logs(self, req: ApiRequest, principal: Principal, owner: str, repo: str, job_id: str):
        r = self._repo(principal, owner, repo, ("actions", "read"))
        with self.store.lock:
            job = self.store.jobs.get(int(job_id)) if job_id.isdigit() else None
        if job is None or job.run.repo is not r:
            raise not_found()
        return 302, None, {"Location": self.emu.signed_blob_url("job-logs", job.id)}

    def run_logs(self, req: ApiRequest, principal: Principal, owner: str, repo: str, run_id: str):
        r = self._repo(principal, owner, repo, ("actions", "read"))
        run = self._run(r, run_id)
        return 302, None, {"Location": self.emu.signed_blob_url("run-logs", run.id)}

    def rerun_failed_jobs(self, req: ApiRequest, principal: Principal, owner: str, repo: str, run_id: str):
        r = self._repo(principal, owner, repo, ("actions", "write"))
        run = self._run(r, run_id)
        with self.store.lock:
            if run.status != "completed":
                raise ApiError(403, "This workflow is already running")
            if not any(j.conclusion in ("failure", "cancelled", "timed_out") for j in run.latest_jobs()):
                raise ApiError(403, "This workflow run has no failed jobs to re-run")
        self.emu.ci.rerun_failed_jobs(run)
        return 201, {}, {}

    def list_check_runs(self, req: ApiRequest, principal: Principal, owner: str, repo: str, ref: str):
        r = self._repo(principal, owner, repo, ("checks", "read"))
        sha = self.emu._resolve_ref(r, ref)
        if sha is None:
            raise ApiError(422, f"No commit found for SHA: {ref}", documentation_url="https://docs.github.com/rest/checks/runs#list-check-runs-for-a-git-reference")
        flt = req.arg("filter", "latest")
        name, status, app_id = req.arg("check_name"), req.arg("status"), req.arg("app_id")
        with self.store.lock:
            runs = [run for run in self.store.runs.values() if run.repo is r and run.head_sha == sha]
            jobs: list[Job] = []
            for run in runs:
                jobs += list(run.jobs) if flt == "all" else run.latest_jobs()
            if flt != "all":
                # latest: the most recent check run per name
                newest: dict[str, Job] = {}
                for j in sorted(jobs, key=lambda j: j.id):
                    newest[j.name] = j
                jobs = list(newest.values())
            jobs = [
                j for j in jobs
                if (not name or j.name == name) and (not status or j.status == status)
                and (not app_id or app_id == str(payloads.GITHUB_ACTIONS_APP_ID))
            ]
            jobs.sort(key=lambda j: j.id, reverse=True)
            page, headers = self._page(req, jobs)
            data = {
                "total_count": len(jobs),
                "check_runs": [payloads.check_run(self.urls, j, self._run_pulls(j.run)) for j in page],
            }
        return 200, data, headers

    # ------------------------------------------------------------------ repos
    def get_repo(self, req: ApiRequest, principal: Principal, owner: str, repo: str):
        r = self._repo(principal, owner, repo, ("metadata", "read"))
        token = principal.token
        assert token is not None
        push = grants(token.permissions, "contents", "write")
        perms = {
            "admin": token.kind == "personal" and token.permissions is None,
            "maintain": push and token.kind == "personal",
            "push": push,
            "triage": push,
            "pull": True,
        }
        with self.store.lock:
            open_prs = sum(1 for p in self.store.pulls.get(r.full_name.lower(), {}).values() if p.state == "open")
            return 200, payloads.full_repository(self.urls, r, perms, open_prs), {}

    def delete_ref(self, req: ApiRequest, principal: Principal, owner: str, repo: str, ref: str):
        r = self._repo(principal, owner, repo, ("contents", "write"))
        full_ref = ref if ref.startswith("refs/") else f"refs/{ref}"
        if full_ref == f"refs/heads/{r.default_branch}":
            raise ApiError(422, "Cannot delete the default branch", documentation_url="https://docs.github.com/rest/git/refs#delete-a-reference")
        with r.write_lock:
            if gitrepo.rev_parse(r.git_dir, full_ref) is None or not full_ref.startswith(("refs/heads/", "refs/tags/")):
                raise ApiError(422, "Reference does not exist", documentation_url="https://docs.github.com/rest/git/refs#delete-a-reference")
            gitrepo.delete_ref(r.git_dir, full_ref)
            self.emu._sync_refs(r, self._actor(principal))
        return 204, None, {}

    # ------------------------------------------------------------------ pulls
    def _base_sha(self, pr: PullRequest) -> str:
        if pr.state != "open":
            return pr.base_sha
        return pr.repo.refs.get(f"refs/heads/{pr.base_ref}", pr.base_sha)

    def _pull(self, repo: Repo, number: str) -> PullRequest:
        with self.store.lock:
            pr = self.store.pulls.get(repo.full_name.lower(), {}).get(int(number)) if number.isdigit() else None
        if pr is None:
            raise not_found()
        return pr

    def create_pull(self, req: ApiRequest, principal: Principal, owner: str, repo: str):
        r = self._repo(principal, owner, repo, ("pull_requests", "write"))
        body = req.json()
        if not isinstance(body, dict):
            raise ApiError(400, "Problems parsing JSON")
        missing = [f for f in ("head", "base") if not body.get(f)]
        if not body.get("title") and not body.get("issue"):
            missing.insert(0, "title")
        if missing:
            raise _validation([{"resource": "PullRequest", "code": "missing_field", "field": f} for f in missing], "create-a-pull-request")
        head, base = str(body["head"]), str(body["base"])
        if ":" in head:
            head_owner, head = head.split(":", 1)
            if head_owner.lower() != r.owner.login.lower():
                raise _validation([{"resource": "PullRequest", "field": "head", "code": "invalid"}], "create-a-pull-request")
        with r.write_lock:
            self.emu._sync_refs(r, self._actor(principal))
            head_sha = r.refs.get(f"refs/heads/{head}")
            base_sha = r.refs.get(f"refs/heads/{base}")
            errors = []
            if base_sha is None:
                errors.append({"resource": "PullRequest", "field": "base", "code": "invalid"})
            if head_sha is None:
                errors.append({"resource": "PullRequest", "field": "head", "code": "invalid"})
            if errors:
                raise _validation(errors, "create-a-pull-request")
            assert head_sha and base_sha
            if head == base or gitrepo.is_ancestor(r.git_dir, head_sha, base_sha):
                raise _validation(
                    [{"resource": "PullRequest", "code": "custom", "message": f"No commits between {base} and {head}"}],
                    "create-a-pull-request",
                )
            with self.store.lock:
                pulls = self.store.pulls.setdefault(r.full_name.lower(), {})
                if any(p.state == "open" and p.head_ref == head and p.base_ref == base for p in pulls.values()):
                    raise _validation(
                        [{"resource": "PullRequest", "code": "custom", "message": f"A pull request already exists for {r.owner.login}:{head}."}],
                        "create-a-pull-request",
                    )
                pr = PullRequest(
                    id=self.store.next_id(),
                    number=r.next_pr_number,
                    repo=r,
                    title=str(body.get("title") or head),
                    body=body.get("body"),
                    head_ref=head,
                    head_sha=head_sha,
                    base_ref=base,
                    base_sha=base_sha,
                    user=self._actor(principal),
                    draft=bool(body.get("draft", False)),
                    maintainer_can_modify=bool(body.get("maintainer_can_modify", False)),
                )
                r.next_pr_number += 1
                pulls[pr.number] = pr
        self.emu.ci.on_pull_request(pr, "opened", self._actor(principal))
        data = self._pull_json(pr)
        return 201, data, {"Location": data["url"]}

    def _git_facts(self, pr: PullRequest, base_sha: str) -> tuple[bool, int, int, int, int]:
        """(merges cleanly, commits, additions, deletions, changed files), cached by
        commit pair: polling a PR must not spawn git processes every time."""
        key = (pr.repo.full_name, pr.state, base_sha, pr.head_sha)
        with self.store.lock:
            cached = self._facts.get(key)
        if cached is not None:
            return cached
        git_dir = pr.repo.git_dir
        clean = gitrepo.merge_tree(git_dir, base_sha, pr.head_sha)[0] if pr.state == "open" else True
        mb = gitrepo.merge_base(git_dir, base_sha, pr.head_sha) or base_sha
        commits = len(gitrepo.rev_list(git_dir, f"{mb}..{pr.head_sha}"))
        adds, dels, files = gitrepo.diff_numstat(git_dir, mb, pr.head_sha)
        facts = (clean, commits, adds, dels, files)
        with self.store.lock:
            if len(self._facts) > 1024:
                self._facts.clear()
            self._facts[key] = facts
        return facts

    def _pull_json(self, pr: PullRequest) -> dict[str, Any]:
        base_sha = self._base_sha(pr)
        clean, commits, adds, dels, files = self._git_facts(pr, base_sha)
        if pr.state != "open":
            mergeable, state = None, "unknown"
        elif pr.mergeable_override is not ...:
            mergeable = pr.mergeable_override
            state = {True: "clean", False: "dirty", None: "unknown"}[mergeable]
        elif not clean:
            mergeable, state = False, "dirty"
        elif pr.draft:
            mergeable, state = True, "draft"
        else:
            with self.store.lock:
                failing = any(
                    j.conclusion == "failure"
                    for run in self.store.runs.values()
                    if run.repo is pr.repo and run.head_sha == pr.head_sha
                    for j in run.latest_jobs()
                )
            mergeable, state = True, "unstable" if failing else "clean"
        with self.store.lock:
            data = payloads.pull_request(
                self.urls, pr, base_sha, mergeable=mergeable, mergeable_state=state, stats=(commits, adds, dels, files)
            )
            data["comments"] = sum(1 for c in self.store.comments.get(pr.repo.full_name.lower(), []) if c.number == pr.number)
            return data

    def list_pulls(self, req: ApiRequest, principal: Principal, owner: str, repo: str):
        r = self._repo(principal, owner, repo, ("pull_requests", "read"))
        state = req.arg("state", "open")
        if state not in ("open", "closed", "all"):
            raise _validation([{"resource": "PullRequest", "field": "state", "code": "invalid"}], "list-pull-requests")
        head, base = req.arg("head"), req.arg("base")
        head_ref = None
        if head:
            head_owner, _, head_ref = head.partition(":") if ":" in head else (r.owner.login, "", head)
            if head_owner.lower() != r.owner.login.lower():
                head_ref = "\x00"  # another owner's fork: nothing matches
        sort, direction = req.arg("sort", "created"), req.arg("direction")
        with self.store.lock:
            pulls = [
                p for p in self.store.pulls.get(r.full_name.lower(), {}).values()
                if (state == "all" or p.state == state)
                and (head_ref is None or p.head_ref == head_ref)
                and (not base or p.base_ref == base)
            ]
            key = (lambda p: p.updated_at) if sort == "updated" else (lambda p: p.created_at)
            desc = (direction or ("desc" if sort in ("created", "updated") else "asc")) == "desc"
            pulls.sort(key=lambda p: (key(p), p.number), reverse=desc)
            page, headers = self._page(req, pulls)
            data = [payloads.pull_request_simple(self.urls, p, self._base_sha(p)) for p in page]
        return 200, data, headers

    def get_pull(self, req: ApiRequest, principal: Principal, owner: str, repo: str, pull_number: str):
        r = self._repo(principal, owner, repo, ("pull_requests", "read"))
        pr = self._pull(r, pull_number)
        return 200, self._pull_json(pr), {}

    def update_pull(self, req: ApiRequest, principal: Principal, owner: str, repo: str, pull_number: str):
        """Title, body, state (open/closed) and base; a draft stays a draft (GitHub changes
        that through GraphQL only)."""
        r = self._repo(principal, owner, repo, ("pull_requests", "write"))
        pr = self._pull(r, pull_number)
        body = req.json() or {}
        if not isinstance(body, dict):
            raise ApiError(400, "Problems parsing JSON")
        state = body.get("state")
        if state is not None and state not in ("open", "closed"):
            raise _validation([{"resource": "PullRequest", "field": "state", "code": "invalid"}], "update-a-pull-request")
        base = body.get("base")
        if base is not None and f"refs/heads/{base}" not in r.refs:
            raise _validation([{"resource": "PullRequest", "field": "base", "code": "invalid"}], "update-a-pull-request")
        reopened = False
        with self.store.lock:
            if pr.merged_at is not None and state == "open":
                raise _validation([{"resource": "PullRequest", "code": "custom",
                                    "message": "state cannot be changed. The pull request cannot be reopened."}],
                                  "update-a-pull-request")
            if "title" in body and body["title"] is not None:
                pr.title = str(body["title"])
            if "body" in body:
                pr.body = None if body["body"] is None else str(body["body"])
            if base is not None:
                pr.base_ref = str(base)
            if state == "closed" and pr.state == "open":
                pr.state, pr.closed_at = "closed", utcnow()
            elif state == "open" and pr.state == "closed":
                pr.state, pr.closed_at, reopened = "open", None, True
            pr.updated_at = utcnow()
        if reopened:
            self.emu.ci.on_pull_request(pr, "reopened", self._actor(principal))
        return 200, self._pull_json(pr), {}

    def create_comment(self, req: ApiRequest, principal: Principal, owner: str, repo: str, issue_number: str):
        """A comment on a pull request's conversation. The emulator has no plain issues, so
        the number must be a pull request's; commenting there needs pull_requests write (or
        issues write, which the emulator's tokens do not carry)."""
        r = self._repo(principal, owner, repo, ("pull_requests", "write"))
        pr = self._pull(r, issue_number)
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("body"), str) or not body["body"]:
            raise ApiError(422, "Validation Failed", errors=[{"resource": "IssueComment", "code": "missing_field", "field": "body"}],
                           documentation_url="https://docs.github.com/rest/issues/comments#create-an-issue-comment")
        with self.store.lock:
            comment = IssueComment(id=self.store.next_id(), repo=r, number=pr.number, body=body["body"],
                                   user=self._actor(principal))
            self.store.comments.setdefault(r.full_name.lower(), []).append(comment)
            pr.updated_at = utcnow()
            data = payloads.issue_comment(self.urls, comment, "OWNER" if comment.user.login == r.owner.login else "CONTRIBUTOR")
        return 201, data, {"Location": data["url"]}

    def merge_pull(self, req: ApiRequest, principal: Principal, owner: str, repo: str, pull_number: str):
        r = self._repo(principal, owner, repo, ("contents", "write"), ("pull_requests", "write"))
        pr = self._pull(r, pull_number)
        body = req.json() or {}
        if not isinstance(body, dict):
            raise ApiError(400, "Problems parsing JSON")
        method = body.get("merge_method") or "merge"
        if method not in ("merge", "squash", "rebase"):
            raise _validation([{"resource": "PullRequest", "field": "merge_method", "code": "invalid"}], "merge-a-pull-request")
        actor = self._actor(principal)
        with r.write_lock:
            self.emu._sync_refs(r, actor)
            with self.store.lock:
                if pr.state != "open":
                    raise _not_mergeable()
                if pr.draft:  # GitHub: a draft must be marked ready for review first
                    raise ApiError(405, "Pull Request is still a draft", documentation_url=f"{PULLS_DOCS}#merge-a-pull-request")
                head_sha, base_ref = pr.head_sha, pr.base_ref
                base_sha = r.refs.get(f"refs/heads/{base_ref}")
                override = pr.mergeable_override
            if body.get("sha") and body["sha"] != head_sha:
                raise ApiError(409, "Head branch was modified. Review and try the merge again.", documentation_url=f"{PULLS_DOCS}#merge-a-pull-request")
            if override is False or base_sha is None:
                raise _not_mergeable()
            new_sha = self._merge_commit(pr, method, base_sha, head_sha, body, actor)
            if not gitrepo.update_ref(r.git_dir, f"refs/heads/{base_ref}", new_sha, base_sha):
                raise ApiError(409, "Base branch was modified. Review and try the merge again.", documentation_url=f"{PULLS_DOCS}#merge-a-pull-request")
            with self.store.lock:
                now = utcnow()
                pr.state, pr.merged_at, pr.closed_at, pr.updated_at = "closed", now, now, now
                pr.merge_commit_sha, pr.merged_by, pr.base_sha = new_sha, actor, base_sha
            self.emu._sync_refs(r, actor)
        return 200, {"sha": new_sha, "merged": True, "message": "Pull Request successfully merged"}, {}

    def _merge_commit(self, pr: PullRequest, method: str, base_sha: str, head_sha: str, body: dict, actor: Account) -> str:
        git_dir = pr.repo.git_dir
        author = gitrepo.Signature(actor.login, f"{actor.id}+{actor.login}@users.noreply.github.com")
        committer = gitrepo.Signature(*gitrepo.GITHUB_COMMITTER)
        if method == "rebase":
            current = base_sha
            for sha in gitrepo.rev_list(git_dir, f"{base_sha}..{head_sha}", reverse=True, no_merges=True):
                info = gitrepo.commit_info(git_dir, sha)
                parent = info.parents[0] if info.parents else None
                clean, tree = gitrepo.cherry_pick_tree(git_dir, current, sha, parent)
                if not clean or tree is None:
                    raise _not_mergeable()
                current = gitrepo.commit_tree(
                    git_dir, tree, [current], info.message + "\n",
                    author=gitrepo.Signature(info.author_name, info.author_email, info.author_date),
                    committer=committer,
                )
            return current
        clean, tree = gitrepo.merge_tree(git_dir, base_sha, head_sha)
        if not clean or tree is None:
            raise _not_mergeable()
        if method == "squash":
            commits = gitrepo.rev_list(git_dir, f"{base_sha}..{head_sha}", reverse=True)
            title = body.get("commit_title") or f"{pr.title} (#{pr.number})"
            if body.get("commit_message") is not None:
                message = str(body["commit_message"])
            else:
                message = "\n\n".join("* " + gitrepo.commit_info(git_dir, c).message for c in commits)
            return gitrepo.commit_tree(git_dir, tree, [base_sha], f"{title}\n\n{message}".rstrip() + "\n", author=author, committer=committer)
        title = body.get("commit_title") or f"Merge pull request #{pr.number} from {pr.repo.owner.login}/{pr.head_ref}"
        message = body.get("commit_message") if body.get("commit_message") is not None else pr.title
        return gitrepo.commit_tree(git_dir, tree, [base_sha, head_sha], f"{title}\n\n{message}".rstrip() + "\n", author=author, committer=committer)

    # ------------------------------------------------------------- rate limit
    def rate_limit(self, req: ApiRequest, principal: Principal):
        bucket = self._bucket(principal)
        core = {"limit": bucket.limit, "remaining": bucket.remaining, "reset": int(bucket.reset), "used": bucket.used}
        reset = int(time.time()) + 60
        other = lambda limit: {"limit": limit, "remaining": limit, "reset": reset, "used": 0}  # noqa: E731
        return 200, {
            "resources": {
                "core": core,
                "search": other(30),
                "graphql": other(5000),
                "integration_manifest": other(5000),
                "code_search": other(10),
                "actions_runner_registration": other(10000),
                "scim": other(15000),
            },
            "rate": core,
        }, {}

    # ------------------------------------------------------------------ blobs
    def run_logs_zip(self, run: WorkflowRun) -> bytes:
        buf = io.BytesIO()
        with self.store.lock:
            files = list(iter_run_logs(run, run.latest_jobs()))
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, content in files:
                zf.writestr(name, content)
        return buf.getvalue()


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    strip = lambda v: v.strip().removeprefix("W/").strip('"')  # noqa: E731
    return any(strip(candidate) == strip(etag) for candidate in header.split(","))


def _validation(errors: list[dict], anchor: str) -> ApiError:
    return ApiError(422, "Validation Failed", errors=errors, documentation_url=f"{PULLS_DOCS}#{anchor}")


def _not_mergeable() -> ApiError:
    return ApiError(405, "Pull Request is not mergeable", documentation_url=f"{PULLS_DOCS}#merge-a-pull-request")


def _not_accessible_repos() -> ApiError:
    return ApiError(
        422,
        "There is at least one repository that does not exist or is not accessible to the parent installation.",
        documentation_url="https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app",
    )

