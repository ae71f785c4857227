"""The offline world (GitHub stand-in, scripted agent) for end-to-end tests."""

from __future__ import annotations

import pytest

from ampx.sandbox.world import start_world


@pytest.fixture
def world(tmp_path, monkeypatch):
    w = start_world(tmp_path / "world")
    for k, v in w.env.items():
        monkeypatch.setenv(k, v)
    yield w
    w.stop()
