"""The git directory the commit is built in: made after the agent ended, never shown to it.

Nothing the agent wrote under `.git` is read: the start commit is fetched afresh from the remote
into a new repository, the tree is built from a private snapshot of the working tree (see
`snapshot.py`) with blobs hashed by ampx itself (no clean/smudge filter, `text`/`eol` or
`ident` attribute applies), and every git process runs with `GIT_CONFIG_GLOBAL=/dev/null`,
`GIT_CONFIG_NOSYSTEM=1`, hooks and fsmonitor off, and a minimal environment (no inherited
credential, only the askpass pair on the commands that talk to the remote).
"""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import tempfile
import zlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from ampx.gitops.auth import GitAuth
from ampx.gitops.git import GitError, GitTimeout
from ampx.gitops.message import add_trailers
from ampx.gitops.workspace import Change, PushTransportError, classify_push_failure
from ampx.redact import redact

# Passed through from the worker's environment: reaching the git host may need a proxy or a CA.
_NETWORK_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
                "ALL_PROXY", "all_proxy", "GIT_SSL_CAINFO", "GIT_SSL_CAPATH", "SSL_CERT_FILE",
                "SSL_CERT_DIR", "CURL_CA_BUNDLE")
_CONFIG = (
    ("core.hooksPath", os.devnull), ("core.fsmonitor", "false"), ("credential.helper", ""),
    ("core.attributesFile", os.devnull), ("core.excludesFile", os.devnull),
    ("core.untrackedCache", "false"), ("core.sshCommand", "false"), ("protocol.ext.allow", "never"),
    ("gc.auto", "0"), ("maintenance.auto", "false"), ("commit.gpgSign", "false"),
    ("core.bare", "false"), ("init.defaultBranch", "main"),
)
TIMEOUT_S = 300.0
NETWORK_TIMEOUT_S = 600.0


