"""The local runtime's credentials: what an attempt needs, and whether the supervisor has it.

The supervisor, like the operator's Deployment, holds the credentials its attempts run with:
they live in its environment (never on disk), and each attempt it starts inherits them. So
that they are the ones of the shell the user typed `ampx start` in, the supervisor records on
start a salted fingerprint of each credential variable (`supervisor.env`, 0600, no value), and
a command that queues work (`start`, `continue`, `merge`, `daemon start`) compares it with its
own environment: when they differ it restarts the supervisor, which loses nothing (attempts
are process groups of their own, adopted by the next supervisor, as after a crash).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Mapping, Optional

# What an attempt or the supervisor reads and a user may change between two `ampx start`s.
_GITHUB = ("AMPX_GITHUB_API_URL", "AMPX_GITHUB_URL", "AMPX_GITHUB_APP_ID",
           "AMPX_GITHUB_APP_PRIVATE_KEY", "AMPX_GITHUB_APP_PRIVATE_KEY_FILE", "GITHUB_TOKEN")
_AGENT = ("AMP_API_KEY", "AMP_URL", "AMPX_AGENT_COMMAND")


def credential_names() -> tuple[str, ...]:
    from ..agent.profiles import BUILTIN_PROFILES

    names = list(_GITHUB + _AGENT)
    for profile in BUILTIN_PROFILES.values():
        names += [n for n in profile.secret_env + profile.required_env if n not in names]
    return tuple(names)


def fingerprint(environ: Mapping[str, str], salt: str) -> dict[str, Optional[str]]:
    """Per variable, a salted hash of its value (None when unset): comparable, not reversible."""
    out: dict[str, Optional[str]] = {}
    for name in credential_names():
        value = environ.get(name) or None
        out[name] = None if value is None else hashlib.sha256(
            f"{salt}\0{name}\0{value}".encode()).hexdigest()[:32]
    return out


def record(path: Path, environ: Mapping[str, str]) -> None:
    """The supervisor's side: write its fingerprint (owner-only, replaced atomically)."""
    salt = secrets.token_hex(16)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"salt": salt, "vars": fingerprint(environ, salt)}, fh)
    os.replace(tmp, path)


def changed(path: Path, environ: Mapping[str, str]) -> Optional[list[str]]:
    """The credential variables whose value differs from the supervisor's; None when unknown
    (no fingerprint: a supervisor of an older ampx)."""
    try:
        data = json.loads(path.read_text())
        salt, theirs = data["salt"], data["vars"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    mine = fingerprint(environ, salt)
    return [name for name in mine if mine[name] != theirs.get(name)]


def github_configured(environ: Mapping[str, str]) -> bool:
    has_key = environ.get("AMPX_GITHUB_APP_PRIVATE_KEY") or environ.get("AMPX_GITHUB_APP_PRIVATE_KEY_FILE")
    return bool(environ.get("GITHUB_TOKEN") or (environ.get("AMPX_GITHUB_APP_ID") and has_key))


def preflight(environ: Mapping[str, str], agent: str, needs_agent: bool = True
              ) -> tuple[list[str], list[str]]:
    """(problems that stop every attempt, problems that may) for work queued from `environ`."""
    from ..agent.profiles import AgentConfigError, get_profile

    fatal: list[str] = []
    warn: list[str] = []
    if not github_configured(environ):
        fatal.append("GitHub is not configured: set GITHUB_TOKEN (or AMPX_GITHUB_APP_ID and "
                     "AMPX_GITHUB_APP_PRIVATE_KEY[_FILE])")
    if not needs_agent:
        return fatal, warn
    custom = environ.get("AMPX_AGENT_COMMAND")
    try:
        profile = get_profile(custom or agent)
    except AgentConfigError as exc:
        fatal.append(f"agent: {exc}")
        return fatal, warn
    missing = [n for n in profile.required_env if not environ.get(n)]
    if missing:
        fatal.append(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set "
                     f"(the {profile.name} agent needs it)")
    exe = profile.command[0] if profile.command else ""
    if exe and not shutil.which(exe, path=environ.get("PATH")):
        warn.append(f"the agent's command {exe!r} is not on PATH: attempts will fail until it is")
    return fatal, warn
