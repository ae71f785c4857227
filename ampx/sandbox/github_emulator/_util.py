"""Small helpers shared by the emulator modules (time formats, ids, glob filters)."""

from __future__ import annotations

import base64
import json
import re
import time
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Iterable


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(dt: datetime | None) -> str | None:
    """GitHub's REST timestamps: second precision, UTC, ``Z`` suffix."""
    if dt is None:
        return None
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def log_timestamp(epoch: float | None = None) -> str:
    """Timestamp prefix of an Actions log line: 7 fractional digits, ``Z``."""
    epoch = time.time() if epoch is None else epoch
    dt = datetime.fromtimestamp(epoch, timezone.utc)
    frac = int((epoch % 1) * 10_000_000)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{frac:07d}Z"


def node_id(kind: str, ident: int | str) -> str:
    """Opaque GraphQL-style node ids, stable for a given object."""
    return base64.b64encode(f"0{len(kind)}:{kind}{ident}".encode()).decode().rstrip("=")


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=False).encode()


@lru_cache(maxsize=512)
def _filter_regex(pattern: str) -> re.Pattern[str]:
    """Translate a GitHub Actions filter pattern into a regex.

    GitHub's filter syntax: ``*`` matches anything but ``/``, ``**`` matches
    anything, ``?`` and ``+`` quantify the preceding character, ``[...]`` is a
    character class; everything else is literal.
    """
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            if pattern[i : i + 2] == "**":
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
        elif c in "?+":
            out.append(c)
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                out.append(pattern[i : end + 1])
                i = end + 1
                continue
        elif c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("^" + "".join(out) + "$")


def filter_matches(patterns: Iterable[str], value: str) -> bool:
    """Evaluate a GitHub filter list: patterns apply in order, ``!`` negates."""
    matched = False
    for raw in patterns:
        pattern = str(raw)
        negate = pattern.startswith("!")
        if negate:
            pattern = pattern[1:]
        if _filter_regex(pattern).match(value):
            matched = not negate
    return matched


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]
