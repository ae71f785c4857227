"""The permissions the code declares for each role are exactly the RBAC that ampx grants."""

from __future__ import annotations

import ampx.kube.api  # noqa: F401  (registers the declarations)
from ampx.kube.api import permissions_used
from ampx.kube.rbac import AGENT_KEY_SECRET, OPERATOR, WORKER, Permission, as_rules, grants


def test_operator_calls_exactly_what_it_is_granted():
    assert permissions_used("operator") == OPERATOR


def test_the_worker_has_no_kubernetes_permission_at_all():
    assert permissions_used("worker") == WORKER == frozenset()


def test_the_operator_reads_one_secret_only_and_never_lists_secrets():
    secrets = {p for p in OPERATOR if p.resource == "secrets"}
    assert {p.verb for p in secrets} == {"create", "patch", "delete", "get"}
    (get,) = [p for p in secrets if p.verb == "get"]
    assert get.names == (AGENT_KEY_SECRET,)
    assert not {p for p in OPERATOR if p.resource == "secrets" and p.verb in ("list", "watch")}
    rules = [r for r in as_rules(OPERATOR) if r["resources"] == ["secrets"]]
    assert {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [AGENT_KEY_SECRET],
            "verbs": ["get"]} in rules
    assert ("", "secrets", "get", "ampx-amp") in grants(OPERATOR, "ampx-amp")
    assert ("", "secrets", "get") not in grants(OPERATOR, "ampx-amp")


def test_rules_have_no_wildcards():
    for rule in as_rules(OPERATOR) + as_rules(WORKER):
        for key in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(key, [])
    assert Permission("", "pods", "list") in OPERATOR
