"""Which repositories the tasks of a namespace may work on: globs like `acme/*`.

Written by the cluster admin (chart value `tasks.allowedRepos`, operator variable
`AMPX_ALLOWED_REPOS`) or the developer (`allowedRepos` in the local config file) as either
- a list of globs, for every namespace: `["acme/*", "tools/ci-*"]`, or
- a map namespace -> globs, `"*"` for every other namespace: `{"team-a": ["acme/api"]}`.
Unset means every repository the GitHub credentials reach (the operator says so at start).
An empty list, or a namespace the map does not name (and no `"*"`), allows none.
Globs match the owner and the name separately (`*` never crosses the '/'), case-insensitively
as GitHub names are.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from typing import Any, Optional

ALL_NAMESPACES = "*"


class AllowListError(ValueError):
    """The allow-list setting cannot be read; the message says where and why."""


def _check_glob(glob: Any, where: str) -> str:
    if not isinstance(glob, str) or glob.count("/") != 1 or "" in glob.split("/"):
        raise AllowListError(f"{where}: {glob!r} is not an owner/name glob (like 'acme/*')")
    return glob.lower()


@dataclass(frozen=True)
class AllowList:
    """None (`globs is None`): everything allowed. Otherwise namespace -> globs."""

    globs: Optional[dict[str, tuple[str, ...]]] = None

    @property
    def unrestricted(self) -> bool:
        return self.globs is None

    def for_namespace(self, namespace: str) -> Optional[tuple[str, ...]]:
        if self.globs is None:
            return None
        return self.globs.get(namespace, self.globs.get(ALL_NAMESPACES, ()))

    def allows(self, full_name: str, namespace: str) -> bool:
        globs = self.for_namespace(namespace)
        if globs is None:
            return True
        owner, _, name = full_name.lower().partition("/")
        for glob in globs:
            g_owner, g_name = glob.split("/")
            if fnmatch.fnmatchcase(owner, g_owner) and fnmatch.fnmatchcase(name, g_name):
                return True
        return False

    def problem(self, full_name: str, namespace: str) -> Optional[str]:
        """Why a task of `namespace` may not use `full_name` (None: it may)."""
        if self.allows(full_name, namespace):
            return None
        globs = self.for_namespace(namespace) or ()
        listed = ", ".join(globs) if globs else "none"
        return (f"repository {full_name} is not in the allow-list of namespace {namespace} "
                f"(allowed: {listed})")


def parse_allowlist(value: Any, where: str = "allowedRepos") -> AllowList:
    """A list of globs or a namespace -> globs map (or JSON text of either); None: unset."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return AllowList(None)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise AllowListError(f"{where} is not valid JSON: {exc.msg}") from None
    if isinstance(value, list):
        return AllowList({ALL_NAMESPACES: tuple(_check_glob(g, where) for g in value)})
    if isinstance(value, dict):
        out: dict[str, tuple[str, ...]] = {}
        for ns, globs in value.items():
            if not isinstance(ns, str) or not isinstance(globs, list):
                raise AllowListError(f"{where}: namespace {ns!r} must map to a list of globs")
            out[ns] = tuple(_check_glob(g, f"{where}[{ns}]") for g in globs)
        return AllowList(out)
    raise AllowListError(f"{where} must be a list of globs or a map namespace -> globs")
