"""The CI failure excerpt handed to the agent, and its signature (pure, no I/O).

Input: raw GitHub Actions job logs. Each line starts with an ISO timestamp with seven
fractional digits (``2026-11-25T10:00:00.1234567Z``), the file may start with a byte order
mark, and a step looks like::

    ##[group]Run pytest -q          <- step header, the step's script/shell/env inside
    pytest -q
    shell: /usr/bin/bash -e {0}
    ##[endgroup]
    ... step output ...             <- output comes *after* the header's endgroup
    ##[error]Process completed with exit code 1.

The excerpt keeps, for each failed job, the failing step's output (all of it if it fits,
else the error-looking lines plus the tail), under a ``== job <name> (failed) ==`` header;
then ``Passed: a, b``. At most :data:`EXCERPT_LIMIT` characters in total. Secrets are
redacted with :func:`ampx.redact.redact` plus any token values the caller names.

:func:`signature` reduces an excerpt to its normalised error lines (no numbers, hex, line
numbers, timestamps or temp dirs): two attempts failing with the same signature failed the
same way, and the task stops early instead of burning attempts.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence, Union

from ampx.redact import MASK, redact

EXCERPT_LIMIT = 4000
#: One log line never takes more than this in the excerpt (minified bundles, base64 blobs).
LINE_MAX = 400
#: How many failed jobs get a section of their own; the rest are only named.
MAX_JOB_SECTIONS = 6
TAIL_LINES = 12
CONTEXT_RADIUS = 8
GAP = "[...]"

_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)\s?")
# CSI sequences (colours, cursor), OSC sequences (hyperlinks, titles), lone ESC pairs.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

_STEP_HEADER = re.compile(r"^##\[group\]Run (.*)$")
_POST_JOB = re.compile(r"^(?:Post job cleanup\.|Cleaning up orphan processes)$")
_GENERIC_ERROR = re.compile(
    r"^##\[error\](?:Process completed with exit code \d+\.?|The operation was canceled\.?)$"
)

_ERROR_PATTERNS = [
    r"^##\[error\]",
    r"\b[A-Z]\w*(?:Error|Exception)\b",           # AssertionError, TypeError, ...
    r"(?i:\berror\b)",                                # error:, Error:, ERROR
    r"\bFAIL(?:ED|URE|S)?\b",                        # pytest FAILED, go FAIL, jest FAIL
    r"\b\d+ (?:failed|failing|errors?)\b",          # summaries
    r"Traceback \(most recent call last\)",
    r"^E {2,}\S",                                    # pytest assertion detail
    r"^--- FAIL",                                    # go test
    r"^panic:",
    r"npm ERR!|^npm error\b",
    r"[✕✗×●] ",                                      # jest / mocha
    r"^\s*\S+\.\w{1,5}:\d+(?::\d+)?:?\s",          # file.ext:line[:col]: message
    r"(?i:\bexpected\b.*\b(?:got|received|but|to (?:be|equal))\b)",
    r"(?i:\bfatal\b)",
    r"(?i:\bsegmentation fault\b|\bcore dumped\b)",
    r"(?i:\bcommand not found\b|\bNo such file or directory\b)",
    r"(?i:\bexit (?:code|status) [1-9])",
]
_ERRORISH = re.compile("|".join(f"(?:{p})" for p in _ERROR_PATTERNS), re.MULTILINE)
_NOT_ERRORISH = re.compile(
    r"(?i:\b0 (?:failed|errors?)\b|\berrors?=0\b|no errors)"
    r"|^(?!.*(?:Error|FAIL)).*\b\w*Warning:"  # warnings are not errors
)


def is_error_line(line: str) -> bool:
    return bool(_ERRORISH.search(line)) and not _NOT_ERRORISH.search(line)


# --------------------------------------------------------------------------- cleaning


def clean_log(text: str, secrets: Iterable[str] = ()) -> list[str]:
    """Strip BOM, timestamps, ANSI codes and control characters; redact secrets; split lines."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    lines = []
    for raw in text.split("\n"):
        line = _TIMESTAMP.sub("", raw.lstrip("\ufeff"), count=1)
        line = _ANSI.sub("", line)
        line = _CONTROL.sub("", line)
        lines.append(line.rstrip())
    while lines and not lines[-1]:
        lines.pop()
    cleaned = "\n".join(lines)
    cleaned = redact_all(cleaned, secrets)
    return cleaned.split("\n") if cleaned else []


