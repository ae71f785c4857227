"""One pass over a GitHub Actions job log with bounded memory: the steps and what matters.

A raw job log is a sequence of lines, each with an ISO timestamp of seven fractional digits
(``2026-11-25T10:00:00.1234567Z``), the first maybe after a byte order mark. A step looks like::

    ##[group]Run pytest -q          <- step header: "Run <command>" whatever the step's name
    pytest -q                          (the script, shell and env inside the group)
    shell: /usr/bin/bash -e {0}
    ##[endgroup]
    ... step output ...
    ##[error]Process completed with exit code 1.

Logs can be hundreds of MB. :class:`LogDigest` is fed bytes as they arrive and keeps, per
step, its name and order, whether it failed, its first lines, its last lines (a ring bounded
in lines and characters), and windows of context around the lines that look like the failure
(the highest-scored ones win). The step the jobs API says failed is kept in full retention,
the others in compact retention, so a failure printed long before the end of a 100 MB log
survives, and memory stays at a few MB.

Lines are cleaned on the way in (timestamp, ANSI sequences, C0/C1 control and bidi characters
removed, cut at :data:`LINE_CUT` characters) and the body of a private key is masked here,
because later stages only see the lines they keep.
"""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Optional

from ampx.redact import MASK

from .failures import CLASSIFY_MAX, NONE, Mark, classify, hot_lines

#: A line is cut to this many characters before anything looks at it.
LINE_CUT = 4096
#: Lines of a step's start kept in any case (what the command printed first).
HEAD_LINES = 30
#: Steps beyond this many keep only their name and verdict (a log of 100,000 groups).
MAX_STEPS_WITH_CONTENT = 200
#: Characters of a raw line searched for needles (the timestamp, then what classify sees).
SCAN_MAX = CLASSIFY_MAX + 64
#: Characters of log text looked at together (needles are searched for per block).
BLOCK = 256 << 10
#: A line scoring this much (after repetition damping) opens a window of context.
ANCHOR_SCORE = 6.0

_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)\s?")
# CSI sequences (colours, cursor), OSC sequences (hyperlinks, titles), lone ESC pairs; bounded.
_ANSI = re.compile(
    r"\x1b\[[0-?]{0,64}[ -/]{0,8}[@-~]|\x9b[0-?]{0,64}[ -/]{0,8}[@-~]"
    r"|\x1b\][^\x07\x1b]{0,2048}(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]"
)
# C0 (but tab), DEL, C1, bidi overrides and isolates, line/paragraph separators, BOM.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ufeff]")
_STEP_HEADER = re.compile(r"##\[group\]Run (.{0,300})")
_PEM_BEGIN = "PRIVATE KEY-----"
_PEM_BODY = re.compile(r"[A-Za-z0-9+/=]{0,100}|[A-Za-z-]{1,40}: .{0,200}")
_EXIT = re.compile(r"##\[error\]Process completed with exit code (\d{1,5})")
_DIGITS = re.compile(r"\d+")
_RUNNER_VERDICTS = ("maximum execution time", "operation was canceled", "shutdown signal", "job was canceled")


def clean_line(raw: str) -> str:
    """A raw log line as a person would read it: no timestamp, colours, controls; cut."""
    line = raw[: LINE_CUT + 64]
    if line[:1] == "\ufeff":
        line = line[1:]
    if line[27:29] == "Z " and line[10:11] == "T" and line[:4].isdigit():  # GitHub's own stamp
        line = line[29:]
    elif line[:2].isdigit():
        m = _TIMESTAMP.match(line)
        if m:
            line = line[m.end():]
    if "\r" in line:  # progress bars: what the terminal showed last
        parts = [p for p in line.split("\r") if p.strip()]
        line = parts[-1] if parts else ""
    if "\x1b" in line or "\x9b" in line:
        line = _ANSI.sub("", line)
    line = _CONTROL.sub("", line)
    return line[:LINE_CUT].rstrip()


@dataclass(frozen=True)
class Retention:
    ring_lines: int
    ring_chars: int
    windows: int
    before: int
    after: int


FULL = Retention(ring_lines=3000, ring_chars=1 << 20, windows=48, before=40, after=40)
COMPACT = Retention(ring_lines=200, ring_chars=64 << 10, windows=6, before=20, after=20)
#: go -v prints a failing test's lines between ``=== RUN`` and ``--- FAIL``: look further back.
GO_BEFORE = 200

Entry = tuple[int, str, Mark]  # (line number in the step, text, mark)


class _Window:
    __slots__ = ("score", "entries", "after_left", "seq")

    def __init__(self, score: float, entries: list[Entry], after_left: int, seq: int) -> None:
        self.score = score
        self.entries = entries
        self.after_left = after_left
        self.seq = seq


