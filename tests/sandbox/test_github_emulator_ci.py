"""The Actions stand-in: pushes create workflow runs that really execute, with
GitHub-shaped runs, jobs, check runs and logs."""

from __future__ import annotations

import io
import re
import threading
import time
import zipfile
from pathlib import Path

import requests

from ampx.sandbox.github_emulator import GitHubEmulator

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z ")

PASSING = """
name: CI
on:
  push:
    branches: ["amp/**", main]
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - name: Run tests
        run: |
          echo "testing $GITHUB_REPOSITORY@$GITHUB_SHA on $GITHUB_REF_NAME"
          test -f app.txt
"""

FAILING = """
name: CI
on: [push]
jobs:
  lint:
    runs-on: ubuntu-latest
    steps:
      - run: echo "lint ok"
  test:
    needs: lint
    runs-on: ubuntu-latest
    steps:
      - name: Unit tests
        run: |
          echo "collected 3 items"
          echo "FAILED tests/test_app.py::test_answer - assert 41 == 42" >&2
          exit 3
      - name: Never runs
        run: echo unreachable
"""

FLAKY = """
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: echo "build attempt $GITHUB_RUN_ATTEMPT"
  flaky:
    runs-on: ubuntu-latest
    steps:
      - name: Flaky on first attempt
        run: |
          echo "attempt ${{ github.run_attempt }}"
          test "$GITHUB_RUN_ATTEMPT" -ge 2
"""


def _repo(emu: GitHubEmulator, make_seed, workflow: str, key: str) -> str:
    files = {"app.txt": "v1\n", ".github/workflows/ci.yml": workflow}
    emu.create_repo("acme/api", make_seed(files))
    creds = emu.create_app(101, private_key_pem=key)
    return emu.create_installation_token(emu.install_app(creds.app_id, "acme/api"))


def _push(emu: GitHubEmulator, git, tmp_path: Path, token: str, branch: str, files: dict[str, str]) -> str:
    wc = tmp_path / f"wc-{branch.replace('/', '-')}"
    if not wc.exists():
        git("clone", "-q", emu.clone_url("acme/api"), str(wc), token=token)
        git("checkout", "-q", "-b", branch, cwd=wc)
    for name, content in files.items():
        (wc / name).parent.mkdir(parents=True, exist_ok=True)
        (wc / name).write_text(content)
    git("add", "-A", cwd=wc)
    git("commit", "-q", "-m", f"Change on {branch}", cwd=wc)
    git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=wc, token=token)
    return git.sha(wc)


def test_passing_workflow_run_completes_success(github_emulator, git, make_seed, make_github, app_key_pem, tmp_path) -> None:
    emu = github_emulator
    token = _repo(emu, make_seed, PASSING, app_key_pem)
    sha = _push(emu, git, tmp_path, token, "amp/feature", {"app.txt": "v2\n"})
    repo = make_github(token).get_repo("acme/api")
    runs = list(repo.get_workflow_runs(branch="amp/feature", head_sha=sha, event="push"))
    assert len(runs) == 1  # the run exists as soon as git push returns
    emu.ci.wait_idle(30)
    run = repo.get_workflow_run(runs[0].id)
    assert (run.status, run.conclusion, run.event, run.head_branch, run.head_sha) == ("completed", "success", "push", "amp/feature", sha)
    assert run.name == "CI" and run.run_number == 1 and run.run_attempt == 1
    assert run.html_url.startswith(emu.url)
    assert "Run tests" not in requests.get(run.html_url, timeout=10).text  # a page listing the job
    assert requests.get(run.html_url, timeout=10).status_code == 200
    [job] = list(run.jobs())
    assert job.name == "test" and job.conclusion == "success"
    assert [s.name for s in job.steps] == ["Set up job", "Run actions/checkout@v4", "Run tests", "Complete job"]
    log = requests.get(job.logs_url(), timeout=10).text
    assert f"testing acme/api@{sha} on amp/feature" in log
    assert [r.id for r in repo.get_workflow_runs(status="success")] == [run.id]
    assert list(repo.get_workflow_runs(status="failure")) == []


