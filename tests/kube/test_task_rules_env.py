"""The operator's task rules come from its environment (the chart's `tasks.*` values)."""

from __future__ import annotations

import logging

import pytest

from ampx.core.allowlist import AllowListError
from ampx.core.branches import BranchPrefixError
from ampx.task_rules import rules_from_env


def test_defaults_allow_every_repository_and_say_so(monkeypatch, caplog):
    for name in ("AMPX_BRANCH_PREFIX", "AMPX_ALLOWED_REPOS", "AMPX_GITHUB_URL"):
        monkeypatch.delenv(name, raising=False)
    with caplog.at_level(logging.WARNING, logger="ampx.rules"):
        rules = rules_from_env()
    assert rules.branch_prefix == "amp/" and rules.git_url == "https://github.com"
    assert rules.allowed_repos.unrestricted
    assert "no repository allow-list" in caplog.text


def test_settings_are_read(monkeypatch, caplog):
    monkeypatch.setenv("AMPX_BRANCH_PREFIX", "bots/")
    monkeypatch.setenv("AMPX_ALLOWED_REPOS", '{"team-a": ["acme/*"]}')
    monkeypatch.setenv("AMPX_GITHUB_URL", "https://ghe.corp")
    with caplog.at_level(logging.WARNING, logger="ampx.rules"):
        rules = rules_from_env()
    assert rules.branch_prefix == "bots/" and rules.git_url == "https://ghe.corp"
    assert rules.allowed_repos.allows("acme/api", "team-a")
    assert not rules.allowed_repos.allows("acme/api", "team-b")
    assert "allow-list" not in caplog.text


@pytest.mark.parametrize("name,value,error", [
    ("AMPX_ALLOWED_REPOS", "acme/*", AllowListError),
    ("AMPX_ALLOWED_REPOS", '["acme"]', AllowListError),
    ("AMPX_BRANCH_PREFIX", "refs/", BranchPrefixError),
])
def test_a_setting_the_operator_cannot_read_stops_it(monkeypatch, name, value, error):
    monkeypatch.setenv(name, value)
    with pytest.raises(error):
        rules_from_env()
