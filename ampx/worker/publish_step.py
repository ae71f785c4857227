"""Step 3 of an attempt (holds the GitHub token): commit the agent's work from a private snapshot.

Runs only once the agent can no longer act on a credential (the local worker has killed every
process the agent left; on Kubernetes the agent runs in another container). The working tree
is copied into a private directory (`gitops/snapshot.py`), the commit is built in a fresh
repository with the start commit fetched afresh (`gitops/private_repo.py`), and the credential
guard and the tamper guard read exactly the tree that is committed. Outcomes and exit codes are
those of `attempt.Exit`; on a stop or at the time limit the work is kept as a WIP commit.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Optional

from ..core.models import AttemptOutcome, WorkerReport
from ..gitops.auth import GitAuth
from ..gitops.commit_triggers import trigger_fields
from ..gitops.credential_guard import changes_with_secrets
from ..gitops.git import GitError
from ..gitops.message import attempt_message
from ..gitops.private_repo import PrivateRepo
from ..gitops.snapshot import SnapshotRefused, copy_tree
from ..gitops.tamper import tamper_check
from ..gitops.workspace import PushRejected, PushTransportError
from ..redact import redact, register_secret
from .agent_step import AgentResultFile, read_agent_result
from .attempt import Exit
from .attempt_spec import AttemptSpec
from .prepare_step import PrepareFailed, StartPoint, repo_url

REPORT_MAX_BYTES = 4096
REPORT_PREFIX = "AMPX_REPORT "
STOP_GRACE_S = 20.0  # after SIGTERM: how long to wait for the agent step's result
DEADLINE_GRACE_S = 60.0  # beyond the attempt's time limit
WIP_PUSH_TIMEOUT_S = 20.0


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def report_json(report: WorkerReport, limit: int = REPORT_MAX_BYTES) -> str:
    """The report as compact JSON of at most ``limit`` bytes (files, then reason, shortened)."""
    doc = report.wire()

    def size() -> int:
        return len(json.dumps(doc, separators=(",", ":")).encode())

    files = list(doc.get("files") or [])
    while size() > limit and files:
        files = files[:-1]
        doc["files"] = files + [f"... ({len(report.files or []) - len(files)} more)"]
    while size() > limit and doc.get("reason"):
        reason = doc["reason"]
        doc["reason"] = reason[: max(0, len(reason) - max(64, size() - limit)) - 1] + "…"
        if len(doc["reason"]) <= 1:
            doc.pop("reason")
    return json.dumps(doc, separators=(",", ":"))


def wait_for_agent_result(control: Path, deadline: float, stop: threading.Event,
                          stop_grace_s: float = STOP_GRACE_S,
                          poll_s: float = 0.1) -> Optional[AgentResultFile]:
    """Wait for `agent-result.json`: until it is there, the deadline passes, or (after a stop)
    the grace the agent step has to stop its agent and write it."""
    stop_by: Optional[float] = None
    while True:
        result = read_agent_result(control)
        if result is not None:
            return result
        now_ = time.monotonic()
        if stop.is_set() and stop_by is None:
            stop_by = now_ + stop_grace_s
        if now_ >= deadline or (stop_by is not None and now_ >= stop_by):
            return None
        time.sleep(poll_s)


class Publisher:
    def __init__(self, spec: AttemptSpec, token: str, private: Path, workspace: Path,
                 secrets: list[Optional[str]], log: Callable[[str], None]) -> None:
        self.spec = spec
        self.token = token
        self.private = Path(private)
        self.workspace = Path(workspace)
        self.secrets = [token, *secrets]
        self.log = log
        self._made: list[Path] = []
        register_secret(token)

    # ------------------------------------------------------------------ outcome
    def run(self, result: Optional[AgentResultFile], *, stopped: bool = False,
            timed_out: bool = False, start: Optional[StartPoint] = None
            ) -> tuple[int, WorkerReport]:
        """``start``: where prepare began, when this process ran it (else `start.json`, which
        only the prepare and publish steps can reach)."""
        fields: dict = {}
        if result is not None:
            fields = dict(thread_id=result.thread_id, tokens_in=result.tokens_in,
                          tokens_out=result.tokens_out)
        try:
            start = start or StartPoint.read(self.private)
            if start.branch != self.spec.branch:  # the push goes to the task branch, only
                raise PrepareFailed("config", f"start.json names branch {start.branch!r}, "
                                              f"not the task's {self.spec.branch!r}")
            fields["started_at"] = start.started_at
            if result is not None and result.config_error:
                return self.finish(Exit.CONFIG, AttemptOutcome.CONFIG_ERROR, result.config_error,
                                   **fields)
            if stopped or (result is not None and result.interrupted):
                return self.keep_work(start, Exit.INTERRUPTED, AttemptOutcome.INTERRUPTED,
                                      "the attempt was stopped", fields)
            if timed_out or result is None or result.timed_out:
                limit = self.spec.attempt_timeout_minutes
                return self.keep_work(start, Exit.TIMEOUT, AttemptOutcome.TIMEOUT,
                                      f"time limit of {limit} min reached", fields)
            if result.exit_code != 0 or result.is_error:
                why = f"the agent failed (exit {result.exit_code})"
                if result.last_line:
                    why += f": {result.last_line}"
                return self.finish(Exit.AGENT_FAILED, AttemptOutcome.AGENT_FAILED, why, **fields)
            return self.publish(start, fields)
        except PrepareFailed as exc:
            return self.finish(Exit.CONFIG, AttemptOutcome.CONFIG_ERROR, exc.reason, **fields)
        except SnapshotRefused as exc:
            return self.finish(Exit.AGENT_FAILED, AttemptOutcome.AGENT_FAILED,
                               f"the agent's working tree cannot be published: {exc}", **fields)
        except GitError as exc:
            return self.finish(Exit.GIT_FAILED, AttemptOutcome.GIT_FAILED, f"git: {exc}",
                               **fields)
        finally:
            for made in self._made:
                shutil.rmtree(made, ignore_errors=True)

    def finish(self, code: int, outcome: AttemptOutcome, reason: Optional[str],
               **fields) -> tuple[int, WorkerReport]:
        if reason:
            self.log(f"[ampx] {outcome.value}: {reason}")
        fields = {k: v for k, v in fields.items() if v is not None}
        report = WorkerReport(outcome=outcome, reason=redact(reason)[:4000] if reason else None,
                              finished_at=now(), exit_code=code, **fields)
        return code, report

    # ------------------------------------------------------------------ the tree
    def _tree(self, start: StartPoint):
        # new directories of unpredictable names: nothing can have been planted in them
        work = Path(tempfile.mkdtemp(prefix="publish-", dir=self.private))
        self._made.append(work)
        snapshot = work / "snapshot"
        stats = copy_tree(self.workspace, snapshot)
        if stats.skipped:
            self.log(f"[ampx] left out (not a file, directory or link): "
                     f"{', '.join(stats.skipped[:20])}")
        auth = GitAuth(self.token, directory=str(self.private))
        repo = PrivateRepo(work / "repo", repo_url(self.spec), auth, self.log).create()
        repo.fetch_start(start.start_sha, start.source_branch)
        tree = repo.build_tree(snapshot, start.start_sha)
        return snapshot, repo, auth, tree

    def _guards(self, repo: PrivateRepo, start: StartPoint, tree: str):
        changes = repo.changes(start.start_sha, tree)
        leaked = changes_with_secrets(changes, lambda p: repo.read(tree, p), self.secrets)
        tampered = tamper_check(changes, read_new=lambda p: repo.read(tree, p),
                                read_old=lambda p: repo.read(start.start_sha, p),
                                protected=self.spec.protected_paths)
        return changes, leaked, tampered

    def publish(self, start: StartPoint, fields: dict) -> tuple[int, WorkerReport]:
        snapshot, repo, auth, tree = self._tree(start)
        try:
            _changes, leaked, tampered = self._guards(repo, start, tree)
            if leaked:  # not a policy: a credential is never pushed
                self.log(f"[ampx] credential guard: not pushing; a credential is in "
                         f"{', '.join(leaked)}")
                return self.finish(Exit.TAMPERED, AttemptOutcome.TAMPERED,
                                   "the change contains a credential", files=leaked, **fields)
            if self.spec.tamper_guard and tampered:
                self.log(f"[ampx] tamper guard: not pushing; changed {', '.join(tampered)}")
                return self.finish(Exit.TAMPERED, AttemptOutcome.TAMPERED,
                                   "changed protected files", files=tampered, **fields)
            if tree == repo.tree_of(start.start_sha):
                self.log("[ampx] the agent changed nothing")
                return self.finish(Exit.OK, AttemptOutcome.NO_CHANGE, None, **fields)
            message = attempt_message(self.spec.title, self.spec.number, self.spec.task)
            sha = repo.commit(tree, start.start_sha, message, self.spec.author_name,
                              self.spec.author_email)
            self.log(f"[git] committed {sha[:12]} on {start.branch}")
            try:
                repo.push(sha, start.branch, start.lease_sha)
            except PushRejected as exc:
                return self.finish(Exit.PUSH_REJECTED, AttemptOutcome.PUSH_REJECTED,
                                   f"push rejected: {exc.reason}", commit=sha, **fields)
            except PushTransportError as exc:
                return self.finish(Exit.GIT_FAILED, AttemptOutcome.GIT_FAILED,
                                   f"push failed: {exc.reason}", **fields)
            self.log(f"[ampx] pushed {sha[:12]} to {start.branch}")
            # which workflows of the pushed tree run on push / on a pull request (issue 11)
            ci = trigger_fields(_text_git(repo), sha, start.branch, start.base_branch,
                                start.start_sha, start.source_branch == start.base_branch,
                                self.log)
            return self.finish(Exit.OK, AttemptOutcome.PUSHED, None, commit=sha,
                               base_commit=start.start_sha, **fields, **ci)
        finally:
            auth.close()

    def keep_work(self, start: StartPoint, code: int, outcome: AttemptOutcome, reason: str,
                  fields: dict) -> tuple[int, WorkerReport]:
        """On a stop or at the time limit: commit and push what the agent did, if allowed,
        leaving out files that hold a credential and protected changes."""
        commit = None
        if self.spec.keep_work_on_stop:
            try:
                commit = self._wip(start)
            except (GitError, SnapshotRefused) as exc:
                self.log(f"[ampx] could not keep the work: {redact(str(exc))}")
        return self.finish(code, outcome, reason, commit=commit, **fields)

    def _wip(self, start: StartPoint) -> Optional[str]:
        snapshot, repo, auth, tree = self._tree(start)
        try:
            _changes, leaked, tampered = self._guards(repo, start, tree)
            if leaked:
                self.log(f"[ampx] WIP commit leaves out (a credential is in them): "
                         f"{', '.join(leaked)}")
            if tampered:
                self.log(f"[git] WIP commit leaves out: {', '.join(tampered)}")
            if leaked or tampered:
                tree = repo.build_tree(snapshot, start.start_sha, keep_start=[*leaked, *tampered])
            if tree == repo.tree_of(start.start_sha):
                return None
            message = attempt_message(self.spec.title, self.spec.number, self.spec.task,
                                      interrupted=True)
            sha = repo.commit(tree, start.start_sha, message, self.spec.author_name,
                              self.spec.author_email)
            repo.push(sha, start.branch, start.lease_sha, timeout=WIP_PUSH_TIMEOUT_S)
            self.log(f"[ampx] kept the work as WIP commit {sha[:12]}")
            return sha
        finally:
            auth.close()


def _text_git(repo: PrivateRepo) -> Callable[..., SimpleNamespace]:
    """The private repository's local git, with text output (what `commit_triggers` reads)."""
    return lambda *args: SimpleNamespace(
        stdout=repo.git(*args).stdout.decode("utf-8", "replace"))


def emit_report(report: WorkerReport, report_file: Optional[Path], out) -> str:
    """Write the report where the runtime reads it, and as one `AMPX_REPORT {json}` line."""
    text = report_json(report)
    if report_file is not None:
        try:
            Path(report_file).write_text(text)
        except OSError as exc:
            out.write(f"[ampx] cannot write the report to {report_file}: {exc.strerror}\n")
    out.write(REPORT_PREFIX + text + "\n")
    out.flush()
    return text