def test_failing_workflow_log_format_and_redirect(github_emulator, git, make_seed, make_github, app_key_pem, tmp_path) -> None:
    emu = github_emulator
    token = _repo(emu, make_seed, FAILING, app_key_pem)
    sha = _push(emu, git, tmp_path, token, "amp/broken", {"app.txt": "v2\n"})
    emu.ci.wait_idle(30)
    repo = make_github(token).get_repo("acme/api")
    [run] = list(repo.get_workflow_runs(head_sha=sha))
    assert run.conclusion == "failure"
    jobs = {j.name: j for j in run.jobs()}
    assert jobs["lint"].conclusion == "success"
    test_job = jobs["test"]
    assert test_job.conclusion == "failure"
    assert [(s.name, s.conclusion) for s in test_job.steps] == [
        ("Set up job", "success"),
        ("Unit tests", "failure"),
        ("Never runs", "skipped"),
        ("Complete job", "success"),
    ]

    # GitHub answers the logs endpoint with a 302 to a pre-signed URL on the same host.
    raw = requests.get(
        f"{emu.api_url}/repos/acme/api/actions/jobs/{test_job.id}/logs",
        headers={"Authorization": f"token {token}"},
        allow_redirects=False,
        timeout=10,
    )
    assert raw.status_code == 302
    location = raw.headers["Location"]
    assert location.startswith(emu.url + "/") and test_job.logs_url().startswith(emu.url + "/")
    text = requests.get(location, timeout=10).content.decode("utf-8-sig")
    lines = text.splitlines()
    assert all(TS.match(line) for line in lines), lines[:3]
    bodies = [line[29:] for line in lines]
    assert "##[group]Run echo \"collected 3 items\"" in bodies
    assert "##[endgroup]" in bodies
    assert "FAILED tests/test_app.py::test_answer - assert 41 == 42" in bodies
    assert "##[error]Process completed with exit code 3." in bodies
    assert "unreachable" not in text

    # Run logs: a zip with one file per job plus per-step files, like GitHub's archive.
    zipped = requests.get(
        f"{emu.api_url}/repos/acme/api/actions/runs/{run.id}/logs", headers={"Authorization": f"token {token}"}, timeout=10
    )
    names = zipfile.ZipFile(io.BytesIO(zipped.content)).namelist()
    assert "1_lint.txt" in names and "2_test.txt" in names and "test/2_Unit tests.txt" in names

    # Check runs for the ref mirror the jobs (same ids, as on GitHub).
    checks = requests.get(
        f"{emu.api_url}/repos/acme/api/commits/amp/broken/check-runs", headers={"Authorization": f"token {token}"}, timeout=10
    ).json()
    assert {c["name"]: c["conclusion"] for c in checks["check_runs"]} == {"lint": "success", "test": "failure"}
    assert {c["id"] for c in checks["check_runs"]} == {j.id for j in jobs.values()}
    # PyGithub reaches the same endpoint through a lazy commit (GET /commits/{sha} is not emulated).
    lazy_repo = make_github(token, lazy=True).get_repo("acme/api")
    assert {c.name: c.conclusion for c in lazy_repo.get_commit(sha).get_check_runs()} == {"lint": "success", "test": "failure"}


