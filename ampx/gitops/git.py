"""Run the real ``git`` binary predictably: no prompts, C locale, bounded time, redacted errors."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
from collections.abc import Mapping, Sequence

from ampx.redact import redact

log = logging.getLogger("ampx.gitops")

DEFAULT_TIMEOUT_S = 300.0

# Inherited variables that would point git at another repository or index.
_SCRUBBED = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
             "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE", "GIT_COMMON_DIR",
             "GIT_ASKPASS", "SSH_ASKPASS", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT")
# Inherited GIT_CONFIG_KEY_n/VALUE_n slots would collide with the ones set below.
_CONFIG_SLOT = re.compile(r"^GIT_CONFIG_(KEY|VALUE)_\d+$")


class GitError(Exception):
    """A git command failed. ``stderr`` is redacted."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str, stdout: str = ""):
        self.args_ = list(args)
        self.returncode = returncode
        self.stderr = redact(stderr.strip()) or ""
        self.stdout = redact(stdout.strip()) or ""
        super().__init__(f"git {' '.join(self.args_[:2])} failed ({returncode}): "
                         f"{self.stderr or self.stdout}")


class GitTimeout(GitError):
    """A git command ran past its time limit and was killed."""


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a git process: never prompt, parseable messages, no stored creds,
    no user or system configuration (a `~/.gitconfig` the agent wrote must not run code in
    ampx's git), and none of ampx's credential variables (the token goes through GitAuth)."""
    from ampx.settings import SECRET_ENV_VARS

    env = {k: v for k, v in os.environ.items()
           if k not in _SCRUBBED and k not in SECRET_ENV_VARS and not _CONFIG_SLOT.match(k)}
    env.update({
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
        "LANG": "C",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        # An empty credential.helper clears every configured helper: no helper is asked for,
        # or told to store, the token. Repository hooks and fsmonitor never run under ampx.
        "GIT_CONFIG_COUNT": "3",
        "GIT_CONFIG_KEY_0": "credential.helper",
        "GIT_CONFIG_VALUE_0": "",
        "GIT_CONFIG_KEY_1": "core.hooksPath",
        "GIT_CONFIG_VALUE_1": os.devnull,
        "GIT_CONFIG_KEY_2": "core.fsmonitor",
        "GIT_CONFIG_VALUE_2": "false",
    })
    if extra:
        env.update(extra)
    return env


def run_git(args: Sequence[str], cwd: str | os.PathLike[str] | None, *,
            env: Mapping[str, str] | None = None, input: str | None = None,
            timeout: float | None = DEFAULT_TIMEOUT_S, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
    """Run ``git <args>``; raise :class:`GitError` on failure when ``check``."""
    argv = ["git", *args]
    log.debug("git %s", redact(" ".join(args)))
    proc = subprocess.Popen(
        argv, cwd=cwd, env=git_env(env), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(input or "", timeout=timeout)
    except subprocess.TimeoutExpired:
        # Kill the whole group: remote helpers (git-remote-https) would keep the pipes open.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        stdout, stderr = proc.communicate()
        raise GitTimeout(args, -signal.SIGKILL, f"timed out after {timeout:g}s {stderr}") from None
    result = subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)
    if check and proc.returncode != 0:
        raise GitError(args, proc.returncode, stderr, stdout)
    return result
