"""The permissions the code declares for each role are exactly the RBAC that ampx grants."""

from __future__ import annotations

import ampx.kube.api  # noqa: F401  (registers the declarations)
from ampx.kube.api import permissions_used
from ampx.kube.rbac import OPERATOR, WORKER, Permission, as_rules


def test_operator_calls_exactly_what_it_is_granted():
    assert permissions_used("operator") == OPERATOR


def test_worker_calls_exactly_what_it_is_granted():
    assert permissions_used("worker") == WORKER
    assert WORKER == {Permission("ampx.dev", "amptasks", "get"),
                      Permission("ampx.dev", "amptasks/status", "patch")}


def test_rules_have_no_wildcards():
    for rule in as_rules(OPERATOR) + as_rules(WORKER):
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key]
