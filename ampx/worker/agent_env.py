"""The agent's scrubbed environment: its own key, PATH, a HOME of its own, locale, nothing else.

Whatever the agent starts inherits this environment, so it must not hold a GitHub token, the
App key, a Kubernetes service address or any other ampx variable. Extra variables an agent
needs (a proxy, a sandbox's thread store) are named in `AMPX_AGENT_ENV`; credential-looking
names are refused there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from ..agent.profiles import AgentProfile

BASE_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM")
_FORBIDDEN = re.compile(r"^(AMPX_|KUBERNETES_|GITHUB_|GH_|GIT_|SSH_AUTH_SOCK$|PYTHONPATH$)")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class AgentEnvError(ValueError):
    """`AMPX_AGENT_ENV` names a variable the agent may not have."""


def extra_names(raw: str | None) -> list[str]:
    names = [n.strip() for n in (raw or "").split(",") if n.strip()]
    for name in names:
        if not _NAME.match(name):
            raise AgentEnvError(f"AMPX_AGENT_ENV: {name!r} is not a variable name")
        if _FORBIDDEN.match(name):
            raise AgentEnvError(f"AMPX_AGENT_ENV may not pass {name} to the agent")
    return names


def agent_environment(profile: AgentProfile, environ: Mapping[str, str], home: Path) -> dict[str, str]:
    """The environment the agent (and everything it starts) runs with."""
    names = [*BASE_ENV, *profile.secret_env, *profile.required_env, *profile.pass_env,
             *extra_names(environ.get("AMPX_AGENT_ENV"))]
    env = {name: environ[name] for name in names if environ.get(name)}
    env.setdefault("PATH", os.defpath)
    env["HOME"] = str(home)
    env["TMPDIR"] = str(home / "tmp")
    env["XDG_CONFIG_HOME"] = str(home / ".config")
    env["XDG_CACHE_HOME"] = str(home / ".cache")
    env["XDG_DATA_HOME"] = str(home / ".local" / "share")
    return env


def agent_step_environment(profile: AgentProfile, environ: Mapping[str, str],
                           home: Path) -> dict[str, str]:
    """The environment of the `ampx worker agent` child the local worker starts: the agent's,
    plus what that child needs to run this ampx and to build the same agent environment."""
    env = agent_environment(profile, environ, home)
    for name in ("PYTHONPATH", "AMPX_AGENT_ENV"):
        if environ.get(name):
            env[name] = environ[name]
    return env


def make_home(home: Path) -> Path:
    """The agent's HOME (and TMPDIR inside it), private to the agent's user."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    (home / "tmp").mkdir(mode=0o700, exist_ok=True)
    return home
