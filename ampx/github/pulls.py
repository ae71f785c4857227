"""Pull requests: open (or adopt the open one), merge, delete the branch; the default branch.

Everything is idempotent, as the decision core's actions must be: opening when a PR for the
branch is already open adopts it; merging an already merged PR reports it merged.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence
from urllib.parse import quote

from ampx.core.models import MergeMethod
from ampx.core.repo import RepoRef
from ampx.redact import redact

from .client import PyGithubFactory, RestClient, pygithub_message
from .errors import GitHubError, GitHubNotFound

log = logging.getLogger(__name__)

THREAD_URL = "https://ampcode.com/threads/{id}"
#: While GitHub computes ``mergeable`` (null), look again this many times...
MERGEABLE_TRIES = 5
#: ...this many seconds apart.
MERGEABLE_WAIT = 1.0
PR_BODY_MAX = 60000  # GitHub's limit is 65536 characters


@dataclass(frozen=True)
class MergeResult:
    merged: bool
    sha: Optional[str] = None
    reason: Optional[str] = None
    branch_deleted: bool = False


@dataclass(frozen=True)
class OpenedPull:
    """A pull request of the task branch as GitHub describes it."""

    url: str
    number: int
    adopted: bool = False
    draft: bool = False
    head_sha: Optional[str] = None


@dataclass(frozen=True)
class AttemptRow:
    """One line of the PR body's attempts table."""

    number: int
    commit: Optional[str]
    ci: Optional[str]  # CI conclusion: success, failure, ...
    ci_url: Optional[str] = None  # that attempt's workflow run


def render_pr_body(
    prompt: str,
    attempts: Sequence[AttemptRow | tuple[int, Optional[str], Optional[str]]] = (),
    ci_run_url: Optional[str] = None,
    thread_id: Optional[str] = None,
    *,
    task_id: Optional[str] = None,
) -> str:
    """The PR description: the task's prompt, the attempts, the CI run and the Amp thread."""
    rows = [a if isinstance(a, AttemptRow) else AttemptRow(*a) for a in attempts]
    quoted = "\n".join("> " + line if line else ">" for line in prompt.strip().splitlines())
    parts = ["Opened by ampx" + (f" for task `{task_id}`" if task_id else "") + ".", "", "**Task**", "", quoted]
    parts += attempts_table(rows)
    links = []
    if ci_run_url:
        links.append(f"CI run: {ci_run_url}")
    if thread_id:
        links.append(f"Amp thread: {THREAD_URL.format(id=thread_id)}")
    if links:
        parts += [""] + [f"- {l}" for l in links]
    body = "\n".join(parts)
    body = redact(body) or ""
    return body if len(body) <= PR_BODY_MAX else body[: PR_BODY_MAX - 20] + "\n\n(truncated)"


def attempts_table(rows: Sequence[AttemptRow]) -> list[str]:
    """The markdown lines of the attempts table (none without attempts)."""
    if not rows:
        return []
    lines = ["", "**Attempts**", "", "| # | Commit | CI |", "|---|--------|----|"]
    for r in rows:
        commit = f"`{r.commit[:12]}`" if r.commit else "—"
        ci = f"[{r.ci or 'run'}]({r.ci_url})" if r.ci_url else (r.ci or "—")
        lines.append(f"| {r.number} | {commit} | {ci} |")
    return lines


def render_review_comment(summary: str, attempts: Sequence[AttemptRow],
                          thread_id: Optional[str] = None) -> str:
    """The comment left on a draft PR when the task stops at needs_review."""
    parts = ["ampx stopped and leaves this draft for review: " + (summary or "needs review") + "."]
    parts += attempts_table(list(attempts))
    if thread_id:
        parts += ["", f"Amp thread: {THREAD_URL.format(id=thread_id)}"]
    parts += ["", "`ampx continue <task> -m \"…\"` resumes it on this pull request."]
    body = redact("\n".join(parts)) or ""
    return body if len(body) <= PR_BODY_MAX else body[: PR_BODY_MAX - 20] + "\n\n(truncated)"