def test_rerun_failed_jobs_flaky_workflow_goes_green(github_emulator, git, make_seed, make_github, app_key_pem, tmp_path) -> None:
    emu = github_emulator
    token = _repo(emu, make_seed, FLAKY, app_key_pem)
    sha = _push(emu, git, tmp_path, token, "amp/flaky", {"app.txt": "v2\n"})
    emu.ci.wait_idle(30)
    repo = make_github(token).get_repo("acme/api")
    [run] = list(repo.get_workflow_runs(head_sha=sha))
    assert run.conclusion == "failure"
    first = {j.name: j for j in run.jobs()}
    assert first["flaky"].conclusion == "failure" and first["build"].conclusion == "success"

    assert run.rerun_failed_jobs() is True
    emu.ci.wait_idle(30)
    run = repo.get_workflow_run(run.id)
    assert (run.run_attempt, run.status, run.conclusion) == (2, "completed", "success")
    assert run.raw_data["previous_attempt_url"].endswith(f"/actions/runs/{run.id}/attempts/1")
    latest = {j.name: j for j in run.jobs()}
    assert latest["flaky"].id != first["flaky"].id and latest["flaky"].conclusion == "success"
    assert latest["flaky"].run_attempt == 2
    assert "attempt 2" in requests.get(latest["flaky"].logs_url(), timeout=10).text
    # The successful job was not executed again: its log still says attempt 1.
    assert "build attempt 1" in requests.get(latest["build"].logs_url(), timeout=10).text
    assert len(list(run.jobs("all"))) == 4


def test_branch_filters_and_trigger_forms(github_emulator, git, make_seed, tmp_path) -> None:
    emu = github_emulator
    workflows = {
        ".github/workflows/amp-only.yml": "on:\n  push:\n    branches: ['amp/**']\njobs:\n  j:\n    runs-on: x\n    steps: [{run: 'true'}]\n",
        ".github/workflows/any-push.yaml": "on: push\njobs:\n  j:\n    runs-on: x\n    steps: [{run: 'true'}]\n",
        ".github/workflows/not-amp.yml": "on:\n  push:\n    branches-ignore: ['amp/*']\njobs:\n  j:\n    runs-on: x\n    steps: [{run: 'true'}]\n",
        ".github/workflows/negated.yml": "on:\n  push:\n    branches: ['**', '!amp/skip-*']\njobs:\n  j:\n    runs-on: x\n    steps: [{run: 'true'}]\n",
        ".github/workflows/tags-only.yml": "on:\n  push:\n    tags: ['v*']\njobs:\n  j:\n    runs-on: x\n    steps: [{run: 'true'}]\n",
        ".github/workflows/pr-only.yml": "on: [pull_request]\njobs:\n  j:\n    runs-on: x\n    steps: [{run: 'true'}]\n",
        ".github/workflows/docs-paths.yml": "on:\n  push:\n    paths: ['docs/**']\njobs:\n  j:\n    runs-on: x\n    steps: [{run: 'true'}]\n",
        ".github/workflows/notes.txt": "not a workflow",
    }
    emu.create_repo("acme/api", make_seed({"README.md": "r\n", **workflows}))
    bare = emu.git_path("acme/api")
    wc = tmp_path / "wc"
    git("clone", "-q", f"file://{bare}", str(wc))

    def push(branch: str, path: str = "x.txt") -> set[str]:
        git.commit_file(wc, path, branch, f"on {branch}")
        git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=wc)
        return {r.workflow.path.rsplit("/", 1)[1] for r in emu.notify_push("acme/api")}

    assert push("amp/feature/deep") == {"amp-only.yml", "any-push.yaml", "not-amp.yml", "negated.yml"}
    assert push("amp/x") == {"amp-only.yml", "any-push.yaml", "negated.yml"}
    assert push("amp/skip-me") == {"amp-only.yml", "any-push.yaml"}
    assert push("feature", "docs/guide.md") == {"any-push.yaml", "not-amp.yml", "negated.yml", "docs-paths.yml"}
    git("tag", "v1.0", cwd=wc)
    git("push", "-q", "origin", "v1.0", cwd=wc)
    # Path filters are not evaluated for tag pushes (GitHub's documented behaviour).
    tag_runs = {r.workflow.path.rsplit("/", 1)[1] for r in emu.notify_push("acme/api")}
    assert tag_runs == {"any-push.yaml", "tags-only.yml", "docs-paths.yml"}
    emu.ci.wait_idle(30)


