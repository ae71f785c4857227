"""Step 2 of an attempt (holds only the agent's key): run the agent, write what came of it.

Runs `AgentRun` in the agent's workspace with a scrubbed environment (`agent_env.py`), prints
`AMPX_THREAD <id>` as soon as the thread is known (the runtime forwards it to the status while
the agent works), and on SIGTERM stops the agent and still writes `agent-result.json` into the
control directory. That file is the agent's side of the story: the publish step validates it
and trusts it for nothing but the outcome class, the thread and the token counts.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional, TextIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from ..agent.profiles import AgentConfigError, get_profile
from ..agent.runner import AgentRun
from ..redact import redact, register_secret
from .agent_env import AgentEnvError, agent_environment, make_home
from .attempt_spec import AttemptSpec
from .harden import die_with_parent, forbid_inspection
from .lines import one_line

RESULT_FILE = "agent-result.json"
THREAD_PREFIX = "AMPX_THREAD "
MAX_RESULT_BYTES = 16 * 1024


class AgentResultFile(BaseModel):
    """`agent-result.json`: what the agent step says about the agent's run."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    exit_code: Annotated[int, Field(ge=-255, le=255)] = 0
    is_error: bool = False
    timed_out: bool = False
    interrupted: bool = False
    thread_id: Optional[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,200}$")]] = None
    created_thread: bool = False
    tokens_in: Annotated[int, Field(ge=0, le=10**12)] = 0
    tokens_out: Annotated[int, Field(ge=0, le=10**12)] = 0
    last_line: Optional[Annotated[str, Field(max_length=300)]] = None
    config_error: Optional[Annotated[str, Field(max_length=1000)]] = None

    def write(self, control: Path) -> Path:
        target = Path(control) / RESULT_FILE
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.model_dump(mode="json", by_alias=True, exclude_none=True)))
        tmp.replace(target)
        return target


def read_agent_result(control: Path) -> Optional[AgentResultFile]:
    """The agent step's result, or None when it is missing or not a valid result."""
    try:
        with open(Path(control) / RESULT_FILE, "rb") as fh:
            raw = fh.read(MAX_RESULT_BYTES + 1)
    except OSError:
        return None
    if len(raw) > MAX_RESULT_BYTES:
        return None
    try:
        return AgentResultFile.model_validate(json.loads(raw.decode("utf-8")))
    except (ValueError, ValidationError, UnicodeDecodeError):
        return None


def _last_line(text: str) -> Optional[str]:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return redact(lines[-1])[:300] if lines else None


class AgentStep:
    def __init__(self, spec: AttemptSpec, workspace: Path, control: Path,
                 home: Optional[Path] = None, environ=None, out: Optional[TextIO] = None) -> None:
        self.spec = spec
        self.workspace = Path(workspace)
        self.control = Path(control)
        self.home = Path(home) if home else self.control / "home"
        self.environ = dict(os.environ if environ is None else environ)
        self.out = out or sys.stdout
        self.agent: Optional[AgentRun] = None
        self.stopped = False

    def log(self, line: str) -> None:
        self.out.write(one_line(line) + "\n")  # only this step's own lines carry the markers
        self.out.flush()

    def announce_thread(self, thread_id: str) -> None:
        self.out.write(f"{THREAD_PREFIX}{thread_id}\n")
        self.out.flush()

    def on_sigterm(self, *_args) -> None:
        self.stopped = True
        if self.agent is not None:
            self.agent.terminate()

    def run(self) -> AgentResultFile:
        self.control.mkdir(parents=True, exist_ok=True)
        try:
            profile = get_profile(self.spec.agent)
            env = agent_environment(profile, self.environ, make_home(self.home))
        except (AgentConfigError, AgentEnvError) as exc:
            return self._done(AgentResultFile(exit_code=1, is_error=True,
                                              config_error=f"agent: {exc}"))
        for name in (*profile.secret_env, *profile.required_env):
            register_secret(env.get(name), pinned=True)
        if profile.name == "amp" and not env.get("AMP_API_KEY"):
            return self._done(AgentResultFile(
                exit_code=1, is_error=True,
                config_error="AMP_API_KEY is not set (mount it from a Secret)"))
        self.agent = AgentRun(profile, self.workspace, self.spec.prompt,
                              thread_id=self.spec.thread_id, env=env,
                              timeout_s=self.spec.timeout_s, log_sink=self.log,
                              on_thread=self.announce_thread)
        if self.stopped:
            self.agent.terminate()
        try:
            result = self.agent.run()
        except AgentConfigError as exc:
            return self._done(AgentResultFile(exit_code=1, is_error=True,
                                              config_error=str(exc)))
        if result.thread_id and result.thread_id != self.spec.thread_id \
                and not result.created_thread:
            self.announce_thread(result.thread_id)  # an agent that names its session itself
        return self._done(AgentResultFile(
            exit_code=max(-255, min(255, result.exit_code)), is_error=result.is_error,
            timed_out=result.timed_out, interrupted=result.interrupted or self.stopped,
            thread_id=result.thread_id or self.spec.thread_id,
            created_thread=result.created_thread, tokens_in=result.tokens_in,
            tokens_out=result.tokens_out, last_line=_last_line(result.result_text)))

    def _done(self, result: AgentResultFile) -> AgentResultFile:
        if result.config_error:
            self.log(f"[agent] {result.config_error}")
        result.write(self.control)
        return result


def exit_code_of(result: AgentResultFile) -> int:
    from .attempt import Exit

    if result.config_error:
        return Exit.CONFIG
    if result.interrupted:
        return Exit.INTERRUPTED
    if result.timed_out:
        return Exit.TIMEOUT
    if result.exit_code != 0 or result.is_error:
        return Exit.AGENT_FAILED
    return Exit.OK


def run_agent_step(spec: AttemptSpec, workspace: Path, control: Path,
                   home: Optional[Path] = None) -> int:
    """`ampx worker agent`: the process holds the agent's key and nothing else."""
    forbid_inspection()  # its key is the agent's own, but its stdout must not be forged
    parent = os.getppid()
    step = AgentStep(spec, workspace, control, home)
    signal.signal(signal.SIGTERM, step.on_sigterm)
    die_with_parent(signal.SIGTERM)  # a worker killed outright stops its agent too
    if os.getppid() != parent:  # it died before we asked
        step.on_sigterm()
    return exit_code_of(step.run())


def main(argv: Optional[list[str]] = None) -> int:
    """The agent step without the CLI's imports (the local worker starts it this way: one
    process start per attempt is on the path to green). Same options as `ampx worker agent`."""
    import argparse

    from .attempt_spec import AttemptSpecError, load_attempt_spec

    parser = argparse.ArgumentParser(prog="ampx worker agent")
    for name in ("--attempt-file", "--workspace", "--control"):
        parser.add_argument(name, required=True, type=Path)
    parser.add_argument("--home", type=Path)
    args = parser.parse_args(argv)
    try:
        spec = load_attempt_spec(args.attempt_file)
    except AttemptSpecError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    return run_agent_step(spec, args.workspace, args.control, args.home)


if __name__ == "__main__":
    sys.exit(main())
