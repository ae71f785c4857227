"""The attempt workspace against local bare repositories: branch, changes, commit, push."""

from __future__ import annotations

import subprocess

import pytest

from ampx.gitops import (
    Change,
    PushRejected,
    PushTransportError,
    Workspace,
    attempt_message,
    commit_title,
    remote_url,
    tamper_check,
)

ME = ("ampx bot", "ampx@example.com")


def fresh(remote, tmp_path, name="ws", **kw) -> Workspace:
    return Workspace.clone(remote.url, tmp_path / name, **kw)


def test_attempt_1_branches_from_the_remote_default_branch(remote, tmp_path, git):
    ws = fresh(remote, tmp_path)
    checkout = ws.prepare("amp/fix-add", attempt=1)
    assert checkout.base_branch == "main" and checkout.source_branch == "main"
    assert checkout.start_sha == remote.head("main") and checkout.lease_sha is None
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=ws.path) == "amp/fix-add"
    assert (ws.path / ".git" / "shallow").exists()  # depth 1
    assert (ws.path / "calc.py").exists()


def test_explicit_base_branch(remote, tmp_path):
    develop = remote.commit_on("develop", "dev.txt", "dev\n")
    checkout = fresh(remote, tmp_path).prepare("amp/x", attempt=1, base_branch="develop")
    assert checkout.start_sha == develop and checkout.base_branch == "develop"
    with pytest.raises(Exception, match="does not exist"):
        fresh(remote, tmp_path, "ws2").prepare("amp/x", attempt=1, base_branch="nope")


