"""The excerpt over the GitHub stand-in's real runs: the failing step is found by the jobs
API's step order when steps carry a ``name:`` (the log shows ``Run <command>``), and a
``continue-on-error`` step's failure does not take its place."""

from __future__ import annotations

from ampx.core.repo import RepoRef

REPO = RepoRef("acme", "widgets")

NAMED_STEPS = """\
name: CI
on: push
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - name: Lint (advisory)
        continue-on-error: true
        run: |
          echo "src/widgets.py:3:1: F401 advisory lint finding"
          exit 1
      - name: Unit tests
        run: |
          echo "tests/test_widgets.py::test_total FAILED"
          echo "E       AssertionError: assert 18 == 17"
          exit 1
      - name: Upload report
        if: always()
        run: echo "uploaded"
"""


def test_named_step_after_a_continue_on_error_step(sandbox) -> None:
    svc = sandbox.service()
    sha = sandbox.push("amp/named", {".github/workflows/ci.yml": NAMED_STEPS})
    obs = sandbox.wait_ci(lambda: svc.poll_ci(REPO, sha))
    assert obs.state == "red"
    text = obs.excerpt or ""
    assert "== job test (failed) ==" in text
    assert 'step: Unit tests (Run echo "tests/test_widgets.py::test_total FAILED")' in text, text
    assert "E       AssertionError: assert 18 == 17" in text
    assert "advisory lint finding" not in text and "uploaded" not in text
