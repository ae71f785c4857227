"""Running a coding-agent CLI (amp by default) for one attempt."""

from ampx.agent.profiles import (
    BUILTIN_PROFILES,
    DEFAULT_PROFILE,
    AgentConfigError,
    AgentProfile,
    get_profile,
    profile_from_template,
)
from ampx.agent.runner import AgentResult, AgentRun, parse_thread_id, run_agent
from ampx.agent.stream import StreamParser

__all__ = [
    "AgentConfigError",
    "AgentProfile",
    "AgentResult",
    "AgentRun",
    "BUILTIN_PROFILES",
    "DEFAULT_PROFILE",
    "StreamParser",
    "get_profile",
    "parse_thread_id",
    "profile_from_template",
    "run_agent",
]