def redact_all(text: str, secrets: Iterable[str] = ()) -> str:
    for value in sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True):
        text = text.replace(value, MASK)
    return redact(text) or ""


# --------------------------------------------------------------------------- steps


@dataclass
class StepSection:
    name: str
    output: list[str] = field(default_factory=list)
    failed: bool = False


def split_steps(lines: Sequence[str]) -> list[StepSection]:
    """Cut a cleaned job log into steps. The part before the first ``##[group]Run`` is
    "Set up job"; post-job cleanup is dropped. Within a step, the header group (script,
    shell, env) is skipped, nested group markers are dropped, ``##[debug]`` lines too."""
    sections = [StepSection("Set up job")]
    in_header = False
    for line in lines:
        m = _STEP_HEADER.match(line)
        if m:
            sections.append(StepSection(f"Run {m.group(1).strip()}"))
            in_header = True
            continue
        if in_header:
            if line.startswith("##[endgroup]"):
                in_header = False
            continue
        if _POST_JOB.match(line):
            sections.append(StepSection("Complete job"))
            continue
        if line.startswith(("##[group]", "##[endgroup]", "##[debug]")):
            rest = line.split("]", 1)[1] if line.startswith("##[group]") else ""
            if rest:
                sections[-1].output.append(rest)
            continue
        if line.startswith("##[error]"):
            sections[-1].failed = True
        sections[-1].output.append(line)
    return [s for s in sections if s.output or s.failed or s.name.startswith("Run ")]


def failing_step(lines: Sequence[str], step_hint: Optional[str] = None) -> Optional[StepSection]:
    """The step that failed: the one named ``step_hint`` (from the jobs API) when it has
    errors or is the only match, else the first step with an ``##[error]``, else the last
    step that ran."""
    steps = split_steps(lines)
    if not steps:
        return None
    if step_hint:
        named = [s for s in steps if s.name == step_hint or s.name == f"Run {step_hint}"]
        if named:
            failed = [s for s in named if s.failed]
            return (failed or named)[0]
    for s in steps:
        if s.failed:
            return s
    real = [s for s in steps if s.name != "Complete job"]
    return (real or steps)[-1]


# --------------------------------------------------------------------------- selection


def _clip(line: str) -> str:
    return line if len(line) <= LINE_MAX else line[: LINE_MAX - 3] + "..."


class _Picker:
    """Chooses lines of ``lines`` under a character budget, keeping original order and
    marking skipped stretches with one ``[...]`` line each."""

    def __init__(self, lines: Sequence[str], budget: int) -> None:
        self.lines = [_clip(l) for l in lines]
        self.budget = budget
        self.chosen: list[int] = []  # sorted
        self.cost = self._gap_cost(-1, len(self.lines))

    def _gap_cost(self, prev: int, nxt: int) -> int:
        return len(GAP) + 1 if nxt - prev > 1 else 0

    def add(self, i: int) -> bool:
        pos = bisect.bisect_left(self.chosen, i)
        if pos < len(self.chosen) and self.chosen[pos] == i:
            return True
        prev = self.chosen[pos - 1] if pos > 0 else -1
        nxt = self.chosen[pos] if pos < len(self.chosen) else len(self.lines)
        delta = (
            len(self.lines[i]) + 1
            + self._gap_cost(prev, i) + self._gap_cost(i, nxt) - self._gap_cost(prev, nxt)
        )
        if self.cost + delta > self.budget:
            return False
        self.chosen.insert(pos, i)
        self.cost += delta
        return True

    def render(self) -> list[str]:
        out: list[str] = []
        prev = -1
        for i in self.chosen + [len(self.lines)]:
            if i - prev > 1:
                out.append(GAP)
            if i < len(self.lines):
                out.append(self.lines[i])
            prev = i
        return out


