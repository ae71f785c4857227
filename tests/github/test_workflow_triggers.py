"""Which workflows run on push to the task branch and on a pull request into the base, by
GitHub's documented rules; checked against the emulator's Actions, and on a real git tree."""

from __future__ import annotations

import subprocess

import pytest

from ampx.core.repo import RepoRef
from ampx.gitops.commit_triggers import commit_triggers, trigger_fields
from ampx.github.workflow_triggers import WorkflowFile, parse_workflow, predict, runs_on_pull_request, runs_on_push

JOBS = "jobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ok\n"


def wf(on: str) -> WorkflowFile:
    parsed = parse_workflow(".github/workflows/x.yml", f"on: {on}\n{JOBS}")
    assert parsed.spec is not None, parsed.error
    return parsed


@pytest.mark.parametrize("on,branch,changed,expected", [
    ("push", "amp/fix-1", None, True),
    ("[push, pull_request]", "amp/fix-1", None, True),
    ("pull_request", "amp/fix-1", None, False),
    ("{push: {branches: [main]}, pull_request: {}}", "amp/fix-1", None, False),
    ("{push: {branches: [main]}}", "main", None, True),
    ("{push: {branches-ignore: ['amp/**']}}", "amp/fix-1", None, False),
    ("{push: {branches-ignore: ['amp/**']}}", "feature", None, True),
    ("{push: {branches: ['amp/*']}}", "amp/fix-1", None, True),
    ("{push: {branches: ['amp/*']}}", "amp/a/b", None, False),  # '*' stops at '/'
    ("{push: {branches: ['amp/**']}}", "amp/a/b", None, True),
    ("{push: {branches: ['amp/**', '!amp/skip-*']}}", "amp/skip-1", None, False),
    ("{push: {branches: ['amp/**', '!amp/skip-*', 'amp/skip-me']}}", "amp/skip-me", None, True),
    ("{push: {tags: ['v*']}}", "amp/fix-1", None, False),  # only tags filtered: no branch runs
    ("{push: {paths: ['src/**']}}", "amp/fix-1", ["docs/a.md"], False),
    ("{push: {paths: ['src/**']}}", "amp/fix-1", ["docs/a.md", "src/a/b.py"], True),
    ("{push: {paths: ['src/**']}}", "amp/fix-1", None, True),  # unknown: taken as matching
    ("{push: {paths-ignore: ['docs/**']}}", "amp/fix-1", ["docs/a.md"], False),
    ("{push: {paths-ignore: ['docs/**']}}", "amp/fix-1", ["docs/a.md", "x.py"], True),
    ("{push: {paths: ['*.py']}}", "amp/fix-1", ["src/a.py"], False),
    ("{push: {paths: ['**.py']}}", "amp/fix-1", ["src/a.py"], True),
])
def test_push_rules(on, branch, changed, expected):
    assert runs_on_push(wf(on), branch, changed) is expected


@pytest.mark.parametrize("on,base,changed,action,expected", [
    ("pull_request", "main", None, "opened", True),
    ("pull_request", "main", None, "synchronize", True),
    ("push", "main", None, "opened", False),
    ("{pull_request: {branches: [main]}}", "develop", None, "opened", False),
    ("{pull_request: {branches: [main, 'release/**']}}", "release/1.2", None, "opened", True),
    ("{pull_request: {branches-ignore: [main]}}", "main", None, "opened", False),
    ("{pull_request: {types: [closed]}}", "main", None, "opened", False),
    ("{pull_request: {types: [opened]}}", "main", None, "synchronize", False),
    ("{pull_request: {types: [ready_for_review]}}", "main", None, "opened", False),
    ("{pull_request: {paths: ['src/**']}}", "main", ["README.md"], "opened", False),
    ("{pull_request: {paths: ['src/**']}}", "main", ["src/x.py"], "opened", True),
    ("pull_request_target", "main", None, "opened", False),
])
def test_pull_request_rules(on, base, changed, action, expected):
    assert runs_on_pull_request(wf(on), base, changed, action) is expected


def test_predict_reads_only_workflow_files_and_counts_unreadable_ones_on_push():
    files = {
        ".github/workflows/ci.yml": "on:\n  push:\n    branches: [main]\n  pull_request:\n" + JOBS,
        ".github/workflows/lint.yaml": "on: [push]\n" + JOBS,
        ".github/workflows/broken.yml": "on: [push\n",
        ".github/workflows/nested/skip.yml": "on: push\n" + JOBS,
        "README.md": "on: push\n",
    }
    t = predict(files, "amp/x", "main")
    assert t.workflows == (".github/workflows/broken.yml", ".github/workflows/ci.yml",
                           ".github/workflows/lint.yaml")
    assert t.push == (".github/workflows/broken.yml", ".github/workflows/lint.yaml")
    assert t.pull_request == (".github/workflows/ci.yml",)


def test_yaml_on_read_as_true_is_still_the_trigger_key():
    parsed = parse_workflow("w.yml", "on: push\n" + JOBS)  # YAML 1.1 reads `on` as True
    assert parsed.spec["on"] == "push" and True not in parsed.spec
    assert parse_workflow("w.yml", JOBS).error == "no event triggers defined in `on`"


