"""One attempt: clone, run the agent in the task's thread, commit, push, report.

The worker writes only its own `status.reports["<N>"]` (through a `TaskClient`), and exits with
a code that names the failure class, so a Job's exit tells what happened even without a report.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Protocol

from ..agent.profiles import AgentConfigError, get_profile
from ..agent.runner import AgentRun
from ..core.models import AmpTask, AttemptOutcome, WorkerReport
from ..core.repo import parse_repo
from ..gitops.auth import GitAuth
from ..gitops.commit_triggers import trigger_fields
from ..gitops.credential_guard import files_with_secrets
from ..gitops.git import GitError
from ..gitops.message import attempt_message
from ..gitops.ownership import BranchRefused
from ..gitops.repospec import remote_url
from ..gitops.tamper import tamper_check
from ..gitops.workspace import BaseBranchMissing, PushRejected, PushTransportError, Workspace
from ..redact import redact, register_secret
from ..settings import GitHubSettings, credential_values, env
from .harden import forbid_inspection


class Exit:
    """Worker exit codes (documented in the README)."""

    OK = 0  # pushed, or nothing to change
    ERROR = 1  # unexpected failure
    CONFIG = 2  # bad configuration: missing key/token, unknown task or attempt
    AGENT_FAILED = 3
    TIMEOUT = 4
    PUSH_REJECTED = 5
    TAMPERED = 6
    INTERRUPTED = 7  # SIGTERM (abort, node drain); work kept as a WIP commit when allowed
    GIT_FAILED = 8  # clone, fetch or push could not reach the remote


# GitHub credentials are the worker's, never the agent's (it pushes nothing itself).
AGENT_HIDDEN_ENV = frozenset({"AMPX_GITHUB_APP_PRIVATE_KEY", "AMPX_GITHUB_APP_PRIVATE_KEY_FILE",
                              "GITHUB_TOKEN", "AMPX_GIT_TOKEN"})


class TaskClient(Protocol):
    def get(self, name: str) -> Optional[AmpTask]: ...

    def report(self, name: str, number: int, report: WorkerReport) -> None: ...


class TokenSource(Protocol):
    def token_for(self, repo) -> str: ...


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class AttemptResult:
    code: int
    report: WorkerReport


class ConfigProblem(Exception):
    pass


class Attempt:
    def __init__(self, client: TaskClient, task_name: str, number: int,
                 tokens: Callable[[], TokenSource], out=None) -> None:
        self.client = client
        self.task_name = task_name
        self.number = number
        self.tokens = tokens
        self.out = out or sys.stdout
        self.stop_requested = threading.Event()
        self.agent: Optional[AgentRun] = None
        self.secrets: list[Optional[str]] = []  # what must never be pushed (credential guard)

    # ------------------------------------------------------------------ logging and reporting
    def log(self, line: str) -> None:
        self.out.write(redact(line) + "\n")
        self.out.flush()

    def send(self, **fields) -> WorkerReport:
        report = WorkerReport(**fields)
        self.client.report(self.task_name, self.number, report)
        return report

    def on_sigterm(self, *_args) -> None:
        """Abort, time limit or node drain: stop the agent, keep the work (see run())."""
        self.stop_requested.set()
        if self.agent is not None:
            self.agent.terminate()

    # ------------------------------------------------------------------ the attempt
    def run(self) -> AttemptResult:
        task = self.client.get(self.task_name)
        if task is None:
            return self.finish(Exit.CONFIG, AttemptOutcome.CONFIG_ERROR,
                               f"task {self.task_name} not found")
        rec = next((r for r in task.status.history if r.number == self.number), None)
        if rec is None:
            return self.finish(Exit.CONFIG, AttemptOutcome.CONFIG_ERROR,
                               f"task {self.task_name} has no attempt {self.number}")
        self.send(started_at=now())
        self.log(f"[ampx] task {task.name} attempt {self.number} on {task.spec.branch}")
        try:
            return self._run(task, rec.prompt)
        except (ConfigProblem, AgentConfigError) as exc:
            return self.finish(Exit.CONFIG, AttemptOutcome.CONFIG_ERROR, str(exc))
        except BranchRefused as exc:  # issue 10: not this task's branch; nothing was pushed
            return self.finish(Exit.CONFIG, AttemptOutcome.BRANCH_REFUSED, str(exc))
        except GitError as exc:
            return self.finish(Exit.GIT_FAILED, AttemptOutcome.GIT_FAILED, f"git: {exc}")
        except Exception as exc:  # a bug must still end in a report, not a silent Job failure
            self.log(f"[ampx] unexpected error: {type(exc).__name__}: {redact(str(exc))}")
            return self.finish(Exit.ERROR, AttemptOutcome.WORKER_ERROR,
                               f"unexpected worker error ({type(exc).__name__}: {exc})")

    def _run(self, task: AmpTask, prompt: str) -> AttemptResult:
        spec = task.spec
        try:
            profile = get_profile(env("AMPX_AGENT_COMMAND") or spec.agent)
        except AgentConfigError as exc:
            raise ConfigProblem(f"agent: {exc}") from None
        # the agent gets the worker's environment minus ampx's GitHub credentials
        agent_env = {k: v for k, v in os.environ.items() if k not in AGENT_HIDDEN_ENV}
        if profile.name == "amp":
            key = os.environ.get("AMP_API_KEY")
            if not key:
                raise ConfigProblem("AMP_API_KEY is not set"
                                    + getattr(self.client, "credential_hint", ""))
            register_secret(key, pinned=True)
        repo = parse_repo(spec.repo)
        gh = GitHubSettings.from_env()
        try:
            from ..github.retry import with_retries

            # issue 12: a 5xx or a rate limit is waited out, not taken for a refusal
            token = with_retries(lambda: self.tokens().token_for(repo),
                                 f"GitHub token for {repo.full_name}")
        except Exception as exc:  # configuration or GitHub refusing the app
            raise ConfigProblem(f"no GitHub token for {repo.full_name}: {redact(str(exc))}") from None
        register_secret(token)

        base = env("AMPX_WORKSPACE")
        root = Path(tempfile.mkdtemp(prefix=f"ampx-{task.name}-a{self.number}-", dir=base))
        try:
            return self._in_workspace(task, spec, prompt, profile, agent_env, repo, gh, token, root)
        finally:
            if not env("AMPX_KEEP_WORKSPACES"):  # the work is on the branch; the clone is spent
                shutil.rmtree(root, ignore_errors=True)

    def _in_workspace(self, task, spec, prompt, profile, agent_env, repo, gh, token,
                      root: Path) -> AttemptResult:
        self.secrets = [token, *credential_values(), *(
            os.environ.get(name) for name in profile.secret_env)]
        with GitAuth(token) as auth:
            try:
                ws = Workspace.clone(remote_url(gh.git_url, repo.full_name), root / "repo",
                                     auth=auth, log=self.log)
                # issue 10: refuses the default/base branch, and a first push over a tip
                # that is not this task's (BranchRefused, handled in run())
                checkout = ws.prepare(spec.branch or "", self.number, spec.base_branch,
                                      task_id=task.name,
                                      pushed_before=has_pushed(task.status, self.number))
            except BaseBranchMissing as exc:
                raise ConfigProblem(exc.stderr) from None
            except GitError as exc:
                return self.finish(Exit.GIT_FAILED, AttemptOutcome.GIT_FAILED,
                                   f"could not check out the repository: {redact(str(exc))}")
            thread = task.status.thread_id
            self.agent = AgentRun(profile, ws.path, prompt, thread_id=thread, env=agent_env,
                                  timeout_s=spec.limits.attempt_timeout_minutes * 60,
                                  log_sink=self.log,
                                  on_thread=lambda tid: self.send(thread_id=tid))
            if self.stop_requested.is_set():
                self.agent.terminate()
            result = self.agent.run()
            thread = result.thread_id or thread
            tokens = dict(tokens_in=result.tokens_in, tokens_out=result.tokens_out)
            if result.thread_id and result.thread_id != task.status.thread_id \
                    and not result.created_thread:
                self.send(thread_id=result.thread_id)  # an agent that names its session itself

            if self.stop_requested.is_set() or result.interrupted:
                return self._keep_work(task, ws, thread, tokens, Exit.INTERRUPTED,
                                       AttemptOutcome.INTERRUPTED, "the attempt was stopped")
            if result.timed_out:
                limit = spec.limits.attempt_timeout_minutes
                return self._keep_work(task, ws, thread, tokens, Exit.TIMEOUT,
                                       AttemptOutcome.TIMEOUT, f"time limit of {limit} min reached")
            if result.exit_code != 0 or result.is_error:
                why = f"the agent failed (exit {result.exit_code})"
                if result.result_text:
                    why += f": {result.result_text.strip().splitlines()[-1][:300]}"
                return self.finish(Exit.AGENT_FAILED, AttemptOutcome.AGENT_FAILED, why,
                                   thread_id=thread, **tokens)

            changes = ws.changes()
            leaked = files_with_secrets(ws.path, changes, self.secrets)
            if leaked:  # not a policy: a credential is never pushed
                self.log(f"[ampx] credential guard: not pushing; a credential is in {', '.join(leaked)}")
                return self.finish(Exit.TAMPERED, AttemptOutcome.TAMPERED,
                                   "the change contains a credential", files=leaked,
                                   thread_id=thread, **tokens)
            if spec.policy.tamper_guard:
                bad = tamper_check(changes)
                if bad:
                    self.log(f"[ampx] tamper guard: not pushing; changed {', '.join(bad)}")
                    return self.finish(Exit.TAMPERED, AttemptOutcome.TAMPERED,
                                       "changed protected files", files=bad, thread_id=thread,
                                       **tokens)
            name, email = identity()
            message = attempt_message(spec.display_title(), self.number, task.name)
            sha = ws.commit(name, email, message)
            if sha is None:
                self.log("[ampx] the agent changed nothing")
                return self.finish(Exit.OK, AttemptOutcome.NO_CHANGE, None, thread_id=thread,
                                   **tokens)
            try:
                ws.push(checkout.branch, checkout.lease_sha)
            except PushRejected as exc:
                return self.finish(Exit.PUSH_REJECTED, AttemptOutcome.PUSH_REJECTED,
                                   f"push rejected: {exc.reason}", thread_id=thread, commit=sha,
                                   **tokens)
            except PushTransportError as exc:
                return self.finish(Exit.GIT_FAILED, AttemptOutcome.GIT_FAILED,
                                   f"push failed: {exc.reason}", thread_id=thread, **tokens)
            self.log(f"[ampx] pushed {sha[:12]} to {checkout.branch}")
            # -- issue 11: which workflows of the pushed tree run on push / on a pull request
            ci = trigger_fields(ws.git, sha, checkout.branch, checkout.base_branch,
                                checkout.start_sha, checkout.source_branch == checkout.base_branch,
                                self.log)
            # --
            return self.finish(Exit.OK, AttemptOutcome.PUSHED, None, thread_id=thread,
                               commit=sha, base_commit=checkout.start_sha, **tokens, **ci)

    def _keep_work(self, task, ws, thread, tokens, code, outcome, reason) -> AttemptResult:
        """On SIGTERM or the time limit: commit and push what the agent did, if allowed."""
        commit = None
        if task.spec.policy.keep_work_on_stop:
            name, email = identity()
            try:
                leaked = files_with_secrets(ws.path, ws.changes(), self.secrets)
                if leaked:  # the WIP commit keeps the work, never a credential
                    ws.revert_paths(leaked)
                    self.log(f"[ampx] WIP commit leaves out (a credential is in them): "
                             f"{', '.join(leaked)}")
                wip = ws.commit_wip(name, email, task.spec.display_title(), self.number, task.name)
                commit = wip.sha if wip.pushed else None
                if commit:
                    self.log(f"[ampx] kept the work as WIP commit {commit[:12]}")
            except GitError as exc:
                self.log(f"[ampx] could not keep the work: {redact(str(exc))}")
        return self.finish(code, outcome, reason, thread_id=thread, commit=commit, **tokens)

    def finish(self, code: int, outcome: AttemptOutcome, reason: Optional[str],
               **fields) -> AttemptResult:
        if reason:
            self.log(f"[ampx] {outcome.value}: {reason}")
        report = self.send(outcome=outcome, reason=redact(reason) if reason else None,
                           finished_at=now(), exit_code=code, **fields)
        return AttemptResult(code, report)


def has_pushed(status, number: int) -> bool:
    """Whether an earlier attempt of this task pushed the branch (a rejected push did not)."""
    from .attempt_spec import pushed_before

    return pushed_before(status, number)


def identity() -> tuple[str, str]:
    return (env("AMPX_GIT_AUTHOR_NAME", "ampx[bot]"),
            env("AMPX_GIT_AUTHOR_EMAIL", "ampx-bot@users.noreply.github.com"))


def run_attempt(client: TaskClient, task: str, number: int,
                tokens: Callable[[], TokenSource]) -> int:
    forbid_inspection()
    attempt = Attempt(client, task, number, tokens)
    signal.signal(signal.SIGTERM, attempt.on_sigterm)
    return attempt.run().code
