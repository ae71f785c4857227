"""The tamper guard: changes an agent must not make to get CI green.

Editing CI, deleting or emptying tests, or telling the test runner to skip them can turn CI
green without fixing anything, so such changes are named and the attempt is held for review
instead of pushed as a success. What counts (paths relative to the repository root):

- anything under `.github/` (workflows, composite actions, CODEOWNERS...) and `.gitmodules`;
- the task policy's extra globs (`protectedPaths`: `*` and `?` stay within one path
  component, `**` spans directories; a glob without `/` matches the file name anywhere);
- a test file deleted, or emptied (nothing left but blank lines and comments);
- a new skip in a test file (`@pytest.mark.skip`, `pytest.skip(`, `@unittest.skip`, `it.skip(`,
  `describe.skip(`, `test.skip(`, `xit(`, `xdescribe(`, `t.Skip(`);
- test-runner configuration that skips or deselects tests, when the change adds such a line:
  `conftest.py` (`collect_ignore`, `pytest_ignore_collect`, `pytest_collection_modifyitems`,
  `pytest_deselected`, `pytest.skip(`), `pytest.ini` / `setup.cfg` / `tox.ini` /
  `pyproject.toml` (`--ignore`, `--deselect`, `-k`, `-m`, `--collect-only`, `-p no:`,
  `norecursedirs`, `testpaths`, `python_files` / `_classes` / `_functions`), jest, vitest and
  mocha configuration and `package.json` (`testPathIgnorePatterns`, `modulePathIgnorePatterns`,
  `testMatch`, `testRegex`, `passWithNoTests`; in jest/vitest/karma/mocha configuration
  also `exclude`, `ignore`, `spec`).

Content checks need the file contents (``read_new`` / ``read_old``); without them only the
path rules apply.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache

WORKFLOW_DIR = ".github/workflows/"
PROTECTED_PREFIXES = (".github/",)
PROTECTED_FILES = (".gitmodules",)

Reader = Callable[[str], "bytes | None"]

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
_SKIP_IN_TESTS = re.compile(
    rb"@pytest\.mark\.skip|pytest\.skip\(|@unittest\.skip|unittest\.skip\(|\bself\.skipTest\("
    rb"|\b(?:it|describe|test|context)\.skip\b|\bx(?:it|describe|test)\(|\bt\.Skip(?:Now|f)?\("
)
_PYTEST_CONFIG = re.compile(
    rb"--ignore|--deselect|--collect-only|--co\b|(?:^|[\s\"'\[=,])-[km]\b|-p\s*no:"
    rb"|\bnorecursedirs\b|\btestpaths\b|\bpython_(?:files|classes|functions)\b"
)
_CONFTEST = re.compile(
    rb"\bcollect_ignore|\bpytest_ignore_collect\b|\bpytest_collection_modifyitems\b"
    rb"|\bpytest_deselected\b|pytest\.skip\(|@pytest\.mark\.skip"
)
_JEST = (rb"testPathIgnorePatterns|modulePathIgnorePatterns|\btestMatch\b|\btestRegex\b"
         rb"|passWithNoTests")
_JEST_CONFIG = re.compile(_JEST)
_JS_CONFIG = re.compile(_JEST + rb"|\bexclude\b|\bignore\b|\bspec\b")
_JS_CONFIG_FILE = re.compile(
    r"^(?:jest|vitest|vite|karma)\.config\.[cm]?[jt]s(?:on)?$|^\.mocharc(?:\.[a-z]+)?$"
)
_PY_CONFIG_FILES = {"pytest.ini", "setup.cfg", "tox.ini", "pyproject.toml"}
_COMMENT = re.compile(rb"^\s*(?:#|//|/\*|\*|--|;)")


def is_workflow(path: str) -> bool:
    return path.startswith(WORKFLOW_DIR)


def is_protected_by_default(path: str) -> bool:
    return path.startswith(PROTECTED_PREFIXES) or path in PROTECTED_FILES


def is_test_file(path: str) -> bool:
    parts = path.split("/")
    return bool(_TEST_FILE.match(parts[-1])) or any(part in _TEST_DIRS for part in parts[:-1])


@lru_cache(maxsize=256)
def _glob_re(glob: str) -> re.Pattern[str]:
    glob = glob.strip().lstrip("/")
    if "/" not in glob.rstrip("/"):
        glob = "**/" + glob
    if glob.endswith("/"):
        glob += "**"
    out, i = [], 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out) + r"(?:/.*)?\Z")


def matches_glob(path: str, glob: str) -> bool:
    """Whether ``path`` is covered by a `protectedPaths` glob (a directory covers its files)."""
    return bool(_glob_re(glob).match(path))


def _marker_lines(data: bytes | None, marker: re.Pattern[bytes]) -> set[bytes]:
    if not data:
        return set()
    return {line.strip() for line in data.splitlines() if marker.search(line)}


def _is_emptied(data: bytes | None) -> bool:
    if data is None:
        return False
    return all(not line.strip() or _COMMENT.match(line) for line in data.splitlines())


def _skip_marker(status: str, path: str) -> re.Pattern[bytes] | None:
    name = path.rsplit("/", 1)[-1]
    if name == "conftest.py":
        return _CONFTEST
    if name in _PY_CONFIG_FILES:
        return _PYTEST_CONFIG
    if name == "package.json":
        return _JEST_CONFIG
    if _JS_CONFIG_FILE.match(name):
        return _JS_CONFIG
    if is_test_file(path) and status.startswith("M"):  # a new test file disables nothing
        return _SKIP_IN_TESTS
    return None


def tamper_reason(status: str, path: str, read_new: Reader | None = None,
                  read_old: Reader | None = None, protected: Iterable[str] = ()) -> str | None:
    """Why this one change is tampering, or None."""
    if is_protected_by_default(path) or any(matches_glob(path, g) for g in protected):
        return "protected path"
    if status.startswith("D"):
        return "deleted test" if is_test_file(path) else None
    if read_new is None:
        return None
    new = read_new(path)
    old = read_old(path) if read_old is not None and status.startswith("M") else None
    if is_test_file(path) and status.startswith("M") and _is_emptied(new) \
            and not _is_emptied(old if read_old is not None else b"x"):
        return "emptied test"
    marker = _skip_marker(status, path)
    if marker is not None and _marker_lines(new, marker) - _marker_lines(old, marker):
        return "skips tests"
    return None


def tamper_check(changes: Iterable[tuple[str, str]], read_new: Reader | None = None,
                 read_old: Reader | None = None, protected: Iterable[str] = ()) -> list[str]:
    """Offending paths among (status, path) changes (see the module docstring)."""
    protected = tuple(protected)
    offending = []
    for status, path, *_ in changes:
        if tamper_reason(status, path, read_new, read_old, protected):
            offending.append(path)
    return sorted(set(offending))