# ----------------------------------------------------------------- against the emulator's Actions

MIXED = {
    ".github/workflows/main-only.yml": "name: Main only\non:\n  push:\n    branches: [main]\n  pull_request:\n" + JOBS,
    ".github/workflows/every-push.yml": "name: Every push\non: push\n" + JOBS,
    ".github/workflows/no-amp.yml": "name: No amp\non:\n  push:\n    branches-ignore: ['amp/**']\n" + JOBS,
    ".github/workflows/src-only.yml": "name: Src only\non:\n  push:\n    paths: ['src/**']\n  pull_request:\n    paths: ['src/**']\n" + JOBS,
    ".github/workflows/docs-pr.yml": "name: Docs PR\non:\n  pull_request:\n    paths: ['docs/**']\n" + JOBS,
    ".github/workflows/release-pr.yml": "name: Release PR\non:\n  pull_request:\n    branches: ['release/**']\n" + JOBS,
}


def test_predictions_match_what_the_emulators_actions_run(sandbox) -> None:
    """The same tree, pushed and then proposed: the runs GitHub's stand-in creates are the ones
    predicted (a second, independent reading of the same documented rules)."""
    repo = RepoRef("acme", "widgets")
    files = {**MIXED, "src/widgets.py": "def total(xs):\n    return sum(xs) + 0\n"}
    sha = sandbox.push("amp/mixed", files)
    sandbox.emu.ci.wait_idle()
    pushed = {r.workflow.path for r in sandbox.emu.ci.runs(repo.full_name) if r.event == "push"}
    svc = sandbox.service()
    svc.open_or_adopt(repo, "amp/mixed", "main", "Mixed", "", draft=True)
    sandbox.emu.ci.wait_idle()
    proposed = {r.workflow.path for r in sandbox.emu.ci.runs(repo.full_name) if r.event == "pull_request"}
    changed = sorted(files)
    t = predict(MIXED, "amp/mixed", "main", push_changed=changed, pr_changed=changed)
    assert set(t.push) == pushed == {".github/workflows/every-push.yml", ".github/workflows/src-only.yml"}
    # docs-pr.yml filters docs/** (nothing there changed), release-pr.yml a release/** base
    assert set(t.pull_request) == proposed == {".github/workflows/main-only.yml",
                                               ".github/workflows/src-only.yml"}
    assert sha


# ----------------------------------------------------------------- from a git tree


def _git(repo):
    def run(*args):
        return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True)
    return run


def test_commit_triggers_reads_the_committed_tree_and_the_pushed_files(tmp_path):
    g = _git(tmp_path)
    g("init", "-q", "-b", "main")
    g("config", "user.email", "t@example.com")
    g("config", "user.name", "t")
    (tmp_path / ".github/workflows").mkdir(parents=True)
    (tmp_path / ".github/workflows/ci.yml").write_text(
        "on:\n  push:\n    branches: [main]\n  pull_request:\n    paths: ['src/**']\n" + JOBS)
    (tmp_path / "README.md").write_text("x\n")
    g("add", "-A")
    g("commit", "-qm", "base")
    base = g("rev-parse", "HEAD").stdout.strip()
    (tmp_path / "README.md").write_text("y\n")
    (tmp_path / ".github/workflows/ci.yml").write_text("changed on disk, not committed")
    g("add", "README.md")
    g("commit", "-qm", "docs only")
    docs = g("rev-parse", "HEAD").stdout.strip()
    t = commit_triggers(g, docs, "amp/x", "main", base, parent_is_base=True)
    assert t.workflows == (".github/workflows/ci.yml",) and t.push == () and t.pull_request == ()
    later = commit_triggers(g, docs, "amp/x", "main", base, parent_is_base=False)
    assert later.pull_request == (".github/workflows/ci.yml",), "base diff unknown: paths count as matching"
    lines = []
    fields = trigger_fields(g, docs, "amp/x", "main", base, True, lines.append)
    assert fields == {"workflows": [".github/workflows/ci.yml"], "push_workflows": [],
                      "pull_request_workflows": []}
    assert "on push to amp/x: none" in lines[0]
    assert trigger_fields(g, "0" * 40, "amp/x", "main", base, True, lines.append) == {}
    assert "could not read the workflows" in lines[-1]


def test_the_report_keeps_at_most_thirty_names_per_list(tmp_path):
    g = _git(tmp_path)
    g("init", "-q", "-b", "main")
    (tmp_path / ".github/workflows").mkdir(parents=True)
    for i in range(45):
        (tmp_path / f".github/workflows/w{i:02}.yml").write_text("on: pull_request\n" + JOBS)
    g("add", "-A")
    g("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "many")
    sha = g("rev-parse", "HEAD").stdout.strip()
    fields = trigger_fields(g, sha, "amp/x", "main", sha, True, lambda line: None)
    assert len(fields["workflows"]) == 30 and len(fields["pull_request_workflows"]) == 30
    assert fields["push_workflows"] == []
