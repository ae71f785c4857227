"""The CI failure excerpt handed to the agent, and its signature (pure, no I/O).

For each failed job, the excerpt shows the failing step - found by the jobs API's step number
(the k-th step that ran is the k-th ``##[group]Run`` of the log, whatever the step's
``name:``), else by the log (the last step that ended in ``Process completed with exit code``
or a runner verdict) - under a ``== job <name> (failed) ==`` header. Within the step, lines
are scored by :mod:`ampx.github.failures`, grouped into regions (the failing test's block, the
runner's summary, what leads to the exit code), and the budget goes to the best distinct
regions first; then to the lines around them and the step's tail. Lines that repeat (a retry
loop's "transient error") are damped, stack frames come last.

Failed jobs of a matrix that failed the same way (same normalised failure lines) share one
section ("same failure in 3 other jobs: ..."), and the budget goes to distinct failures.
At most :data:`EXCERPT_LIMIT` characters in total. CPU time is bounded: scoring lines stops
after :data:`EXCERPT_SECONDS` (later lines are only kept), choosing lines after
:data:`SELECT_SECONDS` (then: what was chosen and the tail). Secrets are redacted with
:func:`ampx.redact.redact` plus any token values the caller names; control characters are
gone (see :mod:`ampx.github.joblog`).

:func:`signature` reduces an excerpt to its normalised error lines (no numbers, hex, line
numbers, timestamps or temp dirs): two attempts failing with the same signature failed the
same way, and the task stops early instead of burning attempts.
"""

from __future__ import annotations

import bisect
import re
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

from ampx.redact import MASK, redact

from .failures import Mark, classify, is_specific
from .joblog import (
    LINE_CUT, Entry, LogDigest, StepDigest, _ANSI, clean_line, digest_text,
)

EXCERPT_LIMIT = 4000
#: One log line never takes more than this in the excerpt (minified bundles, base64 blobs).
LINE_MAX = 400
#: How many failed jobs get a section of their own; the rest are only named.
MAX_JOB_SECTIONS = 6
#: CPU time for reading one red CI's logs; past it, lines are kept but no longer scored.
EXCERPT_SECONDS = 2.0
#: CPU time for choosing the lines of an excerpt; past it, what was chosen and the tail.
SELECT_SECONDS = 0.5
TAIL_LINES = 12
CONTEXT_RADIUS = 8
GAP = "[...]"
#: A region's key lines may take at most this share of a section's budget.
REGION_SHARE = 0.5
#: Stack or backtrace frames shown per region at most (the first ones say where).
FRAMES_PER_REGION = 3

FAILED_STEP = frozenset({"failure", "timed_out", "cancelled"})
_BOOKKEEPING = ("Set up job", "Complete job")


def is_error_line(line: str) -> bool:
    """Does this line say something failed (more than ``Process completed with exit code``)?"""
    mark = classify(line)
    return mark.score >= 2 and mark.kind not in ("exit", "gorun")


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class StepRef:
    """One step as the jobs API lists it (GET /repos/{o}/{r}/actions/jobs/{id})."""

    number: int
    name: str
    conclusion: Optional[str]


def steps_from_api(job: Mapping[str, Any]) -> tuple[StepRef, ...]:
    out = []
    for s in job.get("steps") or []:
        try:
            out.append(StepRef(int(s.get("number")), str(s.get("name") or ""), s.get("conclusion")))
        except (TypeError, ValueError):
            continue
    return tuple(sorted(out, key=lambda s: s.number))


@dataclass(frozen=True)
class JobLog:
    """A failed job: its name, log (raw text, a :class:`LogDigest` already read, or None if
    unavailable), the failed step's name and the job's steps from the jobs API."""

    name: str
    log: Optional[Union[str, LogDigest]]
    step: Optional[str] = None
    conclusion: str = "failure"
    steps: tuple[StepRef, ...] = ()