class StepDigest:
    """What is kept of one step: see the module docstring."""

    def __init__(self, name: str, ordinal: Optional[int], retention: Retention) -> None:
        self.name = name
        #: 0 for "Set up job", k for the k-th ``##[group]Run`` of the log, None after the job.
        self.ordinal = ordinal
        self.retention = retention
        self.head: list[Entry] = []
        self.ring: deque[Entry] = deque()
        self.ring_chars = 0
        self.windows: list[_Window] = []
        self._open: Optional[_Window] = None
        self._seq = 0
        self.n_lines = 0
        self.exit_code: Optional[int] = None
        self.runner_error = False
        self.has_error = False
        self.dropped = False

    @property
    def failed(self) -> bool:
        return self.exit_code is not None or self.runner_error

    def add(self, line: str, mark: Mark, score: float) -> None:
        n = self.n_lines
        self.n_lines += 1
        if line.startswith("##[error]"):
            self.has_error = True
            m = _EXIT.match(line)
            if m:
                self.exit_code = int(m.group(1))
            elif any(w in line for w in _RUNNER_VERDICTS):
                self.runner_error = True
        if self.dropped:
            return
        entry = (n, line, mark)
        r = self.retention
        if n < HEAD_LINES:
            self.head.append(entry)
        if self._open is not None:
            self._open.entries.append(entry)
            self._open.after_left -= 1
            if score >= ANCHOR_SCORE:
                self._open.after_left = r.after
                self._open.score = max(self._open.score, score)
            if self._open.after_left <= 0:
                self._open = None
        elif score >= ANCHOR_SCORE:
            before = GO_BEFORE if mark.kind == "gofail" else r.before
            back = list(self.ring)[-before:] if len(self.ring) > before else list(self.ring)
            self._seq += 1
            w = _Window(score, back + [entry], r.after, self._seq)
            self.windows.append(w)
            self._open = w
            if len(self.windows) > r.windows:  # the weakest, oldest window makes room
                worst = min((x for x in self.windows if x is not w), key=lambda x: (x.score, x.seq))
                self.windows.remove(worst)
        self.ring.append(entry)
        self.ring_chars += len(line) + 1
        while self.ring and (len(self.ring) > r.ring_lines or self.ring_chars > r.ring_chars):
            old = self.ring.popleft()
            self.ring_chars -= len(old[1]) + 1

    def drop_content(self) -> None:
        self.dropped = True
        self.head, self.ring, self.windows, self._open = [], deque(), [], None
        self.ring_chars = 0

    def entries(self) -> list[Entry]:
        """The kept lines, in order, each once."""
        seen: dict[int, Entry] = {}
        for e in self.head:
            seen[e[0]] = e
        for w in self.windows:
            for e in w.entries:
                seen[e[0]] = e
        for e in self.ring:
            seen[e[0]] = e
        return [seen[k] for k in sorted(seen)]


