"""The attempt's checkout: fetch the right starting point, read the agent's changes, commit, push.

Every attempt gets a fresh shallow checkout: attempt 1 starts from the base branch, later
attempts from the task branch's head on the remote (or the base if nothing was pushed yet).
The agent may run ``git`` itself (commit, switch branches, edit ``.git/config``), so ampx never
trusts the repository state it leaves: changes are measured against the start commit, the
attempt becomes one commit built with plumbing (no hooks run), ``.git/config`` is restored
before git runs again, and the token only reaches git processes that talk to the remote.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from ampx.gitops.auth import GitAuth
from ampx.gitops.git import DEFAULT_TIMEOUT_S, GitError, run_git
from ampx.gitops.message import add_trailers, attempt_message
from ampx.gitops.ownership import BranchNotOwned, ProtectedBranch, ownership_problem, protected_problem
from ampx.gitops.tamper import tamper_check
from ampx.redact import redact

NETWORK_TIMEOUT_S = 600.0


class Change(NamedTuple):
    """One changed path: status ``A`` (added, incl. untracked), ``M`` (modified) or ``D``."""

    status: str
    path: str


@dataclass(frozen=True)
class Checkout:
    """Where an attempt starts. ``lease_sha`` is the task branch's remote head when we looked
    (None: it did not exist); push with it so a branch that moved meanwhile is not overwritten."""

    branch: str
    base_branch: str
    source_branch: str
    start_sha: str
    lease_sha: str | None


class RemoteHeads(NamedTuple):
    default_branch: str | None
    heads: dict[str, str]  # branch name -> sha


class WipResult(NamedTuple):
    sha: str | None        # the WIP commit, None when nothing had changed
    pushed: bool
    dropped: list[str]     # tampering paths left out of the WIP commit


class PushError(GitError):
    """A push failed. ``kind`` is ``rejected`` (retrying as is cannot help) or ``transport``."""

    kind = "push"

    def __init__(self, reason: str, detail: str, returncode: int = 1):
        self.reason = reason
        super().__init__(["push"], returncode, detail)


class BaseBranchMissing(GitError):
    """The base branch to start from does not exist (a configuration error, not a retry)."""


class PushRejected(PushError):
    """The remote refused: ``stale`` (lease: the branch moved), ``non-fast-forward``,
    ``permission``, ``auth``, ``not-found`` or ``remote-rejected`` (e.g. a hook)."""

    kind = "rejected"


class PushTransportError(PushError):
    """The remote could not be reached or the connection broke (``transport``, ``timeout``)."""

    kind = "transport"


_AUTH_MARKERS = ("authentication failed", "returned error: 401", "could not read username",
                 "could not read password", "invalid username or password")
_PERMISSION_MARKERS = ("returned error: 403", "permission denied", "permission to",
                       "not authorized", "forbidden", "protected branch", "refusing to allow")
_NOT_FOUND_MARKERS = ("repository not found", "returned error: 404", "does not appear to be a git")


def classify_push_failure(stdout: str, stderr: str, returncode: int) -> PushError:
    """Turn ``git push --porcelain`` output into :class:`PushRejected` / :class:`PushTransportError`."""
    detail = redact("\n".join(x for x in (stderr.strip(), stdout.strip()) if x)) or ""
    for line in stdout.splitlines():
        fields = line.split("\t")
        if len(fields) >= 3 and fields[0] == "!":
            summary = fields[2].lower()
            if "stale info" in summary or "already exists" in summary:
                return PushRejected("stale", detail, returncode)
            if "fetch first" in summary or "non-fast-forward" in summary:
                return PushRejected("non-fast-forward", detail, returncode)
            if any(m in summary for m in _PERMISSION_MARKERS) or "denied" in summary:
                return PushRejected("permission", detail, returncode)
            return PushRejected("remote-rejected", detail, returncode)
    text = detail.lower()
    if any(m in text for m in _AUTH_MARKERS):
        return PushRejected("auth", detail, returncode)
    if any(m in text for m in _PERMISSION_MARKERS):
        return PushRejected("permission", detail, returncode)
    if any(m in text for m in _NOT_FOUND_MARKERS):
        return PushRejected("not-found", detail, returncode)
    return PushTransportError("transport", detail, returncode)


class Workspace:
    """A git checkout of the task's repository with ``origin`` pointing at the remote."""

    def __init__(self, path: str | os.PathLike[str], *, auth: GitAuth | None = None,
                 depth: int | None = 1, timeout_s: float = DEFAULT_TIMEOUT_S,
                 network_timeout_s: float = NETWORK_TIMEOUT_S,
                 log: Callable[[str], None] | None = None):
        self.path = Path(path)
        self.auth = auth
        self.depth = depth
        self.timeout_s = timeout_s
        self.network_timeout_s = network_timeout_s
        self._log_sink = log
        self.checkout: Checkout | None = None
        self._config_snapshot: bytes | None = None

    # -- plumbing --------------------------------------------------------------------------

    def log(self, line: str) -> None:
        if self._log_sink is not None:
            self._log_sink(redact(f"[git] {line}"))

    def git(self, *args: str, input: str | None = None, check: bool = True,
            env: Mapping[str, str] | None = None, timeout: float | None = None):
        """A local git command (never receives the token)."""
        return run_git(args, self.path, env=env, input=input, check=check,
                       timeout=timeout or self.timeout_s)

    def _net(self, *args: str, check: bool = True, timeout: float | None = None):
        """A git command that talks to the remote: the only kind that gets the token."""
        self._restore_config()
        env = self.auth.env() if self.auth else None
        return run_git(args, self.path, env=env, check=check,
                       timeout=timeout or self.network_timeout_s)

    def _snapshot_config(self) -> None:
        self._config_snapshot = (self.path / ".git" / "config").read_bytes()

    def _restore_config(self) -> None:
        """Undo edits to ``.git/config`` (a remote URL, a credential helper, a filter…)."""
        if self._config_snapshot is None:
            return
        config = self.path / ".git" / "config"
        try:
            current = config.read_bytes()
        except OSError:
            current = None
        if current != self._config_snapshot:
            config.write_bytes(self._config_snapshot)
            self.log(".git/config was changed during the attempt; restored")

    def rev_parse(self, rev: str) -> str:
        return self.git("rev-parse", "--verify", "--quiet", rev).stdout.strip()

    # -- clone and start -------------------------------------------------------------------

    @classmethod
    def clone(cls, url: str, dest: str | os.PathLike[str], *, auth: GitAuth | None = None,
              depth: int | None = 1, timeout_s: float = DEFAULT_TIMEOUT_S,
              network_timeout_s: float = NETWORK_TIMEOUT_S,
              log: Callable[[str], None] | None = None) -> "Workspace":
        """An empty repository at ``dest`` whose ``origin`` is ``url`` (no credentials in it);
        :meth:`prepare` then fetches only what the attempt needs (``depth`` commits deep)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https", "file"):
            raise ValueError(f"unsupported remote {url!r}: use an http(s):// or file:// URL")
        if parts.username or parts.password:
            raise ValueError("the remote URL must not contain credentials (the token goes "
                             "through GitAuth)")
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        run_git(["init", "-q", str(dest)], None, timeout=timeout_s)
        ws = cls(dest, auth=auth, depth=depth, timeout_s=timeout_s,
                 network_timeout_s=network_timeout_s, log=log)
        ws.git("remote", "add", "origin", url)
        ws._snapshot_config()
        return ws

    def remote_heads(self, *branches: str) -> RemoteHeads:
        """The remote's default branch and the heads of the named branches that exist."""
        patterns = [f"refs/heads/{b}" for b in branches if b]
        out = self._net("ls-remote", "--symref", "origin", "HEAD", *patterns).stdout
        default, heads = None, {}
        for line in out.splitlines():
            left, _, ref = line.partition("\t")
            if left.startswith("ref: ") and ref == "HEAD":
                target = left[len("ref: "):]
                if target.startswith("refs/heads/"):
                    default = target[len("refs/heads/"):]
            elif ref.startswith("refs/heads/"):
                heads[ref[len("refs/heads/"):]] = left
        if default and default not in heads:
            sha = next((ln.split("\t")[0] for ln in out.splitlines() if ln.endswith("\tHEAD")
                        and not ln.startswith("ref: ")), None)
            if sha:
                heads[default] = sha
        return RemoteHeads(default, heads)

    def default_branch(self) -> str:
        default = self.remote_heads().default_branch
        if not default:
            raise GitError(["ls-remote"], 1, "the remote has no default branch (empty repository?)")
        return default

    def prepare(self, branch: str, attempt: int, base_branch: str | None = None, *,
                task_id: str | None = None, pushed_before: bool = False) -> Checkout:
        """Check out ``branch`` for an attempt: attempt 1 from the base branch, later ones from
        the branch's remote head (from the base if it was never pushed). A leftover working
        tree is reset and cleaned, so a reused workspace starts clean too.

        Raises :class:`ProtectedBranch` for the remote's default or the base branch, and, when
        ``task_id`` is given and the task has not pushed before, :class:`BranchNotOwned` if the
        branch exists with a tip that is not that task's (see :mod:`ampx.gitops.ownership`)."""
        if attempt < 1:
            raise ValueError("attempts are numbered from 1")
        remote = self.remote_heads(branch, *( [base_branch] if base_branch else []))
        base = base_branch or remote.default_branch
        if why := protected_problem(branch, base, remote.default_branch):
            raise ProtectedBranch(why)
        if not base:
            raise BaseBranchMissing(["ls-remote"], 1, "cannot tell the remote's default branch; give a base branch")
        if base not in remote.heads:
            raise BaseBranchMissing(["ls-remote"], 1, f"base branch {base!r} does not exist on the remote")
        lease = remote.heads.get(branch)
        if lease and task_id and not pushed_before:
            self._check_owner(branch, lease, task_id)
        source = branch if attempt > 1 and lease else base
        tracking = f"refs/remotes/origin/{source}"
        depth = [f"--depth={self.depth}"] if self.depth else []
        self._net("fetch", "-q", "--no-tags", *depth, "origin", f"+refs/heads/{source}:{tracking}")
        self.git("checkout", "-q", "--force", "--no-track", "-B", branch, tracking)
        self.git("clean", "-q", "-ffdx")
        start = self.rev_parse("HEAD")
        self._snapshot_config()
        self.checkout = Checkout(branch=branch, base_branch=base, source_branch=source,
                                 start_sha=start, lease_sha=lease)
        if attempt == 1 and lease:
            self.log(f"branch {branch} already exists at {lease[:12]}; attempt 1 starts over "
                     f"from {base} and will replace it")
        self.log(f"attempt {attempt}: {branch} starts from {source} at {start[:12]}")
        return self.checkout

    def _check_owner(self, branch: str, tip: str, task_id: str) -> None:
        """Fetch the existing branch's tip (one commit) and refuse it unless it is this task's."""
        self._net("fetch", "-q", "--no-tags", "--depth=1", "origin",
                  f"+refs/heads/{branch}:refs/remotes/origin/{branch}")
        message = self.git("log", "-1", "--format=%B", tip).stdout
        if why := ownership_problem(branch, tip, message, task_id):
            self.log(why)
            raise BranchNotOwned(why)

    def _require_checkout(self) -> Checkout:
        if self.checkout is None:
            raise RuntimeError("call prepare() before reading or committing changes")
        return self.checkout

    # -- the agent's changes ---------------------------------------------------------------

    def _stage_all(self) -> None:
        self._restore_config()
        self.git("add", "-A", "--", ".")

    def changes(self) -> list[Change]:
        """Everything that differs from the start commit: edits, untracked files, deletions,
        and whatever the agent committed itself. Renames count as a delete plus an add."""
        start = self._require_checkout().start_sha
        self._stage_all()
        out = self.git("diff", "--cached", "--name-status", "--no-renames", "-z", start).stdout
        fields = out.split("\0")
        result = []
        for i in range(0, len(fields) - 1, 2):
            status, path = fields[i], fields[i + 1]
            result.append(Change({"T": "M"}.get(status[:1], status[:1]), path))
        return result

    def revert_paths(self, paths: list[str]) -> None:
        """Put ``paths`` back as they were at the start commit (added ones are removed)."""
        start = self._require_checkout().start_sha
        for path in paths:
            in_start = self.git("ls-tree", "--name-only", start, "--", path).stdout.strip()
            if in_start:
                self.git("checkout", "-q", start, "--", path)
            else:
                self.git("rm", "-q", "--cached", "--ignore-unmatch", "--", path)
                (self.path / path).unlink(missing_ok=True)

    def commit(self, identity_name: str, identity_email: str, message: str,
               trailers: Mapping[str, str] | None = None) -> str | None:
        """Make the attempt's single commit on top of the start commit and point the task
        branch (and HEAD) at it; None when nothing changed. Built with plumbing: repository
        hooks and signing configuration do not run."""
        checkout = self._require_checkout()
        self._stage_all()
        tree = self.git("write-tree").stdout.strip()
        if tree == self.rev_parse(f"{checkout.start_sha}^{{tree}}"):
            self.log("no changes to commit")
            return None
        identity = {"GIT_AUTHOR_NAME": identity_name, "GIT_AUTHOR_EMAIL": identity_email,
                    "GIT_COMMITTER_NAME": identity_name, "GIT_COMMITTER_EMAIL": identity_email}
        sha = self.git("commit-tree", "--no-gpg-sign", tree, "-p", checkout.start_sha, "-F", "-",
                       input=add_trailers(message, trailers), env=identity).stdout.strip()
        ref = f"refs/heads/{checkout.branch}"
        self.git("update-ref", ref, sha)
        self.git("symbolic-ref", "HEAD", ref)
        self.log(f"committed {sha[:12]} on {checkout.branch}")
        return sha

    # -- push ------------------------------------------------------------------------------

    def push(self, branch: str, expected_old_sha: str | None, *, timeout: float | None = None) -> str:
        """Push HEAD to ``branch`` only if the remote branch is still at ``expected_old_sha``
        (None: only if it does not exist). Returns the pushed sha; raises
        :class:`PushRejected` or :class:`PushTransportError`."""
        sha = self.rev_parse("HEAD")
        ref = f"refs/heads/{branch}"
        lease = f"--force-with-lease={ref}:{expected_old_sha or ''}"
        try:
            proc = self._net("push", "--porcelain", "--no-verify", "origin", lease, f"{sha}:{ref}",
                             check=False, timeout=timeout)
        except GitError as exc:  # timed out
            raise PushTransportError("timeout", exc.stderr, exc.returncode) from None
        if proc.returncode != 0:
            error = classify_push_failure(proc.stdout, proc.stderr, proc.returncode)
            self.log(f"push to {branch} failed ({error.kind}: {error.reason})")
            raise error
        self.log(f"pushed {sha[:12]} to {branch}")
        return sha

    def commit_wip(self, identity_name: str, identity_email: str, title: str, attempt: int,
                   task_id: str, *, expected_old_sha: str | None | object = ...,
                   drop_tampered: bool = True, timeout: float = 20.0) -> WipResult:
        """Save an interrupted attempt: commit whatever changed as
        ``ampx: WIP <title> (attempt N, interrupted)`` and push it to the task branch. Workflow
        edits and deleted tests are left out unless ``drop_tampered`` is False."""
        checkout = self._require_checkout()
        dropped: list[str] = []
        if drop_tampered:
            dropped = tamper_check(self.changes())
            if dropped:
                self.revert_paths(dropped)
                self.log(f"WIP commit leaves out: {', '.join(dropped)}")
        message = attempt_message(title, attempt, task_id, interrupted=True)
        sha = self.commit(identity_name, identity_email, message)
        if sha is None:
            return WipResult(None, False, dropped)
        lease = checkout.lease_sha if expected_old_sha is ... else expected_old_sha
        self.push(checkout.branch, lease, timeout=timeout)  # type: ignore[arg-type]
        return WipResult(sha, True, dropped)
