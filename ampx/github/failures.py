"""What a CI log line says about a failure: a score and a kind, per test runner (pure).

GitHub Actions logs mix the failure a person needs with a lot of noise: passing tests that
print, retries, warnings, backtrace frames. Each line gets a score (higher: more likely part
of the failure; negative: noise such as stack frames or "transient error, retrying") and a
kind, which says how the excerpt grows a region around it:

``block``    starts a failing test's block (pytest ``___ test_x ___``, jest ``●``, go ``--- FAIL:``,
             Rust ``panicked at``, dotnet ``Failed X [ms]``, PHPUnit ``1) A::b``, Gradle
             ``A > b() FAILED``): the lines after it belong to it;
``detail``   an assertion, an expected/received pair, an error message;
``summary``  the runner's summary (``1 failed, 3 passed``, ``Tests: 1 failed``, ``FAILED x``);
``exit``     ``##[error]Process completed with exit code N``: what leads to it matters;
``runner``   the runner's own verdict (time limit, cancellation, shutdown);
``frame``    a stack or backtrace frame (kept last, if at all);
``gorun``    ``=== RUN TestX`` (a go -v failure block starts there).

Only linear-time work: lines are cut at :data:`CLASSIFY_MAX` characters first, most lines are
rejected by one prefilter search, the rules are anchored or literal, and "expected ... got"
is found with ``str.find``.
"""

from __future__ import annotations

import bisect
import re
from typing import NamedTuple, Optional

#: Characters of a line the rules look at (a minified bundle's first KB says enough).
CLASSIFY_MAX = 1024


class Mark(NamedTuple):
    score: float
    kind: str
    name: str = ""  # the test's name for block kinds, where the line gives it


NONE = Mark(0.0, "")

# A line is looked at only when it holds one of these (lower-cased) or starts like one of the
# structures below. Callers with many lines find the needles in bulk (one ``str.find`` pass
# per needle over a whole block of text: see :func:`hot_lines`), which is what keeps a large
# log cheap; :func:`classify` checks them itself otherwise.
NEEDLES = (
    "error", "fail", "panic", "assert", "expect", "receiv", "actual", "fatal", "kill", "exception",
    "traceback", "abort", "denied", "timed out", "timeout", "execution time", "cancel", "segmentation",
    "core dumped", "not found", "no such file", "exit code", "exit status", "left", "right:",
    "warn", "retry", "transient", "problem", "found ", "went wrong", "stdout ----", "##[",
    "\u25cf", "\u2716", "\u2715", "\u2717", "\u00d7", "<<<", "oom", "memory", "bad_alloc",
)
_HOT_START = re.compile(
    r"E |=== RUN|\s*--- FAIL|>\s{3}|\s+\S{1,300}_test\.go:\d+|\s*\d+\) |\s+at |\s+\d+: |\S{1,300} > "
    r"|\s+--> |\s*(?:[>\u25cf\u2716\u2715\u2717\u00d7]|- Expected|\+ Received)"
)
_GORUN = re.compile(r"=== RUN\s+(\S{1,300})")


def is_hot(line: str) -> bool:
    low = line.lower()
    return bool(_HOT_START.match(line)) or any(n in low for n in NEEDLES)


def hot_lines(text: str, starts: list[int]) -> set[int]:
    """Indexes of the lines of ``text`` (starting at offsets ``starts``) holding a needle.
    One ``find`` per needle and hit line: linear in the text, not in lines times needles."""
    low = text.lower()
    hot: set[int] = set()
    n = len(starts)
    for needle in NEEDLES:
        i = low.find(needle)
        while i >= 0:
            k = bisect.bisect_right(starts, i) - 1
            hot.add(k)
            if k + 1 >= n:
                break
            i = low.find(needle, starts[k + 1])
    return hot


