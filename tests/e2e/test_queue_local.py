"""maxConcurrentAttempts in the local runtime: a real supervisor, real workers, the GitHub
stand-in. With a limit of 1, three tasks run one attempt at a time, show their place in line
in `ampx ls`/`get`, and all finish; without it (the control) their attempts overlap."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from ampx.history.db import HistoryDB
from ampx.local import paths
from ampx.local.backend import LocalBackend
from ampx.local.supervisor import stop_background
from ampx.sandbox.scenarios import scenarios

from e2e.checks import assert_story, start, wait_all

pytestmark = pytest.mark.e2e


def ampx(*args):
    return subprocess.run([sys.executable, "-m", "ampx", *args], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=60)


def three_slow_green_tasks():
    green = next(sc for sc in scenarios() if sc.key == "green")
    return [replace(green, key=f"green-{i}", title=f"Add multiply {i}",
                    prompt=green.prompt.replace("\n", "\n@fake sleep 2\n", 1)) for i in range(3)]


def attempt_spans(backend, runs):
    """(started, finished) of every attempt, as each worker reported it (second resolution)."""
    spans = []
    for run in runs:
        for key, report in backend.get(run.task_id).status.reports.items():
            spans.append((report.started_at, report.finished_at))
    return sorted(spans)


def run_three(limit):
    if limit is not None:
        r = ampx("config", "set", "maxConcurrentAttempts", str(limit))
        assert r.returncode == 0, r.stderr
    backend = LocalBackend.from_env(ensure_supervisor=True)
    return backend, [start(backend, sc) for sc in three_slow_green_tasks()]


def test_limit_of_one_runs_one_attempt_at_a_time_and_shows_the_line(world):
    backend, runs = run_three(1)
    try:
        seen_ls = seen_get = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (seen_ls and seen_get):
            ls = ampx("ls", "--all", "-o", "wide")
            assert ls.returncode == 0, ls.stderr
            if "2nd in line" in ls.stdout:
                seen_ls = ls.stdout
                waiting = next(line.split()[0] for line in ls.stdout.splitlines()
                               if "2nd in line" in line)
                get = ampx("get", waiting)
                if "Queue:       2nd in line" in get.stdout:
                    seen_get = get.stdout
            time.sleep(0.2)
        assert seen_ls, "a task showed its place in line in `ampx ls`"
        row = next(line for line in seen_ls.splitlines() if "2nd in line" in line)
        assert row.split()[1] == "queued"
        assert seen_get, "and in `ampx get`"
        wait_all(backend, runs, timeout=240)
        history = HistoryDB(paths.db_path())
        for run in runs:
            assert_story(world, run, history)
            assert run.task.status.queue_position is None
        spans = attempt_spans(backend, runs)
        assert len(spans) == 3
        for (_, finished), (started, _) in zip(spans, spans[1:]):
            assert started >= finished, f"attempts overlapped: {spans}"
    finally:
        stop_background()


def test_control_without_a_limit_the_attempts_overlap(world):
    backend, runs = run_three(None)
    try:
        wait_all(backend, runs, timeout=240)
        spans = attempt_spans(backend, runs)
        assert any(started < finished for (_, finished), (started, _) in zip(spans, spans[1:])), \
            f"without a limit the three attempts run at once: {spans}"
        out = ampx("ls", "--all").stdout
        assert "in line" not in out
    finally:
        stop_background()


def test_config_refuses_a_bad_limit_and_unlimited_removes_it(world):
    r = ampx("config", "set", "maxConcurrentAttempts", "0")
    assert r.returncode != 0 and "at least 1" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = ampx("config", "set", "maxConcurrentAttemptsPerRepo", "two")
    assert r.returncode != 0 and "at least 1" in r.stderr
    assert ampx("config", "set", "maxConcurrentAttempts", "3").returncode == 0
    assert "maxConcurrentAttempts: 3" in ampx("config", "view").stdout
    assert ampx("config", "set", "maxConcurrentAttempts", "unlimited").returncode == 0
    assert "maxConcurrentAttempts" not in ampx("config", "view").stdout
