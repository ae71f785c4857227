"""A pull request is adopted only when its head is the task's own branch in this repository."""

from __future__ import annotations

from types import SimpleNamespace as NS

import pytest

from ampx.core.repo import RepoRef
from ampx.github.pulls import _heads_our_branch

REPO = RepoRef("acme", "api")


def pr(ref, repo_full_name):
    repo = None if repo_full_name is None else NS(full_name=repo_full_name)
    return NS(head=NS(ref=ref, repo=repo))


@pytest.mark.parametrize("candidate,adopt", [
    (pr("amp/x-1", "acme/api"), True),
    (pr("amp/x-1", "ACME/Api"), True),
    (pr("amp/x-2", "acme/api"), False),       # another task's branch
    (pr("amp/x-1", "mallory/api"), False),    # a fork's branch of the same name
    (pr("amp/x-1", None), False),             # a PR whose fork was deleted
])
def test_only_the_tasks_own_branch_is_adopted(candidate, adopt):
    assert _heads_our_branch(candidate, REPO, "amp/x-1") is adopt