def private_git_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a private git process (nothing else is inherited)."""
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(home), "LANG": "C",
           "LC_ALL": "C", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_ATTR_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0",
           "GIT_CONFIG_COUNT": str(len(_CONFIG))}
    for i, (key, value) in enumerate(_CONFIG):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    env.update({k: v for k in _NETWORK_ENV if (v := os.environ.get(k))})
    if extra:
        env.update(extra)
    return env


def clean_git(args: list[str], cwd: Path, home: Path, timeout: float = TIMEOUT_S) -> str:
    """A local git command with the private environment (no inherited credential or config)."""
    proc = subprocess.run(["git", *args], cwd=str(cwd), env=private_git_env(home),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise GitError(args, proc.returncode, proc.stderr, proc.stdout)
    return proc.stdout


def _blob_header(size: int) -> bytes:
    return b"blob %d\0" % size


class PrivateRepo:
    """A fresh repository under ``root`` (created 0700) for one commit of one attempt."""

    def __init__(self, root: str | os.PathLike[str], url: str, auth: GitAuth | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.root = Path(root)
        self.url = url
        self.auth = auth
        self._log = log
        self.git_dir = self.root / "git"
        self.home = self.root / "home"
        self.index = self.root / "index"
        self._trees: dict[str, str] = {}

    def log(self, line: str) -> None:
        if self._log is not None:
            self._log(redact(f"[git] {line}"))

    # -- plumbing --------------------------------------------------------------------------

    def git(self, *args: str, input: bytes | None = None, env: Mapping[str, str] | None = None,
            check: bool = True, timeout: float = TIMEOUT_S, work_tree: Path | None = None,
            network: bool = False) -> subprocess.CompletedProcess[bytes]:
        extra = {"GIT_DIR": str(self.git_dir), "GIT_INDEX_FILE": str(self.index), **(env or {})}
        if work_tree is not None:
            extra["GIT_WORK_TREE"] = str(work_tree)
        if network and self.auth is not None:
            extra.update(self.auth.env())
        argv = ["git", *args]
        proc = subprocess.Popen(argv, cwd=str(work_tree or self.root),
                                env=private_git_env(self.home, extra), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            out, err = proc.communicate(input or b"", timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = proc.communicate()
            raise GitTimeout(list(args), -signal.SIGKILL,
                             f"timed out after {timeout:g}s {err.decode(errors='replace')}") from None
        if check and proc.returncode != 0:
            raise GitError(list(args), proc.returncode, err.decode(errors="replace"),
                           out.decode(errors="replace"))
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    # -- setup -----------------------------------------------------------------------------

    def create(self) -> "PrivateRepo":
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.home.mkdir(mode=0o700, exist_ok=True)
        self.git("init", "-q", "--bare", "--template=", str(self.git_dir))
        return self

    def fetch_start(self, start_sha: str, source_branch: str | None = None) -> None:
        """Fetch the attempt's start commit afresh (one commit deep)."""
        got = self.git("fetch", "-q", "--no-tags", "--no-write-fetch-head", "--depth=1", self.url,
                       start_sha, check=False, timeout=NETWORK_TIMEOUT_S, network=True)
        if got.returncode != 0 and source_branch:  # a host that refuses wants by sha
            self.git("fetch", "-q", "--no-tags", "--no-write-fetch-head", "--depth=50", self.url,
                     f"+refs/heads/{source_branch}:refs/ampx/source", timeout=NETWORK_TIMEOUT_S,
                     network=True)
        elif got.returncode != 0:
            raise GitError(["fetch"], got.returncode, got.stderr.decode(errors="replace"))
        if self.git("cat-file", "-e", f"{start_sha}^{{commit}}", check=False).returncode != 0:
            raise GitError(["fetch"], 1, f"the start commit {start_sha[:12]} is gone from the remote")

    # -- the tree --------------------------------------------------------------------------

    def tree_entries(self, treeish: str) -> dict[str, tuple[str, str]]:
        """path -> (mode, sha) of every entry of ``treeish`` (recursively)."""
        out = self.git("ls-tree", "-r", "-z", "--full-tree", treeish).stdout
        entries = {}
        for record in out.split(b"\0"):
            if not record:
                continue
            meta, _, path = record.partition(b"\t")
            mode, _kind, sha = meta.decode().split()
            entries[os.fsdecode(path)] = (mode, sha)
        return entries

    def _write_object(self, sha: str, chunks: Iterable[bytes]) -> None:
        target = self.git_dir / "objects" / sha[:2] / sha[2:]
        if target.exists():
            return
        target.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix="tmp_obj_")
        comp = zlib.compressobj()
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(comp.compress(chunk))
            fh.write(comp.flush())
        os.chmod(tmp, 0o444)
        os.replace(tmp, target)

    def _blob_from_file(self, path: Path, known: set[str]) -> str:
        size = path.stat().st_size

        def chunks():
            yield _blob_header(size)
            with open(path, "rb") as fh:
                while block := fh.read(1024 * 1024):
                    yield block

        h = hashlib.sha1()
        for chunk in chunks():
            h.update(chunk)
        sha = h.hexdigest()
        if sha not in known:
            self._write_object(sha, chunks())
        return sha

    def _blob_from_bytes(self, data: bytes, known: set[str]) -> str:
        sha = hashlib.sha1(_blob_header(len(data)) + data).hexdigest()
        if sha not in known:
            self._write_object(sha, [_blob_header(len(data)), data])
        return sha

    def build_tree(self, snapshot: Path, start_sha: str, keep_start: Iterable[str] = ()) -> str:
        """The tree of ``snapshot`` on top of ``start_sha``: files ignored by the tree's
        `.gitignore` stay out unless tracked, submodule pointers keep their start value, and the
        ``keep_start`` paths are left as they were at the start (removed if new)."""
        start = self.tree_entries(start_sha)
        known = {sha for mode, sha in start.values() if mode != "160000"}
        self.index.unlink(missing_ok=True)
        self.git("read-tree", start_sha)
        listed = self.git("ls-files", "-z", "--cached", "--others", "--exclude-standard",
                          work_tree=snapshot).stdout
        keep = set(keep_start)
        entries: dict[str, tuple[str, str]] = {}
        for raw in listed.split(b"\0"):
            if not raw or raw.endswith(b"/"):
                continue  # an embedded repository: never committed
            path = os.fsdecode(raw)
            if path in keep:
                continue
            if start.get(path, ("",))[0] == "160000":
                entries[path] = start[path]
                continue
            full = snapshot / path
            try:
                st = full.lstat()
            except (FileNotFoundError, NotADirectoryError):
                continue  # deleted
            if stat.S_ISLNK(st.st_mode):
                entries[path] = ("120000",
                                 self._blob_from_bytes(os.fsencode(os.readlink(full)), known))
            elif stat.S_ISREG(st.st_mode):
                mode = "100755" if st.st_mode & stat.S_IXUSR else "100644"
                entries[path] = (mode, self._blob_from_file(full, known))
        for path in keep:
            if path in start:
                entries[path] = start[path]
        records = b"".join(f"{mode} {sha}\t".encode() + os.fsencode(path) + b"\0"
                           for path, (mode, sha) in sorted(entries.items()))
        self.index.unlink(missing_ok=True)
        self.git("update-index", "-z", "--index-info", input=records)
        return self.git("write-tree").stdout.decode().strip()

    def tree_of(self, commit: str) -> str:
        if commit not in self._trees:
            self._trees[commit] = self.git("rev-parse", f"{commit}^{{tree}}").stdout.decode().strip()
        return self._trees[commit]

    def changes(self, start_sha: str, tree: str) -> list[Change]:
        """What ``tree`` changes against the start commit (renames = delete + add)."""
        out = self.git("diff-tree", "-r", "-z", "--no-renames", "--name-status", start_sha,
                       tree).stdout
        fields = out.split(b"\0")
        result = []
        for i in range(0, len(fields) - 1, 2):
            status, path = fields[i].decode(), os.fsdecode(fields[i + 1])
            result.append(Change({"T": "M"}.get(status[:1], status[:1]), path))
        return result

    def read(self, treeish: str, path: str) -> bytes | None:
        """The content of ``path`` in ``treeish`` (a link's target for a link), None if absent."""
        got = self.git("cat-file", "blob", f"{treeish}:{path}", check=False)
        return got.stdout if got.returncode == 0 else None

    # -- commit and push -------------------------------------------------------------------

    def commit(self, tree: str, parent: str, message: str, name: str, email: str,
               trailers: Mapping[str, str] | None = None) -> str:
        identity = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
                    "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}
        return self.git("commit-tree", "--no-gpg-sign", tree, "-p", parent, "-F", "-",
                        input=add_trailers(message, trailers).encode(),
                        env=identity).stdout.decode().strip()

    def push(self, sha: str, branch: str, expected_old_sha: str | None,
             timeout: float = NETWORK_TIMEOUT_S) -> str:
        """Push ``sha`` to ``branch`` only if the remote branch is still at ``expected_old_sha``
        (None: only if it does not exist)."""
        ref = f"refs/heads/{branch}"
        lease = f"--force-with-lease={ref}:{expected_old_sha or ''}"
        try:
            proc = self.git("push", "--porcelain", "--no-verify", self.url, lease, f"{sha}:{ref}",
                            check=False, timeout=timeout, network=True)
        except GitTimeout as exc:
            raise PushTransportError("timeout", exc.stderr, exc.returncode) from None
        if proc.returncode != 0:
            error = classify_push_failure(proc.stdout.decode(errors="replace"),
                                          proc.stderr.decode(errors="replace"), proc.returncode)
            self.log(f"push to {branch} failed ({error.kind}: {error.reason})")
            raise error
        self.log(f"pushed {sha[:12]} to {branch}")
        return sha
