"""One attempt on the local runtime: prepare, the agent in its own session, publish.

The worker holds the GitHub token; the agent must not reach it. So the worker is non-dumpable
and a child subreaper, the agent step (`ampx worker agent`) runs as a child process in its own
session with the scrubbed environment, and when it ends (or on SIGTERM, or past the time limit)
every process it left behind is killed before the publish step runs a single git command with
the token. Reports go through the local store, as before.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from ..agent.profiles import AgentConfigError, get_profile
from ..core.models import AttemptOutcome, WorkerReport
from ..core.repo import parse_repo
from ..redact import redact, register_secret
from ..settings import GitHubSettings, credential_values, env
from .agent_env import AgentEnvError, agent_step_environment
from .agent_step import THREAD_PREFIX, read_agent_result
from .attempt import ConfigProblem, Exit, TaskClient, TokenSource, now
from .attempt_spec import AttemptSpec, AttemptSpecError, attempt_spec_from_task, write_attempt_spec
from .harden import forbid_inspection
from .prepare_step import PrepareFailed, prepare
from .publish_step import Publisher
from .reaper import become_subreaper, kill_descendants

BACKSTOP_GRACE_S = 30.0  # past the attempt's limit the agent step itself should have ended


class LocalAttempt:
    def __init__(self, client: TaskClient, task_name: str, number: int,
                 tokens: Callable[[], TokenSource], out=None) -> None:
        self.client = client
        self.task_name = task_name
        self.number = number
        self.tokens = tokens
        self.out = out or sys.stdout
        self.stop = threading.Event()
        self.child: Optional[subprocess.Popen] = None
        self._lock = threading.Lock()

    def log(self, line: str) -> None:
        with self._lock:
            self.out.write(redact(line) + "\n")
            self.out.flush()

    def send(self, **fields) -> WorkerReport:
        report = WorkerReport(**fields)
        self.client.report(self.task_name, self.number, report)
        return report

    def on_sigterm(self, *_args) -> None:
        """Abort, time limit or drain: the agent step stops its agent; the work is kept."""
        self.stop.set()
        child = self.child
        if child is not None and child.poll() is None:
            try:
                os.killpg(child.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass

    def finish(self, code: int, outcome: AttemptOutcome, reason: Optional[str], **fields) -> int:
        if reason:
            self.log(f"[ampx] {outcome.value}: {reason}")
        self.send(outcome=outcome, reason=redact(reason) if reason else None, finished_at=now(),
                  exit_code=code, **fields)
        return code

    # ------------------------------------------------------------------ the attempt
    def run(self) -> int:
        task = self.client.get(self.task_name)
        if task is None:
            return self.finish(Exit.CONFIG, AttemptOutcome.CONFIG_ERROR,
                               f"task {self.task_name} not found")
        gh = GitHubSettings.from_env()
        try:
            spec = attempt_spec_from_task(task, self.number, git_url=gh.git_url,
                                          agent_command=env("AMPX_AGENT_COMMAND"),
                                          author_name=env("AMPX_GIT_AUTHOR_NAME"),
                                          author_email=env("AMPX_GIT_AUTHOR_EMAIL"))
        except AttemptSpecError as exc:
            return self.finish(Exit.CONFIG, AttemptOutcome.CONFIG_ERROR, str(exc))
        self.send(started_at=now())
        self.log(f"[ampx] task {task.name} attempt {self.number} on {spec.branch}")
        try:
            return self._run(spec)
        except ConfigProblem as exc:
            return self.finish(Exit.CONFIG, AttemptOutcome.CONFIG_ERROR, str(exc))
        except Exception as exc:  # a bug must still end in a report
            self.log(f"[ampx] unexpected error: {type(exc).__name__}: {redact(str(exc))}")
            return self.finish(Exit.ERROR, AttemptOutcome.WORKER_ERROR,
                               f"unexpected worker error ({type(exc).__name__}: {exc})")

    def _run(self, spec: AttemptSpec) -> int:
        try:
            profile = get_profile(spec.agent)
            agent_step_environment(profile, os.environ, Path(os.devnull))  # AMPX_AGENT_ENV valid?
        except (AgentConfigError, AgentEnvError) as exc:
            raise ConfigProblem(f"agent: {exc}") from None
        if profile.name == "amp" and not os.environ.get("AMP_API_KEY"):  # before any clone
            raise ConfigProblem("AMP_API_KEY is not set" + getattr(self.client, "credential_hint", ""))
        repo = parse_repo(spec.repo)
        try:
            from ..github.retry import with_retries

            # issue 12: a 5xx or a rate limit is waited out, not taken for a refusal
            token = with_retries(lambda: self.tokens().token_for(repo),
                                 f"GitHub token for {repo.full_name}")
        except Exception as exc:  # configuration or GitHub refusing the app
            raise ConfigProblem(f"no GitHub token for {repo.full_name}: {redact(str(exc))}") from None
        register_secret(token)
        root = Path(tempfile.mkdtemp(prefix=f"ampx-{spec.task}-a{spec.number}-",
                                     dir=env("AMPX_WORKSPACE")))
        try:
            return self._in_dirs(spec, profile, token, root)
        finally:
            if not env("AMPX_KEEP_WORKSPACES"):  # the work is on the branch; the clone is spent
                shutil.rmtree(root, ignore_errors=True)

    def _in_dirs(self, spec: AttemptSpec, profile, token: str, root: Path) -> int:
        private, area = root / "private", root / "agent"
        workspace, control, home = area / "work", area / "control", area / "home"
        try:
            start = prepare(spec, token, private, workspace, log=self.log)
        except PrepareFailed as exc:
            code, outcome = exc.outcome
            return self.finish(code, outcome, exc.reason)
        control.mkdir(parents=True, exist_ok=True)
        attempt_file = write_attempt_spec(spec, control / "attempt.json")
        timed_out = self._run_agent_step(spec, profile, attempt_file, workspace, control, home)
        killed = kill_descendants()  # nothing the agent started may see the push
        if killed:
            self.log(f"[ampx] killed {killed} process(es) the agent left behind")
        result = read_agent_result(control)
        secrets = [*credential_values(), *(os.environ.get(n) for n in profile.secret_env)]
        publisher = Publisher(spec, token, private, workspace, secrets, self.log)
        # the start point from memory: the agent, same user, could rewrite start.json
        code, report = publisher.run(result, stopped=self.stop.is_set(), timed_out=timed_out,
                                     start=start)
        self.client.report(self.task_name, self.number, report)
        return code

    def _run_agent_step(self, spec: AttemptSpec, profile, attempt_file: Path, workspace: Path,
                        control: Path, home: Path) -> bool:
        """Run the agent step (`ampx worker agent`, started as its module to spare the CLI's
        imports) in its own session; True if the backstop had to kill it."""
        argv = [sys.executable, "-m", "ampx.worker.agent_step", "--attempt-file",
                str(attempt_file), "--workspace", str(workspace), "--control", str(control),
                "--home", str(home)]
        with self._lock:
            if self.stop.is_set():
                return False
            self.child = subprocess.Popen(
                argv, env=agent_step_environment(profile, os.environ, home), cwd=str(workspace),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True)
        reader = threading.Thread(target=self._forward, args=(self.child.stdout,), daemon=True)
        reader.start()
        deadline = time.monotonic() + spec.timeout_s + BACKSTOP_GRACE_S
        killed = False
        while self.child.poll() is None:
            if time.monotonic() > deadline:
                self.log("[ampx] the agent step outlived the time limit: killing it")
                try:
                    os.killpg(self.child.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                killed = True
            time.sleep(0.05)
        reader.join(2.0)
        return killed

    def _forward(self, pipe) -> None:
        """The agent step's log, into the attempt's log; its thread id, into the report."""
        with pipe:
            for raw in pipe:
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if line.startswith(THREAD_PREFIX):
                    thread = line[len(THREAD_PREFIX):].strip()
                    if thread and len(thread) <= 200:
                        try:
                            self.send(thread_id=thread)
                        except Exception as exc:  # a bad id: the final report still carries it
                            self.log(f"[ampx] cannot record thread {thread!r}: {exc}")
                    continue
                self.log(line)


def run_local_attempt(client: TaskClient, task: str, number: int,
                      tokens: Callable[[], TokenSource]) -> int:
    forbid_inspection()
    become_subreaper()
    attempt = LocalAttempt(client, task, number, tokens)
    signal.signal(signal.SIGTERM, attempt.on_sigterm)
    return attempt.run()
