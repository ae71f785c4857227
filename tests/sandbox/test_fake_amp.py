"""The scripted amp stand-in speaks amp's CLI and edits files as its directives say."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ampx.sandbox.fake_amp import THREAD_ID_RE, install_fake_amp, parse_directives


@pytest.fixture
def amp(tmp_path):
    """Run the installed ``amp`` wrapper in a scratch checkout; returns a runner."""
    bin_dir = tmp_path / "bin"
    install_fake_amp(bin_dir)
    work = tmp_path / "repo"
    work.mkdir()
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "AMP_FAKE_HOME": str(tmp_path / "amp-home"),
        "AMP_API_KEY": "sk-amp-test-key-123456",
        "HOME": str(tmp_path),
    }

    def run(*args: str, stdin: str = "", env_update: dict | None = None, timeout: float = 20):
        return subprocess.run(["amp", *args], cwd=work, input=stdin, capture_output=True,
                              text=True, env={**env, **(env_update or {})}, timeout=timeout)

    run.work = work
    run.home = tmp_path / "amp-home"
    run.env = env
    return run


def new_thread(amp) -> str:
    out = amp("threads", "new")
    assert out.returncode == 0, out.stderr
    url = out.stdout.strip()
    assert url.startswith("https://ampcode.com/threads/T-")
    thread_id = url.rsplit("/", 1)[1]
    assert THREAD_ID_RE.fullmatch(thread_id)
    return thread_id


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_wrapper_is_an_executable_named_amp(tmp_path):
    path = install_fake_amp(tmp_path)
    assert path.name == "amp" and os.access(path, os.X_OK)
    assert path.read_text().startswith("#!/bin/sh")


def test_threads_new_persists_a_thread(amp):
    thread_id = new_thread(amp)
    stored = json.loads((amp.home / "threads" / f"{thread_id}.json").read_text())
    assert stored["id"] == thread_id and stored["messages"] == []


def test_continue_stream_json_shape_and_edits(amp):
    thread_id = new_thread(amp)
    message = "@fake write src/calc.py def add(a, b):\\n    return a + b\\n\n@fake reply done"
    out = amp("threads", "continue", thread_id, "-x", "--stream-json",
              "--dangerously-allow-all", stdin=message)
    assert out.returncode == 0, out.stderr
    evs = events(out.stdout)
    init, result = evs[0], evs[-1]
    assert init["type"] == "system" and init["subtype"] == "init"
    assert init["session_id"] == thread_id
    assert init["cwd"] == str(amp.work) and "apply_patch" in init["tools"]
    assert evs[1]["type"] == "user"
    assert evs[1]["message"]["content"][0]["text"] == message
    assistants = [e for e in evs if e["type"] == "assistant"]
    assert assistants and all(set(a["message"]["usage"]) >= {"input_tokens", "output_tokens"}
                              for a in assistants)
    tool_uses = [b for a in assistants for b in a["message"]["content"] if b["type"] == "tool_use"]
    assert tool_uses[0]["name"] == "apply_patch" and tool_uses[0]["input"]["path"] == "src/calc.py"
    assert result["type"] == "result" and result["subtype"] == "success"
    assert result["is_error"] is False and result["result"] == "done"
    assert result["session_id"] == thread_id and result["num_turns"] == len(assistants)
    assert isinstance(result["duration_ms"], int)
    assert result["usage"]["input_tokens"] == sum(a["message"]["usage"]["input_tokens"] for a in assistants)
    assert (amp.work / "src/calc.py").read_text() == "def add(a, b):\n    return a + b\n"


def test_message_from_argv_and_thread_url(amp):
    thread_id = new_thread(amp)
    out = amp("threads", "continue", f"https://ampcode.com/threads/{thread_id}", "-x",
              "@fake append notes.txt one\\n")
    assert out.returncode == 0, out.stderr
    # Without --stream-json only the last assistant message is printed.
    assert out.stdout.strip() == "Done: append notes.txt."
    amp("threads", "continue", thread_id, "-x", "@fake append notes.txt two\\n")
    assert (amp.work / "notes.txt").read_text() == "one\ntwo\n"


def test_execute_without_thread_creates_one(amp):
    out = amp("-x", "--stream-json", stdin="@fake nothing")
    evs = events(out.stdout)
    assert out.returncode == 0
    assert THREAD_ID_RE.fullmatch(evs[0]["session_id"])
    assert (amp.home / "threads" / f"{evs[0]['session_id']}.json").exists()


def test_rules_are_remembered_and_fire_once_on_a_later_turn(amp):
    thread_id = new_thread(amp)
    first = ('@fake write calc.py BUGGY\n'
             '@fake when "AssertionError" write calc.py FIXED\n'
             'The words AssertionError in the same turn do not fire the rule.')
    amp("threads", "continue", thread_id, "-x", stdin=first)
    assert (amp.work / "calc.py").read_text() == "BUGGY"
    amp("threads", "continue", thread_id, "-x", stdin="CI failed: all green, nothing to see")
    assert (amp.work / "calc.py").read_text() == "BUGGY"
    # The retry prompt repeats the task: its directives run first, then the rule wins.
    amp("threads", "continue", thread_id, "-x", stdin=first + "\nE   AssertionError: 1 != 2")
    assert (amp.work / "calc.py").read_text() == "FIXED"
    (amp.work / "calc.py").write_text("BUGGY")
    amp("threads", "continue", thread_id, "-x", stdin="AssertionError again")
    assert (amp.work / "calc.py").read_text() == "BUGGY"
    stored = json.loads((amp.home / "threads" / f"{thread_id}.json").read_text())
    assert len(stored["messages"]) == 8 and len(stored["rules"]) == 1


def test_echo_prompt_touch_workflow_delete_tests(amp, tmp_path):
    (amp.work / "tests").mkdir()
    (amp.work / "tests" / "test_a.py").write_text("def test_a(): pass\n")
    (amp.work / "tests" / "test_b.py").write_text("def test_b(): pass\n")
    echo = tmp_path / "echo.txt"
    message = f"@fake echo-prompt {echo}\n@fake touch-workflow\n@fake delete-tests\nhello"
    out = amp("-x", message)
    assert out.returncode == 0, out.stderr
    assert echo.read_text() == message
    assert "touched by fake amp" in (amp.work / ".github/workflows/ci.yml").read_text()
    assert not (amp.work / "tests/test_a.py").exists() and (amp.work / "tests/test_b.py").exists()


def test_paths_outside_the_checkout_are_refused(amp, tmp_path):
    out = amp("-x", "--stream-json", stdin="@fake write ../escape.txt nope")
    assert out.returncode == 1
    assert not (tmp_path / "escape.txt").exists()
    assert events(out.stdout)[-1]["is_error"] is True


def test_fail_reports_an_error_result(amp):
    out = amp("-x", "--stream-json", stdin="@fake write a.txt partial\n@fake fail tests are hard")
    assert out.returncode == 1
    result = events(out.stdout)[-1]
    assert result["type"] == "result" and result["is_error"] is True
    assert result["subtype"] == "error" and "tests are hard" in result["result"]
    assert (amp.work / "a.txt").exists()


def test_crash_exits_2_without_result(amp):
    out = amp("-x", "--stream-json", stdin="@fake crash boom")
    assert out.returncode == 2
    assert "boom" in out.stderr
    assert all(e["type"] != "result" for e in events(out.stdout))


@pytest.mark.parametrize("args,stdin,needle", [
    (("threads", "continue", "T-not-a-uuid", "-x", "hi"), "", "Invalid thread URL or ID"),
    (("threads", "continue", "https://ampcode.com/threads/nope", "-x"), "hi", "Invalid thread URL or ID"),
    (("threads", "continue", "T-00000000-0000-0000-0000-000000000000", "-x", "hi"), "", "not found"),
    (("--frobnicate", "-x", "hi"), "", "unknown option"),
    (("--stream-json",), "hi", "requires -x"),
])
def test_usage_errors_exit_1(amp, args, stdin, needle):
    out = amp(*args, stdin=stdin)
    assert out.returncode == 1
    assert needle in out.stderr


def test_missing_api_key_fails_fast_instead_of_waiting_for_login(amp):
    env = {k: v for k, v in amp.env.items() if k != "AMP_API_KEY"}
    start = time.monotonic()
    out = subprocess.run(["amp", "-x", "hi"], cwd=amp.work, env=env, capture_output=True,
                         text=True, timeout=20)
    assert out.returncode == 1 and "AMP_API_KEY" in out.stderr
    assert time.monotonic() - start < 10


def test_hang_leaves_a_sleeping_helper_in_its_process_group(amp, tmp_path):
    pidfile = tmp_path / "pids"
    proc = subprocess.Popen(["amp", "-x", f"@fake hang {pidfile}"], cwd=amp.work, env=amp.env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not (pidfile.exists() and pidfile.read_text().endswith("\n")):
            assert time.monotonic() < deadline, "fake amp never started hanging"
            time.sleep(0.02)
        leader, helper = map(int, pidfile.read_text().split())
        assert leader == proc.pid
        assert os.getpgid(helper) == proc.pid
        time.sleep(0.2)
        assert proc.poll() is None
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_directive_parsing():
    msg = "intro\n  @fake write a b c  \n@fakery no\n@fake\n@fake nothing"
    assert parse_directives(msg) == ["write a b c", "nothing"]


def test_help_and_version(amp):
    assert amp("--help").returncode == 0
    assert "fake" in amp("--version").stdout
    assert Path(amp.work).exists()


def test_commit_directive_commits_like_an_agent_would(amp):
    subprocess.run(["git", "init", "-q"], cwd=amp.work, check=True)
    out = amp("-x", "@fake write a.txt a\n@fake commit agent did this")
    assert out.returncode == 0, out.stderr
    log = subprocess.run(["git", "log", "--format=%s", "--name-only"], cwd=amp.work,
                         capture_output=True, text=True).stdout
    assert log.split() == ["agent", "did", "this", "a.txt"]
