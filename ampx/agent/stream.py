"""Turn an agent's JSON-lines output into readable log lines and a summary of the turn.

Understands the Claude-Code-compatible ``--stream-json`` events that amp and Claude Code print
(``system``/``user``/``assistant``/``result``) and Codex's ``exec --json`` events
(``thread.started``, ``item.*``, ``turn.*``). Anything else is passed through as text, so an
agent without JSON output still produces a useful log.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from ampx.redact import redact

MAX_LINE = 2000
_PATCH_FILE_RE = re.compile(r"^\*\*\* (?:Update|Add|Delete) File: (.+)$|^\+\+\+ b/(.+)$", re.MULTILINE)
_SUMMARY_KEYS = ("path", "file_path", "filePath", "paths", "command", "cmd", "pattern", "url",
                 "query", "description")


def _clip(text: str, limit: int = MAX_LINE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _first_line(text: str, limit: int = 200) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return _clip(line, limit)


def tool_summary(name: str, tool_input: Any) -> str:
    """``apply_patch calc.py`` — the tool and what it acts on, on one line."""
    detail = ""
    if isinstance(tool_input, dict):
        for value in tool_input.values():
            if isinstance(value, str) and "\n" in value:
                files = [a or b for a, b in _PATCH_FILE_RE.findall(value)]
                if files:
                    detail = " ".join(dict.fromkeys(f.strip() for f in files))
                    break
        if not detail:
            for key in _SUMMARY_KEYS:
                value = tool_input.get(key)
                if isinstance(value, list):
                    value = " ".join(str(v) for v in value)
                if isinstance(value, str) and value.strip():
                    detail = _first_line(value)
                    break
    elif isinstance(tool_input, str):
        detail = _first_line(tool_input)
    return f"{name} {detail}".strip()


class StreamParser:
    """Feed it output lines; it emits log lines and accumulates the turn's outcome."""

    def __init__(self, emit: Callable[[str], None]):
        self._emit = emit
        self.thread_id: str | None = None
        self.saw_result = False
        self.is_error = False
        self.result_text = ""
        self.num_turns = 0
        self._usage_by_message: dict[str, tuple[int, int]] = {}
        self._usage_total: tuple[int, int] | None = None
        self._codex_usage = [0, 0]
        self._last_text = ""
        self._last_plain = ""

    # -- results ---------------------------------------------------------------------------

    @property
    def tokens(self) -> tuple[int, int]:
        """(input, output) tokens: the result event's totals, else the sum over messages."""
        if self._usage_total is not None:
            return self._usage_total
        tin = sum(u[0] for u in self._usage_by_message.values()) + self._codex_usage[0]
        tout = sum(u[1] for u in self._usage_by_message.values()) + self._codex_usage[1]
        return tin, tout

    @property
    def final_text(self) -> str:
        return self.result_text or self._last_text or self._last_plain

    # -- input -----------------------------------------------------------------------------

    def feed(self, line: str) -> None:
        line = line.rstrip("\r\n")
        if not line.strip():
            return
        event = None
        if line.lstrip().startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                event = None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self._last_plain = line.strip()
            self._log(line)
            return
        kind = event["type"]
        handler = getattr(self, "_on_" + kind.replace(".", "_"), None)
        if handler is not None:
            handler(event)

    def _log(self, text: str) -> None:
        self._emit(redact(_clip(text)))

    def _set_thread(self, thread_id: Any) -> None:
        if isinstance(thread_id, str) and thread_id and thread_id != self.thread_id:
            self.thread_id = thread_id
            self._log(f"[agent] thread {thread_id}")

    @staticmethod
    def _usage(usage: Any) -> tuple[int, int] | None:
        if not isinstance(usage, dict):
            return None

        def num(key: str) -> int:
            value = usage.get(key)
            return int(value) if isinstance(value, (int, float)) else 0

        tin = num("input_tokens") + num("cache_creation_input_tokens") + num("cache_read_input_tokens")
        return tin, num("output_tokens")

    # -- Claude-Code-compatible events (amp, claude) ---------------------------------------

    def _on_system(self, event: dict) -> None:
        if event.get("subtype") == "init":
            self._set_thread(event.get("session_id"))

    def _on_user(self, event: dict) -> None:
        content = (event.get("message") or {}).get("content")
        if isinstance(content, str):
            self._log(f"[user] {_first_line(content)}")
            return
        for block in content or []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                self._log(f"[user] {_first_line(block.get('text') or '')}")
            elif block.get("type") == "tool_result" and block.get("is_error"):
                body = block.get("content")
                if isinstance(body, list):
                    body = " ".join(b.get("text", "") for b in body if isinstance(b, dict))
                self._log(f"[tool-error] {_first_line(str(body or ''))}")

    def _on_assistant(self, event: dict) -> None:
        message = event.get("message") or {}
        usage = self._usage(message.get("usage"))
        key = message.get("id") or f"#{len(self._usage_by_message)}"
        if key not in self._usage_by_message:
            self.num_turns += 1
        if usage is not None:
            # Claude Code repeats one message's usage on every content block: count it once.
            self._usage_by_message[key] = usage
        for block in message.get("content") or []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and (block.get("text") or "").strip():
                self._last_text = block["text"].strip()
                for text_line in self._last_text.splitlines():
                    self._log(f"[assistant] {text_line}")
            elif block.get("type") == "tool_use":
                self._log(f"[tool] {tool_summary(block.get('name') or '?', block.get('input'))}")

    def _on_result(self, event: dict) -> None:
        self.saw_result = True
        self.is_error = bool(event.get("is_error")) or event.get("subtype") not in (None, "success")
        self._set_thread(event.get("session_id"))
        if isinstance(event.get("result"), str):
            self.result_text = event["result"]
        if isinstance(event.get("num_turns"), int):
            self.num_turns = event["num_turns"]
        usage = self._usage(event.get("usage"))
        if usage is not None and any(usage):
            self._usage_total = usage
        tin, tout = self.tokens
        outcome = "success" if not self.is_error else f"error ({event.get('subtype', 'error')})"
        line = f"[result] {outcome} in {self.num_turns} turns, {tin + tout} tokens"
        if self.is_error and self.result_text:
            line += f": {_first_line(self.result_text)}"
        self._log(line)

    # -- Codex events ----------------------------------------------------------------------

    def _on_thread_started(self, event: dict) -> None:
        self._set_thread(event.get("thread_id"))

    def _on_item_started(self, event: dict) -> None:
        item = event.get("item") or {}
        if item.get("type") == "command_execution":
            self._log(f"[tool] shell {_first_line(str(item.get('command') or ''))}")

    def _on_item_completed(self, event: dict) -> None:
        item = event.get("item") or {}
        kind = item.get("type")
        if kind == "agent_message":
            text = (item.get("text") or "").strip()
            if text:
                self._last_text = text
                for text_line in text.splitlines():
                    self._log(f"[assistant] {text_line}")
        elif kind == "file_change":
            paths = [c.get("path", "?") for c in item.get("changes") or [] if isinstance(c, dict)]
            self._log(f"[tool] apply_patch {' '.join(paths)}".rstrip())
        elif kind == "command_execution" and item.get("exit_code") not in (None, 0):
            self._log(f"[tool-error] exit {item.get('exit_code')}: "
                      f"{_first_line(str(item.get('command') or ''))}")
        elif kind == "mcp_tool_call":
            self._log(f"[tool] {item.get('server', '')}.{item.get('tool', '')}")
        elif kind == "error":
            self._log(f"[error] {_first_line(str(item.get('message') or ''))}")

    def _on_turn_completed(self, event: dict) -> None:
        self.num_turns += 1
        usage = event.get("usage")
        if isinstance(usage, dict):
            # Codex counts cached input inside input_tokens.
            plain = {k: v for k, v in usage.items() if k in ("input_tokens", "output_tokens")}
            tin, tout = self._usage(plain) or (0, 0)
            self._codex_usage[0] += tin
            self._codex_usage[1] += tout
        tin, tout = self.tokens
        self.saw_result = True
        self._log(f"[result] success in {self.num_turns} turns, {tin + tout} tokens")

    def _on_turn_failed(self, event: dict) -> None:
        self.saw_result = True
        self.is_error = True
        message = str((event.get("error") or {}).get("message") or "turn failed")
        self.result_text = message
        self._log(f"[result] error: {_first_line(message)}")

    def _on_error(self, event: dict) -> None:
        self._log(f"[error] {_first_line(str(event.get('message') or event))}")