def test_hold_pause_and_completion_hooks(github_emulator, git, make_seed, make_github, app_key_pem, tmp_path) -> None:
    emu = github_emulator
    token = _repo(emu, make_seed, "on: push\njobs:\n  t:\n    runs-on: x\n    steps:\n      - run: echo ok\n", app_key_pem)
    completed: list[tuple[int, float]] = []
    done = threading.Event()
    emu.ci.on_run_completed.append(lambda run: (completed.append((run.id, run.completed_monotonic)), done.set()))
    repo = make_github(token).get_repo("acme/api")

    emu.ci.hold("acme/api")
    sha = _push(emu, git, tmp_path, token, "held", {"a.txt": "1\n"})
    assert list(repo.get_workflow_runs(head_sha=sha)) == []  # Actions is "down": no run appears
    emu.ci.release("acme/api")

    emu.ci.pause()
    sha = _push(emu, git, tmp_path, token, "paused", {"a.txt": "2\n"})
    [run] = list(repo.get_workflow_runs(head_sha=sha))
    assert run.status == "queued" and run.conclusion is None
    assert [j.status for j in run.jobs()] == ["queued"]
    emu.ci.resume()
    assert done.wait(30)
    emu.ci.wait_idle(30)
    run = repo.get_workflow_run(run.id)
    assert run.conclusion == "success"
    [(run_id, mono)] = completed
    state = emu.ci.runs("acme/api")[0]
    assert run_id == run.id == state.id
    assert mono is not None and mono <= time.monotonic() and state.completed_at is not None


def test_step_features_env_expressions_timeouts(github_emulator, git, make_seed, tmp_path) -> None:
    emu = github_emulator
    emu.ci.step_timeout = 0.5
    workflow = """
on: push
env:
  GREETING: hello
jobs:
  steps:
    runs-on: ubuntu-latest
    steps:
      - id: one
        run: |
          echo "FROM_ENV_FILE=carried" >> "$GITHUB_ENV"
          echo "answer=42" >> "$GITHUB_OUTPUT"
      - run: 'echo "$GREETING $FROM_ENV_FILE ${{ steps.one.outputs.answer }} ${{ github.ref_name }}"'
      - if: github.ref_name == 'main'
        run: echo should-not-run
      - run: |
          echo "::group::details"
          echo "::error::something broke"
          echo "::endgroup::"
          sleep 5
      - if: failure()
        run: echo cleanup-after-failure
      - run: echo not-after-failure
"""
    emu.create_repo("acme/api", make_seed({".github/workflows/ci.yml": workflow}))
    wc = tmp_path / "wc"
    git("clone", "-q", f"file://{emu.git_path('acme/api')}", str(wc))
    git.commit_file(wc, "x", "x", "x")
    git("push", "-q", "origin", "HEAD:refs/heads/dev", cwd=wc)
    [run] = emu.notify_push("acme/api")
    emu.ci.wait_idle(30)
    [job] = run.jobs
    bodies = [line[29:] for line in job.log_text().lstrip("\ufeff").splitlines()]
    assert "hello carried 42 dev" in bodies
    assert "should-not-run" not in bodies and "not-after-failure" not in bodies
    assert "cleanup-after-failure" in bodies
    assert "##[group]details" in bodies and "##[error]something broke" in bodies
    assert any("has timed out after" in b for b in bodies)
    assert run.conclusion == "failure"
    assert [s.conclusion for s in job.steps] == ["success", "success", "success", "skipped", "failure", "success", "skipped", "success"]


def test_invalid_workflow_file_fails_run(github_emulator, git, make_seed, tmp_path) -> None:
    emu = github_emulator
    emu.create_repo("acme/api", make_seed({".github/workflows/ci.yml": "on: push\njobs: [oops\n"}))
    bare = emu.git_path("acme/api")
    wc = tmp_path / "wc"
    git("clone", "-q", f"file://{bare}", str(wc))
    git.commit_file(wc, "x", "x", "x")
    git("push", "-q", "origin", "HEAD:refs/heads/dev", cwd=wc)
    [run] = emu.notify_push("acme/api")
    assert (run.status, run.conclusion, run.jobs) == ("completed", "failure", [])
