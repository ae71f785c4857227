"""The chart's `tasks.maxConcurrentAttempts*` values reach the operator as the limits it reads
(issue 12): unset is unlimited, a number is the limit, anything else fails at install."""

from __future__ import annotations

import copy

import helm_python as helm
import pytest

import chartlib
from chartlib import NAMESPACE
from ampx.core.queueing import Limits
from ampx.kube.capacity import limits_from_env


def operator_env(values):
    return chartlib.env_of(chartlib.operator_container(chartlib.render(values)))


def test_default_is_unlimited(monkeypatch):
    env = operator_env({})
    assert "AMPX_MAX_CONCURRENT_ATTEMPTS" not in env
    assert "AMPX_MAX_CONCURRENT_ATTEMPTS_PER_REPO" not in env
    monkeypatch.delenv("AMPX_MAX_CONCURRENT_ATTEMPTS", raising=False)
    monkeypatch.delenv("AMPX_MAX_CONCURRENT_ATTEMPTS_PER_REPO", raising=False)
    assert limits_from_env().unlimited


def test_limits_render_as_what_the_operator_reads(monkeypatch):
    env = operator_env({"tasks": {"maxConcurrentAttempts": 20, "maxConcurrentAttemptsPerRepo": 4}})
    for name in ("AMPX_MAX_CONCURRENT_ATTEMPTS", "AMPX_MAX_CONCURRENT_ATTEMPTS_PER_REPO"):
        monkeypatch.setenv(name, env[name])
    assert limits_from_env() == Limits(per_namespace=20, per_repo=4)


@pytest.mark.parametrize("values", [
    {"tasks": {"maxConcurrentAttempts": 0}},
    {"tasks": {"maxConcurrentAttempts": "5"}},
    {"tasks": {"maxConcurrentAttemptsPerRepo": -1}},
    {"tasks": {"maxConcurrentAttempts": 1.5}},
])
def test_bad_limits_fail_at_install(values):
    with pytest.raises(helm.HelmValuesError, match="schema"):
        chartlib.chart().render(copy.deepcopy(values), name="ampx", namespace=NAMESPACE)


@pytest.mark.parametrize("raw", ["0", "-2", "ten", "1.5"])
def test_the_operator_refuses_a_limit_it_cannot_read(monkeypatch, raw):
    monkeypatch.setenv("AMPX_MAX_CONCURRENT_ATTEMPTS", raw)
    with pytest.raises(ValueError, match="AMPX_MAX_CONCURRENT_ATTEMPTS must be a whole number"):
        limits_from_env()
