"""Never push a credential: files the agent changed that contain one of the attempt's secrets.

The agent works with `AMP_API_KEY` in its environment and could write it (or any credential
ampx holds) into the repository; once pushed it is in the history, in CI logs and in every
clone. Like GitHub's push protection, but for the exact values ampx knows, so there are no
false alarms: a match is the secret itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

_MIN_LEN = 8  # shorter values would match ordinary text


def files_with_secrets(workspace: Path, changes: Iterable[tuple[str, str]],
                       secrets: Iterable[str | None]) -> list[str]:
    """Changed (added or modified) paths whose content contains one of ``secrets``."""
    needles = [s.encode() for s in secrets if s and len(s) >= _MIN_LEN]
    if not needles:
        return []
    found = []
    for status, path, *_ in changes:
        if status.startswith("D"):
            continue
        try:
            data = (workspace / path).read_bytes()
        except OSError:  # a directory entry, a broken link: nothing to push there
            continue
        if any(n in data for n in needles):
            found.append(path)
    return sorted(set(found))


def changes_with_secrets(changes: Iterable[tuple[str, str]], read: Callable[[str], bytes | None],
                         secrets: Iterable[str | None]) -> list[str]:
    """Like :func:`files_with_secrets`, reading each changed path's new content with ``read``
    (e.g. the blob in the tree about to be committed: exactly what would be pushed)."""
    needles = [s.encode() for s in secrets if s and len(s) >= _MIN_LEN]
    if not needles:
        return []
    found = []
    for status, path, *_ in changes:
        if status.startswith("D"):
            continue
        data = read(path)
        if data and any(n in data for n in needles):
            found.append(path)
    return sorted(set(found))
