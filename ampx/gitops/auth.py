"""Give git a token without putting it in a URL, an argv, a log line or ``.git/config``.

git asks ``$GIT_ASKPASS`` for the username and password of an HTTP remote. The askpass script
written here holds no secret: it prints ``$AMPX_GIT_USERNAME`` / ``$AMPX_GIT_TOKEN`` from its
environment, which only the git processes ampx starts for network operations receive.
"""

from __future__ import annotations

import shutil
import stat
import tempfile
from pathlib import Path

from ampx.redact import register_secret

TOKEN_ENV = "AMPX_GIT_TOKEN"
USERNAME_ENV = "AMPX_GIT_USERNAME"
DEFAULT_USERNAME = "x-access-token"  # what GitHub expects with App installation tokens and PATs

ASKPASS_SCRIPT = f"""#!/bin/sh
# ampx askpass: answers git's credential prompts from the environment; holds no secret.
case "$1" in
  [Uu]sername*) printf '%s\\n' "${{{USERNAME_ENV}:-{DEFAULT_USERNAME}}}" ;;
  *) printf '%s\\n' "${TOKEN_ENV}" ;;
esac
"""


class GitAuth:
    """Token auth for git over HTTP(S). Use as a context manager or call :meth:`close`."""

    def __init__(self, token: str, username: str = DEFAULT_USERNAME, directory: str | None = None):
        if not token:
            raise ValueError("empty git token")
        register_secret(token)
        self._token = token
        self.username = username
        self._parent = directory  # where the askpass script goes (a private directory)
        self._dir: str | None = None

    def __repr__(self) -> str:  # never show the token
        return f"GitAuth(username={self.username!r}, token=***)"

    @property
    def askpass_path(self) -> Path:
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="ampx-askpass-", dir=self._parent)
            script = Path(self._dir) / "askpass.sh"
            script.write_text(ASKPASS_SCRIPT)
            script.chmod(stat.S_IRWXU)
        return Path(self._dir) / "askpass.sh"

    def env(self) -> dict[str, str]:
        """Environment entries for a git process that may talk to the remote."""
        return {
            "GIT_ASKPASS": str(self.askpass_path),
            USERNAME_ENV: self.username,
            TOKEN_ENV: self._token,
        }

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> "GitAuth":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

