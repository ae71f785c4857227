"""Agent profiles: built-in command lines and custom templates."""

from __future__ import annotations

import pytest

from ampx.agent import AgentConfigError, get_profile, profile_from_template
from ampx.agent.runner import parse_thread_id


def test_amp_profile():
    amp = get_profile()
    assert amp.name == "amp" and amp.new_thread_command == ("amp", "threads", "new")
    assert amp.argv("T-1") == ["amp", "threads", "continue", "T-1", "-x", "--stream-json",
                               "--dangerously-allow-all"]
    assert not amp.uses_prompt_file("T-1")
    with pytest.raises(AgentConfigError):
        amp.argv(None)


def test_claude_and_codex_profiles():
    claude = get_profile("claude")
    first = claude.argv(None)
    assert first[:2] == ["claude", "-p"] and "--resume" not in first
    assert "--dangerously-skip-permissions" in first and "stream-json" in first
    assert claude.argv("sess-1")[-2:] == ["--resume", "sess-1"]
    codex = get_profile("codex")
    assert codex.argv(None)[:3] == ["codex", "exec", "--json"] and codex.argv(None)[-1] == "-"
    assert codex.argv("th-9")[-3:] == ["resume", "th-9", "-"]


def test_custom_template_from_config_string():
    agent = get_profile("my-agent --cwd {workspace} --prompt-file '{prompt_file}' --tag 'a b'")
    assert agent.uses_prompt_file(None)
    assert agent.argv(None, prompt_file="/tmp/p.md", workspace="/w") == [
        "my-agent", "--cwd", "/w", "--prompt-file", "/tmp/p.md", "--tag", "a b"]
    resumable = profile_from_template("x run", resume="x resume {thread_id}")
    assert resumable.argv(None) == ["x", "run"] and resumable.argv("t1") == ["x", "resume", "t1"]


def test_bad_profiles():
    with pytest.raises(AgentConfigError, match="unknown agent"):
        get_profile("ampp")
    with pytest.raises(AgentConfigError):
        profile_from_template("")


def test_parse_thread_id():
    assert parse_thread_id("https://ampcode.com/threads/T-0f8b1f7e-1c1d-4f0e-9a7b-2d7c5e9b1a33\n") \
        == "T-0f8b1f7e-1c1d-4f0e-9a7b-2d7c5e9b1a33"
    assert parse_thread_id("created\nhttp://x/threads/abc-123/\n") == "abc-123"
    assert parse_thread_id("") is None
