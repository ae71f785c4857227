"""Repository specs and remote URLs.

Users name a repository as ``git@github.com:o/r.git``, ``https://github.com/o/r(.git)`` or
``o/r``; ampx keeps only (owner, name) and builds the remote URL from the configured git host
(``https://github.com``, GitHub Enterprise, ``http://127.0.0.1:PORT`` in tests, or a local
directory / ``file://`` URL holding ``owner/name.git`` bare repositories). Credentials never go
into a URL: git receives them through :mod:`ampx.gitops.auth`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

_OWNER = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})"
_NAME = r"[A-Za-z0-9._-]{1,100}"
_FORMS = [
    re.compile(rf"^git@(?P<host>[A-Za-z0-9.-]+):(?P<owner>{_OWNER})/(?P<name>{_NAME}?)(?:\.git)?/?$"),
    re.compile(rf"^ssh://git@(?P<host>[A-Za-z0-9.-]+)(?::\d+)?/(?P<owner>{_OWNER})/(?P<name>{_NAME}?)(?:\.git)?/?$"),
    re.compile(rf"^https?://(?P<host>[A-Za-z0-9.-]+(?::\d+)?)/(?P<owner>{_OWNER})/(?P<name>{_NAME}?)(?:\.git)?/?$"),
    re.compile(rf"^(?P<owner>{_OWNER})/(?P<name>{_NAME}?)(?:\.git)?$"),
]


class RepoSpecError(ValueError):
    """The repository spec is not one of the accepted forms."""


@dataclass(frozen=True)
class RepoSpec:
    owner: str
    name: str
    host: str | None = None  # as written in the spec, informational only

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def __str__(self) -> str:
        return self.full_name


def parse_repo_spec(spec: str) -> RepoSpec:
    """``git@github.com:o/r.git`` | ``https://github.com/o/r(.git)`` | ``o/r`` -> RepoSpec."""
    text = (spec or "").strip()
    for form in _FORMS:
        match = form.match(text)
        if match and match.group("name") not in (".", "..", "") \
                and not match.group("name").startswith("-"):  # never an option to git
            groups = match.groupdict()
            return RepoSpec(owner=groups["owner"], name=groups["name"], host=groups.get("host"))
    raise RepoSpecError(
        f"not a repository: {spec!r}; use owner/repo, https://github.com/owner/repo or "
        "git@github.com:owner/repo.git"
    )


def remote_url(host: str, repo: RepoSpec | str) -> str:
    """The clone URL of ``repo`` on ``host`` (an http(s) or file:// base URL, or a directory)."""
    if isinstance(repo, str):
        repo = parse_repo_spec(repo)
    base = host.strip().rstrip("/")
    if "://" not in base:
        if not base:
            raise RepoSpecError("the git host is empty")
        base = "file://" + os.path.abspath(base)
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https", "file"):
        raise RepoSpecError(f"unsupported git host scheme {parts.scheme!r} in {host!r}")
    if parts.username or parts.password:
        raise RepoSpecError("the git host must not contain credentials; ampx passes the token "
                            "to git through GIT_ASKPASS")
    return f"{base}/{repo.owner}/{repo.name}.git"
