"""Control characters made visible: every string that came from a user, an agent or CI goes
through `visible()` before it reaches a terminal.

A task title, an agent's output or a CI log can hold ESC sequences (retitle the terminal,
rewrite the screen), C1 controls (`\\x9b` is a one-byte CSI on many terminals), bidi overrides
that reorder what is read, or a newline that forges a line such as `Phase: success`. They are
shown as escapes (`\\x1b`, `\\u202e`, `\\n`) instead, so what is printed is what is there.
"""

from __future__ import annotations

import re

# C0 (but tab and newline, handled per mode), DEL, C1, bidi embeddings/overrides/isolates,
# line and paragraph separators.
_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029"
_MULTI = re.compile(f"[{_CONTROLS}]|\r(?!\n)")
_SINGLE = re.compile(f"[{_CONTROLS}\t\n\r]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(m: "re.Match[str]") -> str:
    ch = m.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: object, single_line: bool = True) -> str:
    """`text` with every control character shown as an escape.

    single_line: newlines, carriage returns and tabs are escaped too (table cells, one-line
    fields); otherwise lines and tabs stay, a lone CR (which would overwrite the line) is shown
    and CRLF becomes LF.
    """
    s = "" if text is None else str(text)
    if single_line:
        return _SINGLE.sub(_escape, s)
    return _MULTI.sub(_escape, s.replace("\r\n", "\n"))