def select_lines(lines: Sequence[str], budget: int) -> list[str]:
    """All of ``lines`` if they fit in ``budget`` characters; else the ``##[error]`` lines,
    error-looking lines (first ones first, up to half the budget), the last lines, the lines
    around the errors (growing outwards), the other error lines, then more of the tail."""
    lines = list(lines)
    while lines and not lines[0].strip():
        lines.pop(0)
    if budget <= 0 or not lines:
        return []
    clipped = [_clip(l) for l in lines]
    if sum(len(l) + 1 for l in clipped) <= budget:
        return clipped
    p = _Picker(lines, budget)
    n = len(lines)
    errors = [i for i, l in enumerate(lines) if is_error_line(l)]
    specific = [i for i in errors if lines[i].startswith("##[error]") and not _GENERIC_ERROR.match(lines[i])]
    for i in specific[:5]:
        p.add(i)
    soft = int(budget * 0.5)
    for i in errors:
        if p.cost >= soft:
            break
        if not _GENERIC_ERROR.match(lines[i]):
            p.add(i)
    tail_start = max(0, n - TAIL_LINES)
    for i in range(n - 1, tail_start - 1, -1):
        if not p.add(i):
            break
    anchors = [i for i in errors if i in set(p.chosen) and i < tail_start]
    for radius in range(1, CONTEXT_RADIUS + 1):  # grow context around the errors shown
        for i in anchors:
            for j in (i - radius, i + radius):
                if 0 <= j < n:
                    p.add(j)
    for i in errors:
        p.add(i)
    for i in range(tail_start - 1, -1, -1):  # more tail while there is room
        if not p.add(i) and p.cost > budget - 20:
            break
    return p.render()


# --------------------------------------------------------------------------- excerpt


@dataclass(frozen=True)
class JobLog:
    """A failed job: its name, raw log (None if unavailable) and failed step's name."""

    name: str
    log: Optional[str]
    step: Optional[str] = None
    conclusion: str = "failure"


def job_excerpt(job: JobLog, budget: int, secrets: Iterable[str] = ()) -> str:
    name = redact_all(job.name, secrets)
    header = [f"== job {name} ({'failed' if job.conclusion == 'failure' else job.conclusion}) =="]
    if job.log is None:
        step = f"step: {redact_all(job.step, secrets)}" if job.step else None
        body = header + ([step] if step else []) + ["(log not available)"]
        return "\n".join(body)[:budget]
    lines = clean_log(job.log, secrets)
    section = failing_step(lines, job.step)
    if section is not None:
        header.append(f"step: {_clip(section.name)}")
        body = section.output
    else:
        body = lines
    used = sum(len(h) + 1 for h in header)
    chosen = select_lines(body, budget - used)
    return "\n".join(header + chosen)[:budget].rstrip()


def _passed_line(passed: Sequence[str], budget: int, secrets: Iterable[str]) -> str:
    names = list(dict.fromkeys(redact_all(p, secrets) for p in passed if p))
    if not names:
        return ""
    line = "Passed: " + ", ".join(names)
    k = len(names)
    while len(line) > budget and k > 0:
        k -= 1
        line = "Passed: " + ", ".join(names[:k]) + f", ... (+{len(names) - k} more)"
    return line if len(line) <= budget else ""


