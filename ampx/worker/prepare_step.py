"""Step 1 of an attempt (holds the GitHub token): clone privately, hand the agent a clean copy.

The clone happens in a private directory the agent never sees. The agent's workspace is a
second repository filled from that clone over the `file://` transport (no hard links into the
private objects), on the task branch at the start commit, whose `.git` holds no remote, no
credential and no path back to the private directory. `start.json` in the private directory
records where the attempt starts, for the publish step.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..core.models import AttemptOutcome
from ..core.repo import parse_repo
from ..gitops.auth import GitAuth
from ..gitops.git import GitError
from ..gitops.ownership import BranchRefused
from ..gitops.private_repo import clean_git
from ..gitops.repospec import remote_url
from ..gitops.workspace import BaseBranchMissing, Workspace
from .attempt import Exit

START_FILE = "start.json"

# how a prepare step that could not start the attempt is reported: kind -> (exit, outcome)
PREPARE_OUTCOMES = {"config": (Exit.CONFIG, AttemptOutcome.CONFIG_ERROR),
                    "branch": (Exit.CONFIG, AttemptOutcome.BRANCH_REFUSED),
                    "git": (Exit.GIT_FAILED, AttemptOutcome.GIT_FAILED)}


class PrepareFailed(Exception):
    """The attempt cannot start: ``kind`` is ``config`` (e.g. no base branch), ``branch`` (the
    task may not push its branch: default or base branch, or another's tip) or ``git``."""

    @property
    def outcome(self) -> tuple[int, AttemptOutcome]:
        """(exit code, outcome) of the attempt that stops here."""
        return PREPARE_OUTCOMES.get(self.kind, PREPARE_OUTCOMES["git"])

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True)
class StartPoint:
    branch: str
    base_branch: str
    source_branch: str
    start_sha: str
    lease_sha: Optional[str]
    started_at: Optional[str] = None

    def wire(self) -> dict:
        return {"branch": self.branch, "baseBranch": self.base_branch,
                "sourceBranch": self.source_branch, "startSha": self.start_sha,
                "leaseSha": self.lease_sha, "startedAt": self.started_at}

    @classmethod
    def read(cls, private: Path) -> "StartPoint":
        try:
            doc = json.loads((Path(private) / START_FILE).read_text())
            return cls(branch=doc["branch"], base_branch=doc["baseBranch"],
                       source_branch=doc["sourceBranch"], start_sha=doc["startSha"],
                       lease_sha=doc.get("leaseSha"), started_at=doc.get("startedAt"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PrepareFailed("config", f"no usable {START_FILE} in {private} "
                                          f"(did the prepare step run?): {exc}") from None


def repo_url(spec) -> str:
    return remote_url(spec.git_url, parse_repo(spec.repo).full_name)


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def materialise_workspace(clone: Path, workspace: Path, branch: str, start_sha: str) -> None:
    """The agent's checkout: a new repository holding the start commit, nothing else."""
    workspace.mkdir(parents=True, exist_ok=True)
    home = clone.parent / "home"
    home.mkdir(mode=0o700, exist_ok=True)
    clean_git(["init", "-q", str(workspace)], workspace, home)
    clean_git(["fetch", "-q", "--no-tags", "--depth=1", f"file://{clone}", start_sha], workspace,
              home)
    clean_git(["checkout", "-q", "--force", "-B", branch, start_sha], workspace, home)
    for leftover in ("FETCH_HEAD", "ORIG_HEAD"):
        (workspace / ".git" / leftover).unlink(missing_ok=True)
    shutil.rmtree(workspace / ".git" / "logs", ignore_errors=True)  # reflogs name the source


def prepare(spec, token: str, private: Path, workspace: Path,
            log: Callable[[str], None] = lambda line: None) -> StartPoint:
    """Clone into ``private``, pick the start point, fill ``workspace``; write start.json."""
    started_at = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    private = _private_dir(Path(private))
    clone = private / "clone"
    if clone.exists():
        shutil.rmtree(clone)
    try:
        with GitAuth(token, directory=str(private)) as auth:
            ws = Workspace.clone(repo_url(spec), clone, auth=auth, log=log)
            # never the default or base branch, never over another's tip (issue 10)
            checkout = ws.prepare(spec.branch, spec.number, spec.base_branch, task_id=spec.task,
                                  pushed_before=spec.pushed_before)
    except BaseBranchMissing as exc:
        raise PrepareFailed("config", exc.stderr) from None
    except BranchRefused as exc:
        raise PrepareFailed("branch", str(exc)) from None
    except GitError as exc:
        raise PrepareFailed("git", f"could not check out the repository: {exc}") from None
    start = StartPoint(branch=checkout.branch, base_branch=checkout.base_branch,
                       source_branch=checkout.source_branch, start_sha=checkout.start_sha,
                       lease_sha=checkout.lease_sha, started_at=started_at)
    try:
        materialise_workspace(clone, Path(workspace), checkout.branch, checkout.start_sha)
    except GitError as exc:
        raise PrepareFailed("git", f"could not create the agent's workspace: {exc}") from None
    tmp = private / (START_FILE + ".tmp")
    tmp.write_text(json.dumps(start.wire()))
    tmp.replace(private / START_FILE)
    return start