def _ran(steps: Sequence[StepRef]) -> list[StepRef]:
    """The API's steps that have a ``Run`` group in the log, in order."""
    return [
        s for s in steps
        if s.conclusion not in (None, "skipped") and s.name not in _BOOKKEEPING
        and not s.name.startswith("Post ")
    ]


def failed_api_step(steps: Sequence[StepRef]) -> Optional[StepRef]:
    """The step that failed the job: the last failed one (an earlier failed step can only
    have been ``continue-on-error``)."""
    failed = [s for s in steps if s.conclusion in FAILED_STEP and s.name != "Complete job"
              and not s.name.startswith("Post ")]
    return failed[-1] if failed else None


def target_ordinal(steps: Sequence[StepRef]) -> Optional[int]:
    """The failed step's ``Run`` group number in the log (1-based), as far as the API says."""
    failed = failed_api_step(steps)
    if failed is None:
        return None
    if failed.name == "Set up job":
        return 0
    ran = _ran(steps)
    return ran.index(failed) + 1 if failed in ran else None


def failing_step(digest: LogDigest, steps: Sequence[StepRef] = (), hint: Optional[str] = None) -> Optional[StepDigest]:
    """The step that failed: by the API's step order (names do not appear in the log for
    ``run:`` steps), else by name, else the last step that ended with an exit code or a runner
    verdict, else the last with an ``##[error]``, else the last that ran."""
    runs = digest.run_steps
    api = failed_api_step(steps)
    if api is not None:
        if api.name == "Set up job":
            return digest.steps[0]
        ran = _ran(steps)
        if api in ran:
            pos = ran.index(api)
            if len(runs) == len(ran) or (pos < len(runs) and runs[pos].failed):
                return runs[pos]
        hint = api.name
    if hint:
        named = [s for s in runs if s.name in (hint, f"Run {hint}")]
        if named:
            return ([s for s in named if s.failed or s.has_error] or named)[-1]
    for pick in (lambda s: s.failed, lambda s: s.has_error):
        found = [s for s in digest.steps if pick(s)]
        if found:
            return found[-1]
    real = [s for s in digest.steps if s.ordinal is not None and s.n_lines]
    return (real or digest.steps)[-1] if digest.steps else None


# --------------------------------------------------------------------------- cleaning


def clean_log(text: str, secrets: Iterable[str] = ()) -> list[str]:
    """A whole log as cleaned, redacted lines (for callers that want all of it)."""
    lines = [clean_line(raw) for raw in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return [redact_all(line, secrets) for line in lines]


def redact_all(text: str, secrets: Iterable[str] = ()) -> str:
    for value in sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True):
        text = text.replace(value, MASK)
    return redact(text) or ""


def _clip(line: str) -> str:
    return line if len(line) <= LINE_MAX else line[: LINE_MAX - 3] + "..."


# --------------------------------------------------------------------------- regions


_DIGITS = re.compile(r"\d+")
_BLOCK_KINDS = ("block", "gofail", "killed", "runner")


@dataclass
class _Region:
    start: int
    end: int  # inclusive
    anchor: int
    score: float


def _effective_scores(entries: Sequence[Entry]) -> list[float]:
    """Scores after damping repeats and judging go test lines by the test they belong to."""
    eff = [e[2].score for e in entries]
    counts: dict[str, int] = {}
    keys: list[Optional[str]] = []
    for e in entries:
        if e[2].kind not in ("exit", "runner", "killed") and e[1].strip():
            k = _DIGITS.sub("0", e[1][:160])
            counts[k] = counts.get(k, 0) + 1
            keys.append(k)
        else:
            keys.append(None)
    for i, k in enumerate(keys):
        if k is not None and counts[k] > 2:  # said over and over: not where the failure is
            eff[i] = eff[i] - 4.0 if eff[i] > 0 else min(eff[i], -0.5)
    failing_go = {e[2].name for e in entries if e[2].kind == "gofail" and e[2].name}
    failing_go |= {n.split("/")[0] for n in failing_go}
    current = ""
    for i, (_, line, mark) in enumerate(entries):
        if mark.kind in ("gorun", "gofail"):
            current = mark.name
        elif mark.kind == "godetail":
            eff[i] = 7.0 if current in failing_go or current.split("/")[0] in failing_go else -1.0
    return eff


