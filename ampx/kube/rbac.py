"""The Kubernetes permissions ampx needs, declared once.

The operator's and the worker's API calls go through `ampx.kube.api`, whose methods name the
permission they use; the Helm chart's Roles are checked against these lists by the tests, so
the chart grants exactly what the code calls (no wildcards).
"""

from __future__ import annotations

from dataclasses import dataclass


#: stands for the name of the agent-key Secret (a chart value) in `resourceNames`
AGENT_KEY_SECRET = "<agent-key-secret>"


@dataclass(frozen=True, order=True)
class Permission:
    group: str  # "" is the core API group
    resource: str  # plural, with "/subresource" where it applies
    verb: str
    names: tuple[str, ...] = ()  # RBAC resourceNames: only these objects (empty: any)


def P(group: str, resource: str, *verbs: str) -> list[Permission]:
    return [Permission(group, resource, v) for v in verbs]


OPERATOR = frozenset(
    P("ampx.dev", "amptasks", "get", "list", "watch", "patch")
    + P("ampx.dev", "amptasks/status", "patch")
    + P("batch", "jobs", "get", "list", "watch", "create", "delete")
    + P("", "pods", "list")
    + P("", "pods/log", "get")
    + P("", "events", "create")
    # the per-attempt Secret <task>-a<N>: created with the push token, renewed, deleted
    + P("", "secrets", "create", "patch", "delete")
    # the agent's key, read only to mask it (it turns up in CI logs); no other Secret
    + [Permission("", "secrets", "get", (AGENT_KEY_SECRET,))]
)

#: the worker pods need no Kubernetes API access at all (no ServiceAccount token is mounted)
WORKER: frozenset[Permission] = frozenset()


def as_rules(perms: frozenset[Permission]) -> list[dict]:
    """Group permissions into RBAC PolicyRules (one rule per group+resource+names), sorted."""
    grouped: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
    for p in sorted(perms):
        grouped.setdefault((p.group, p.resource, p.names), []).append(p.verb)
    rules = []
    for (g, r, names), v in sorted(grouped.items()):
        rule: dict = {"apiGroups": [g], "resources": [r]}
        if names:
            rule["resourceNames"] = list(names)
        rule["verbs"] = sorted(v)
        rules.append(rule)
    return rules


def grants(perms: frozenset[Permission], agent_key_secret: str) -> frozenset[tuple]:
    """The permissions as an authorizer checks them: (group, resource, verb) for any object,
    (group, resource, verb, name) for a rule with resourceNames."""
    out: set[tuple] = set()
    for p in perms:
        if not p.names:
            out.add((p.group, p.resource, p.verb))
        for n in p.names:
            out.add((p.group, p.resource, p.verb, agent_key_secret if n == AGENT_KEY_SECRET else n))
    return frozenset(out)
