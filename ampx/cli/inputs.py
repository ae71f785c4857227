"""Checks of what a user types or pipes in, before anything is stored: bounded reads, text
only, no NUL bytes (git, the API server and the agent would each treat it differently)."""

from __future__ import annotations

from typing import BinaryIO, Optional

from .backend import CliError

# The task limit of the API (models.PROMPT_MAX characters, a test checks they agree), kept
# here so reading needs no models; a character is at most 4 bytes of UTF-8.
TASK_MAX_CHARS = 32768
TASK_MAX_BYTES = 4 * TASK_MAX_CHARS


def read_task_file(fh: BinaryIO, limit: int = TASK_MAX_BYTES) -> str:
    """At most `limit` bytes of UTF-8 text: /dev/zero or a huge file stops at limit + 1 (the
    model then checks the limit in characters)."""
    name = getattr(fh, "name", "-")
    shown = "stdin" if name in ("-", "<stdin>") else str(name)
    try:
        data = fh.read(limit + 1)
    except OSError as exc:
        raise CliError(f"cannot read --task-file {shown}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise CliError(f"--task-file {shown} is too long: the task limit is "
                       f"{TASK_MAX_CHARS:,} characters")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"--task-file {shown} is not UTF-8 text (byte {exc.start})") from None
    refuse_nul("--task-file", text)
    return text


def refuse_nul(what: str, value: Optional[str]) -> None:
    if value and "\x00" in value:
        raise CliError(f"{what} contains a NUL byte; tasks are text")
