"""The tamper guard: changes an agent must not make to get CI green.

Editing CI workflows or deleting tests can turn CI green without fixing anything, so such
changes are named and the attempt is held for review instead of pushed as a success.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

WORKFLOW_DIR = ".github/workflows/"

_TEST_DIRS = {"tests", "test", "__tests__", "spec", "specs", "testing"}
_TEST_FILE = re.compile(
    r"""^(?:
        test_.+\.py | .+_test\.py | conftest\.py
      | .+_test\.go
      | .+\.(?:test|spec)\.[cm]?[jt]sx?
      | .+_spec\.rb | .+_test\.rb
      | .+Tests?\.(?:java|kt|cs|swift|scala)
      | .+_test\.(?:rs|exs|dart|cpp|cc|c)
    )$""",
    re.VERBOSE,
)


def is_workflow(path: str) -> bool:
    return path.startswith(WORKFLOW_DIR)


def is_test_file(path: str) -> bool:
    parts = path.split("/")
    return bool(_TEST_FILE.match(parts[-1])) or any(part in _TEST_DIRS for part in parts[:-1])


def tamper_check(changes: Iterable[tuple[str, str]]) -> list[str]:
    """Offending paths among (status, path) changes: any workflow change, any deleted test."""
    offending = []
    for status, path, *_ in changes:
        if is_workflow(path) or (status.startswith("D") and is_test_file(path)):
            offending.append(path)
    return sorted(set(offending))
