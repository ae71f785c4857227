"""Commit messages for attempts: ``ampx: <title> (attempt N)`` plus an ``Ampx-Task`` trailer.

The trailer lets anyone (and ampx after a restart) map a commit on the branch back to its task.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

TASK_TRAILER = "Ampx-Task"
TITLE_LIMIT = 60
_TRAILER_LINE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*: .+$")


def commit_title(prompt: str, limit: int = TITLE_LIMIT) -> str:
    """A one-line title from a task prompt: its first non-empty line, shortened."""
    for line in prompt.splitlines():
        line = " ".join(line.split())
        if line:
            return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"
    return "task"


def add_trailers(message: str, trailers: Mapping[str, str] | None) -> str:
    """``message`` with ``Key: value`` trailers appended to (or starting) its trailer block."""
    body = message.rstrip()
    if not trailers:
        return body + "\n"
    lines = [f"{key}: {' '.join(str(value).split())}" for key, value in trailers.items()]
    paragraphs = body.split("\n\n")
    last = paragraphs[-1].splitlines() if len(paragraphs) > 1 else []
    joiner = "\n" if last and all(_TRAILER_LINE.match(line) for line in last) else "\n\n"
    return body + joiner + "\n".join(lines) + "\n"


def attempt_message(title: str, attempt: int, task_id: str, *, interrupted: bool = False,
                    trailers: Mapping[str, str] | None = None) -> str:
    """The full commit message of an attempt (or of its interrupted WIP commit)."""
    title = " ".join(title.split()) or "task"
    if interrupted:
        subject = f"ampx: WIP {title} (attempt {attempt}, interrupted)"
    else:
        subject = f"ampx: {title} (attempt {attempt})"
    return add_trailers(subject, {TASK_TRAILER: task_id, **(trailers or {})})