class Pulls:
    """PR operations for the repositories a token provider can reach."""

    def __init__(
        self,
        factory: PyGithubFactory,
        rest: RestClient,
        *,
        sleep: Callable[[float], None] = time.sleep,
        mergeable_tries: int = MERGEABLE_TRIES,
        mergeable_wait: float = MERGEABLE_WAIT,
    ) -> None:
        self.factory = factory
        self.rest = rest
        self.sleep = sleep
        self.mergeable_tries = mergeable_tries
        self.mergeable_wait = mergeable_wait

    @staticmethod
    def _repo(gh: Any, repo: RepoRef) -> Any:
        return gh.get_repo(repo.full_name)  # lazy: the Github instance is lazy

    def default_branch(self, repo: RepoRef) -> str:
        try:
            resp = self.rest.get_json(repo, f"/repos/{quote(repo.owner)}/{quote(repo.name)}", conditional=True)
        except GitHubNotFound:
            raise GitHubNotFound(
                f"repository {repo.full_name} not found (or the credentials cannot see it)", status=404
            ) from None
        branch = (resp.data or {}).get("default_branch") if isinstance(resp.data, dict) else None
        if not branch:
            raise GitHubError(f"GitHub did not say which branch is the default of {repo.full_name}")
        return str(branch)

    def find_open_pr(self, repo: RepoRef, head_branch: str, base_branch: Optional[str] = None) -> Optional[Any]:
        head = f"{repo.owner}:{head_branch}"

        def find(gh: Any) -> Optional[Any]:
            kwargs = {"state": "open", "head": head}
            if base_branch:
                kwargs["base"] = base_branch
            for pr in self._repo(gh, repo).get_pulls(**kwargs):
                if _heads_our_branch(pr, repo, head_branch):
                    return pr
            return None

        return self.factory.call(repo, f"GET /repos/{repo.full_name}/pulls", find)

    def open_or_adopt_pr(
        self,
        repo: RepoRef,
        head_branch: str,
        base_branch: Optional[str],
        title: str,
        body: str,
    ) -> tuple[str, int, bool]:
        """(url, number, adopted): the open PR for ``head_branch`` if there is one, else a new
        one into ``base_branch`` (None: the repository's default branch)."""
        pr = self.open_or_adopt(repo, head_branch, base_branch, title, body)
        return pr.url, pr.number, pr.adopted

    def open_or_adopt(
        self,
        repo: RepoRef,
        head_branch: str,
        base_branch: Optional[str],
        title: str,
        body: str,
        draft: bool = False,
    ) -> OpenedPull:
        """The open PR for ``head_branch`` if there is one (draft or not), else a new one into
        ``base_branch`` (None: the repository's default branch), a draft when ``draft``."""
        existing = self.find_open_pr(repo, head_branch)
        if existing is not None:
            log.info("adopting PR #%s for %s:%s", existing.number, repo.full_name, head_branch)
            return _opened(existing, adopted=True)
        base = base_branch or self.default_branch(repo)
        from github import GithubException

        def create(gh: Any) -> Any:
            try:
                return self._repo(gh, repo).create_pull(
                    base=base, head=head_branch, title=title[:256], body=redact(body) or "",
                    draft=draft,
                )
            except GithubException as exc:
                if exc.status == 422 and "already exists" in pygithub_message(exc).lower():
                    return None  # lost a race with another creator: adopt theirs
                raise

        pr = self.factory.call(repo, f"POST /repos/{repo.full_name}/pulls", create)
        if pr is None:
            existing = self.find_open_pr(repo, head_branch)
            if existing is None:
                raise GitHubError(
                    f"GitHub says a pull request for {head_branch} already exists in "
                    f"{repo.full_name}, but none is open"
                )
            return _opened(existing, adopted=True)
        log.info("opened %sPR #%s for %s:%s", "draft " if draft else "", pr.number,
                 repo.full_name, head_branch)
        return _opened(pr, adopted=False)

    def pull_for_branch(self, repo: RepoRef, head_branch: str) -> Optional[OpenedPull]:
        """The open pull request whose head is ``head_branch`` of the repository, as GitHub
        has it now (the merge check trusts this, not the task's status)."""
        pr = self.find_open_pr(repo, head_branch)
        return _opened(pr, adopted=True) if pr is not None else None

    def mark_ready(self, repo: RepoRef, number: int, body: Optional[str] = None) -> bool:
        """Update a draft's body (every attempt, as in push mode) and mark it ready for review
        (GraphQL ``markPullRequestReadyForReview``, as PyGithub does it). False when it already
        was ready."""

        def ready(gh: Any) -> bool:
            pr = self._repo(gh, repo).get_pull(number)
            if body is not None:
                pr.edit(body=redact(body) or "")
            if not pr.draft:
                return False
            pr.mark_ready_for_review()
            return True

        done = self.factory.call(repo, f"POST graphql markPullRequestReadyForReview #{number}", ready)
        log.info("PR #%s of %s %s", number, repo.full_name,
                 "marked ready for review" if done else "was already ready for review")
        return done

    def comment(self, repo: RepoRef, number: int, body: str) -> None:
        """Add a comment to pull request ``number`` (its issue's comments, as GitHub keeps them)."""
        path = f"/repos/{quote(repo.owner)}/{quote(repo.name)}/issues/{number}/comments"
        self.rest.request("POST", repo, path, json={"body": redact(body) or ""}, ok=(201,))

    def merge_pr(
        self,
        repo: RepoRef,
        number: int,
        method: MergeMethod | str = MergeMethod.SQUASH,
        sha: Optional[str] = None,
        delete_branch: bool = False,
        branch: Optional[str] = None,
    ) -> MergeResult:
        """Merge PR ``number``. GitHub refusing (405 not mergeable, 409 head moved, 422) gives
        ``merged=False`` with GitHub's message; nothing else is changed then."""
        method_s = method.value if isinstance(method, MergeMethod) else str(MergeMethod(method).value)
        what = f"PR #{number} of {repo.full_name}"

        def get(gh: Any) -> Any:
            return self._repo(gh, repo).get_pull(number)

        pr = self.factory.call(repo, f"GET /repos/{repo.full_name}/pulls/{number}", get)
        for _ in range(max(0, self.mergeable_tries - 1)):
            if pr.merged or pr.state != "open" or pr.mergeable is not None:
                break
            self.sleep(self.mergeable_wait)
            pr = self.factory.call(repo, f"GET /repos/{repo.full_name}/pulls/{number}", get)
        head_ref = branch or pr.head.ref
        if pr.merged:
            deleted = self._delete_branch(repo, head_ref) if delete_branch else False
            return MergeResult(True, pr.merge_commit_sha, f"{what} was already merged", deleted)
        if pr.state != "open":
            return MergeResult(False, None, f"{what} is closed; reopen it to merge")
        mergeable, mergeable_state = pr.mergeable, pr.mergeable_state

        path = f"/repos/{quote(repo.owner)}/{quote(repo.name)}/pulls/{number}/merge"
        payload: dict[str, Any] = {"merge_method": method_s}
        if sha:
            payload["sha"] = sha
        resp = self.rest.request("PUT", repo, path, json=payload, ok=(200,), allow=(405, 409, 422))
        data = resp.data if isinstance(resp.data, dict) else {}
        if resp.status != 200:
            msg = _message(data) or "refused"
            why = {405: "not mergeable", 409: "head changed", 422: "invalid request"}[resp.status]
            extra = ""
            if resp.status == 405 and mergeable is False:
                extra = f" (mergeable: false, state: {mergeable_state})"
            elif resp.status == 409 and sha:
                extra = f" (expected head {sha[:12]})"
            reason = f"GitHub refused to merge {what} ({resp.status} {why}): {msg}{extra}"
            log.info("%s", reason)
            return MergeResult(False, None, reason)
        if not data.get("merged"):
            return MergeResult(False, None, f"GitHub did not merge {what}: {_message(data)}")
        merged_sha = data.get("sha")
        deleted = self._delete_branch(repo, head_ref) if delete_branch and head_ref else False
        log.info("merged %s (%s) as %s", what, method_s, merged_sha)
        return MergeResult(True, merged_sha, None, deleted)

    def _delete_branch(self, repo: RepoRef, branch: str) -> bool:
        """Delete ``refs/heads/<branch>``; a branch already gone is fine. Failures here never
        undo a merge: they are logged and reported as not deleted."""
        path = f"/repos/{quote(repo.owner)}/{quote(repo.name)}/git/refs/heads/{quote(branch, safe='/')}"
        try:
            resp = self.rest.request("DELETE", repo, path, ok=(204,), allow=(404, 422))
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            log.warning("could not delete branch %s of %s: %s", branch, repo.full_name, exc)
            return False
        return resp.status == 204


def _opened(pr: Any, adopted: bool) -> OpenedPull:
    return OpenedPull(pr.html_url, pr.number, adopted, bool(getattr(pr, "draft", False)),
                      getattr(getattr(pr, "head", None), "sha", None))


def _heads_our_branch(pr: Any, repo: RepoRef, head_branch: str) -> bool:
    """Adopt only a PR whose head is the task's own branch in this repository (not a fork's
    branch of the same name, nor one whose fork is gone: its head repo is null)."""
    head_repo = pr.head.repo
    same_repo = head_repo is not None and str(head_repo.full_name).lower() == repo.full_name.lower()
    return pr.head.ref == head_branch and same_repo


def _message(data: dict[str, Any]) -> str:
    msg = str(data.get("message") or "")
    errors = data.get("errors")
    if isinstance(errors, list):
        details = [str(e.get("message") or e.get("code") or "") if isinstance(e, dict) else str(e) for e in errors]
        details = [d for d in details if d]
        if details:
            msg = f"{msg} ({'; '.join(details)})"
    return redact(msg) or ""
