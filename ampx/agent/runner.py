"""Run the agent CLI for one attempt, in its own process group, under a time limit.

The agent is untrusted, long-running and may leave background processes behind, so:
stdin carries the prompt and is then closed (never inherited: amp without credentials waits
for a login on stdin); credentials travel in the environment, never in argv; the time limit and
:meth:`AgentRun.terminate` end the whole process group (SIGTERM, a grace period, SIGKILL); and
whatever is left in the group when the agent exits is killed too.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Union

from ampx.agent.profiles import AgentConfigError, AgentProfile
from ampx.agent.stream import StreamParser
from ampx.redact import redact, register_secret

LogSink = Union[Callable[[str], None], IO[str], None]

DEFAULT_GRACE_S = 5.0
EXIT_NOT_FOUND = 127
_POLL_S = 0.05
_READER_JOIN_S = 2.0
_THREAD_ID_RE = re.compile(r"\bT-[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")


@dataclass(frozen=True)
class AgentResult:
    """What one agent run produced. ``exit_code`` is negative when a signal ended the agent."""

    thread_id: str | None
    exit_code: int
    is_error: bool
    timed_out: bool
    tokens_in: int
    tokens_out: int
    result_text: str
    duration_s: float
    interrupted: bool = False
    num_turns: int = 0
    created_thread: bool = False


def _make_emit(log_sink: LogSink) -> Callable[[str], None]:
    lock = threading.Lock()
    if log_sink is None:
        return lambda line: None
    if callable(log_sink) and not hasattr(log_sink, "write"):
        def emit(line: str) -> None:
            with lock:
                log_sink(line)  # type: ignore[operator]
        return emit

    def write(line: str) -> None:
        with lock:
            log_sink.write(line + "\n")  # type: ignore[union-attr]
            log_sink.flush()  # type: ignore[union-attr]
    return write


def parse_thread_id(output: str) -> str | None:
    """The thread id in ``amp threads new`` output (``…/threads/T-<uuid>``)."""
    match = _THREAD_ID_RE.search(output)
    if match:
        return match.group(0)
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if not lines:
        return None
    last = lines[-1].rstrip("/").rsplit("/", 1)[-1]
    return last if re.fullmatch(r"[A-Za-z0-9_.:-]{4,200}", last) else None


@dataclass
class _Outcome:
    returncode: int
    timed_out: bool
    interrupted: bool


class AgentRun:
    """One agent run. :meth:`run` blocks; :meth:`terminate` may be called from a signal handler
    or another thread and ends the run's process group (SIGTERM, grace, SIGKILL)."""

    def __init__(self, profile: AgentProfile, workspace: str | os.PathLike[str], prompt: str,
                 thread_id: str | None = None, env: Mapping[str, str] | None = None,
                 timeout_s: float = 3600.0, log_sink: LogSink = None,
                 grace_s: float = DEFAULT_GRACE_S,
                 on_thread: Callable[[str], None] | None = None):
        self.profile = profile
        self.on_thread = on_thread  # told the new thread's id at once (a later kill loses nothing)
        self.workspace = str(workspace)
        self.prompt = prompt
        self.thread_id = thread_id
        self.env = dict(os.environ if env is None else env)
        self.timeout_s = timeout_s
        self.grace_s = grace_s
        self._emit = _make_emit(log_sink)
        self._stop_requested = False
        self._pgid: int | None = None

    @property
    def pid(self) -> int | None:
        """The running agent's pid (= its process group id), if one is running."""
        return self._pgid

    def terminate(self) -> None:
        """Stop the run: no new process starts, the running group gets SIGTERM now."""
        self._stop_requested = True
        pgid = self._pgid
        if pgid is not None:
            try:
                os.killpg(pgid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass

    def log(self, line: str) -> None:
        self._emit(redact(line))

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> AgentResult:
        started = time.monotonic()
        deadline = started + self.timeout_s
        for name in self.profile.secret_env:
            register_secret(self.env.get(name))
        thread_id, created = self.thread_id, False

        def result(code: int, *, error: bool = True, text: str = "", timed_out: bool = False,
                   interrupted: bool = False, parser: StreamParser | None = None) -> AgentResult:
            tin, tout = parser.tokens if parser else (0, 0)
            return AgentResult(
                thread_id=(parser.thread_id if parser and parser.thread_id else thread_id),
                exit_code=code, is_error=error, timed_out=timed_out, tokens_in=tin,
                tokens_out=tout, result_text=redact(text) or "",
                duration_s=round(time.monotonic() - started, 3), interrupted=interrupted,
                num_turns=parser.num_turns if parser else 0, created_thread=created)

        missing = [name for name in self.profile.required_env if not self.env.get(name)]
        if missing:
            self.log(f"[agent] not started: {', '.join(missing)} is not set")
            return result(1, text=f"{', '.join(missing)} is not set")

        if thread_id is None and self.profile.new_thread_command:
            output: list[str] = []
            try:
                outcome = self._execute(list(self.profile.new_thread_command), b"", deadline,
                                        output.append, lambda line: self.log(f"[stderr] {line}"))
            except FileNotFoundError as exc:
                return self._not_found(exc, result)
            thread_id = parse_thread_id("\n".join(output))
            if outcome.timed_out or outcome.interrupted or outcome.returncode != 0 or not thread_id:
                self.log(f"[agent] could not create a thread (exit {outcome.returncode})")
                return result(outcome.returncode or 1, text="could not create a thread",
                              timed_out=outcome.timed_out, interrupted=outcome.interrupted)
            created = True
            self.log(f"[agent] created thread {thread_id}")
            if self.on_thread is not None:
                self.on_thread(thread_id)

        prompt_dir = None
        try:
            prompt_file = ""
            stdin_data = self.prompt.encode()
            if self.profile.uses_prompt_file(thread_id):
                prompt_dir = tempfile.mkdtemp(prefix="ampx-prompt-")
                prompt_file = os.path.join(prompt_dir, "prompt.md")
                Path(prompt_file).write_text(self.prompt)
                stdin_data = b""
            argv = self.profile.argv(thread_id, prompt_file=prompt_file, workspace=self.workspace)
            parser = StreamParser(self.log)
            try:
                outcome = self._execute(argv, stdin_data, deadline, parser.feed,
                                        lambda line: self.log(f"[stderr] {line}"))
            except FileNotFoundError as exc:
                return self._not_found(exc, result)
        finally:
            if prompt_dir:
                for child in Path(prompt_dir).iterdir():
                    child.unlink()
                os.rmdir(prompt_dir)

        error = (outcome.returncode != 0 or outcome.timed_out or outcome.interrupted
                 or parser.is_error)
        text = parser.final_text
        if outcome.timed_out:
            text = f"time limit of {self.timeout_s:g}s reached"
        elif outcome.interrupted:
            text = "stopped before the end of its turn"
        self.log(f"[agent] exit {outcome.returncode} after {time.monotonic() - started:.1f}s")
        return result(outcome.returncode, error=error, text=text, timed_out=outcome.timed_out,
                      interrupted=outcome.interrupted, parser=parser)

    def _not_found(self, exc: FileNotFoundError, result) -> AgentResult:
        self.log(f"[agent] command not found: {exc.filename}")
        return result(EXIT_NOT_FOUND, text=f"agent command not found: {exc.filename}")

    def _execute(self, argv: list[str], stdin_data: bytes, deadline: float,
                 on_stdout: Callable[[str], None], on_stderr: Callable[[str], None]) -> _Outcome:
        """Run ``argv`` in a new session; feed stdin then close it; stream both outputs."""
        if self._stop_requested:
            self.log("[agent] stop requested before start")
            return _Outcome(returncode=-signal.SIGTERM, timed_out=False, interrupted=True)
        self.log("[agent] $ " + " ".join(argv))
        proc = subprocess.Popen(
            argv, cwd=self.workspace, env=self.env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
        self._pgid = proc.pid
        threads = [
            threading.Thread(target=_feed_stdin, args=(proc.stdin, stdin_data), daemon=True),
            threading.Thread(target=_pump, args=(proc.stdout, on_stdout, self.log), daemon=True),
            threading.Thread(target=_pump, args=(proc.stderr, on_stderr, self.log), daemon=True),
        ]
        for t in threads:
            t.start()
        timed_out = interrupted = False
        kill_at: float | None = None
        try:
            while not _has_exited(proc.pid):
                now = time.monotonic()
                if kill_at is None and (now >= deadline or self._stop_requested):
                    timed_out = not self._stop_requested
                    interrupted = self._stop_requested
                    why = "time limit reached" if timed_out else "stop requested"
                    self.log(f"[agent] {why}: SIGTERM to the agent's process group, "
                             f"SIGKILL after {self.grace_s:g}s")
                    _killpg(proc.pid, signal.SIGTERM)
                    kill_at = now + self.grace_s
                elif kill_at is not None and now >= kill_at:
                    self.log("[agent] still running after the grace period: SIGKILL")
                    _killpg(proc.pid, signal.SIGKILL)
                    kill_at = float("inf")
                time.sleep(_POLL_S)
        finally:
            # The leader is a zombie here (not reaped), so its pid cannot have been reused:
            # kill whatever it left behind in its group, then reap it.
            _killpg(proc.pid, signal.SIGKILL)
            returncode = proc.wait()
            self._pgid = None
        for t in threads[1:]:
            t.join(_READER_JOIN_S)
        # terminate() signals the group itself, so the agent may be gone before the loop saw it.
        interrupted = interrupted or (self._stop_requested and not timed_out)
        return _Outcome(returncode=returncode, timed_out=timed_out, interrupted=interrupted)


def _has_exited(pid: int) -> bool:
    """True once ``pid`` has exited, without reaping it (WNOWAIT)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _feed_stdin(pipe: IO[bytes], data: bytes) -> None:
    try:
        if data:
            pipe.write(data)
    except (BrokenPipeError, OSError):
        pass
    finally:
        try:
            pipe.close()
        except OSError:
            pass


def _pump(pipe: IO[bytes], sink: Callable[[str], None], fallback: Callable[[str], None]) -> None:
    """Drain ``pipe`` to the end, whatever ``sink`` does: an undrained pipe blocks the agent."""
    with pipe:
        for raw in pipe:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            try:
                sink(line)
            except Exception:  # a malformed event: keep the text, keep draining
                fallback(line)


def run_agent(profile: AgentProfile, workspace: str | os.PathLike[str], prompt: str,
              thread_id: str | None = None, env: Mapping[str, str] | None = None,
              timeout_s: float = 3600.0, log_sink: LogSink = None,
              grace_s: float = DEFAULT_GRACE_S) -> AgentResult:
    """Run the agent once in ``workspace``; see :class:`AgentRun` to be able to stop it."""
    return AgentRun(profile, workspace, prompt, thread_id=thread_id, env=env,
                    timeout_s=timeout_s, log_sink=log_sink, grace_s=grace_s).run()


__all__ = ["AgentResult", "AgentRun", "run_agent", "parse_thread_id", "AgentConfigError",
           "LogSink", "EXIT_NOT_FOUND"]
