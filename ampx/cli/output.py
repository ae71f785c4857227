"""Task tables and details: rich on a terminal, plain aligned text when piped (like kubectl)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Iterable, Optional

from ..core.names import OWNER_LABEL
from ..core.queueing import EXACT_PLACES, ordinal
from .visible import visible

COLUMNS = ["ID", "PHASE", "ATTEMPTS", "REPO", "PR", "AGE", "SUMMARY"]
WIDE = ["ID", "PHASE", "ATTEMPTS", "REPO", "BRANCH", "PR", "AGE", "OWNER", "STAGE", "SUMMARY"]


def age(created: Optional[str], now: Optional[dt.datetime] = None) -> str:
    """kubectl-style age: 45s, 12m, 3h, 2d."""
    if not created:
        return "-"
    try:
        t = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return "-"
    secs = max(0, int(((now or dt.datetime.now(dt.timezone.utc)) - t).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def _doc(task) -> dict:
    """The wire form (a dict, as stored): rows are built from it so listing needs no models."""
    return task if isinstance(task, dict) else wire(task)


def row(task, wide: bool = False, short: Optional[dict] = None) -> list[str]:
    """One table row of a task (an AmpTask or its wire dict); every cell is one visible line.

    short: id -> shortest unique prefix (the default table); wide shows everything in full.
    """
    doc = _doc(task)
    meta, spec, st = doc.get("metadata") or {}, doc.get("spec") or {}, doc.get("status") or {}
    name = str(meta.get("name", "?"))
    number, state = st.get("prNumber"), st.get("prState")
    if wide:
        pr = st.get("prUrl") or "-"
    else:
        pr = f"#{number}" if number else ("-" if not st.get("prUrl") else st["prUrl"].rsplit("/", 1)[-1])
    if state == "merged":
        pr += " (merged)"
    elif state == "merging":
        pr += " (merging)"
    cells = [
        name if wide or short is None else short.get(name, name),
        st.get("phase") or "queued",
        f"{st.get('attempts', 0)}/{spec.get('maxAttempts', 3) + st.get('budgetStart', 0)}",
        spec.get("repo", "-"),
    ]
    if wide:
        cells.append(spec.get("branch") or "-")
    cells += [pr, age(meta.get("creationTimestamp"))]
    if wide:
        cells += [(meta.get("labels") or {}).get(OWNER_LABEL, "-"), st.get("stage") or "-"]
    cells.append(st.get("summary") or "-")
    return [visible(c) for c in cells]


def plain_table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = ["   ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for r in rows:
        lines.append("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


PHASE_STYLE = {"success": "green", "needs_review": "yellow", "error": "red", "aborted": "magenta",
               "running": "cyan", "retrying": "cyan", "queued": "bright_black"}
# Columns a narrow terminal shortens, in this order (ID, PHASE, ATTEMPTS, AGE never shrink).
SHRINK_ORDER = ["SUMMARY", "BRANCH", "PR", "REPO", "OWNER", "STAGE"]
SEP = "   "


def fit(rows: list[list[str]], headers: list[str], width: int) -> list[list[str]]:
    """The rows cut to `width` columns: the shrinkable columns give up room in SHRINK_ORDER,
    each down to its header's width, and a cut cell ends in "…". Ids are never cut."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    excess = sum(widths) + len(SEP) * (len(headers) - 1) - width
    for name in SHRINK_ORDER:
        if excess <= 0:
            break
        if name in headers:
            i = headers.index(name)
            give = min(excess, widths[i] - max(len(name), 3))
            if give > 0:
                widths[i] -= give
                excess -= give
    return [[c if len(c) <= w else c[:w - 1] + "…" for c, w in zip(r, widths)] for r in rows]


def terminal_table(tasks: Iterable, wide: bool, short: Optional[dict] = None,
                   width: Optional[int] = None, color: bool = True) -> str:
    """The terminal's table: one line per task. The default table is cut to the terminal's
    width (ids and phases never); -o wide shows everything in full, like kubectl."""
    import shutil

    headers = WIDE if wide else COLUMNS
    rows = [row(t, wide, short) for t in tasks]
    if not wide:
        rows = fit(rows, headers, width or shutil.get_terminal_size().columns)
    text = plain_table(rows, headers)
    if not color or not rows:
        return text
    lines = text.split("\n")
    out = [click_style(lines[0], bold=True)]
    for line, cells in zip(lines[1:], rows):
        phase = cells[1]
        at = line.index(phase, len(cells[0]))
        out.append(line[:at] + click_style(phase, fg=PHASE_STYLE.get(phase)) + line[at + len(phase):])
    return "\n".join(out)


def click_style(text: str, **kw) -> str:
    import click

    return click.style(text, **kw)


def rich_table(tasks: Iterable, wide: bool, short: Optional[dict] = None):
    """The same table as a rich renderable, for live views (`ls -w`, the demo)."""
    from rich.text import Text

    return Text.from_ansi(terminal_table(list(tasks), wide, short))


def is_tty() -> bool:
    return sys.stdout.isatty()


