"""run_agent against the scripted amp: threads, usage, logs, time limits, process groups."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

from ampx.agent import AgentRun, get_profile, profile_from_template, run_agent

AMP = get_profile("amp")


def pid_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie awaiting its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_first_run_creates_the_thread_later_runs_reuse_it(fake_amp):
    first = run_agent(AMP, fake_amp.workspace, "@fake write calc.py x = 1\\n", env=fake_amp.env,
                      timeout_s=30, log_sink=fake_amp.lines.append)
    assert first.exit_code == 0 and not first.is_error and not first.timed_out
    assert first.created_thread and first.thread_id and first.thread_id.startswith("T-")
    assert len(fake_amp.threads()) == 1
    assert (fake_amp.workspace / "calc.py").read_text() == "x = 1\n"

    second = run_agent(AMP, fake_amp.workspace, "@fake append calc.py y = 2\\n",
                       thread_id=first.thread_id, env=fake_amp.env, timeout_s=30)
    assert second.thread_id == first.thread_id and not second.created_thread
    assert len(fake_amp.threads()) == 1
    stored = json.loads(fake_amp.threads()[0].read_text())
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"] * 2


def test_usage_result_text_and_readable_log_lines(fake_amp):
    result = run_agent(AMP, fake_amp.workspace, "@fake write calc.py x = 1\n@fake reply All set.",
                       env=fake_amp.env, timeout_s=30, log_sink=fake_amp.lines.append)
    assert result.result_text == "All set."
    assert result.tokens_in > 0 and result.tokens_out > 0
    assert result.num_turns == 2
    lines = fake_amp.lines
    assert f"[agent] created thread {result.thread_id}" in lines
    assert "[tool] apply_patch calc.py" in lines
    assert "[assistant] All set." in lines
    total = result.tokens_in + result.tokens_out
    assert f"[result] success in 2 turns, {total} tokens" in lines
    assert all(fake_amp.api_key not in line for line in lines)


def test_log_sink_may_be_a_text_stream(fake_amp, tmp_path):
    log_path = tmp_path / "agent.log"
    with open(log_path, "w") as stream:
        run_agent(AMP, fake_amp.workspace, "@fake nothing", env=fake_amp.env, timeout_s=30,
                  log_sink=stream)
    assert "[result] success" in log_path.read_text()


def test_failed_turn_is_an_error(fake_amp):
    result = run_agent(AMP, fake_amp.workspace, "@fake fail cannot do it", env=fake_amp.env,
                       timeout_s=30, log_sink=fake_amp.lines.append)
    assert result.is_error and result.exit_code == 1 and not result.timed_out
    assert "cannot do it" in result.result_text
    assert any(line.startswith("[result] error") for line in fake_amp.lines)


def test_crash_passes_stderr_through(fake_amp):
    result = run_agent(AMP, fake_amp.workspace, "@fake crash kaboom", env=fake_amp.env,
                       timeout_s=30, log_sink=fake_amp.lines.append)
    assert result.is_error and result.exit_code == 2
    assert "[stderr] Error: kaboom" in fake_amp.lines


def test_missing_api_key_is_refused_before_starting(fake_amp):
    env = {k: v for k, v in fake_amp.env.items() if k != "AMP_API_KEY"}
    result = run_agent(AMP, fake_amp.workspace, "hi", env=env, timeout_s=30)
    assert result.is_error and "AMP_API_KEY" in result.result_text
    assert not fake_amp.home.exists()


def test_time_limit_kills_the_whole_process_group(fake_amp, tmp_path):
    pidfile = tmp_path / "pids"
    start = time.monotonic()
    result = run_agent(AMP, fake_amp.workspace, f"@fake hang {pidfile}", env=fake_amp.env,
                       timeout_s=2.0, grace_s=1.0, log_sink=fake_amp.lines.append)
    assert result.timed_out and result.is_error and result.exit_code < 0
    assert time.monotonic() - start < 10
    leader, helper = map(int, pidfile.read_text().split())
    assert wait_until(lambda: pid_gone(leader) and pid_gone(helper), 5)
    assert any("time limit" in line for line in fake_amp.lines)


def test_sigterm_is_escalated_to_sigkill_after_the_grace_period(fake_amp, tmp_path):
    pidfile = tmp_path / "pids"
    result = run_agent(AMP, fake_amp.workspace, f"@fake hang-stubborn {pidfile}",
                       env=fake_amp.env, timeout_s=1.5, grace_s=0.5,
                       log_sink=fake_amp.lines.append)
    assert result.timed_out and result.exit_code == -9
    leader, helper = map(int, pidfile.read_text().split())
    assert wait_until(lambda: pid_gone(leader) and pid_gone(helper), 5)
    assert any("SIGKILL" in line for line in fake_amp.lines)


def test_terminate_from_another_thread_stops_the_agent(fake_amp, tmp_path):
    pidfile = tmp_path / "pids"
    run = AgentRun(AMP, fake_amp.workspace, f"@fake hang {pidfile}", env=fake_amp.env,
                   timeout_s=60, grace_s=1.0)
    box = {}
    worker = threading.Thread(target=lambda: box.setdefault("result", run.run()))
    worker.start()
    assert wait_until(pidfile.exists, 10)
    assert run.pid is not None
    run.terminate()
    worker.join(10)
    result = box["result"]
    assert result.interrupted and not result.timed_out and result.is_error
    _, helper = map(int, pidfile.read_text().split())
    assert wait_until(lambda: pid_gone(helper), 5)


def test_terminate_before_start_runs_nothing(fake_amp):
    run = AgentRun(AMP, fake_amp.workspace, "@fake nothing", env=fake_amp.env)
    run.terminate()
    result = run.run()
    assert result.interrupted and result.is_error
    assert not fake_amp.home.exists()


def test_stdin_carries_the_prompt_and_is_closed(fake_amp):
    # `cat` only ends when stdin is closed; an inherited terminal would hang it.
    cat = profile_from_template([sys.executable, "-c",
                                 "import sys; print('got:', sys.stdin.read().upper())"])
    result = run_agent(cat, fake_amp.workspace, "the prompt", env=fake_amp.env, timeout_s=10,
                       log_sink=fake_amp.lines.append)
    assert result.exit_code == 0 and not result.timed_out
    assert "got: THE PROMPT" in fake_amp.lines


def test_prompt_file_template_gets_empty_stdin(fake_amp):
    code = ("import sys; p = open(sys.argv[1]).read(); rest = sys.stdin.read(); "
            "print(f'file={p} stdin={rest!r} ws={sys.argv[2]}')")
    agent = profile_from_template([sys.executable, "-c", code, "{prompt_file}", "{workspace}"])
    result = run_agent(agent, fake_amp.workspace, "from file", env=fake_amp.env, timeout_s=10,
                       log_sink=fake_amp.lines.append)
    assert result.exit_code == 0
    assert f"file=from file stdin='' ws={fake_amp.workspace}" in fake_amp.lines


def test_secrets_from_the_environment_never_reach_the_log(fake_amp):
    agent = profile_from_template(["sh", "-c", 'echo "key is $AMP_API_KEY"; echo "$AMP_API_KEY" >&2'],
                                  secret_env=["AMP_API_KEY"])
    run_agent(agent, fake_amp.workspace, "", env=fake_amp.env, timeout_s=10,
              log_sink=fake_amp.lines.append)
    assert "key is ***" in fake_amp.lines and "[stderr] ***" in fake_amp.lines
    assert all(fake_amp.api_key not in line for line in fake_amp.lines)


def test_api_key_travels_in_env_not_argv(fake_amp, tmp_path):
    pidfile = tmp_path / "pids"
    run = AgentRun(AMP, fake_amp.workspace, f"@fake hang {pidfile}", env=fake_amp.env,
                   timeout_s=60, grace_s=1.0)
    worker = threading.Thread(target=run.run)
    worker.start()
    try:
        assert wait_until(pidfile.exists, 10)
        leader = int(pidfile.read_text().split()[0])
        cmdline = Path(f"/proc/{leader}/cmdline").read_bytes()
        environ = Path(f"/proc/{leader}/environ").read_bytes()
        assert fake_amp.api_key.encode() not in cmdline
        assert f"AMP_API_KEY={fake_amp.api_key}".encode() in environ
    finally:
        run.terminate()
        worker.join(10)


def test_command_not_found(fake_amp):
    agent = profile_from_template("definitely-not-an-agent-xyz --json")
    result = run_agent(agent, fake_amp.workspace, "hi", env=fake_amp.env, timeout_s=10)
    assert result.exit_code == 127 and result.is_error


def test_plain_text_agents_are_passed_through(fake_amp):
    agent = profile_from_template(["sh", "-c", "echo working; echo '{not json'; echo finished"])
    result = run_agent(agent, fake_amp.workspace, "", env=fake_amp.env, timeout_s=10,
                       log_sink=fake_amp.lines.append)
    assert ["working", "{not json", "finished"] == [l for l in fake_amp.lines if not l.startswith("[")]
    assert result.result_text == "finished" and not result.is_error


def test_thread_id_is_taken_from_the_init_event(fake_amp):
    # `amp -x` (no `threads new`) creates the thread itself and reports it in the init event.
    agent = profile_from_template("amp -x --stream-json --dangerously-allow-all",
                                  resume="amp threads continue {thread_id} -x --stream-json")
    first = run_agent(agent, fake_amp.workspace, "@fake nothing", env=fake_amp.env, timeout_s=30)
    assert first.thread_id and first.thread_id.startswith("T-") and not first.created_thread
    second = run_agent(agent, fake_amp.workspace, "@fake nothing", thread_id=first.thread_id,
                       env=fake_amp.env, timeout_s=30)
    assert second.thread_id == first.thread_id and len(fake_amp.threads()) == 1
    assert os.path.isdir(fake_amp.workspace)


def test_malformed_events_do_not_stop_the_pipe_being_drained(fake_amp):
    script = ("import json\n"
              "print(json.dumps({'type': 'assistant', 'message': {'content': 'not-a-list'}}))\n"
              "print(json.dumps({'type': 'turn.completed', 'usage': {'input_tokens': 'many'}}))\n"
              "print('x' * 200000)\nprint('still here')\n")
    agent = profile_from_template([sys.executable, "-c", script])
    result = run_agent(agent, fake_amp.workspace, "", env=fake_amp.env, timeout_s=20,
                       log_sink=fake_amp.lines.append)
    assert result.exit_code == 0 and not result.timed_out
    assert "still here" in fake_amp.lines
