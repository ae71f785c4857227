"""The Kubernetes permissions ampx needs, declared once.

The operator's and the worker's API calls go through `ampx.kube.api`, whose methods name the
permission they use; the Helm chart's Roles are checked against these lists by the tests, so
the chart grants exactly what the code calls (no wildcards).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Permission:
    group: str  # "" is the core API group
    resource: str  # plural, with "/subresource" where it applies
    verb: str


def P(group: str, resource: str, *verbs: str) -> list[Permission]:
    return [Permission(group, resource, v) for v in verbs]


OPERATOR = frozenset(
    P("ampx.dev", "amptasks", "get", "list", "watch", "patch")
    + P("ampx.dev", "amptasks/status", "patch")
    + P("batch", "jobs", "get", "list", "watch", "create", "delete")
    + P("", "pods", "list")
    + P("", "pods/log", "get")
    + P("", "events", "create")
    # leader election between replicas: one Lease in the operator's (first) namespace
    + P("coordination.k8s.io", "leases", "get", "create", "update")
)

WORKER = frozenset(
    P("ampx.dev", "amptasks", "get")
    + P("ampx.dev", "amptasks/status", "patch")
)


def as_rules(perms: frozenset[Permission]) -> list[dict]:
    """Group permissions into RBAC PolicyRules (one rule per group+resource), sorted."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for p in sorted(perms):
        grouped.setdefault((p.group, p.resource), []).append(p.verb)
    return [
        {"apiGroups": [g], "resources": [r], "verbs": sorted(v)}
        for (g, r), v in sorted(grouped.items())
    ]
