"""GitHub having a bad day (issue 12, item 7): with about 10 % of its API answers a 5xx, one
secondary rate-limit window, and a 5xx on the installation lookup and on the token request
of the App, every task ends in the phase it ends in without faults. A permanent refusal (the
App not installed on the repository) still ends the task in `error`, with the reason.

The local runtime end to end (supervisor and worker processes, App auth). The 20-task run is
`benchmarks/github_faults.py`."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ampx.core.models import Phase
from ampx.history.db import HistoryDB
from ampx.local import paths
from ampx.local.backend import LocalBackend
from ampx.local.supervisor import stop_background
from ampx.sandbox.scenarios import Scenario, scenarios

from e2e.checks import assert_story, start, wait_all

pytestmark = pytest.mark.e2e

APP_ID = 4242


@pytest.fixture
def app_world(world, monkeypatch):
    """The world with GitHub App auth (installation lookups and token mints happen)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    world.emulator.register_app(APP_ID, pem, slug="ampx")
    for repo in world.repos:
        world.emulator.install_app(APP_ID, repo)
    world.emulator.create_repo("other/uninstalled")
    monkeypatch.delenv("GITHUB_TOKEN")
    monkeypatch.setenv("AMPX_GITHUB_APP_ID", str(APP_ID))
    monkeypatch.setenv("AMPX_GITHUB_APP_PRIVATE_KEY", pem)
    return world


def test_faults_change_no_task_s_ending_and_a_refusal_still_errors(app_world):
    world = app_world
    faults = world.emulator.faults
    faults.fail_next(1, 503, path=r"/installation$")
    faults.fail_next(1, 503, path=r"/access_tokens$")
    faults.secondary_rate_limit(2, retry_after=2, path=r"/actions/runs$")
    faults.fail_fraction(0.10, 503, seed=12)
    backend = LocalBackend.from_env(ensure_supervisor=True)
    try:
        keys = ("green", "red-then-green", "continued-merged", "pr-only-ci")
        runs = [start(backend, sc) for sc in scenarios() if sc.key in keys]
        refused = start(backend, Scenario(
            key="refused", title="Nowhere", prompt="x", expect_phase="error", expect_attempts=0,
            repo="other/uninstalled"))
        wait_all(backend, runs + [refused], timeout=240)
        history = HistoryDB(paths.db_path())
        for run in runs:
            assert_story(world, run, history)
        st = refused.task.status
        assert st.phase == Phase.ERROR and "other/uninstalled" in (st.summary or ""), st.summary
        assert "not found" in st.summary or "not installed" in st.summary
    finally:
        stop_background()
    hit = " ".join(faults.hit)
    assert "/installation" in hit and "/access_tokens" in hit and "/actions/runs" in hit
    assert faults.injected >= 10, "the fault run answered too few requests with a fault"
