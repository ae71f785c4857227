"""The chart's `tasks.*` values reach the operator as the settings it reads (issue 10)."""

from __future__ import annotations

import copy

import helm_python as helm
import pytest

import chartlib
from chartlib import NAMESPACE
from ampx.core.allowlist import parse_allowlist
from ampx.core.branches import check_prefix


def operator_env(values):
    return chartlib.env_of(chartlib.operator_container(chartlib.render(values)))


def test_defaults_prefix_amp_and_no_allow_list():
    env = operator_env({})
    assert env["AMPX_BRANCH_PREFIX"] == "amp/" and check_prefix(env["AMPX_BRANCH_PREFIX"])
    assert "AMPX_ALLOWED_REPOS" not in env  # unset: every installed repository (documented)


@pytest.mark.parametrize("allowed,namespace,repo,ok", [
    (["acme/*"], "any", "acme/api", True),
    (["acme/*"], "any", "other/api", False),
    ({"team-a": ["acme/api"], "*": ["sandbox/*"]}, "team-a", "acme/api", True),
    ({"team-a": ["acme/api"], "*": ["sandbox/*"]}, "team-b", "acme/api", False),
    ([], "any", "acme/api", False),
])
def test_allowed_repos_render_as_the_json_the_operator_reads(allowed, namespace, repo, ok):
    env = operator_env({"tasks": {"allowedRepos": allowed, "branchPrefix": "bots/"}})
    assert env["AMPX_BRANCH_PREFIX"] == "bots/"
    assert parse_allowlist(env["AMPX_ALLOWED_REPOS"]).allows(repo, namespace) is ok


@pytest.mark.parametrize("values", [
    {"tasks": {"branchPrefix": ""}},
    {"tasks": {"branchPrefix": "/x"}},
    {"tasks": {"allowedRepos": ["acme"]}},
    {"tasks": {"allowedRepos": {"team-a": "acme/*"}}},
    {"tasks": {"allowedRepos": "acme/*"}},
    {"tasks": {"prefix": "amp/"}},
])
def test_bad_task_values_fail_at_install(values):
    with pytest.raises(helm.HelmValuesError, match="schema"):
        chartlib.chart().render(copy.deepcopy(values), name="ampx", namespace=NAMESPACE)
