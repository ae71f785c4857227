"""Where the local runtime keeps its files: AMPX_HOME, else the user's data directory.

The directory is the user's alone (`home.py`): created 0700, its files 0600, refused when
another user owns it or could write to it.
"""

from __future__ import annotations

from pathlib import Path

from platformdirs import user_data_dir

from ..settings import env
from .home import ensure_home, private_dir, touch_private


def home() -> Path:
    return ensure_home(Path(env("AMPX_HOME") or user_data_dir("ampx")))


def db_path() -> Path:
    return touch_private(home() / "ampx.db")


def runs_dir() -> Path:
    return private_dir(home() / "runs")


def local_store():
    from .store import LocalStore

    return LocalStore(db_path())
