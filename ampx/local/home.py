"""The local runtime's data directory must be the user's alone.

It holds the task database, the attempts' logs and clones; the supervisor runs whatever task
it finds there with the user's GitHub token. A directory another user owns (or can write to,
or could swap through a parent they control) could plant a task and have it run with the
victim's token, or read the logs. So `AMPX_HOME` is created 0700 with files 0600, and one
owned by another user or writable by group or others is refused with one clear error.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..cli.backend import CliError

_PRIVATE_FILES = ("ampx.db", "ampx.db-wal", "ampx.db-shm", "supervisor.log", "supervisor.pid",
                  "supervisor.lock")


class UnsafeHome(CliError):
    """The data directory is not private to this user."""


def check_parents(path: Path, uid: int) -> None:
    """No parent may be owned by another user (root aside), nor be writable by group or others
    without the sticky bit (as /tmp has): such a parent lets its owner swap the directory."""
    for parent in path.parents:
        try:
            st = parent.stat()
        except OSError:
            continue
        if st.st_uid not in (0, uid):
            raise UnsafeHome(f"AMPX_HOME {path} is inside {parent}, owned by uid {st.st_uid}; "
                             "use a data directory only you control")
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            raise UnsafeHome(f"AMPX_HOME {path} is inside {parent}, which group or others can "
                             f"write to (mode {stat.S_IMODE(st.st_mode):o}); use a data "
                             "directory only you control")


def check_home(path: Path) -> None:
    """Refuse a data directory that is not this user's alone (see the module docstring)."""
    uid = os.geteuid()
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeHome(f"AMPX_HOME {path} is not a directory")
    if st.st_uid != uid:
        raise UnsafeHome(f"AMPX_HOME {path} is owned by uid {st.st_uid}, not by you "
                         f"(uid {uid}); refusing to run tasks from it")
    if st.st_mode & 0o022:
        raise UnsafeHome(f"AMPX_HOME {path} is writable by group or others (mode "
                         f"{stat.S_IMODE(st.st_mode):o}); run: chmod 700 {path}")
    check_parents(path, uid)


def ensure_home(path: Path) -> Path:
    """Create the data directory 0700 if needed, check it, and tighten what older versions
    left readable (0755 directory, 0644 database and logs)."""
    path = Path(path)
    if not path.exists():
        check_parents(path, os.geteuid())
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise UnsafeHome(f"cannot create AMPX_HOME {path}: {exc.strerror}") from None
    check_home(path)
    _tighten(path)
    for name in _PRIVATE_FILES:
        target = path / name
        try:
            if not target.is_symlink():
                _tighten(target)
        except FileNotFoundError:
            pass
    return path


def _tighten(path: Path) -> None:
    """Take away what group and others may do; never add a permission (a home the user made
    read-only stays read-only)."""
    mode = stat.S_IMODE(path.lstat().st_mode)
    if mode & 0o077:
        os.chmod(path, mode & 0o700)


def private_dir(path: Path) -> Path:
    """A directory under the data directory, 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def private_file(path: Path, mode: str = "ab"):
    """Open (creating it 0600) a file under the data directory."""
    flags = os.O_CREAT | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
    flags |= os.O_APPEND if mode.startswith("a") else os.O_TRUNC
    fd = os.open(path, flags, 0o600)
    if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
        os.fchmod(fd, 0o600)
    return os.fdopen(fd, mode)


def touch_private(path: Path) -> Path:
    """Create an empty 0600 file (the database: SQLite gives its -wal/-shm the same mode)."""
    private_file(path, "ab").close()
    return path
