"""Agent profiles: how to invoke a coding-agent CLI for one attempt.

A profile is a command template (argv list) with the placeholders ``{thread_id}``,
``{prompt_file}`` and ``{workspace}``. The prompt goes to the agent's stdin unless the
template names ``{prompt_file}``. Built in:

``amp`` (default)
    no thread yet: ``amp threads new`` prints the thread URL; then every attempt runs
    ``amp threads continue {thread_id} -x --stream-json --dangerously-allow-all``.
``claude`` (Claude Code)
    first ``claude -p --output-format stream-json --verbose --dangerously-skip-permissions``;
    later the same with ``--resume {thread_id}`` (the session id comes from the init event).
``codex`` (OpenAI Codex)
    first ``codex exec --json --dangerously-bypass-approvals-and-sandbox -``; later
    ``codex exec --json --dangerously-bypass-approvals-and-sandbox resume {thread_id} -``
    (``-`` = prompt on stdin; the thread id comes from the ``thread.started`` event).

A custom profile comes from configuration strings parsed with :func:`shlex.split`, e.g.
``profile_from_template("my-agent --json --cwd {workspace} --prompt-file {prompt_file}",
resume="my-agent --json --session {thread_id} --prompt-file {prompt_file}")``.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

PLACEHOLDERS = ("{thread_id}", "{prompt_file}", "{workspace}")


class AgentConfigError(ValueError):
    """An agent profile cannot be used as configured."""


@dataclass(frozen=True)
class AgentProfile:
    """How to run one agent CLI. Commands are argv templates, never shell strings."""

    name: str
    command: tuple[str, ...]
    # Used when a thread id is known (later attempts); defaults to ``command``.
    resume_command: tuple[str, ...] | None = None
    # Run first when there is no thread yet; its stdout must contain the thread id.
    new_thread_command: tuple[str, ...] | None = None
    # Environment variables holding this agent's credentials: masked in every log line.
    secret_env: tuple[str, ...] = field(default_factory=tuple)
    # Environment variables that must be set, or the agent would wait for an interactive login.
    required_env: tuple[str, ...] = field(default_factory=tuple)
    # Non-secret variables the agent reads (a service address): passed to its scrubbed env.
    pass_env: tuple[str, ...] = field(default_factory=tuple)

    def uses_prompt_file(self, thread_id: str | None) -> bool:
        return any("{prompt_file}" in arg for arg in self.template(thread_id))

    def template(self, thread_id: str | None) -> tuple[str, ...]:
        if thread_id and self.resume_command:
            return self.resume_command
        return self.command

    def argv(self, thread_id: str | None, prompt_file: str = "", workspace: str = "") -> list[str]:
        """The command for this attempt with the placeholders filled in."""
        template = self.template(thread_id)
        if not thread_id and any("{thread_id}" in arg for arg in template):
            raise AgentConfigError(
                f"agent profile {self.name!r} needs a thread id but has no way to create one "
                "(give it a new-thread command or a first-attempt command without {thread_id})"
            )
        values = {"{thread_id}": thread_id or "", "{prompt_file}": prompt_file,
                  "{workspace}": workspace}
        out = []
        for arg in template:
            for placeholder, value in values.items():
                arg = arg.replace(placeholder, value)
            out.append(arg)
        return out


_AMP_TURN = ("amp", "threads", "continue", "{thread_id}", "-x", "--stream-json",
             "--dangerously-allow-all")
_CLAUDE = ("claude", "-p", "--output-format", "stream-json", "--verbose",
           "--dangerously-skip-permissions")
_CODEX = ("codex", "exec", "--json", "--dangerously-bypass-approvals-and-sandbox")

BUILTIN_PROFILES: dict[str, AgentProfile] = {
    "amp": AgentProfile(
        name="amp",
        command=_AMP_TURN,
        new_thread_command=("amp", "threads", "new"),
        secret_env=("AMP_API_KEY",),
        required_env=("AMP_API_KEY",),
        pass_env=("AMP_URL",),
    ),
    "claude": AgentProfile(
        name="claude",
        command=_CLAUDE,
        resume_command=_CLAUDE + ("--resume", "{thread_id}"),
        secret_env=("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"),
        pass_env=("ANTHROPIC_BASE_URL",),
    ),
    "codex": AgentProfile(
        name="codex",
        command=_CODEX + ("-",),
        resume_command=_CODEX + ("resume", "{thread_id}", "-"),
        secret_env=("OPENAI_API_KEY", "CODEX_API_KEY"),
        pass_env=("OPENAI_BASE_URL",),
    ),
}

DEFAULT_PROFILE = "amp"


def _split(template: str | Sequence[str] | None, what: str) -> tuple[str, ...] | None:
    if template is None:
        return None
    argv = tuple(shlex.split(template)) if isinstance(template, str) else tuple(template)
    if not argv:
        raise AgentConfigError(f"the agent {what} is empty")
    return argv


def profile_from_template(command: str | Sequence[str], *, resume: str | Sequence[str] | None = None,
                          new_thread: str | Sequence[str] | None = None, name: str = "custom",
                          secret_env: Sequence[str] = ()) -> AgentProfile:
    """A profile from configuration strings (``shlex`` syntax) or argv lists."""
    return AgentProfile(
        name=name,
        command=_split(command, "command"),  # type: ignore[arg-type]
        resume_command=_split(resume, "resume command"),
        new_thread_command=_split(new_thread, "new-thread command"),
        secret_env=tuple(secret_env),
    )


def get_profile(spec: str | None = None) -> AgentProfile:
    """A built-in profile by name, else ``spec`` parsed as a custom command template."""
    spec = (spec or DEFAULT_PROFILE).strip()
    if spec in BUILTIN_PROFILES:
        return BUILTIN_PROFILES[spec]
    if not any(c.isspace() for c in spec) and "{" not in spec:
        raise AgentConfigError(
            f"unknown agent {spec!r}: use one of {', '.join(BUILTIN_PROFILES)} or a command template"
        )
    return profile_from_template(spec)
