"""The one error type of ampx's Kubernetes calls, importable without the `kubernetes` client
(the CLI and the local worker catch it; importing the client costs ~0.3 s per process)."""

from __future__ import annotations

from typing import Optional


class KubeError(Exception):
    """A Kubernetes API failure with one clear line for the user."""

    def __init__(self, message: str, status: Optional[int] = None, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
