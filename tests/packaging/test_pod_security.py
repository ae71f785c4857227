"""Every pod ampx runs passes the Pod Security Standards "restricted" profile, the worker pod
keeps the agent away from every credential but its own key, and the optional NetworkPolicy
lets workers reach only DNS, GitHub and the agent's API."""

from __future__ import annotations

import copy

import pytest

import chartlib
from ampx.kube import jobs
from ampx.settings import ENV_VARS
from chartlib import NAMESPACE, SCENARIOS
from pss import violations


def _worker_job(values, monkeypatch, ns=NAMESPACE):
    env = chartlib.env_of(chartlib.operator_container(chartlib.render(values)))
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    task = jobs.to_task({
        "apiVersion": "ampx.dev/v1alpha1", "kind": "AmpTask",
        "metadata": {"name": "01j9zyxwvtsrqpnmkjhgfedcba", "namespace": ns, "uid": "u1"},
        "spec": {"repo": "acme/api", "prompt": "fix it"},
    })
    return jobs.build_job(task, 1, jobs.WorkerSettings.from_env())


# --- the checker itself must be able to fail --------------------------------------------------

def test_the_checker_refuses_what_restricted_forbids():
    ok = {"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
          "containers": [{"name": "c", "securityContext": {
              "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}]}
    assert violations(ok) == []
    cases = {
        "allowPrivilegeEscalation": lambda s: s["containers"][0]["securityContext"].pop(
            "allowPrivilegeEscalation"),
        "runAsNonRoot": lambda s: s["securityContext"].pop("runAsNonRoot"),
        "seccompProfile": lambda s: s["securityContext"].pop("seccompProfile"),
        "drop ALL": lambda s: s["containers"][0]["securityContext"].pop("capabilities"),
        "hostPath": lambda s: s.update(volumes=[{"name": "h", "hostPath": {"path": "/"}}]),
        "privileged": lambda s: s["containers"][0]["securityContext"].update(privileged=True),
        "host namespaces": lambda s: s.update(hostPID=True),
        "only NET_BIND_SERVICE": lambda s: s["containers"][0]["securityContext"][
            "capabilities"].update(add=["SYS_PTRACE"]),
        "runAsUser 0": lambda s: s["securityContext"].update(runAsUser=0),
    }
    for what, spoil in cases.items():
        spec = copy.deepcopy(ok)
        spoil(spec)
        assert any(what in v for v in violations(spec)), (what, violations(spec))


# --- the chart's operator and the operator's worker pods ---------------------------------------

@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_the_operator_pod_is_restricted(scenario):
    deployment = chartlib.one(chartlib.render(SCENARIOS[scenario].values), "Deployment")
    assert violations(deployment["spec"]["template"]["spec"]) == []


@pytest.mark.parametrize("scenario", ["default", "configured"])
def test_the_worker_pod_is_restricted(scenario, monkeypatch):
    pod = _worker_job(SCENARIOS[scenario].values, monkeypatch)["spec"]["template"]["spec"]
    assert violations(pod) == []
    for c in pod["initContainers"] + pod["containers"]:
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert {"cpu", "memory", "ephemeral-storage"} <= set(c["resources"]["limits"]), c["name"]
    assert pod["enableServiceLinks"] is False


def test_the_agent_container_has_no_service_account_token_and_no_github_credential(monkeypatch):
    pod = _worker_job({}, monkeypatch)["spec"]["template"]["spec"]
    # no token is mounted into any container (no projected token volume either)
    assert pod["automountServiceAccountToken"] is False
    assert not [v for v in pod["volumes"] if "projected" in v]
    (agent,) = [c for c in pod["containers"] if c["name"] == "agent"]
    mounted = {m["name"] for m in agent["volumeMounts"]}
    secret_vols = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
    readable = {i["key"] for name in mounted & set(secret_vols) for i in secret_vols[name]["items"]}
    assert readable == {"attempt.json"}
    assert [e["name"] for e in agent["env"] if "valueFrom" in e] == ["AMP_API_KEY"]


# --- NetworkPolicy -----------------------------------------------------------------------------

def test_no_network_policy_unless_asked():
    assert chartlib.find(chartlib.render({}), "NetworkPolicy") == []


def test_the_network_policy_lets_workers_reach_only_dns_github_and_the_agent(monkeypatch):
    values = {"networkPolicy": {"enabled": True, "agentApiCidrs": ["34.120.0.1/32"]},
              "watchNamespaces": ["a", "b"]}
    docs = chartlib.render(values)
    policies = chartlib.find(docs, "NetworkPolicy")
    assert sorted(p["metadata"]["namespace"] for p in policies) == ["a", "b"]
    policy = policies[0]["spec"]
    # it selects the worker pods the operator creates
    labels = _worker_job(values, monkeypatch, "a")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    assert policy["ingress"] == []
    dns, web = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert dns["to"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "kube-system"}
    cidrs = [t["ipBlock"]["cidr"] for t in web["to"]]
    defaults = chartlib.chart().values["networkPolicy"]["githubCidrs"]
    assert cidrs == defaults + ["34.120.0.1/32"]
    assert web["ports"] == [{"protocol": "TCP", "port": 443}]
    from kubernetes_validate import utils as kube_validate
    for p in policies:
        kube_validate.validate(p, chartlib.kube_versions()[-1], strict=True)
