"""Thin wrappers around the real ``git`` binary for the emulator's bare repositories.

Everything the emulator does to a repository (seeding, merging a pull request,
deleting a branch, reading workflow files) goes through git plumbing on the bare
repository, so what clients observe over smart HTTP is exactly what real git
would produce. No worktree is needed: merges use ``git merge-tree --write-tree``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

GITHUB_COMMITTER = ("GitHub", "noreply@github.com")


class GitError(RuntimeError):
    """A git command failed; carries its stderr for diagnosis."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"git {' '.join(args)} failed ({returncode}): {stderr.strip()}")
        self.returncode = returncode
        self.stderr = stderr


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A predictable environment for git: no user/system config, no prompts.

    The host's global git config (hooks, signing, default branch names...) must
    not leak into the emulator's repositories.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        {
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": GITHUB_COMMITTER[0],
            "GIT_AUTHOR_EMAIL": GITHUB_COMMITTER[1],
            "GIT_COMMITTER_NAME": GITHUB_COMMITTER[0],
            "GIT_COMMITTER_EMAIL": GITHUB_COMMITTER[1],
            "LC_ALL": "C",
        }
    )
    if extra:
        env.update(extra)
    return env


def run_git(
    args: Sequence[str],
    *,
    git_dir: Path | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    check: bool = True,
    timeout: float = 120,
) -> subprocess.CompletedProcess[bytes]:
    cmd = ["git"]
    if git_dir is not None:
        cmd += ["--git-dir", str(git_dir)]
    cmd += list(args)
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=git_env(env),
        input=input,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise GitError(args, proc.returncode, proc.stderr.decode(errors="replace"))
    return proc


MIN_GIT = (2, 38)  # merge-tree --write-tree


def check_git_version() -> tuple[int, ...]:
    """Fail early with a clear message when git is missing or too old."""
    try:
        text = run_git(["version"]).stdout.decode()
    except (OSError, GitError) as exc:
        raise RuntimeError(f"the GitHub emulator needs the git CLI: {exc}") from exc
    digits = [int(x) for x in text.split()[2].split(".")[:3] if x.isdigit()]
    if tuple(digits[:2]) < MIN_GIT:
        raise RuntimeError(f"the GitHub emulator needs git >= {'.'.join(map(str, MIN_GIT))}, found {text.strip()}")
    return tuple(digits)


def out(args: Sequence[str], git_dir: Path, **kw) -> str:
    return run_git(args, git_dir=git_dir, **kw).stdout.decode(errors="replace").strip()


def init_bare(path: Path, default_branch: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    run_git(["init", "--quiet", "--bare", "-b", default_branch, str(path)])
    # The emulator authenticates before invoking http-backend, so receive-pack
    # is always enabled (written directly: one git process less per repo).
    with open(path / "config", "a") as fh:
        fh.write("[http]\n\treceivepack = true\n[uploadpack]\n\tallowAnySHA1InWant = true\n")


def seed(path: Path, seed_dir: Path, branch: str, message: str = "Initial commit") -> str:
    """Commit every file of ``seed_dir`` as the first commit of ``branch``."""
    with tempfile.TemporaryDirectory(prefix="ghemu-index-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        run_git(["--work-tree", str(seed_dir), "add", "--all", "--force", "."], git_dir=path, env=env, cwd=seed_dir)
        tree = out(["write-tree"], path, env=env)
    sha = commit_tree(path, tree, [], message)
    run_git(["update-ref", f"refs/heads/{branch}", sha], git_dir=path)
    return sha


def list_refs(path: Path) -> dict[str, str]:
    text = out(["for-each-ref", "--format=%(objectname) %(refname)"], path)
    refs: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip():
            sha, name = line.split(" ", 1)
            refs[name] = sha
    return refs


def rev_parse(path: Path, rev: str) -> str | None:
    proc = run_git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], git_dir=path, check=False)
    if proc.returncode != 0:
        return None
    return proc.stdout.decode().strip()


def is_ancestor(path: Path, ancestor: str, descendant: str) -> bool:
    return run_git(["merge-base", "--is-ancestor", ancestor, descendant], git_dir=path, check=False).returncode == 0


def merge_base(path: Path, a: str, b: str) -> str | None:
    proc = run_git(["merge-base", a, b], git_dir=path, check=False)
    if proc.returncode != 0:
        return None
    return proc.stdout.decode().strip() or None


EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def merge_tree(path: Path, base: str, head: str) -> tuple[bool, str | None]:
    """Three-way merge without a worktree (git >= 2.38). Returns (clean, tree_sha)."""
    args = ["merge-tree", "--write-tree", "--no-messages"]
    proc = run_git([*args, base, head], git_dir=path, check=False)
    if proc.returncode == 0:
        return True, proc.stdout.decode().split()[0]
    if proc.returncode == 1:
        return False, None
    raise GitError(args, proc.returncode, proc.stderr.decode(errors="replace"))


