"""Where the local runtime keeps its files: AMPX_HOME, else the user's data directory.

A relative AMPX_HOME is made absolute once, before anything starts (`pin_home`): the
supervisor runs with its data directory as working directory and would otherwise resolve it a
second time (`relhome/relhome/ampx.db`). Reading (`home(create=False)`) creates nothing, so
`ampx ls` works on a read-only data directory. The directory is the user's alone (`home.py`):
created 0700, its files 0600, refused when another user owns it or could write to it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..settings import env
from .home import check_home, check_parents, ensure_home, private_dir, touch_private


def pin_home() -> None:
    """Make a relative AMPX_HOME absolute in this process's environment (children inherit it)."""
    raw = env("AMPX_HOME")
    if raw and not os.path.isabs(raw):
        os.environ["AMPX_HOME"] = os.path.abspath(raw)


def home(create: bool = True) -> Path:
    raw = env("AMPX_HOME")
    if raw:
        path = Path(os.path.abspath(raw))
    else:
        from platformdirs import user_data_dir

        path = Path(user_data_dir("ampx"))
    if create:
        return ensure_home(path)
    if path.exists():
        check_home(path)
    else:
        check_parents(path, os.geteuid())
    return path


def db_path(create: bool = True) -> Path:
    if create:
        return touch_private(home() / "ampx.db")
    return home(False) / "ampx.db"


def runs_dir(create: bool = True) -> Path:
    if create:
        return private_dir(home() / "runs")
    return home(False) / "runs"


def local_store():
    from .store import LocalStore

    return LocalStore(db_path())
