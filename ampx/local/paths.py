"""Where the local runtime keeps its files: AMPX_HOME, else the user's data directory."""

from __future__ import annotations

from pathlib import Path

from platformdirs import user_data_dir

from ..settings import env


def home() -> Path:
    path = Path(env("AMPX_HOME") or user_data_dir("ampx"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def db_path() -> Path:
    return home() / "ampx.db"


def runs_dir() -> Path:
    path = home() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_store():
    from .store import LocalStore

    return LocalStore(db_path())