# (regex, score, kind); the first matching rule wins, so specific rules come first.
_R = re.compile
_RULES: list[tuple[re.Pattern[str], float, str]] = [
    # --- the runner
    (_R(r"##\[error\]Process completed with exit code (?:137|143)\b"), 9, "killed"),
    (_R(r"##\[error\]Process completed with exit code \d+"), 3, "exit"),
    (_R(r"##\[error\]The job (?:running on runner .{0,200} )?has exceeded the maximum execution time"), 10, "runner"),
    (_R(r"##\[error\]The (?:runner has received a shutdown signal|operation was canceled|job was canceled)"), 7, "runner"),
    (_R(r"##\[error\]"), 8, "detail"),
    (_R(r"##\[(?:warning|notice)\]"), 0, ""),
    # --- memory and signals
    (_R(r"^\s*Killed\s*$|\bsignal: killed\b|\bexit (?:code|status) 137\b|\bOOMKilled\b|\boom-kill"
        r"|JavaScript heap out of memory|\bMemoryError\b|std::bad_alloc|\bOut of memory\b"), 9, "killed"),
    # --- Rust
    (_R(r"^thread '[^']{0,300}' panicked at"), 10, "block"),
    (_R(r"assertion `?left (?:==|!=) right`? failed|^\s*assertion failed: "), 9, "detail"),
    (_R(r"^\s*(?:left|right)\s?: "), 8, "detail"),
    (_R(r"^---- \S{1,300} stdout ----$"), 7, "block"),
    (_R(r"^test result: FAILED"), 8, "summary"),
    (_R(r"^test \S{1,300} \.\.\. FAILED$"), 6, "detail"),
    (_R(r"^test \S{1,300} \.\.\. ok$"), -1, ""),
    (_R(r"^error: test failed, to rerun pass"), 6, "summary"),
    (_R(r"^error(?:\[E\d{4}\])?: "), 10, "detail"),
    (_R(r"^\s+--> \S{1,300}:\d+:\d+"), 6, "detail"),
    (_R(r"^\s+\d{1,4}: [\w<>{}:.$ ]{1,300}$|^\s+at /rustc/|^\s+at \S{1,300}\.rs:\d+"
        r"|^stack backtrace:$|^\s+at \./|^\s+\d+: 0x[0-9a-f]+"), -3, "frame"),
    # --- go
    (_R(r"^\s*--- FAIL: (\S{1,300})"), 9, "gofail"),
    (_R(r"^=== RUN\s+(\S{1,300})"), 0, "gorun"),
    (_R(r"^\s*--- (?:PASS|SKIP): "), -2, ""),
    (_R(r"^panic: "), 10, "block"),
    (_R(r"^FAIL\s+\S{1,300}\s+\(?[\d.]+s\)?"), 7, "summary"),
    (_R(r"^FAIL$"), 3, "summary"),
    (_R(r"^ok\s+\S{1,300}\s+[\d.]+s|^ok\s+\S{1,300}\s+\(cached\)"), -1, ""),
    (_R(r"^\s+\S{1,300}_test\.go:\d+: "), 4, "godetail"),
    (_R(r"^\S{1,300}\.go:\d+:\d+: "), 9, "detail"),
    # --- Python: pytest, mypy, ruff/flake8
    (_R(r"^_{3,} (?:ERROR collecting )?\S.{0,300} _{3,}$"), 6, "block"),
    (_R(r"^={3,} (?:FAILURES|ERRORS) ={3,}$"), 3, ""),
    (_R(r"^E {1,12}\S"), 8, "detail"),
    (_R(r"^>\s{3,}\S"), 5, "detail"),
    (_R(r"^\S{1,300}\.pyi?:\d+:(?: \d+:)? error: "), 10, "detail"),
    (_R(r"^\S{1,300}\.pyi?:\d+: \w{0,80}(?:Error|Exception|Exit)\w{0,40}$"), 9, "detail"),
    (_R(r"^\S{1,300}\.pyi?:\d+:(?: \d+:)? note: "), 2, ""),
    (_R(r"^\S{1,300}\.py:\d+:\d+: [A-Z]{1,4}\d{1,5} "), 8, "detail"),
    (_R(r"^(?:FAILED|ERROR) \S"), 9, "summary"),
    (_R(r"^={3,} .{0,200}\b[1-9]\d* (?:failed|errors?)\b"), 8, "summary"),
    (_R(r"^Found [1-9]\d* errors? in \d+ files?"), 8, "summary"),
    (_R(r"^Traceback \(most recent call last\):"), 6, "detail"),
    # --- JavaScript: jest, vitest, mocha, tsc, eslint, npm
    (_R(r"^\s*● (?!Console\b)\S"), 9, "block"),
    (_R(r"^\s*(?:Expected|Received|Actual)(?: value| length| substring| pattern)?\s?:\s"), 9, "detail"),
    (_R(r"^\s*- Expected\b|^\s*\+ Received\b"), 6, "detail"),
    (_R(r"^\S{1,300}\(\d+,\d+\): error TS\d+: |^\S{1,300}:\d+:\d+ - error TS\d+: "), 10, "detail"),
    (_R(r"^\s+\d+:\d+\s+error\s+"), 9, "detail"),
    (_R(r"^\s+\d+:\d+\s+warning\s+"), 0, ""),
    (_R(r"^✖ \d+ problems? \((?!0 errors)"), 8, "summary"),
    (_R(r"^Found [1-9]\d* errors?\b"), 8, "summary"),
    (_R(r"^Tests?:\s.{0,80}\b[1-9]\d* failed"), 8, "summary"),
    (_R(r"^Test Suites:\s.{0,80}\b[1-9]\d* failed"), 7, "summary"),
    (_R(r"^\s*FAIL\s+\S"), 7, "detail"),
    (_R(r"^\s*(?:PASS|✓|✔)\s"), -1, ""),
    (_R(r"^\s*[×✕✗] \S"), 7, "detail"),
    (_R(r"^\s*>\s*\d+ \|"), 5, "detail"),
    (_R(r"^\s+\d+\) \S"), 6, "block"),
    (_R(r"^npm (?:ERR!|error) (?:code (?:ELIFECYCLE|1)|A complete log|errno|path|command|workspace|location)"), 1, ""),
    (_R(r"^npm (?:ERR!|error) "), 4, "detail"),
    # --- dotnet
    (_R(r"^\s*Failed (\S{1,300}) \[(?:< ?)?[\d.]+ ?m?s\]"), 10, "block"),
    (_R(r"^\s*Error Message:\s*$"), 5, "detail"),
    (_R(r"^\s*Assert\.\w{1,40}\(\) Failure"), 9, "detail"),
    (_R(r"^Failed!\s+- Failed:\s+[1-9]"), 9, "summary"),
    (_R(r"\berror (?:CS|MSB|NU|NETSDK|FS|BC)\d{3,5}\s?:"), 10, "detail"),
    (_R(r"^\s*Build FAILED\.?$"), 6, "summary"),
    # --- PHPUnit
    (_R(r"Failed asserting"), 10, "detail"),
    (_R(r"^\d+\) \S{1,300}::\S"), 8, "block"),
    (_R(r"^There (?:was|were) \d+ (?:failures?|errors?):"), 5, ""),
    (_R(r"^(?:FAILURES|ERRORS)!$"), 7, "summary"),
    (_R(r"^Tests: \d+, Assertions: \d+, (?:Failures|Errors)"), 8, "summary"),
    # --- JVM: JUnit under Gradle and Maven
    (_R(r"^\S{1,300} > .{1,300} FAILED$"), 9, "block"),
    (_R(r"<<< (?:FAILURE|ERROR)!"), 9, "block"),
    (_R(r"^\d+ tests? completed, \d+ failed"), 8, "summary"),
    (_R(r"^\* What went wrong:"), 8, "block"),
    (_R(r"^FAILURE: Build failed with an exception"), 6, "summary"),
    (_R(r"^Execution failed for task"), 8, "detail"),
    (_R(r"^\[ERROR\] Tests run: .{0,200}(?:Failures: [1-9]|Errors: [1-9])"), 8, "summary"),
    (_R(r"^\[ERROR\] Failed to execute goal"), 5, "summary"),
    (_R(r"^\[ERROR\] (?:Failures|Errors): ?$"), 5, ""),
    (_R(r"^\[ERROR\]\s+\S{1,300}:\d+ "), 8, "detail"),
    (_R(r"^\[ERROR\]"), 3, "detail"),
    (_R(r"^\[INFO\] BUILD FAILURE"), 6, "summary"),
    (_R(r"^\s+at [\w$.<>]{1,300}\([\w$.<> ]{0,200}(?::\d+)?\)$|^\s+at .{0,300}\(\S{1,300}:\d+:\d+\)$"
        r"|^\s+at \S{1,300}:\d+:\d+$|^\s+at (?:async )?[\w$.<>]{1,300} \(node:"), -1, "frame"),
    # --- C, C++, make, shells
    (_R(r"^\S{1,300}:\d+(?::\d+)?: (?:fatal )?error: "), 10, "detail"),
    (_R(r"\bSegmentation fault\b|\bcore dumped\b|\bAborted\b"), 8, "detail"),
    (_R(r"^make(?:\[\d+\])?: \*\*\* "), 5, "detail"),
    (_R(r"\bcommand not found\b|\bNo such file or directory\b"), 5, "detail"),
    # --- generic
    (_R(r"(?i:\b0 (?:failed|errors?|failures)\b|\bno errors?\b|\berrors?[=:] ?0\b|\bwarn(?:ing)?s?\b)"), 0, ""),
    (_R(r"(?i:\bretry(?:ing)?\b|\bretried\b|\btransient\b|\bwill retry\b)"), -2, ""),
    (_R(r"(?i:^(?:error|fatal)(?:\[\w{1,20}\])?:\s)"), 8, "detail"),
    (_R(r"^(?:\S{1,200}\.)?[A-Z]\w{0,80}(?:Error|Exception)\b"), 7, "detail"),
    (_R(r"\b[A-Z]\w{0,80}(?:Error|Exception)\b"), 4, "detail"),
    (_R(r"(?i:\bfatal\b|\bpanic\b)"), 3, "detail"),
    (_R(r"(?i:\berror\b|\bfail(?:ed|ure|s)?\b)"), 2, "detail"),
]