@dataclass
class LogDigest:
    """Feed a job log (:meth:`feed` bytes, or :meth:`feed_text`), then :meth:`close`.

    ``target`` is the step ordinal (k-th ``Run`` group) the jobs API says failed: it is kept
    in full retention. ``deadline`` (a ``time.thread_time()`` value): past it, lines are no
    longer classified (only kept), so a huge or hostile log costs a bounded amount of CPU.
    """

    target: Optional[int] = None
    deadline: Optional[float] = None
    steps: list[StepDigest] = field(default_factory=list)
    total_bytes: int = 0
    total_lines: int = 0
    out_of_time: bool = False

    def __post_init__(self) -> None:
        self.steps = [StepDigest("Set up job", 0, self._retention(0))]
        self._partial = b""
        self._skip_rest_of_line = False
        self._in_header = False
        self._ordinal = 0
        self._pem_left = 0
        self._repeats: dict[str, int] = {}

    def _retention(self, ordinal: Optional[int]) -> Retention:
        if self.target is None or ordinal == self.target:
            return FULL
        return COMPACT

    # -- input

    def feed(self, chunk: bytes) -> None:
        self.total_bytes += len(chunk)
        data = self._partial + chunk if self._partial else chunk
        end = data.rfind(b"\n")
        if end < 0:
            self._partial = data
        else:
            self._block(data[:end].decode("utf-8", errors="replace"))
            self._partial = data[end + 1:]
        if len(self._partial) > LINE_CUT * 4:  # a line without end: keep its start only
            if not self._skip_rest_of_line:
                self._block(self._partial[: LINE_CUT * 4].decode("utf-8", errors="replace"))
            self._partial = b""
            self._skip_rest_of_line = True

    def feed_text(self, text: str) -> None:
        self.total_bytes += len(text)
        start, n = 0, len(text) - 1 if text.endswith("\n") else len(text)
        while start < n:
            end = text.rfind("\n", start, start + BLOCK)
            if end < 0 or start + BLOCK >= n:
                end = text.find("\n", start + BLOCK) if start + BLOCK < n else -1
                end = n if end < 0 else end
            self._block(text[start:end])
            start = end + 1

    def close(self) -> "LogDigest":
        if self._partial and not self._skip_rest_of_line:
            self._block(self._partial[: LINE_CUT * 4].decode("utf-8", errors="replace"))
        self._partial = b""
        for s in self.steps:
            s._open = None
        return self

    def _block(self, text: str) -> None:
        """Whole lines of the log: the needles are found for all of them at once."""
        raws = text.split("\n")
        if self._skip_rest_of_line:
            self._skip_rest_of_line = False
            raws = raws[1:]
        hot: Optional[set[int]] = None
        if not self.out_of_time:
            starts, pos, cut = [], 0, False
            for r in raws:
                starts.append(pos)
                n = len(r)
                if n > SCAN_MAX:
                    n, cut = SCAN_MAX, True
                pos += n + 1
            # needles are looked for in each line's first characters only (as classify does)
            scan = "\n".join(r[:SCAN_MAX] for r in raws) if cut else text
            hot = hot_lines(scan, starts)
        for i, raw in enumerate(raws):
            if len(raw) > LINE_CUT * 4:
                raw = raw[: LINE_CUT * 4]
            self.add_line(raw, None if hot is None else i in hot)

    # -- one line

    def add_line(self, raw: str, hot: Optional[bool] = None) -> None:
        self.total_lines += 1
        line = clean_line(raw)
        if self._in_header:
            if line.startswith("##[endgroup]"):
                self._in_header = False
            return
        if line.startswith("##["):
            m = _STEP_HEADER.match(line)
            if m:
                self._new_step(f"Run {m.group(1).strip()}", self._ordinal + 1)
                self._ordinal += 1
                self._in_header = True
                return
            if line.startswith(("##[endgroup]", "##[debug]")):
                return
            if line.startswith("##[group]"):
                line = line[len("##[group]"):]
                if not line:
                    return
        elif line in ("Post job cleanup.", "Cleaning up orphan processes"):
            if self.steps[-1].ordinal is not None:
                self._new_step("Complete job", None)
            return
        if self._pem_left:
            if _PEM_BODY.fullmatch(line) and "-----END" not in line:
                self._pem_left -= 1
                line = MASK
            else:
                self._pem_left = 0
                if "-----END" in line and _PEM_BEGIN in line:
                    line = MASK + line[line.index("-----END"):]
        if _PEM_BEGIN in line and "-----BEGIN" in line:
            i = line.index("-----BEGIN")
            j = line.index(_PEM_BEGIN, i) + len(_PEM_BEGIN)
            rest = line[j:]
            k = rest.find("-----END")
            line = line[:j] + MASK + (rest[k:] if k >= 0 else "")
            if k < 0:
                self._pem_left = 120
        mark, score = self._mark(line, hot)
        self.steps[-1].add(line, mark, score)

    def _mark(self, line: str, hot: Optional[bool]) -> tuple[Mark, float]:
        if self.out_of_time:
            return NONE, 0.0
        if self.deadline is not None and self.total_lines % 512 == 0 and time.thread_time() > self.deadline:
            self.out_of_time = True
            return NONE, 0.0
        mark = classify(line, hot)
        score = mark.score
        if score >= ANCHOR_SCORE and mark.kind not in ("exit", "runner", "killed"):
            key = _DIGITS.sub("0", line[:160])
            count = self._repeats.get(key, 0) + 1
            if key in self._repeats or len(self._repeats) < 5000:
                self._repeats[key] = count
            if count > 2:  # the same line over and over: not where the failure is
                score -= 4.0
        return mark, score

    def _new_step(self, name: str, ordinal: Optional[int]) -> None:
        self.steps.append(StepDigest(name, ordinal, self._retention(ordinal)))
        with_content = [s for s in self.steps if not s.dropped]
        if len(with_content) > MAX_STEPS_WITH_CONTENT:
            for s in with_content:
                if s.ordinal != self.target and not s.failed:
                    s.drop_content()
                    break

    # -- results

    @property
    def run_steps(self) -> list[StepDigest]:
        """The ``Run`` steps of the log, in order (not "Set up job", not the post-job part)."""
        return [s for s in self.steps if s.ordinal]


def digest_text(text: Optional[str], target: Optional[int] = None, deadline: Optional[float] = None) -> Optional[LogDigest]:
    if text is None:
        return None
    d = LogDigest(target=target, deadline=deadline)
    d.feed_text(text)
    return d.close()


def digest_chunks(chunks: Iterable[bytes], target: Optional[int] = None, deadline: Optional[float] = None) -> LogDigest:
    d = LogDigest(target=target, deadline=deadline)
    for c in chunks:
        d.feed(c)
    return d.close()
