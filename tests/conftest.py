"""Shared fixtures: the Kubernetes harness and the offline world (GitHub stand-in, scripted agent)."""

from __future__ import annotations

import pytest

from ampx.sandbox.github_emulator.contract import ResponseContract
from ampx.sandbox.world import start_world

pytest_plugins = ["kubeharness.fixtures"]


@pytest.fixture(scope="session")
def github_contract() -> ResponseContract:
    """Loading the OpenAPI document takes ~0.5 s: do it once per session."""
    return ResponseContract()


@pytest.fixture
def world(tmp_path, monkeypatch, github_contract):
    """The offline world; every REST answer of its GitHub stand-in is checked against GitHub's
    OpenAPI document, and the test fails at teardown if one broke it."""
    w = start_world(tmp_path / "world")
    violations: list[str] = []
    w.emulator.response_observers.append(
        github_contract.observer(violations, base_url=lambda: w.emulator.url))
    for k, v in w.env.items():
        monkeypatch.setenv(k, v)
    yield w
    w.stop()
    if violations:
        pytest.fail("GitHub stand-in responses violate the OpenAPI document:\n"
                    + "\n".join(violations[:30]), pytrace=False)
