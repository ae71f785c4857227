"""Task and attempt history in SQLite, shared by both runtimes and ``ampx export``."""

from ampx.history.db import HistoryDB, HistoryError
from ampx.history.schema import ATTEMPT_COLUMNS, SCHEMA_VERSION, TASK_COLUMNS

__all__ = ["HistoryDB", "HistoryError", "TASK_COLUMNS", "ATTEMPT_COLUMNS", "SCHEMA_VERSION"]