def test_changes_commit_and_push_then_attempt_2_starts_from_the_branch(remote, tmp_path):
    ws = fresh(remote, tmp_path)
    checkout = ws.prepare("amp/fix-add", attempt=1)
    assert ws.changes() == [] and ws.commit(*ME, "nothing") is None

    (ws.path / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (ws.path / "new.txt").write_text("untracked\n")
    (ws.path / "README.md").unlink()
    assert sorted(ws.changes()) == [Change("A", "new.txt"), Change("D", "README.md"),
                                    Change("M", "calc.py")]
    message = attempt_message(commit_title("Fix add()\nIt subtracts."), 1, "01jtask")
    sha = ws.commit(*ME, message)
    assert ws.push("amp/fix-add", checkout.lease_sha) == sha
    assert remote.head("amp/fix-add") == sha
    assert remote.show(sha) == "ampx: Fix add() (attempt 1)\n\nAmpx-Task: 01jtask"
    assert remote.show(sha, "%an <%ae>|%cn|%P") == f"ampx bot <ampx@example.com>|ampx bot|{checkout.start_sha}"

    ws2 = fresh(remote, tmp_path, "ws2")
    second = ws2.prepare("amp/fix-add", attempt=2)
    assert second.source_branch == "amp/fix-add" and second.start_sha == sha
    assert second.lease_sha == sha
    assert (ws2.path / "new.txt").exists()


def test_later_attempt_without_a_pushed_branch_starts_from_base(remote, tmp_path):
    checkout = fresh(remote, tmp_path).prepare("amp/never-pushed", attempt=3)
    assert checkout.source_branch == "main" and checkout.lease_sha is None


def test_agent_commits_are_squashed_into_one_attempt_commit(remote, tmp_path, git):
    ws = fresh(remote, tmp_path)
    checkout = ws.prepare("amp/squash", attempt=1)
    (ws.path / "a.txt").write_text("a\n")
    git("add", "-A", cwd=ws.path)
    git("-c", "user.name=agent", "-c", "user.email=a@x", "commit", "-q", "-m", "agent 1", cwd=ws.path)
    git("checkout", "-q", "-b", "agent-side-branch", cwd=ws.path)
    (ws.path / "b.txt").write_text("b\n")
    assert sorted(ws.changes()) == [Change("A", "a.txt"), Change("A", "b.txt")]
    sha = ws.commit(*ME, "ampx: squash (attempt 1)", trailers={"Ampx-Task": "t1"})
    assert git("rev-parse", "HEAD^", cwd=ws.path) == checkout.start_sha
    assert git("rev-parse", "refs/heads/amp/squash", cwd=ws.path) == sha
    assert git("symbolic-ref", "HEAD", cwd=ws.path) == "refs/heads/amp/squash"
    assert git("show", "--name-only", "--format=", sha, cwd=ws.path).split() == ["a.txt", "b.txt"]
    ws.push("amp/squash", checkout.lease_sha)
    assert remote.head("amp/squash") == sha


def test_force_with_lease_rejects_when_the_remote_moved(remote, tmp_path):
    ws = fresh(remote, tmp_path)
    checkout = ws.prepare("amp/race", attempt=1)
    (ws.path / "x.txt").write_text("mine\n")
    ws.commit(*ME, "ampx: race (attempt 1)")
    theirs = remote.commit_on("amp/race", "y.txt", "theirs\n")  # someone pushed meanwhile
    with pytest.raises(PushRejected) as err:
        ws.push("amp/race", checkout.lease_sha)
    assert err.value.kind == "rejected" and err.value.reason == "stale"
    assert remote.head("amp/race") == theirs

    ws2 = fresh(remote, tmp_path, "ws2")
    second = ws2.prepare("amp/race", attempt=2)
    (ws2.path / "z.txt").write_text("z\n")
    ws2.commit(*ME, "ampx: race (attempt 2)")
    remote.commit_on("amp/race", "w.txt", "moved again\n")
    with pytest.raises(PushRejected):
        ws2.push("amp/race", second.lease_sha)


def test_rerun_of_attempt_1_replaces_an_existing_branch(remote, tmp_path):
    old = remote.commit_on("amp/rerun", "old.txt", "old\n")
    ws = fresh(remote, tmp_path)
    checkout = ws.prepare("amp/rerun", attempt=1)
    assert checkout.source_branch == "main" and checkout.lease_sha == old
    (ws.path / "new.txt").write_text("new\n")
    sha = ws.commit(*ME, "ampx: rerun (attempt 1)")
    ws.push("amp/rerun", checkout.lease_sha)
    assert remote.head("amp/rerun") == sha


def test_push_only_touches_the_task_branch(remote, tmp_path, git):
    ws = fresh(remote, tmp_path)
    checkout = ws.prepare("amp/only", attempt=1)
    git("branch", "other", cwd=ws.path)
    (ws.path / "o.txt").write_text("o\n")
    ws.commit(*ME, "m")
    ws.push("amp/only", checkout.lease_sha)
    heads = git("for-each-ref", "--format=%(refname:short)", "refs/heads", cwd=remote.bare).split()
    assert sorted(heads) == ["amp/only", "develop", "main"]


def test_transport_error_is_classified(remote, tmp_path, git):
    ws = fresh(remote, tmp_path)
    checkout = ws.prepare("amp/t", attempt=1)
    (ws.path / "t.txt").write_text("t\n")
    ws.commit(*ME, "m")
    git("remote", "set-url", "origin", "http://127.0.0.1:9/octo/demo.git", cwd=ws.path)
    ws._snapshot_config()  # as if cloned from the unreachable URL
    with pytest.raises(PushTransportError) as err:
        ws.push("amp/t", checkout.lease_sha, timeout=20)
    assert err.value.kind == "transport"


def test_edits_to_git_config_and_hooks_are_neutralised(remote, tmp_path, git):
    ws = fresh(remote, tmp_path)
    checkout = ws.prepare("amp/guard", attempt=1)
    elsewhere = tmp_path / "elsewhere.git"
    git("init", "-q", "--bare", str(elsewhere))
    # What a misbehaving agent could do: redirect origin, add a hook.
    git("remote", "set-url", "origin", f"file://{elsewhere}", cwd=ws.path)
    hook = ws.path / ".git" / "hooks" / "pre-push"
    marker = tmp_path / "hook-ran"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    (ws.path / "g.txt").write_text("g\n")
    sha = ws.commit(*ME, "m")
    ws.push("amp/guard", checkout.lease_sha)
    assert remote.head("amp/guard") == sha
    assert not marker.exists()
    assert git("for-each-ref", cwd=elsewhere) == ""


def test_tamper_guard_names_the_files(remote, tmp_path):
    ws = fresh(remote, tmp_path)
    ws.prepare("amp/tamper", attempt=1)
    (ws.path / ".github/workflows/ci.yml").write_text("on: push\njobs: {}  # skip\n")
    (ws.path / "tests/test_calc.py").unlink()
    (ws.path / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    assert tamper_check(ws.changes()) == [".github/workflows/ci.yml", "tests/test_calc.py"]


def test_wip_commit_pushes_work_and_leaves_tampering_out(remote, tmp_path, git):
    ws = fresh(remote, tmp_path)
    checkout = ws.prepare("amp/wip", attempt=2)
    (ws.path / "calc.py").write_text("def add(a, b):\n    return a + b  # half done\n")
    (ws.path / ".github/workflows/ci.yml").write_text("on: push\n")
    (ws.path / ".github/workflows/extra.yml").write_text("on: push\n")
    result = ws.commit_wip(*ME, "Fix add", 2, "01jtask")
    assert result.pushed and result.sha == remote.head("amp/wip")
    assert result.dropped == [".github/workflows/ci.yml", ".github/workflows/extra.yml"]
    assert remote.show(result.sha) == "ampx: WIP Fix add (attempt 2, interrupted)\n\nAmpx-Task: 01jtask"
    files = git("show", "--name-only", "--format=", result.sha, cwd=remote.bare).split()
    assert files == ["calc.py"]
    assert checkout.lease_sha is None

    clean = fresh(remote, tmp_path, "clean")
    clean.prepare("amp/wip2", attempt=1)
    assert clean.commit_wip(*ME, "Nothing", 1, "t2") == (None, False, [])


def test_path_host_and_shallow_fetch(remote, tmp_path, git):
    url = remote_url(str(remote.host_dir), "octo/demo")
    assert url == f"file://{remote.host_dir}/octo/demo.git"
    ws = Workspace.clone(url, tmp_path / "ws", depth=None)
    ws.prepare("amp/full", attempt=1)
    assert not (ws.path / ".git" / "shallow").exists()
    count = git("rev-list", "--count", "HEAD", cwd=ws.path)
    assert int(count) == 4


def test_clone_refuses_credentials_in_the_url(tmp_path):
    with pytest.raises(ValueError):
        Workspace.clone("https://x-access-token:secret@github.com/o/r.git", tmp_path / "ws")


def test_git_errors_are_redacted(remote, tmp_path):
    ws = Workspace.clone(f"file://{tmp_path}/missing-ghp_{'a' * 36}.git", tmp_path / "ws")
    with pytest.raises(Exception) as err:
        ws.prepare("amp/x", attempt=1)
    assert "ghp_" + "a" * 36 not in str(err.value)
    assert subprocess.run(["git", "--version"], capture_output=True).returncode == 0


def test_clone_refuses_ssh_remotes(tmp_path):
    with pytest.raises(ValueError, match="http"):
        Workspace.clone("git@github.com:o/r.git", tmp_path / "ws")
