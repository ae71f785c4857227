"""In-memory model of the emulated GitHub: accounts, repositories, apps, tokens,
pull requests and Actions runs.

All mutation happens under :attr:`Store.lock` (one re-entrant lock for the whole
emulator): the HTTP handler threads, the CI workers and test code all touch the
same objects, and a single lock keeps every response internally consistent.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ._util import utcnow

#: Permission levels ordered so that ``write`` implies ``read``.
LEVELS = {"read": 1, "write": 2, "admin": 3}

#: What a new installation is granted unless ``install_app(permissions=...)`` says otherwise.
DEFAULT_INSTALLATION_PERMISSIONS = {
    "metadata": "read",
    "contents": "write",
    "pull_requests": "write",
    "actions": "write",
    "checks": "read",
    "workflows": "write",
}


def grants(perms: dict[str, str] | None, name: str, level: str) -> bool:
    """True when ``perms`` (None = unrestricted) grants ``name`` at ``level``."""
    if perms is None:
        return True
    have = perms.get(name)
    if name == "metadata" and have is None and perms:
        have = "read"  # every installation token can read metadata
    return have is not None and LEVELS.get(have, 0) >= LEVELS[level]


@dataclass
class Account:
    login: str
    id: int
    type: str = "User"  # or "Organization", "Bot"


@dataclass
class Repo:
    id: int
    owner: Account
    name: str
    default_branch: str
    private: bool
    git_dir: Path
    description: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    pushed_at: datetime | None = None
    #: Refs as last seen by the emulator; diffed to detect pushes.
    refs: dict[str, str] = field(default_factory=dict)
    #: Serialises receive-pack/merges so ref diffs are attributed correctly.
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    next_pr_number: int = 1

    @property
    def full_name(self) -> str:
        return f"{self.owner.login}/{self.name}"


@dataclass
class App:
    id: int
    slug: str
    name: str
    owner: Account
    public_key: Any  # cryptography public key object
    client_id: str
    created_at: datetime = field(default_factory=utcnow)


@dataclass
class Installation:
    id: int
    app: App
    account: Account
    repos: set[str]  # full names
    permissions: dict[str, str]
    created_at: datetime = field(default_factory=utcnow)


@dataclass
class Token:
    """An access token. Only its SHA-256 is used as the lookup key."""

    kind: str  # "installation" or "personal"
    actor: Account
    permissions: dict[str, str] | None  # None = unrestricted (classic PAT)
    repos: set[str] | None  # None = every repository the actor can reach
    expires_at: float | None  # epoch seconds
    installation: Installation | None = None

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (now or time.time()) >= self.expires_at

    @property
    def rate_key(self) -> str:
        if self.installation is not None:
            return f"installation ID {self.installation.id}"
        return f"user ID {self.actor.id}"


@dataclass
class RateBucket:
    limit: int
    used: int = 0
    reset: float = 0.0

    def roll(self, now: float) -> None:
        if now >= self.reset:
            self.used = 0
            self.reset = float(int(now) + 3600)

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


@dataclass
class PullRequest:
    id: int
    number: int
    repo: Repo
    title: str
    body: str | None
    head_ref: str
    head_sha: str
    base_ref: str
    base_sha: str
    user: Account
    draft: bool = False
    maintainer_can_modify: bool = False
    state: str = "open"
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    closed_at: datetime | None = None
    merged_at: datetime | None = None
    merge_commit_sha: str | None = None
    merged_by: Account | None = None
    #: ``...`` = compute with git; True/False/None forced by tests.
    mergeable_override: Any = ...


@dataclass
class IssueComment:
    """A comment on a pull request's conversation (GitHub keeps it on the PR's issue)."""

    id: int
    repo: Repo
    number: int
    body: str
    user: Account
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass
class Workflow:
    id: int
    repo: str
    path: str
    name: str
    next_run_number: int = 1


@dataclass
class Step:
    number: int
    name: str
    status: str = "queued"
    conclusion: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None


@dataclass
class Job:
    id: int
    run: "WorkflowRun"
    run_attempt: int
    key: str  # id of the job in the workflow file
    name: str
    spec: dict[str, Any]
    labels: list[str]
    status: str = "queued"
    conclusion: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    steps: list[Step] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)
    #: step number -> [first, last) index into ``log_lines``
    step_ranges: dict[int, tuple[int, int]] = field(default_factory=dict)
    continue_on_error: bool = False

    def log_text(self) -> str:
        # GitHub's raw job logs start with a UTF-8 byte order mark.
        return "\ufeff" + "".join(line + "\n" for line in self.log_lines)


@dataclass
class WorkflowRun:
    id: int
    repo: Repo
    workflow: Workflow
    run_number: int
    head_sha: str
    head_branch: str | None
    ref: str
    event: str
    actor: Account
    spec: dict[str, Any]
    display_title: str
    head_commit: dict[str, Any]
    check_suite_id: int
    status: str = "queued"
    conclusion: str | None = None
    run_attempt: int = 1
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    run_started_at: datetime | None = None
    #: Wall-clock completion time of the latest attempt.
    completed_at: datetime | None = None
    #: ``time.monotonic()`` at completion, for latency measurements.
    completed_monotonic: float | None = None
    jobs: list[Job] = field(default_factory=list)  # every attempt
    #: Commit the jobs check out (GITHUB_SHA); differs from head_sha for
    #: pull_request runs, which test the merge commit.
    exec_sha: str = ""
    pull_number: int | None = None

    def latest_jobs(self) -> list[Job]:
        return [j for j in self.jobs if j.run_attempt == self.run_attempt]


class Store:
    """Every piece of emulator state plus the lock that guards it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._ids = itertools.count(1000)
        self.accounts: dict[str, Account] = {}
        self.repos: dict[str, Repo] = {}  # key: lower-case full name
        self.apps: dict[int, App] = {}
        self.installations: dict[int, Installation] = {}
        self.tokens: dict[str, Token] = {}  # key: sha256 hex of the token
        self.buckets: dict[str, RateBucket] = {}
        self.pulls: dict[str, dict[int, PullRequest]] = {}
        self.comments: dict[str, list[IssueComment]] = {}  # key: lower-case full name
        self.workflows: dict[tuple[str, str], Workflow] = {}
        self.runs: dict[int, WorkflowRun] = {}
        self.jobs: dict[int, Job] = {}

    def next_id(self) -> int:
        return next(self._ids)

    def account(self, login: str, type: str = "User") -> Account:
        key = login.lower()
        acct = self.accounts.get(key)
        if acct is None:
            acct = self.accounts[key] = Account(login=login, id=self.next_id(), type=type)
        return acct

    def repo(self, full_name: str) -> Repo | None:
        return self.repos.get(full_name.lower())
