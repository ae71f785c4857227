"""Shared fixtures: the Kubernetes harness and the offline world (GitHub stand-in, scripted agent)."""

from __future__ import annotations

import pytest

from ampx.sandbox.world import start_world

pytest_plugins = ["kubeharness.fixtures"]


@pytest.fixture
def world(tmp_path, monkeypatch):
    w = start_world(tmp_path / "world")
    for k, v in w.env.items():
        monkeypatch.setenv(k, v)
    yield w
    w.stop()
