"""Repository references: what users type, turned into (owner, name)."""

from __future__ import annotations

import re
from typing import NamedTuple

from .models import REPO_PATTERN

_FORMS = [
    re.compile(r"^git@(?P<host>[A-Za-z0-9.-]+):(?P<owner>[\w.-]+)/(?P<name>[\w.-]+?)(?:\.git)?$"),
    re.compile(
        r"^https://(?P<host>[A-Za-z0-9.-]+(?::\d+)?)/(?P<owner>[\w.-]+)/(?P<name>[\w.-]+?)(?:\.git)?/?$"
    ),
    re.compile(r"^(?P<owner>[\w.-]+)/(?P<name>[\w.-]+?)(?:\.git)?$"),
]


class RepoRef(NamedTuple):
    owner: str
    name: str

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


def parse_repo(spec: str) -> RepoRef:
    """Accept git@host:o/r.git, https://host/o/r(.git) or o/r; anything else is an error."""
    value = spec.strip()
    if re.match(REPO_PATTERN, value):
        for form in _FORMS:
            m = form.match(value)
            if m:
                return RepoRef(m["owner"], m["name"])
    raise ValueError(
        f"not a GitHub repository: {spec!r} (use git@github.com:owner/repo.git, "
        "https://github.com/owner/repo or owner/repo)"
    )