def dump(tasks: list, fmt: str, single: bool = False) -> str:
    """-o json|yaml|name, of AmpTasks or their wire dicts (data, not for a terminal: unchanged)."""
    objs = [_doc(t) for t in tasks]
    if fmt == "json":
        payload = objs[0] if single else {"apiVersion": "v1", "kind": "List", "items": objs}
        return json.dumps(payload, indent=2)
    if fmt == "yaml":
        import yaml

        payload = objs[0] if single else {"apiVersion": "v1", "kind": "List", "items": objs}
        return yaml.safe_dump(payload, sort_keys=False).rstrip()
    if fmt == "name":
        return "\n".join(f"amptask/{visible(o['metadata']['name'])}" for o in objs)
    raise ValueError(fmt)


def wire(task) -> dict:
    return {"apiVersion": task.api_version, "kind": task.kind, "metadata": task.metadata,
            "spec": task.spec.wire(), "status": task.status.wire()}


def thread_of(task) -> Optional[str]:
    """The task's agent thread: the status's, else the latest a worker reported (an attempt
    aborted before its report was judged still created one)."""
    st = task.status
    if st.thread_id:
        return st.thread_id
    for key in sorted(st.reports, key=lambda k: int(k) if k.isdigit() else 0, reverse=True):
        if st.reports[key].thread_id:
            return st.reports[key].thread_id
    return None


def _one_line(text: Optional[str], limit: int = 0) -> str:
    """A many-line text as its first line, and how many more there are."""
    lines = (text or "").strip().splitlines()
    if not lines:
        return "-"
    first = lines[0][:limit] + ("…" if limit and len(lines[0]) > limit else "") if limit else lines[0]
    more = f"  (+{len(lines) - 1} more line{'s' if len(lines) > 2 else ''})" if len(lines) > 1 else ""
    return visible(first) + more


def queue_place(place: int) -> str:
    return (f"{ordinal(place)} in line" if place <= EXACT_PLACES
            else f"within the first {place} in line")


def describe(task) -> str:
    """`ampx get`: everything about one task, attempts included. Every text that came from a
    user, an agent or CI is shown with its control characters visible, one field per line."""
    v = visible
    st, spec = task.status, task.spec
    merge = ""
    if spec.merge_requested_at and spec.merge_requested_at != st.merge_handled_at:
        merge = f" (merge requested {spec.merge_requested_at}, not yet handled)"
    out = [
        f"Task:        {v(task.name)}",
        f"Title:       {v(spec.display_title())}",
        f"Phase:       {st.phase.value if st.phase else 'queued'}"
        + (f" ({st.stage.value})" if st.stage and st.stage.value != "idle" else ""),
        f"Summary:     {v(st.summary or '-')}",
        *([f"Queue:       {queue_place(st.queue_position)} (waiting for a free slot)"]
          if st.queue_position else []),
        f"Repo:        {v(spec.repo)}",
        f"Branch:      {v(spec.branch or '-')}" + (f" (base {v(spec.base_branch)})" if spec.base_branch else ""),
        f"Owner:       {v((task.metadata.get('labels') or {}).get(OWNER_LABEL, '-'))}",
        f"Created:     {v(task.metadata.get('creationTimestamp', '-'))}",
        f"Attempts:    {st.attempts} (max {spec.max_attempts} per run)",
        f"Thread:      {v(thread_of(task) or '-')}",
        f"CI run:      {v(st.ci_run_url or st.ci_run_id or '-')}",
        f"PR:          {v(st.pr_url or '-')}" + (f" ({v(st.pr_state)})" if st.pr_state else "") + merge,
    ]
    if spec.follow_ups:
        out.append("Follow-ups:")
        out += [f"  - {_one_line(f.message)}" + (f"  ({v(f.at)})" if f.at else "")
                for f in spec.follow_ups]
    for rec in st.history:
        out.append("")
        out.append(f"Attempt {rec.number}: {rec.outcome.value if rec.outcome else 'in progress'}"
                   + (f" — {v(rec.reason)}" if rec.reason else ""))
        out.append(f"  Job:      {v(rec.job or '-')}")
        out.append(f"  Started:  {v(rec.started_at or '-')}   Finished: {v(rec.finished_at or '-')}")
        out.append(f"  Commit:   {v(rec.commit or '-')}")
        ci = rec.ci_conclusion or "-"
        if rec.flaky:
            ci += " (flaky: green on re-run)"
        out.append(f"  CI:       {v(ci)}" + (f"  {v(rec.ci_run_url)}" if rec.ci_run_url else ""))
        if rec.tokens_in or rec.tokens_out:
            out.append(f"  Tokens:   {rec.tokens_in or 0} in / {rec.tokens_out or 0} out")
        out.append(f"  Prompt:   {_one_line(rec.prompt, 100)}")
        if rec.excerpt:
            out.append("  CI excerpt:")
            out += [f"    {v(line)}" for line in rec.excerpt.splitlines()[:40]]
    return "\n".join(out)
