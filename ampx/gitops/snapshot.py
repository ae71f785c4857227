"""Copy the agent's working tree into a private directory, trusting nothing in it.

The commit is built from this copy, never from the agent's checkout: what the guards check is
exactly what is committed, whatever keeps writing to the agent's directory afterwards. The copy
skips every `.git` entry (the agent's config, hooks, `commondir`, alternates), never follows a
symbolic link (links are stored as links, the way git stores them), copies only regular files,
directories and links (FIFOs, sockets and devices are left out), and refuses trees beyond a
size or file-count bound with a reason.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

MAX_FILES = 100_000
MAX_BYTES = 1024 * 1024 * 1024  # 1 GiB
_CHUNK = 1024 * 1024


class SnapshotRefused(Exception):
    """The working tree cannot be snapshotted (too big, too many files, unreadable)."""


class _TooBig(Exception):
    pass


@dataclass
class SnapshotStats:
    files: int = 0
    links: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)  # special files left out


def _copy_file(src_dir_fd: int, name: str, dest: Path, budget: int, executable: bool) -> int:
    """Copy one regular file opened relative to its directory without following links."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(name, flags, dir_fd=src_dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped for a FIFO or device meanwhile
            return -1
        written = 0
        out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755 if executable else 0o644)
        try:
            while True:
                chunk = os.read(fd, _CHUNK)
                if not chunk:
                    break
                written += len(chunk)
                if written > budget:
                    raise _TooBig()
                os.write(out, chunk)
        finally:
            os.close(out)
        return written
    finally:
        os.close(fd)


def _size_text(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit} bytes"


def copy_tree(src: str | os.PathLike[str], dest: str | os.PathLike[str], *,
              max_files: int = MAX_FILES, max_bytes: int = MAX_BYTES) -> SnapshotStats:
    """Copy ``src``'s working tree into the new directory ``dest`` (see the module docstring)."""
    src, dest = Path(src), Path(dest)
    dest.mkdir(mode=0o700)
    stats = SnapshotStats()

    def refuse_count() -> None:
        if stats.files + stats.links > max_files:
            raise SnapshotRefused(f"the working tree has more than {max_files} files")

    def walk(dir_fd: int, rel: str, out: Path) -> None:
        try:
            names = sorted(os.listdir(dir_fd))
        except OSError as exc:
            raise SnapshotRefused(f"cannot read {rel or '.'}: {exc.strerror}") from None
        for name in names:
            if name == ".git":
                continue
            path = f"{rel}/{name}" if rel else name
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed while we looked
            target = out / name
            if stat.S_ISLNK(st.st_mode):
                try:
                    link = os.readlink(name, dir_fd=dir_fd)
                except OSError:
                    continue
                stats.links += 1
                refuse_count()
                os.symlink(link, target)
            elif stat.S_ISDIR(st.st_mode):
                flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
                try:
                    sub = os.open(name, flags, dir_fd=dir_fd)
                except OSError as exc:
                    if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                        continue  # replaced meanwhile: not part of the snapshot
                    raise SnapshotRefused(f"cannot read {path}: {exc.strerror}") from None
                try:
                    target.mkdir(mode=0o700)
                    walk(sub, path, target)
                finally:
                    os.close(sub)
            elif stat.S_ISREG(st.st_mode):
                stats.files += 1
                refuse_count()
                if st.st_size > max_bytes - stats.bytes:
                    raise SnapshotRefused(
                        f"the working tree is larger than {_size_text(max_bytes)}")
                try:
                    n = _copy_file(dir_fd, name, target, max_bytes - stats.bytes,
                                   bool(st.st_mode & stat.S_IXUSR))
                except _TooBig:
                    raise SnapshotRefused(
                        f"the working tree is larger than {_size_text(max_bytes)}") from None
                except OSError as exc:
                    if exc.errno in (errno.ENOENT, errno.ELOOP):
                        stats.files -= 1
                        continue
                    raise SnapshotRefused(f"cannot read {path}: {exc.strerror}") from None
                if n < 0:
                    stats.files -= 1
                    stats.skipped.append(path)
                    continue
                stats.bytes += n
            else:
                stats.skipped.append(path)

    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        root = os.open(src, flags)
    except OSError as exc:
        raise SnapshotRefused(f"cannot read the working tree {src}: {exc.strerror}") from None
    try:
        walk(root, "", dest)
    finally:
        os.close(root)
    return stats
