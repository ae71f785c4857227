"""Task tables and details: rich on a terminal, plain aligned text when piped (like kubectl)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Iterable, Optional

import yaml

from ..core.models import OWNER_LABEL, AmpTask

COLUMNS = ["ID", "PHASE", "ATTEMPTS", "REPO", "BRANCH", "PR", "AGE"]
WIDE = COLUMNS + ["OWNER", "STAGE", "SUMMARY"]


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


def row(task: AmpTask, wide: bool = False) -> list[str]:
    st = task.status
    pr = st.pr_url or "-"
    if st.pr_state == "merged":
        pr += " (merged)"
    cells = [
        task.name,
        st.phase.value if st.phase else "queued",
        f"{st.attempts}/{task.spec.max_attempts + st.budget_start}",
        task.spec.repo,
        task.spec.branch or "-",
        pr,
        age(task.metadata.get("creationTimestamp")),
    ]
    if wide:
        cells += [
            (task.metadata.get("labels") or {}).get(OWNER_LABEL, "-"),
            st.stage.value if st.stage else "-",
            st.summary or "-",
        ]
    return cells


def plain_table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = ["   ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for r in rows:
        lines.append("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


PHASE_STYLE = {"success": "green", "needs_review": "yellow", "error": "red", "aborted": "magenta",
               "running": "cyan", "retrying": "cyan", "queued": "dim"}


def rich_table(tasks: Iterable[AmpTask], wide: bool):
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for h in (WIDE if wide else COLUMNS):
        table.add_column(h, overflow="fold")
    for t in tasks:
        cells = row(t, wide)
        style = PHASE_STYLE.get(cells[1], "")
        cells[1] = f"[{style}]{cells[1]}[/]" if style else cells[1]
        table.add_row(*cells)
    return table


def is_tty() -> bool:
    return sys.stdout.isatty()


def dump(tasks: list[AmpTask], fmt: str, single: bool = False) -> str:
    objs = [wire(t) for t in tasks]
    if fmt == "json":
        payload = objs[0] if single else {"apiVersion": "v1", "kind": "List", "items": objs}
        return json.dumps(payload, indent=2)
    if fmt == "yaml":
        payload = objs[0] if single else {"apiVersion": "v1", "kind": "List", "items": objs}
        return yaml.safe_dump(payload, sort_keys=False).rstrip()
    if fmt == "name":
        return "\n".join(f"amptask/{t.name}" for t in tasks)
    raise ValueError(fmt)


def wire(task: AmpTask) -> dict:
    return {"apiVersion": task.api_version, "kind": task.kind, "metadata": task.metadata,
            "spec": task.spec.wire(), "status": task.status.wire()}


def describe(task: AmpTask) -> str:
    """`ampx get`: everything about one task, attempts included."""
    st, spec = task.status, task.spec
    out = [
        f"Task:        {task.name}",
        f"Title:       {spec.display_title()}",
        f"Phase:       {st.phase.value if st.phase else 'queued'}"
        + (f" ({st.stage.value})" if st.stage and st.stage.value != "idle" else ""),
        f"Summary:     {st.summary or '-'}",
        f"Repo:        {spec.repo}",
        f"Branch:      {spec.branch or '-'}" + (f" (base {spec.base_branch})" if spec.base_branch else ""),
        f"Owner:       {(task.metadata.get('labels') or {}).get(OWNER_LABEL, '-')}",
        f"Created:     {task.metadata.get('creationTimestamp', '-')}",
        f"Attempts:    {st.attempts} (max {spec.max_attempts} per run)",
        f"Thread:      {st.thread_id or '-'}",
        f"CI run:      {st.ci_run_url or st.ci_run_id or '-'}",
        f"PR:          {st.pr_url or '-'}" + (f" ({st.pr_state})" if st.pr_state else ""),
    ]
    if spec.follow_ups:
        out.append("Follow-ups:")
        out += [f"  - {f.message}" + (f"  ({f.at})" if f.at else "") for f in spec.follow_ups]
    for rec in st.history:
        out.append("")
        out.append(f"Attempt {rec.number}: {rec.outcome.value if rec.outcome else 'in progress'}"
                   + (f" — {rec.reason}" if rec.reason else ""))
        out.append(f"  Job:      {rec.job or '-'}")
        out.append(f"  Started:  {rec.started_at or '-'}   Finished: {rec.finished_at or '-'}")
        out.append(f"  Commit:   {rec.commit or '-'}")
        ci = rec.ci_conclusion or "-"
        if rec.flaky:
            ci += " (flaky: green on re-run)"
        out.append(f"  CI:       {ci}" + (f"  {rec.ci_run_url}" if rec.ci_run_url else ""))
        if rec.tokens_in or rec.tokens_out:
            out.append(f"  Tokens:   {rec.tokens_in or 0} in / {rec.tokens_out or 0} out")
        first = rec.prompt.strip().splitlines()[0] if rec.prompt.strip() else ""
        out.append(f"  Prompt:   {first[:100]}")
        if rec.excerpt:
            out.append("  CI excerpt:")
            out += [f"    {line}" for line in rec.excerpt.splitlines()[:40]]
    return "\n".join(out)