def _regions(entries: Sequence[Entry], eff: Sequence[float]) -> list[_Region]:
    n = len(entries)
    regions: list[_Region] = []
    for i, (num, line, mark) in enumerate(entries):
        kind = mark.kind
        if not (eff[i] >= 5 or kind in ("exit", "runner", "killed") or (kind == "summary" and eff[i] >= 3)):
            continue
        start, end = i, i
        if kind in ("block", "gofail", "killed") or (kind == "runner" and eff[i] >= 5):
            if kind == "gofail" and mark.name:  # go -v: the test's output since its === RUN
                for j in range(i - 1, max(-1, i - 400), -1):
                    m = entries[j][2]
                    if m.kind == "gorun" and m.name == mark.name:
                        start = j
                        break
            j = i + 1
            while j < n and j - i <= 25:
                m = entries[j][2]
                if m.kind in ("block", "gofail", "gorun") or (m.kind == "summary" and kind != "gofail"):
                    break
                if kind == "gofail" and not entries[j][1][:1].isspace():
                    break
                end = j
                j += 1
        elif kind == "exit":
            start = max(0, i - 3)
        else:
            start, end = max(0, i - 1), min(n - 1, i + 1)
            while end + 1 < n and eff[end + 1] >= 4 and end - i < 15:
                end += 1
        # in the region, the key lines and the step's end weigh in
        others = sum(max(0.0, eff[k]) for k in range(start, end + 1) if k != i)
        recency = 2.0 * (i + 1) / n + (3.0 if n - i <= 10 else 0.0)
        regions.append(_Region(start, end, i, max(eff[i], 3.0) + min(8.0, 0.2 * others) + recency))
    regions.sort(key=lambda r: (r.start, r.end))
    merged: list[_Region] = []
    for r in regions:
        if merged and r.start <= merged[-1].end + 1:
            last = merged[-1]
            if r.score > last.score:
                last.anchor, last.score = r.anchor, r.score + 0.5
            else:
                last.score += 0.5
            last.end = max(last.end, r.end)
        else:
            merged.append(r)
    return merged


def _region_key(entries: Sequence[Entry], eff: Sequence[float], r: _Region) -> str:
    best = max(range(r.start, r.end + 1), key=lambda k: (eff[k], -k))
    return normalise_line(entries[best][1])


# --------------------------------------------------------------------------- selection


class _Picker:
    """Chooses entries under a character budget, keeping their order and marking each skipped
    stretch (in the step's own line numbers) with one ``[...]`` line."""

    def __init__(self, entries: Sequence[Entry], budget: int, total_lines: Optional[int] = None) -> None:
        self.lines = [e[1] for e in entries]
        self.nums = [e[0] for e in entries]
        self.first = self.nums[0] if self.nums else 0
        self.last = (total_lines - 1) if total_lines else (self.nums[-1] if self.nums else -1)
        self.budget = budget
        self.chosen: list[int] = []  # positions, sorted
        self.cost = self._gap(None, None)

    def _gap(self, a: Optional[int], b: Optional[int]) -> int:
        lo = self.nums[a] if a is not None else self.first - 1
        hi = self.nums[b] if b is not None else self.last + 1
        return len(GAP) + 1 if hi - lo > 1 else 0

    def add(self, i: int) -> bool:
        pos = bisect.bisect_left(self.chosen, i)
        if pos < len(self.chosen) and self.chosen[pos] == i:
            return True
        prev = self.chosen[pos - 1] if pos > 0 else None
        nxt = self.chosen[pos] if pos < len(self.chosen) else None
        delta = len(self.lines[i]) + 1 + self._gap(prev, i) + self._gap(i, nxt) - self._gap(prev, nxt)
        if self.cost + delta > self.budget:
            return False
        self.chosen.insert(pos, i)
        self.cost += delta
        return True

    def render(self) -> list[str]:
        out: list[str] = []
        prev: Optional[int] = None
        for i in self.chosen:
            if self._gap(prev, i):
                out.append(GAP)
            out.append(self.lines[i])
            prev = i
        if self._gap(prev, None):
            out.append(GAP)
        tidy: list[str] = []  # a blank line between two gaps says nothing
        for k, line in enumerate(out):
            if not line.strip() and (not tidy or tidy[-1] == GAP) and (k + 1 == len(out) or out[k + 1] == GAP):
                continue
            if line == GAP and tidy and tidy[-1] == GAP:
                continue
            tidy.append(line)
        return tidy


