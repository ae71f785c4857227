"""The publish side's private snapshot and fresh repository: nothing under the agent's `.git`
(or its attributes) is trusted, links are stored as links, the tree is exactly the files."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ampx.gitops.private_repo import PrivateRepo
from ampx.gitops.snapshot import SnapshotRefused, copy_tree


def agent_checkout(remote, tmp_path: Path) -> tuple[Path, str]:
    """A checkout of main, as the agent's workspace would be."""
    work = tmp_path / "agent"
    subprocess.run(["git", "clone", "-q", str(remote.bare), str(work)], check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, capture_output=True,
                         text=True, check=True).stdout.strip()
    return work, sha


def build(remote, tmp_path: Path, work: Path, sha: str, keep=()):
    snap = tmp_path / "snap"
    copy_tree(work, snap)
    repo = PrivateRepo(tmp_path / "private", remote.url).create()
    repo.fetch_start(sha, "main")
    return repo, repo.build_tree(snap, sha, keep_start=keep)


def test_copy_skips_git_keeps_links_as_links_and_leaves_out_fifos(tmp_path):
    src = tmp_path / "src"
    (src / ".git").mkdir(parents=True)
    (src / ".git" / "config").write_text("[core]\n\tfsmonitor = evil\n")
    (src / "sub" / ".git").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    secret = tmp_path / "outside-secret"
    secret.write_text("TOPSECRET")
    (src / "link").symlink_to(secret)
    (src / "dirlink").symlink_to(tmp_path)
    os.mkfifo(src / "pipe")
    stats = copy_tree(src, tmp_path / "dst")
    dst = tmp_path / "dst"
    assert not (dst / ".git").exists() and not (dst / "sub" / ".git").exists()
    assert (dst / "link").is_symlink() and os.readlink(dst / "link") == str(secret)
    assert (dst / "dirlink").is_symlink()
    assert os.access(dst / "run.sh", os.X_OK) and not os.access(dst / "a.txt", os.X_OK)
    assert stats.skipped == ["pipe"] and not (dst / "pipe").exists()
    assert stats.files == 2 and stats.links == 2


def test_copy_refuses_too_many_files_or_bytes_with_a_reason(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        (src / f"f{i}").write_text("x" * 100)
    with pytest.raises(SnapshotRefused, match="more than 3 files"):
        copy_tree(src, tmp_path / "d1", max_files=3)
    with pytest.raises(SnapshotRefused, match="larger than 250 bytes"):
        copy_tree(src, tmp_path / "d2", max_bytes=250)
    assert copy_tree(src, tmp_path / "d3", max_files=5, max_bytes=500).bytes == 500


def test_agent_git_config_and_attributes_have_no_effect_on_the_commit(remote, tmp_path):
    work, sha = agent_checkout(remote, tmp_path)
    marker = tmp_path / "filter-ran"
    with open(work / ".git" / "config", "a") as fh:
        fh.write(f'[filter "evil"]\n\tclean = sh -c "touch {marker}; cat"\n'
                 f'[core]\n\tfsmonitor = sh -c "touch {marker}"\n')
    hooks = work / ".git" / "hooks"
    (hooks / "post-index-change").write_text(f"#!/bin/sh\ntouch {marker}\n")
    (hooks / "post-index-change").chmod(0o755)
    (work / ".gitattributes").write_text("*.py filter=evil ident\n")
    (work / "calc.py").write_text("def add(a, b):\n    return a + b  # $Id$\n")
    # control: git in the agent's checkout runs the agent's filter
    subprocess.run(["git", "add", "-A"], cwd=work, check=True, capture_output=True)
    assert marker.exists(), "control: the agent's config would run code in the worker's git"
    marker.unlink()

    repo, tree = build(remote, tmp_path, work, sha)
    assert not marker.exists()
    assert repo.read(tree, "calc.py") == b"def add(a, b):\n    return a + b  # $Id$\n"
    assert sorted(c.path for c in repo.changes(sha, tree)) == [".gitattributes", "calc.py"]


def test_links_are_committed_as_links_never_as_what_they_point_to(remote, tmp_path):
    work, sha = agent_checkout(remote, tmp_path)
    secret = tmp_path / "token.txt"
    secret.write_text("ghs_NOT_FOR_THE_REPO")
    (work / "notes.txt").symlink_to(secret)
    repo, tree = build(remote, tmp_path, work, sha)
    entry = repo.git("ls-tree", tree, "notes.txt").stdout.decode()
    assert entry.startswith("120000 blob ")
    assert repo.read(tree, "notes.txt") == str(secret).encode()
    objects = subprocess.run(["git", "--git-dir", str(repo.git_dir), "cat-file",
                              "--batch-all-objects", "--batch"], capture_output=True).stdout
    assert b"ghs_NOT_FOR_THE_REPO" not in objects


def test_deletions_ignored_files_modes_and_kept_paths(remote, tmp_path):
    work, sha = agent_checkout(remote, tmp_path)
    (work / ".gitignore").write_text("build/\n")
    (work / "build").mkdir()
    (work / "build" / "out.bin").write_text("artifact")
    (work / "README.md").unlink()
    (work / "tool.sh").write_text("#!/bin/sh\n")
    (work / "tool.sh").chmod(0o755)
    (work / ".github" / "workflows" / "ci.yml").write_text("evil\n")
    repo, tree = build(remote, tmp_path, work, sha, keep=[".github/workflows/ci.yml"])
    changes = {c.path: c.status for c in repo.changes(sha, tree)}
    assert changes == {".gitignore": "A", "README.md": "D", "tool.sh": "A"}
    assert repo.git("ls-tree", tree, "tool.sh").stdout.decode().startswith("100755 ")