def cherry_pick_tree(path: Path, onto: str, commit: str, parent: str | None) -> tuple[bool, str | None]:
    """Tree of ``commit``'s changes (relative to ``parent``) applied onto ``onto``.

    ``merge-tree --merge-base`` needs git 2.40; instead merge two synthetic
    commits whose only common ancestor has ``parent``'s tree, which is exactly
    a cherry-pick's three-way merge.
    """
    base_tree = out(["rev-parse", f"{parent}^{{tree}}"], path) if parent else EMPTY_TREE
    base = commit_tree(path, base_tree, [], "base")
    ours = commit_tree(path, out(["rev-parse", f"{onto}^{{tree}}"], path), [base], "ours")
    theirs = commit_tree(path, out(["rev-parse", f"{commit}^{{tree}}"], path), [base], "theirs")
    return merge_tree(path, ours, theirs)


@dataclass
class Signature:
    name: str
    email: str
    date: str | None = None  # git date format, e.g. "1700000000 +0000"


def commit_tree(
    path: Path,
    tree: str,
    parents: Sequence[str],
    message: str,
    *,
    author: Signature | None = None,
    committer: Signature | None = None,
) -> str:
    env: dict[str, str] = {}
    if author:
        env.update({"GIT_AUTHOR_NAME": author.name, "GIT_AUTHOR_EMAIL": author.email})
        if author.date:
            env["GIT_AUTHOR_DATE"] = author.date
    if committer:
        env.update({"GIT_COMMITTER_NAME": committer.name, "GIT_COMMITTER_EMAIL": committer.email})
        if committer.date:
            env["GIT_COMMITTER_DATE"] = committer.date
    args = ["commit-tree", tree]
    for p in parents:
        args += ["-p", p]
    return out(args, path, env=env, input=message.encode())


def update_ref(path: Path, ref: str, new: str, old: str | None = None) -> bool:
    args = ["update-ref", ref, new] + ([old] if old else [])
    return run_git(args, git_dir=path, check=False).returncode == 0


def delete_ref(path: Path, ref: str) -> bool:
    return run_git(["update-ref", "-d", ref], git_dir=path, check=False).returncode == 0


@dataclass
class CommitInfo:
    sha: str
    tree: str
    parents: list[str]
    author_name: str
    author_email: str
    author_date: str  # raw "epoch +zone"
    author_time: int
    committer_name: str
    committer_email: str
    committer_time: int
    message: str


def commit_info(path: Path, sha: str) -> CommitInfo:
    fmt = "%H%x00%T%x00%P%x00%an%x00%ae%x00%ad%x00%at%x00%cn%x00%ce%x00%ct%x00%B"
    text = run_git(["show", "-s", "--date=raw", f"--format={fmt}", sha], git_dir=path).stdout.decode(errors="replace")
    parts = text.split("\x00", 10)
    return CommitInfo(
        sha=parts[0],
        tree=parts[1],
        parents=parts[2].split(),
        author_name=parts[3],
        author_email=parts[4],
        author_date=parts[5],
        author_time=int(parts[6]),
        committer_name=parts[7],
        committer_email=parts[8],
        committer_time=int(parts[9]),
        message=parts[10].rstrip("\n"),
    )


def rev_list(path: Path, *revs: str, reverse: bool = False, no_merges: bool = False) -> list[str]:
    args = ["rev-list"]
    if reverse:
        args.append("--reverse")
    if no_merges:
        args.append("--no-merges")
    text = out([*args, *revs, "--"], path)
    return [line for line in text.splitlines() if line]


def diff_numstat(path: Path, a: str, b: str) -> tuple[int, int, int]:
    """(additions, deletions, changed_files) between two commits."""
    text = out(["diff", "--numstat", a, b], path)
    adds = dels = files = 0
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3:
            files += 1
            adds += int(parts[0]) if parts[0].isdigit() else 0
            dels += int(parts[1]) if parts[1].isdigit() else 0
    return adds, dels, files


def changed_files(path: Path, a: str | None, b: str) -> list[str]:
    if a is None:
        text = out(["ls-tree", "-r", "--name-only", b], path)
    else:
        text = out(["diff", "--name-only", a, b], path)
    return [line for line in text.splitlines() if line]


def list_dir(path: Path, sha: str, directory: str) -> list[str]:
    """Blob paths directly inside ``directory`` at commit ``sha``."""
    proc = run_git(["ls-tree", "--name-only", f"{sha}:{directory}"], git_dir=path, check=False)
    if proc.returncode != 0:
        return []
    return [f"{directory}/{n}" for n in proc.stdout.decode().splitlines() if n]


def read_blob(path: Path, sha: str, file_path: str) -> bytes | None:
    proc = run_git(["cat-file", "blob", f"{sha}:{file_path}"], git_dir=path, check=False)
    return proc.stdout if proc.returncode == 0 else None