def _select(
    entries: Sequence[Entry], budget: int, *, fill: bool = True,
    total_lines: Optional[int] = None, deadline: Optional[float] = None,
) -> list[str]:
    """The lines of a step to show within ``budget`` characters: all when they fit; else the
    best distinct regions' key lines, then their context, then the tail and around them."""
    complete = total_lines is None or len(entries) == total_lines
    while entries and not entries[0][1].strip():
        entries = entries[1:]
    if budget <= 0 or not entries:
        return []
    if complete and sum(len(e[1]) + 1 for e in entries) <= budget:
        return [e[1] for e in entries]
    n = len(entries)
    p = _Picker(entries, budget, total_lines)
    out_of_time = deadline is not None and time.thread_time() > deadline
    eff = _effective_scores(entries) if not out_of_time else [0.0] * n
    regions = sorted(_regions(entries, eff), key=lambda r: -r.score) if not out_of_time else []
    seen: set[str] = set()
    distinct: list[_Region] = []
    for r in regions:
        key = _region_key(entries, eff, r)
        if key in seen and r.anchor < n - 5:
            continue
        seen.add(key)
        distinct.append(r)
    cap = int(budget * REGION_SHARE)
    # 1. each region's key lines, best region first
    for r in distinct:
        if p.cost >= budget * 0.85 or (deadline is not None and time.thread_time() > deadline):
            break
        start_cost = p.cost
        p.add(r.anchor)
        for k in sorted(range(r.start, r.end + 1), key=lambda k: (-eff[k], abs(k - r.anchor))):
            if eff[k] < 4 or p.cost - start_cost > cap:
                break
            p.add(k)
    # 2. the regions' other lines (context, block bodies), a few frames last
    for r in distinct:
        body = [k for k in range(r.start, r.end + 1) if eff[k] >= 0]
        body += [k for k in range(r.start, r.end + 1) if entries[k][2].kind == "frame"][:FRAMES_PER_REGION]
        for k in body:
            if not p.add(k) and p.cost > budget - 40:
                break
    if not fill:
        return p.render()
    # 3. the step's last lines, then context growing around the regions, then more tail
    tail_start = max(0, n - TAIL_LINES)
    for i in range(n - 1, tail_start - 1, -1):  # (repeated lines too: where it hung)
        if eff[i] > -1 and not p.add(i):
            break
    anchors = [r.anchor for r in distinct]
    for radius in range(1, CONTEXT_RADIUS + 1):
        for i in anchors:
            for j in (i - radius, i + radius):
                if 0 <= j < n and eff[j] >= 0 and entries[j][1].strip():
                    p.add(j)
    for i in range(tail_start - 1, -1, -1):  # noise (frames, retries, passing tests) never
        if eff[i] >= 0 and entries[i][1].strip() and not p.add(i) and p.cost > budget - 20:
            break
    return p.render()


