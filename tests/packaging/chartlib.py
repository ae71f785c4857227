"""Render and inspect charts/ampx with Helm as a library (no `helm` binary needed).

helm-python-sdk embeds Helm 4's Go SDK (libhelm_c) through ctypes; rendering and linting are
offline. From a shell, this module is a stand-in for `helm template`:

    .venv/bin/python tests/packaging/chartlib.py [-f values.yaml] [--name RELEASE] [--namespace NS]

prints the CRDs and every rendered manifest as one YAML stream.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml
from kubernetes_validate import utils as kube_validate

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "charts" / "ampx"
RELEASE = "ampx"
NAMESPACE = "ampx-system"

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Scenario:
    """One way of installing the chart: the values given to `helm install`."""

    values: dict[str, Any]
    # the namespaces tasks run in (where workers get an identity)
    task_namespaces: tuple[str, ...]


# A values set touching every optional knob, to render every branch of the templates.
CONFIGURED = {
    "fullnameOverride": "acme-ampx",
    "image": {
        "operator": {"repository": "registry.example.com:5000/ampx/operator", "tag": "v9.9.9",
                     "pullPolicy": "Always"},
        "worker": {"repository": "registry.example.com:5000/ampx/worker", "tag": "v9.9.9",
                   "pullPolicy": "Always"},
    },
    "imagePullSecrets": [{"name": "registry-creds"}],
    "github": {"apiUrl": "https://ghe.example.com/api/v3", "url": "https://ghe.example.com",
               "appId": 1234567, "appSecret": {"name": "gh-app", "key": "key.pem"}},
    "amp": {"secret": {"name": "amp-token", "key": "token"}, "url": "https://amp.example.com/"},
    "ci": {"pollSeconds": 10, "pollMaxSeconds": 120},
    "tasks": {"branchPrefix": "acme-bots/", "allowedRepos": {"team-a": ["acme/*"], "*": []},
              "maxConcurrentAttempts": 20, "maxConcurrentAttemptsPerRepo": 5},
    "persistence": {"enabled": True, "storageClassName": "fast", "size": "5Gi",
                    "accessModes": ["ReadWriteOncePod"]},
    "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
    "worker": {"resources": {"requests": {"cpu": 1, "memory": "2Gi"}, "limits": {"cpu": 2}},
               "git": {"authorName": "Acme Bot", "authorEmail": "bot@acme.example"},
               "agentCommand": "claude -p --output-format stream-json --verbose"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ampx",
                     "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}},
    "podAnnotations": {"example.com/team": "platform"},
    "podLabels": {"team": "platform"},
    "webhooks": {"enabled": True, "port": 9443, "secretName": "gh-webhook", "secretKey": "hmac",
                 "service": {"type": "ClusterIP", "port": 443,
                             "annotations": {"example.com/owner": "platform"}},
                 "ingress": {"enabled": True, "className": "nginx", "host": "ampx.example.com",
                             "path": "/github", "annotations": {"example.com/tls": "acme"},
                             "tls": [{"secretName": "ampx-webhooks-tls",
                                      "hosts": ["ampx.example.com"]}]}},
}

SCENARIOS: dict[str, Scenario] = {
    "default": Scenario({}, (NAMESPACE,)),
    "cluster-wide": Scenario({"clusterWide": True}, (NAMESPACE,)),
    "namespaces": Scenario({"watchNamespaces": ["a", "b"]}, ("a", "b")),
    "cluster-wide-namespaces": Scenario({"clusterWide": True, "watchNamespaces": ["a", "b"]},
                                        ("a", "b")),
    "configured": Scenario(CONFIGURED, (NAMESPACE,)),
    "ephemeral-history": Scenario({"persistence": {"enabled": False}}, (NAMESPACE,)),
    "existing-claim": Scenario({"persistence": {"enabled": True, "existingClaim": "old-history"}},
                               (NAMESPACE,)),
}


@functools.cache
def chart() -> helm.Chart:
    return helm.Chart.load(CHART_DIR)


def _render(values: dict[str, Any], name: str, namespace: str) -> dict[str, str]:
    return chart().render(values, name=name, namespace=namespace, is_install=True)


@functools.cache
def _render_cached(values_json: str, name: str, namespace: str) -> tuple[dict[str, str], ...]:
    out = _render(json.loads(values_json), name, namespace)
    docs: list[dict[str, str]] = []
    for path in sorted(out):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(out[path]) if d)
    return tuple(docs)


def render(values: dict[str, Any] | None = None, *, name: str = RELEASE,
           namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """The manifests `helm install` would apply (CRDs excluded), as fresh dicts."""
    docs = _render_cached(json.dumps(values or {}, sort_keys=True), name, namespace)
    return json.loads(json.dumps(docs))


def notes(values: dict[str, Any] | None = None, *, name: str = RELEASE,
          namespace: str = NAMESPACE) -> str:
    out = _render(values or {}, name, namespace)
    return next(text for path, text in out.items() if path.endswith("templates/NOTES.txt"))


def crds() -> list[dict[str, Any]]:
    return [yaml.safe_load(c["data"]) for c in chart().crds]


def lint(values: dict[str, Any] | None = None, *, kube_version: str | None = None,
         namespace: str = NAMESPACE) -> dict[str, Any]:
    return helm.lint(CHART_DIR, values, strict=True, namespace=namespace,
                     kube_version=kube_version)


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None,
         namespace: str | None = None) -> list[dict[str, Any]]:
    return [
        d for d in docs
        if d["kind"] == kind
        and (name is None or d["metadata"]["name"] == name)
        and (namespace is None or d["metadata"].get("namespace") == namespace)
    ]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None,
        namespace: str | None = None) -> dict[str, Any]:
    found = find(docs, kind, name, namespace)
    assert len(found) == 1, f"expected one {kind} {name or ''} in {namespace}, got {len(found)}"
    return found[0]


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = one(docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, str]:
    names = [e["name"] for e in container.get("env", [])]
    assert len(names) == len(set(names)), f"duplicate env vars: {names}"
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def chart_yaml() -> dict[str, Any]:
    return yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())


def kube_versions() -> list[str]:
    """The Kubernetes minor versions we support that kubernetes-validate has schemas for:
    from Chart.yaml's kubeVersion lower bound up to the newest schema shipped."""
    low = re.match(r"^>=\s*(\d+)\.(\d+)", chart_yaml()["kubeVersion"])
    assert low, "Chart.yaml kubeVersion must be a lower bound like >=1.29.0-0"
    floor = (int(low.group(1)), int(low.group(2)))
    shipped = {tuple(int(x) for x in v.split(".")[:2]) for v in kube_validate.all_versions()}
    return [f"{a}.{b}" for a, b in sorted(shipped) if (a, b) >= floor]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="helm template, through helm-python-sdk")
    parser.add_argument("-f", "--values", type=Path, help="a values file, as for helm -f")
    parser.add_argument("--name", default=RELEASE)
    parser.add_argument("--namespace", default=NAMESPACE)
    args = parser.parse_args(argv)
    values = yaml.safe_load(args.values.read_text()) if args.values else {}
    out = _render(values or {}, args.name, args.namespace)
    parts = [c["data"].strip() for c in chart().crds]
    parts += [f"# Source: {p}\n{out[p].strip()}" for p in sorted(out) if not p.endswith(".txt")]
    sys.stdout.write("---\n".join(p + "\n" for p in parts if p))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
