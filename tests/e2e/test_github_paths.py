"""GitHub behaviours end to end through the local runtime: flaky re-runs, transient API errors
while waiting on CI, and a refused merge."""

from __future__ import annotations

import time

import pytest

from ampx.cli.backend import now_iso, owner_name
from ampx.core.ids import default_branch, new_task_id
from ampx.core.models import AmpTaskSpec, Phase
from ampx.local.backend import LocalBackend
from ampx.local.supervisor import stop_background
from ampx.sandbox.scenarios import calc_with, write
from ampx.sandbox.world import DEMO_REPO

pytestmark = pytest.mark.e2e

FLAKY_TEST = (
    "import os\nimport unittest\n\n\nclass FlakyTest(unittest.TestCase):\n"
    "    def test_network(self):\n"
    "        self.assertNotEqual(os.environ.get('GITHUB_RUN_ATTEMPT'), '1', 'connection reset')\n"
)
GOOD = write("calc.py", calc_with("def multiply(a, b):\n    return a * b"))


@pytest.fixture
def backend(world):
    b = LocalBackend.from_env(ensure_supervisor=True)
    yield b
    stop_background()


def create(backend, prompt: str, title: str, **kw):
    tid = new_task_id()
    spec = AmpTaskSpec(repo=DEMO_REPO, prompt=prompt, title=title, **kw)
    spec = spec.model_copy(update={"branch": default_branch(title, tid)})
    backend.create(tid, spec, owner_name())
    return tid


def wait(backend, tid, pred, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = backend.get(tid)
        if pred(t):
            return t
        time.sleep(0.3)
    t = backend.get(tid)
    raise AssertionError(f"timed out in {t.status.phase}: {t.status.summary}")


def test_flaky_job_green_on_rerun_costs_no_attempt(world, backend):
    tid = create(backend, "Add a network check\n" + write("test_flaky.py", FLAKY_TEST), "Flaky")
    t = wait(backend, tid, lambda t: t.status.phase == Phase.SUCCESS)
    assert t.status.attempts == 1
    assert t.status.history[0].flaky is True
    assert t.status.history[0].ci_conclusion == "success"
    runs = [r for r in world.emulator.ci.runs(DEMO_REPO) if r.head_sha == t.status.history[0].commit]
    assert len(runs) == 1 and runs[0].run_attempt == 2


def test_transient_github_errors_while_waiting_do_not_fail_the_task(world, backend):
    world.emulator.ci.pause()  # runs stay queued while the API misbehaves
    tid = create(backend, "Add multiply\n" + GOOD, "Faults")
    wait(backend, tid, lambda t: t.status.stage and t.status.stage.value == "ci")
    world.emulator.faults.fail_next(3, status=502, path=r"/actions/runs")
    world.emulator.faults.secondary_rate_limit(2, retry_after=1, path=r"/actions/runs")
    time.sleep(3)
    world.emulator.ci.resume()
    t = wait(backend, tid, lambda t: not t.status.phase.active)
    assert t.status.phase == Phase.SUCCESS and t.status.attempts == 1
    assert world.emulator.faults.pending == 0, "every injected fault was hit by a CI poll"
    statuses = world.emulator.stats.get("GET", "/repos/{owner}/{repo}/actions/runs").by_status
    assert statuses.get(502) == 3 and statuses.get(403) == 2


def test_refused_merge_leaves_a_clear_summary_and_changes_nothing_else(world, backend):
    tid = create(backend, "Add multiply\n" + GOOD, "Refused")
    t = wait(backend, tid, lambda t: t.status.phase == Phase.SUCCESS)
    world.emulator.set_mergeable(DEMO_REPO, t.status.pr_number, False)
    before = t.status.model_copy()
    backend.update_spec(t, lambda x: x.spec.model_copy(update={"merge_requested_at": now_iso()}))
    t = wait(backend, tid, lambda t: "refused" in (t.status.summary or ""))
    assert t.status.summary.startswith(f"merge of PR #{before.pr_number} refused: ")
    assert "not mergeable" in t.status.summary.lower()
    assert t.status.phase == Phase.SUCCESS and t.status.pr_state == "open"
    assert t.status.history == before.history and t.status.pr_url == before.pr_url
    pr = next(p for p in world.emulator.pulls(DEMO_REPO) if p.number == before.pr_number)
    assert pr.merged_at is None