def select_lines(lines: Sequence[str], budget: int) -> list[str]:
    """:func:`_select` over plain lines (each cut at :data:`LINE_MAX`)."""
    entries = [(i, _clip(l[:LINE_CUT]), classify(l)) for i, l in enumerate(lines)]
    return _select(entries, budget)


# --------------------------------------------------------------------------- jobs


@dataclass
class _JobPlan:
    job: JobLog
    name: str
    header: list[str]
    entries: list[Entry]
    total_lines: Optional[int]
    key: str  # the normalised failure, to merge identical jobs
    others: list[str]

    def render(self, budget: int, fill: bool, deadline: Optional[float]) -> str:
        head = list(self.header)
        if self.others:
            more = f"same failure in {len(self.others)} other job{'s' if len(self.others) > 1 else ''}: "
            head.append(_clip(more + ", ".join(self.others)))
        used = sum(len(h) + 1 for h in head)
        body = _select(self.entries, budget - used, fill=fill, total_lines=self.total_lines, deadline=deadline)
        return "\n".join(head + body)[:budget].rstrip()


def _plan(job: JobLog, secrets: Sequence[str], deadline: Optional[float]) -> _JobPlan:
    name = redact_all(clean_line(job.name), secrets)[:LINE_MAX]
    verdict = "failed" if job.conclusion == "failure" else job.conclusion
    header = [f"== job {name} ({verdict}) =="]
    api = failed_api_step(job.steps)
    api_name = api.name if api else job.step
    if job.log is None:
        if api_name:
            header.append(f"step: {redact_all(_clip(clean_line(api_name)), secrets)}")
        return _JobPlan(job, name, header + ["(log not available)"], [], None, f"nolog:{name}", [])
    digest = job.log if isinstance(job.log, LogDigest) else digest_text(
        job.log, target_ordinal(job.steps), deadline)
    assert digest is not None
    step = failing_step(digest, job.steps, job.step)
    entries: list[Entry] = []
    total: Optional[int] = None
    if step is not None:
        label = step.name
        if api_name and api_name not in (step.name, step.name[4:]) and step.ordinal != 0:
            label = f"{api_name} ({step.name})"
        header.append(f"step: {_clip(redact_all(clean_line(label), secrets))}")
        entries = [(n, _clip(redact_all(line, secrets)), mark) for n, line, mark in step.entries()]
        total = step.n_lines
    eff = _effective_scores(entries)
    regions = sorted(_regions(entries, eff), key=lambda r: -r.score)
    keys = [_region_key(entries, eff, r) for r in regions if is_specific(entries[r.anchor][2])][:3]
    if not keys:
        keys = [normalise_line(e[1]) for e in entries[-3:]]
    key = "\n".join([step.name if step else "", *sorted(keys)])  # same step, same failure lines
    return _JobPlan(job, name, header, entries, total, key, [])


def job_excerpt(job: JobLog, budget: int, secrets: Iterable[str] = ()) -> str:
    deadline = time.thread_time() + EXCERPT_SECONDS
    plan = _plan(job, [s for s in secrets if s], deadline)
    return plan.render(budget, True, time.thread_time() + SELECT_SECONDS)


def _passed_line(passed: Sequence[str], budget: int, secrets: Iterable[str]) -> str:
    names = list(dict.fromkeys(redact_all(clean_line(p), secrets) for p in passed if p))
    if not names:
        return ""
    line = "Passed: " + ", ".join(names)
    k = len(names)
    while len(line) > budget and k > 0:
        k -= 1
        line = "Passed: " + ", ".join(names[:k]) + f", ... (+{len(names) - k} more)"
    return line if len(line) <= budget else ""


def _share(needs: Sequence[int], total: int) -> list[int]:
    """Split ``total`` so that small needs are met in full and big ones share the rest."""
    alloc = [0] * len(needs)
    left, order = total, sorted(range(len(needs)), key=lambda i: needs[i])
    for k, i in enumerate(order):
        fair = left // (len(order) - k)
        alloc[i] = min(needs[i], fair)
        left -= alloc[i]
    return alloc


