"""Repository references: what users type, turned into (owner, name) on the configured host.

A task's repository is `owner/name` on the one GitHub host ampx is configured for
(`AMPX_GITHUB_URL`); the SSH (`git@HOST:o/r.git`, `ssh://git@HOST/o/r`) and HTTPS forms are
accepted only when HOST is that host, so a repository on another host is refused instead of
silently becoming the configured host's repository of the same name. Dot segments, a leading
'-' and empty parts are refused: the parts end up in API paths and clone URLs.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Optional
from urllib.parse import urlsplit

_PART = r"[^/:@\s]*"
_FORMS = [
    re.compile(rf"^git@(?P<host>[^:/\s]+):(?P<owner>{_PART})/(?P<name>{_PART})$"),
    re.compile(rf"^ssh://git@(?P<host>[^:/\s]+)(?::\d+)?/(?P<owner>{_PART})/(?P<name>{_PART})$"),
    re.compile(rf"^(?P<scheme>https?)://(?P<host>[^/\s]+)/(?P<owner>{_PART})/(?P<name>{_PART})/?$"),
    re.compile(rf"^(?P<owner>{_PART})/(?P<name>{_PART})$"),
]
_OWNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,38}$")
_NAME = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,99}$")
USAGE = "use owner/repo, https://github.com/owner/repo or git@github.com:owner/repo.git"


class RepoRef(NamedTuple):
    owner: str
    name: str

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


class RepoError(ValueError):
    """Not a repository ampx may use; the message is one line for the user."""


def _host_of(git_url: str) -> tuple[str, str, Optional[int]]:
    """(scheme, hostname, port) of the configured git URL, lower-cased."""
    parts = urlsplit(git_url if "://" in git_url else f"file://{git_url}")
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


def _host_ok(form: re.Match, git_url: str) -> bool:
    scheme, host, port = _host_of(git_url)
    given = form["host"].lower()
    if "scheme" in form.re.groupindex:  # https://HOST[:PORT]/...
        url = urlsplit(f"{form['scheme']}://{given}")
        default = {"http": 80, "https": 443}
        same_port = (url.port or default.get(url.scheme)) == (port or default.get(scheme))
        return url.hostname == host and same_port and url.scheme in ("https", scheme)
    return given == host  # SSH forms name the host without the HTTP port


def parse_repo(spec: str, host: Optional[str] = None) -> RepoRef:
    """`git@HOST:o/r.git`, `ssh://git@HOST/o/r`, `https://HOST/o/r(.git)` or `o/r` -> RepoRef.

    `host` is the configured git URL (`https://github.com`); given, a form naming another host
    is refused. Without it only the shape is checked (for specs already admitted)."""
    value = (spec or "").strip()
    for form in _FORMS:
        m = form.match(value)
        if m is None:
            continue
        owner, name = m["owner"], m["name"]
        if name.endswith(".git"):
            name = name[: -len(".git")]
        if not owner or not name:
            raise RepoError(f"not a repository: {spec!r} has an empty part; {USAGE}")
        for part in (owner, name):
            if part in (".", ".."):
                raise RepoError(f"not a repository: {spec!r} has a dot segment ({part!r})")
            if part.startswith("-"):
                raise RepoError(f"not a repository: {spec!r} has a part starting with '-'")
        if not _OWNER.match(owner) or not _NAME.match(name):
            raise RepoError(f"not a repository: {spec!r}; owner and name are letters, digits, "
                            f"'-', '_' (and '.' in the name); {USAGE}")
        if host is not None and "host" in form.groupindex and not _host_ok(m, host):
            raise RepoError(f"repository {spec!r} is not on the configured GitHub host "
                            f"{host.rstrip('/')}; ampx works only with that host's repositories")
        return RepoRef(owner, name)
    raise RepoError(f"not a GitHub repository: {spec!r} ({USAGE})")
