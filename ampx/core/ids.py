"""Task ids (lowercase ULIDs), default branch names, and git-like id prefixes."""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable

SLUG_MAX = 40
DEFAULT_BRANCH_PREFIX = "amp/"
BRANCH_MAX = 200


def new_task_id() -> str:
    """A lowercase ULID: sortable by creation time and a valid Kubernetes object name."""
    from ulid import ULID  # imported here: listing and --help never need it

    return str(ULID()).lower()


def slugify(text: str, limit: int = SLUG_MAX) -> str:
    """`Migrate Mocha tests to Vitest` -> `migrate-mocha-tests-to-vitest`."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(slug) > limit:
        slug = slug[:limit].rsplit("-", 1)[0] or slug[:limit]
    return slug.strip("-") or "task"


def default_branch(title: str, task_id: str, prefix: str = DEFAULT_BRANCH_PREFIX) -> str:
    """`<prefix><slug>-<whole id>`: readable, and unique because the id is (a ULID's first
    characters are its timestamp, the same for every task of a quarter of an hour)."""
    tid = task_id.lower()
    branch = f"{prefix}{slugify(title)}-{tid}"
    if len(branch) > BRANCH_MAX:  # a very long kubectl-given name: the id alone stays unique
        branch = f"{prefix}{tid}"[:BRANCH_MAX]
    return branch


class IdError(LookupError):
    """An id that matches no task, or more than one."""


def resolve_prefix(prefix: str, ids: Iterable[str]) -> str:
    """Like git: any unique prefix, case-insensitive, names one task."""
    p = prefix.strip().lower()
    if not p:
        raise IdError("empty task id")
    ids = list(ids)
    if p in ids:
        return p
    matches = sorted(i for i in ids if i.startswith(p))
    if not matches:
        raise IdError(f"no task matches id {prefix!r}")
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (", …" if len(matches) > 5 else "")
        raise IdError(f"task id {prefix!r} is ambiguous: it matches {shown}")
    return matches[0]


SHORT_ID_MIN = 7


def short_ids(ids: Iterable[str], minimum: int = SHORT_ID_MIN) -> dict[str, str]:
    """Each id's shortest prefix that names only it among `ids` (at least `minimum` long), like
    `git log --oneline`: what tables show, and what `resolve_prefix` takes back."""
    ordered = sorted(set(ids))
    out: dict[str, str] = {}
    for i, name in enumerate(ordered):
        need = minimum
        for other in (ordered[i - 1] if i else None, ordered[i + 1] if i + 1 < len(ordered) else None):
            if other is not None:
                common = 0
                for a, b in zip(name, other):
                    if a != b:
                        break
                    common += 1
                need = max(need, common + 1)
        out[name] = name[:need]
    return out
