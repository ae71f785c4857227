"""The CLI's pieces without processes: visible text, short ids, tables, input checks, messages,
credential fingerprints, the attention rule, and the core changes issue 13 needed."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from pydantic import ValidationError
from rich.console import Console

from ampx.cli import output
from ampx.cli.backend import CliError
from ampx.cli.inputs import TASK_MAX_CHARS, read_task_file
from ampx.cli.main import _validation_message
from ampx.cli.visible import visible
from ampx.core import events as ev
from ampx.core.decide import decide
from ampx.core.ids import resolve_prefix, short_ids
from ampx.core.models import (PROMPT_MAX, AmpTask, AmpTaskSpec, AmpTaskStatus, AttemptRecord,
                              FollowUp, Phase, Stage, WorkerReport)
from ampx.core.observe import AttemptState, process_event

NOW = "2026-11-25T10:00:00Z"
ESC_TITLE = "\x1b]0;pwned\x07Fix \x1b[2Jit\x9b31m"


def task(name="01jabcdefgh0000000000000aa", title="Fix it", summary="ok", phase=Phase.SUCCESS,
         **status) -> AmpTask:
    spec = AmpTaskSpec(repo="acme/api", prompt="Fix it", title=title, branch="amp/fix-01jabc")
    st = AmpTaskStatus(phase=phase, stage=Stage.IDLE, summary=summary, **status)
    return AmpTask(metadata={"name": name, "labels": {"ampx.dev/owner": "me"},
                             "creationTimestamp": NOW}, spec=spec, status=st)


# ---------------------------------------------------------------- item 4: visible text
@pytest.mark.parametrize("raw, shown", [
    ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),   # OSC: retitles the terminal
    ("a\x9b31mb", "a\\x9b31mb"),                 # C1 CSI, one byte
    ("x\u202ey", "x\\u202ey"),                   # bidi override reorders what is read
    ("title\nPhase: success", "title\\nPhase: success"),
    ("a\tb\rc\x00d\x7f", "a\\tb\\rc\\x00d\\x7f"),
    ("plain, é ✓", "plain, é ✓"),
])
def test_single_line_fields_show_every_control(raw, shown):
    assert visible(raw) == shown


def test_multi_line_text_keeps_lines_and_shows_the_rest():
    log = "line 1\r\nline 2\n\x1b[31mred\x1b[0m\tok\rover"
    assert visible(log, single_line=False) == "line 1\nline 2\n\\x1b[31mred\\x1b[0m\tok\\rover"


def test_get_shows_a_hostile_title_as_text_and_forges_no_line():
    t = task(title=ESC_TITLE + "\nPhase:       success", summary="s\x1b[8m",
             history=[AttemptRecord(number=1, prompt="p\x1b]8;;http://x\x07", reason="r\x9b",
                                    excerpt="E \x1b[2K boom\nsecond")])
    text = output.describe(t)
    assert "\x1b" not in text and "\x9b" not in text and "\x07" not in text
    # control: the raw title does carry the escape and the forged line
    assert "\x1b" in t.spec.title and "\nPhase:" in t.spec.title
    assert [ln for ln in text.splitlines() if ln.startswith("Phase:")] == ["Phase:       success"]
    assert "\\x1b]0;pwned\\x07" in text and "\\nPhase:" in text


def test_table_cells_are_one_visible_line_and_rich_markup_stays_text():
    t = task(summary="[bold red]boom[/] \x1b[5mblink\nsecond")
    cells = output.row(t, wide=True)
    assert all("\n" not in c and "\x1b" not in c for c in cells)
    console = Console(width=200, record=True, force_terminal=False)
    console.print(output.rich_table([t], True))  # the live view
    shown = console.export_text()
    assert "[bold red]boom[/]" in shown and "\\x1b[5mblink\\nsecond" in shown


# ---------------------------------------------------------------- item 3: ids and width
def test_short_ids_are_the_shortest_unique_prefixes_and_resolve_back():
    ids = ["01m8v0p72r8cvz1a975vtt62b1", "01m8v0p72tb76qvaj9fdkec44n", "01m8v0p6mcv840q3adtqzta342",
           "01zzzzzzzzzzzzzzzzzzzzzzzz"]
    short = short_ids(ids)
    assert short["01zzzzzzzzzzzzzzzzzzzzzzzz"] == "01zzzzz"  # at least 7, like git
    assert short["01m8v0p6mcv840q3adtqzta342"] == "01m8v0p6"
    assert short["01m8v0p72r8cvz1a975vtt62b1"] == "01m8v0p72r"
    assert all(resolve_prefix(s, ids) == full for full, s in short.items())


def test_an_80_column_terminal_never_wraps_an_id_or_a_phase():
    import re

    tasks = [task(name=f"01m8v0p72{c}8cvz1a975vtt62b1", phase=Phase.NEEDS_REVIEW, pr_number=12,
                  pr_url="https://github.com/acme/api/pull/12",
                  summary="stopped early: attempts 1 and 2 failed CI with the same error " * 3)
             for c in "rst"]
    short = short_ids(t.name for t in tasks)
    text = output.terminal_table(tasks, False, short, width=80)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert "\x1b[33mneeds_review" in text, "phases in colour"
    lines = plain.splitlines()
    assert len(lines) == 1 + len(tasks) and all(len(ln) <= 80 for ln in lines), lines
    assert lines[0].split() == ["ID", "PHASE", "ATTEMPTS", "REPO", "PR", "AGE", "SUMMARY"]
    for t, ln in zip(tasks, lines[1:]):
        assert ln.split()[:5] == [short[t.name], "needs_review", "0/3", "acme/api", "#12"]
        assert ln.endswith("…")
    # -o wide: everything, in full, one line per task (the terminal may soft-wrap, never cut)
    wide = re.sub(r"\x1b\[[0-9;]*m", "", output.terminal_table(tasks, True, width=80)).splitlines()
    assert len(wide) == 4 and all(ln.startswith(t.name + " ") for t, ln in zip(tasks, wide[1:]))
    assert all(t.status.summary.strip() in ln for t, ln in zip(tasks, wide[1:]))


# ---------------------------------------------------------------- item 5: bounded input
def test_a_task_file_is_read_with_a_bound_and_must_be_utf8_text():
    assert TASK_MAX_CHARS == PROMPT_MAX

    class Endless(io.RawIOBase):  # /dev/zero: read() without a bound never returns
        name = "/dev/zero"
        served = 0

        def readable(self):
            return True

        def readinto(self, b):
            b[:] = b"\0" * len(b)
            self.served += len(b)
            return len(b)

    src = Endless()
    with pytest.raises(CliError, match="too long: the task limit is 32,768 characters"):
        read_task_file(io.BufferedReader(src))
    assert src.served < 1_000_000
    with pytest.raises(CliError, match="not UTF-8 text"):
        read_task_file(io.BytesIO(b"caf\xe9"))
    with pytest.raises(CliError, match="NUL byte"):
        read_task_file(io.BytesIO(b"do\x00it"))
    assert read_task_file(io.BytesIO("Fix ✓\n".encode())) == "Fix ✓\n"


# ---------------------------------------------------------------- item 9: one clear line
def test_validation_errors_are_one_line_without_pydantic_or_regexes():
    with pytest.raises(ValidationError) as exc:
        FollowUp(message="x" * 20000)
    msg = _validation_message(exc.value)
    assert msg == "invalid -m: too long: at most 16384 characters, got 20000"
    with pytest.raises(ValidationError) as exc:
        AmpTaskSpec(repo="acme/api", prompt="x", branch="bad name")
    msg = _validation_message(exc.value)
    assert msg == "invalid --branch: 'bad name' is not a valid git branch name"
    assert "^" not in msg and "pattern" not in msg and "\n" not in msg


# ---------------------------------------------------------------- item 1: credentials
def test_the_fingerprint_tells_changes_apart_and_holds_no_value(tmp_path):
    from ampx.local import credentials

    path = tmp_path / "supervisor.env"
    credentials.record(path, {"AMP_API_KEY": "sk-amp-secret-one", "GITHUB_TOKEN": "ghp_x"})
    assert path.stat().st_mode & 0o777 == 0o600
    assert "sk-amp-secret-one" not in path.read_text() and "ghp_x" not in path.read_text()
    assert credentials.changed(path, {"AMP_API_KEY": "sk-amp-secret-one", "GITHUB_TOKEN": "ghp_x"}) == []
    assert credentials.changed(path, {"AMP_API_KEY": "sk-amp-secret-two", "GITHUB_TOKEN": "ghp_x"}) == ["AMP_API_KEY"]
    assert credentials.changed(path, {"AMP_API_KEY": "sk-amp-secret-one"}) == ["GITHUB_TOKEN"]
    assert credentials.changed(tmp_path / "none", {}) is None


def test_preflight_says_what_no_attempt_can_run_without(tmp_path):
    from ampx.local.credentials import preflight

    fatal, warn = preflight({"PATH": str(tmp_path)}, "amp")
    assert any("GitHub is not configured" in f for f in fatal)
    assert any("AMP_API_KEY is not set" in f for f in fatal)
    assert any("'amp' is not on PATH" in w for w in warn)
    (tmp_path / "amp").write_text("#!/bin/sh\n")
    (tmp_path / "amp").chmod(0o755)
    env = {"PATH": str(tmp_path), "GITHUB_TOKEN": "t", "AMP_API_KEY": "k"}
    assert preflight(env, "amp") == ([], [])
    assert preflight({"GITHUB_TOKEN": "t"}, "amp", needs_agent=False) == ([], [])


# ---------------------------------------------------------------- the attention rule, twice
def test_the_listing_rule_agrees_with_the_supervisors():
    from ampx.local.attention import doc_needs_attention
    from ampx.local.supervisor import needs_attention

    cases = [task(phase=None), task(phase=Phase.RUNNING), task(phase=Phase.SUCCESS),
             task(phase=Phase.SUCCESS, pr_state="merging"), task(phase=Phase.NEEDS_REVIEW)]
    t = task(phase=Phase.ERROR)
    t.spec.abort_requested_at = NOW
    cases.append(t)
    t = task(phase=Phase.SUCCESS, merge_handled_at=NOW)
    t.spec.merge_requested_at = NOW
    cases.append(t)
    t = task(phase=Phase.NEEDS_REVIEW)
    t.spec.follow_ups = [FollowUp(message="more")]
    cases.append(t)
    results = [(needs_attention(c), doc_needs_attention(output.wire(c))) for c in cases]
    assert all(a == b for a, b in results), results
    assert {a for a, _ in results} == {True, False}


# ---------------------------------------------------------------- item 10/11: the core
def test_abort_and_continue_keep_the_thread_the_worker_reported():
    spec = AmpTaskSpec(repo="acme/api", prompt="Fix it")
    st = decide(spec, AmpTaskStatus(), ev.Created(), NOW).status
    st.reports["1"] = WorkerReport(started_at=NOW, thread_id="T-1")
    spec.abort_requested_at = NOW
    st = decide(spec, st, ev.Abort(NOW), NOW).status
    assert st.phase == Phase.ABORTED and st.thread_id == "T-1"
    st.thread_id = None  # the report came after the abort was judged
    spec.follow_ups = [FollowUp(message="go on")]
    st = decide(spec, st, ev.Continue(), NOW).status
    assert st.thread_id == "T-1" and st.attempts == 2
    assert "Continue" not in st.history[-1].prompt or "T-1" not in st.history[-1].prompt


def test_an_attempt_gets_its_job_name_when_the_report_came_first():
    st = AmpTaskStatus(phase=Phase.RUNNING, stage=Stage.AGENT, attempts=1,
                       history=[AttemptRecord(number=1, prompt="p", started_at=NOW)])
    e = process_event(st, AttemptState("running", job="t-a1"))
    assert isinstance(e, ev.AttemptStarted) and e.job == "t-a1"
    st.history[0].job = "t-a1"
    assert process_event(st, AttemptState("running", job="t-a1")) is None


def test_after_a_continue_the_summary_counts_like_the_attempts_column():
    spec = AmpTaskSpec(repo="acme/api", prompt="Fix it", max_attempts=1)
    st = AmpTaskStatus(phase=Phase.RUNNING, stage=Stage.PR, attempts=2, budget_start=1,
                       history=[AttemptRecord(number=1, prompt="p"), AttemptRecord(number=2, prompt="q")])
    st = decide(spec, st, ev.PrOpened("http://gh/pr/3", 3, False), NOW).status
    assert st.summary == "CI green after 1 attempt(s) since the last continue (2 in all); PR #3 opened"


def test_get_shows_follow_ups_on_one_line_and_the_reported_thread():
    t = task(phase=Phase.ABORTED, reports={"1": WorkerReport(thread_id="T-9")})
    t.spec.follow_ups = [FollowUp(message="Do it properly.\n@fake write a.py x\n@fake sleep 1", at=NOW)]
    text = output.describe(t)
    assert "Thread:      T-9" in text
    assert "  - Do it properly.  (+2 more lines)" in text and "@fake" not in text


# ---------------------------------------------------------------- item 7: no GitHub
def test_a_merge_without_github_is_refused_with_the_reason_not_retried():
    from ampx.core.actions import MergePullRequest
    from ampx.engine import Engine

    t = task(phase=Phase.SUCCESS, pr_state="merging", pr_number=3)
    e = Engine(store=None, launcher=None, forge=None).perform(t, MergePullRequest(3, "squash", None, True))
    assert isinstance(e, ev.ForgeFailed) and e.what == "merge" and "GitHub is not configured" in e.reason
    st = decide(t.spec, t.status, e, NOW).status
    assert st.pr_state == "open" and st.summary.startswith("merge of PR #3 failed: GitHub is not configured")


# ---------------------------------------------------------------- issue 12 item 6
def test_the_kube_client_builds_the_batch_and_core_apis_only_when_used():
    from kubernetes import client

    from ampx.kube.api import KubeApi

    api = KubeApi(client.ApiClient(client.Configuration()))
    assert "batch" not in vars(api) and "core" not in vars(api)
    assert isinstance(api.batch, client.BatchV1Api) and "batch" in vars(api)


def test_a_pending_merge_is_visible_in_get_and_ls():
    t = task(phase=Phase.SUCCESS, pr_state="open", pr_number=3, pr_url="http://gh/pull/3")
    t.spec.merge_requested_at = NOW
    assert f"(open) (merge requested {NOW}, not yet handled)" in output.describe(t)
    t.status.pr_state = "merging"
    assert output.row(t)[4] == "#3 (merging)"


def test_the_supervisor_logs_a_lasting_problem_once_not_every_tick(caplog):
    from ampx.local.supervisor import Supervisor

    class BrokenStore:
        """Lists a task that needs attention; loading it always fails."""

        def list(self):
            return [task(phase=Phase.RUNNING)]

        def load(self, name):
            raise RuntimeError("GitHub is not configured")

    sup = Supervisor(BrokenStore(), launcher=None, forge=None)
    with caplog.at_level("WARNING", logger="ampx.supervisor"):
        for _ in range(8):
            sup.step()
    lines = [r.getMessage() for r in caplog.records if r.name == "ampx.supervisor"]
    assert lines == ["task 01jabcdefgh0000000000000aa: GitHub is not configured"]


def test_the_cli_knows_every_phase_without_loading_the_models():
    from ampx.cli.main import PHASES, WATCH_EXIT

    assert set(PHASES) == {p.value for p in Phase}
    assert {p.value for p in Phase if not p.active} == set(WATCH_EXIT)
