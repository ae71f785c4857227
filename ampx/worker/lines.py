"""Log lines a runtime can parse safely: a step's own `AMPX_THREAD` / `AMPX_REPORT` lines are
the only ones that start with `AMPX_`, and text from the agent (a file name, a message) never
spans lines, so it cannot forge one."""

from __future__ import annotations

from ..redact import redact


def one_line(text: str) -> str:
    line = redact(text) or ""
    line = line.replace("\r", "\\r").replace("\n", "\\n")
    return " " + line if line.startswith("AMPX_") else line