_EXPECT_WORDS = ("got", "received", "but", "actual", "to be", "to equal", "instead")


def _expected_but(low: str) -> bool:
    """``expected ... got``/``received``/``but`` in one line, in linear time."""
    i = low.find("expected")
    if i < 0:
        return False
    return any(low.find(w, i + 8) >= 0 for w in _EXPECT_WORDS)


def classify(line: str, hot: Optional[bool] = None) -> Mark:
    """The line's :class:`Mark` (score 0, kind "" for ordinary output). ``hot``: whether the
    line holds a needle, when the caller knows (then only the line's start is checked here)."""
    line = line[:CLASSIFY_MAX]
    if line.startswith("=== RUN"):
        m = _GORUN.match(line)
        return Mark(0.0, "gorun", m.group(1)) if m else NONE
    if not hot and not _HOT_START.match(line) and (hot is not None or not any(n in line.lower() for n in NEEDLES)):
        return NONE
    for pattern, score, kind in _RULES:
        m = pattern.search(line)
        if m:
            name = m.group(1) if kind in ("gofail", "gorun") or (kind == "block" and m.re.groups) else ""
            if score <= 2 and score >= 0 and _expected_but(line.lower()):
                return Mark(4.0, "detail")
            return Mark(float(score), kind, name or "")
    if _expected_but(line.lower()):
        return Mark(4.0, "detail")
    return NONE


def is_specific(mark: Mark) -> bool:
    """A line that says what failed (not just that something did)."""
    return mark.score >= 5 and mark.kind not in ("exit", "gorun")