def build_excerpt(
    failed: Sequence[Union[JobLog, tuple[str, Optional[str]]]],
    passed: Sequence[str] = (),
    *,
    limit: int = EXCERPT_LIMIT,
    secrets: Iterable[str] = (),
    notes: Sequence[str] = (),
    seconds: float = EXCERPT_SECONDS,
) -> str:
    """The excerpt for a red CI: failed jobs' failing steps, then ``Passed: ...``.

    ``notes`` are short lines put first (e.g. "workflow CI: startup_failure").
    """
    deadline = time.thread_time() + seconds
    secrets = [s for s in secrets if s]
    jobs = [j if isinstance(j, JobLog) else JobLog(j[0], j[1]) for j in failed]
    passed_line = _passed_line(passed, min(limit // 4, 600), secrets)
    head = [_clip(redact_all(clean_line(n), secrets)) for n in notes if n]
    plans: list[_JobPlan] = []
    by_key: dict[str, _JobPlan] = {}
    for job in jobs:
        plan = _plan(job, secrets, deadline)
        same = by_key.get(plan.key) if plan.entries else None
        if same is not None:
            same.others.append(plan.name)
        else:
            by_key[plan.key] = plan
            plans.append(plan)
    # Reading may have used its time on a huge log; choosing lines gets its own (small) share.
    deadline = time.thread_time() + SELECT_SECONDS
    shown, extra = plans[:MAX_JOB_SECTIONS], plans[MAX_JOB_SECTIONS:]
    extra_line = ""
    if extra:
        names = [x for p in extra for x in [p.name, *p.others]]
        extra_line = _clip("Also failed: " + ", ".join(names))
    fixed = "\n\n".join(x for x in ("\n".join(head), extra_line, passed_line) if x)
    remaining = limit - len(fixed) - (2 if fixed else 0) - 2 * max(0, len(shown) - 1)
    sections: list[str] = []
    if shown and remaining >= 40:
        if len(shown) == 1:
            sections = [shown[0].render(remaining, True, deadline)]
        else:  # what each distinct failure needs, then fill what is left
            needs = [len(p.render(remaining, False, deadline)) for p in shown]
            alloc = _share(needs, remaining)
            spare = remaining - sum(alloc)
            for k, p in enumerate(shown):
                extra_room = spare // (len(shown) - k)
                text = p.render(alloc[k] + extra_room, True, deadline) if alloc[k] + extra_room >= 40 else ""
                spare -= max(0, len(text) - alloc[k])
                if text:
                    sections.append(text)
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
    (re.compile(r"\b(?=[0-9a-f]{0,64}\d)(?=[0-9a-f]{0,64}[a-f])[0-9a-f]{7,64}\b"), "<hex>"),
    # line numbers of paths: file.py:12:3 / line 12 / (file.go:12)
    (re.compile(r"(\.[A-Za-z]\w{0,5}):\d+(?::\d+)?"), r"\1:<n>"),
    (re.compile(r"\bline \d+\b"), "line <n>"),
    (re.compile(r"\d+(?:\.\d+)?\s?(?:ms|s|sec|seconds|m|min)\b"), "<dur>"),
    (re.compile(r"\d+"), "<n>"),
    (re.compile(r"\s+"), " "),
]
SIGNATURE_MAX_LINES = 20


def normalise_line(line: str) -> str:
    line = line[:LINE_MAX * 2]
    line = _ANSI.sub("", line)
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
        if not is_error_line(s):
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


__all__ = [
    "EXCERPT_LIMIT", "JobLog", "StepRef", "build_excerpt", "clean_log", "failing_step",
    "is_error_line", "job_excerpt", "normalise_line", "select_lines", "signature",
    "steps_from_api", "target_ordinal", "Mark",
]