def build_excerpt(
    failed: Sequence[Union[JobLog, tuple[str, Optional[str]]]],
    passed: Sequence[str] = (),
    *,
    limit: int = EXCERPT_LIMIT,
    secrets: Iterable[str] = (),
    notes: Sequence[str] = (),
) -> str:
    """The excerpt for a red CI: failed jobs' failing steps, then ``Passed: ...``.

    ``notes`` are short lines put first (e.g. "workflow CI: startup_failure").
    """
    secrets = [s for s in secrets if s]
    jobs = [j if isinstance(j, JobLog) else JobLog(j[0], j[1]) for j in failed]
    passed_line = _passed_line(passed, min(limit // 4, 600), secrets)
    head = [redact_all(n, secrets)[:LINE_MAX] for n in notes if n]
    shown, extra = jobs[:MAX_JOB_SECTIONS], jobs[MAX_JOB_SECTIONS:]
    extra_line = ""
    if extra:
        extra_line = "Also failed: " + ", ".join(redact_all(j.name, secrets) for j in extra)
        extra_line = extra_line[:300]
    fixed = "\n\n".join(x for x in ("\n".join(head), extra_line, passed_line) if x)
    remaining = limit - len(fixed) - (2 if fixed else 0)
    sections: list[str] = []
    for k, job in enumerate(shown):
        sep = 2 if sections else 0
        budget = (remaining - sep) // (len(shown) - k) if remaining > sep else 0
        if budget < 40:
            break
        text = job_excerpt(job, budget, secrets)
        sections.append(text)
        remaining -= len(text) + sep
    parts = ["\n".join(head)] if head else []
    parts += sections
    parts += [x for x in (extra_line, passed_line) if x]
    text = "\n\n".join(parts)
    text = redact_all(text, secrets)  # only ever shortens
    return text[:limit]


# --------------------------------------------------------------------------- signature

_SIG_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"), "<time>"),
    (re.compile(r"\b\d\d:\d\d:\d\d(?:[.,]\d+)?\b"), "<time>"),
    # temporary directories (before paths lose their digits)
    (re.compile(r"(?:/private)?/var/folders/[^\s:'\"]+"), "<tmp>"),
    (re.compile(r"/(?:tmp|temp)/[^\s:'\"]+", re.IGNORECASE), "<tmp>"),
    (re.compile(r"[A-Za-z]:\\[^\s:'\"]*\\Temp\\[^\s:'\"]+", re.IGNORECASE), "<tmp>"),
    (re.compile(r"/home/runner/work/_temp/[^\s:'\"]+"), "<tmp>"),
    (re.compile(r"pytest-of-[^/\s]+/pytest-\d+/[^\s:'\"]*"), "<tmp>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<uuid>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,64}\b"), "<hex>"),
    # line numbers of paths: file.py:12:3 / line 12 / (file.go:12)
    (re.compile(r"(\.[A-Za-z]\w{0,5}):\d+(?::\d+)?"), r"\1:<n>"),
    (re.compile(r"\bline \d+\b"), "line <n>"),
    (re.compile(r"\d+(?:\.\d+)?\s*(?:ms|s|sec|seconds|m|min)\b"), "<dur>"),
    (re.compile(r"\d+"), "<n>"),
    (re.compile(r"\s+"), " "),
]
SIGNATURE_MAX_LINES = 20


def normalise_line(line: str) -> str:
    line = _ANSI.sub("", _TIMESTAMP.sub("", line))
    for pattern, repl in _SIG_RULES:
        line = pattern.sub(repl, line)
    return line.strip()


def signature(excerpt_or_lines: Union[str, Sequence[str]]) -> str:
    """Normalised error lines of an excerpt, one per line, deduplicated, in order.

    Job headers are kept (the same error in another job is another failure). Generic lines
    (``Process completed with exit code N``) are ignored; when no error line remains, the
    last lines of the excerpt stand in, so unrelated failures do not look alike.
    """
    if isinstance(excerpt_or_lines, str):
        lines = excerpt_or_lines.splitlines()
    else:
        lines = list(excerpt_or_lines)
    keep: list[str] = []
    has_error = False
    content: list[str] = []
    for line in lines:
        s = line.strip()
        if not s or s == GAP or s.startswith(("Passed: ", "step: ")):
            continue
        if s.startswith("== job "):
            keep.append(s)
            continue
        content.append(s)
        if _GENERIC_ERROR.match(s) or not is_error_line(s):
            continue
        keep.append(s)
        has_error = True
    if not has_error:
        keep = [s for s in lines if s.strip().startswith("== job ")] + content[-5:]
    out: list[str] = []
    seen: set[str] = set()
    for s in keep:
        n = normalise_line(s)
        if n and n not in seen:
            seen.add(n)
            out.append(n)
        if len(out) >= SIGNATURE_MAX_LINES:
            break
    return "\n".join(out)
