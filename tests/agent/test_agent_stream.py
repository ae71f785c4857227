"""The stream parser: readable lines and token totals from amp/Claude Code/Codex events."""

from __future__ import annotations

import json

from ampx.agent.stream import StreamParser, tool_summary


def feed(events) -> tuple[StreamParser, list[str]]:
    lines: list[str] = []
    parser = StreamParser(lines.append)
    for event in events:
        parser.feed(event if isinstance(event, str) else json.dumps(event))
    return parser, lines


def assistant(msg_id, content, tin=0, tout=0, **extra):
    usage = {"input_tokens": tin, "output_tokens": tout, **extra}
    return {"type": "assistant", "message": {"id": msg_id, "content": content, "usage": usage}}


def test_usage_is_summed_over_assistant_messages_without_result_usage():
    parser, lines = feed([
        {"type": "system", "subtype": "init", "session_id": "T-1", "tools": []},
        assistant("m1", [{"type": "text", "text": "Looking"}], 100, 10),
        assistant("m2", [{"type": "tool_use", "name": "apply_patch",
                          "input": {"patch": "*** Begin Patch\n*** Update File: calc.py\n@@\n-a\n+b\n*** End Patch"}}],
                  200, 20, cache_read_input_tokens=50),
        {"type": "result", "subtype": "success", "is_error": False, "num_turns": 2,
         "result": "ok", "session_id": "T-1", "duration_ms": 5},
    ])
    assert parser.tokens == (350, 30)
    assert parser.thread_id == "T-1" and parser.result_text == "ok" and not parser.is_error
    assert lines == ["[agent] thread T-1", "[assistant] Looking", "[tool] apply_patch calc.py",
                     "[result] success in 2 turns, 380 tokens"]


def test_claude_repeats_usage_per_content_block_counted_once():
    parser, _ = feed([
        assistant("m1", [{"type": "text", "text": "a"}], 100, 10),
        assistant("m1", [{"type": "tool_use", "name": "Bash", "input": {"command": "pytest -q"}}], 100, 10),
    ])
    assert parser.tokens == (100, 10) and parser.num_turns == 1


def test_result_usage_wins_when_present():
    parser, lines = feed([
        assistant("m1", [{"type": "text", "text": "a"}], 1, 1),
        {"type": "result", "subtype": "error_max_turns", "is_error": True, "num_turns": 9,
         "result": "gave up\nmore", "usage": {"input_tokens": 1000, "output_tokens": 234}},
    ])
    assert parser.tokens == (1000, 234) and parser.is_error
    assert lines[-1] == "[result] error (error_max_turns) in 9 turns, 1234 tokens: gave up"


def test_codex_events():
    parser, lines = feed([
        {"type": "thread.started", "thread_id": "0199-abc"},
        {"type": "turn.started"},
        {"type": "item.started", "item": {"type": "command_execution", "command": "pytest -q"}},
        {"type": "item.completed", "item": {"type": "file_change",
                                            "changes": [{"path": "calc.py", "kind": "update"}]}},
        {"type": "item.completed", "item": {"type": "agent_message", "text": "Fixed it."}},
        {"type": "turn.completed", "usage": {"input_tokens": 500, "cached_input_tokens": 100,
                                             "output_tokens": 50}},
    ])
    assert parser.thread_id == "0199-abc" and parser.tokens == (500, 50)
    assert parser.final_text == "Fixed it." and not parser.is_error
    assert "[tool] shell pytest -q" in lines and "[tool] apply_patch calc.py" in lines
    failed, _ = feed([{"type": "turn.failed", "error": {"message": "rate limited"}}])
    assert failed.is_error and failed.result_text == "rate limited"


def test_non_json_and_secrets():
    parser, lines = feed(["plain output", "", '{"oops": 1}', "token=ghp_" + "a" * 36])
    assert lines == ["plain output", '{"oops": 1}', "token=***"]
    assert parser.final_text.startswith("token=")


def test_tool_summary_variants():
    assert tool_summary("Read", {"file_path": "/x/y.py"}) == "Read /x/y.py"
    assert tool_summary("shell_command", {"command": "make test\nmore"}) == "shell_command make test"
    assert tool_summary("apply_patch", {"input": "--- a/x\n+++ b/x\n@@"}) == "apply_patch x"
    assert tool_summary("todo", None) == "todo"
