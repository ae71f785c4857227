"""The Helm chart lints, renders and yields manifests the Kubernetes API would accept.

Helm runs as a library (helm-python-sdk, Helm 4); manifests are checked against the Kubernetes
OpenAPI schemas (kubernetes-validate, strict: unknown fields fail) for every Kubernetes minor
version from Chart.yaml's kubeVersion to the newest kubernetes-validate ships.
"""

from __future__ import annotations

import copy
import json

import helm_python as helm
import pytest
from kubernetes_validate import utils as kube_validate

import chartlib
from chartlib import DNS_LABEL, DNS_SUBDOMAIN, LABEL_VALUE, NAMESPACE, SCENARIOS


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_lint_is_clean(scenario):
    report = chartlib.lint(SCENARIOS[scenario].values)
    assert report["errors"] == []
    # severity 2 = warning, 3 = error; 1 (info) is only "icon is recommended"
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("version", chartlib.kube_versions())
def test_lint_for_each_kubernetes_version(version):
    for scenario in ("default", "cluster-wide"):
        report = chartlib.lint(SCENARIOS[scenario].values, kube_version=f"v{version}.0")
        assert report["errors"] == []
        assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_supported_kubernetes_versions():
    versions = chartlib.kube_versions()
    assert versions[0] == "1.29"
    assert len(versions) >= 5, versions


@pytest.mark.parametrize("version", chartlib.kube_versions())
def test_manifests_valid_for_kubernetes(version):
    manifests = chartlib.crds()
    for scenario in SCENARIOS.values():
        manifests += chartlib.render(scenario.values)
    manifests += chartlib.render({}, name="a" * 53, namespace="n" * 63)  # longest names
    unique = {json.dumps(m, sort_keys=True): m for m in manifests}
    for manifest in unique.values():
        where = f"{manifest['kind']}/{manifest['metadata']['name']}"
        try:
            kube_validate.validate(manifest, version, strict=True)
        except kube_validate.ValidationError as e:
            pytest.fail(f"{where} invalid for Kubernetes {version}: {e.message} at {list(e.path)}")


def test_names_and_labels_are_valid():
    docs = [d for s in SCENARIOS.values() for d in chartlib.render(s.values)]
    docs += chartlib.render({}, name="a" * 53, namespace="n" * 63)
    for doc in docs:
        meta = doc["metadata"]
        assert DNS_SUBDOMAIN.match(meta["name"]) and len(meta["name"]) <= 253, meta["name"]
        if doc["kind"] in ("ServiceAccount", "Deployment", "PersistentVolumeClaim"):
            assert DNS_LABEL.match(meta["name"]) and len(meta["name"]) <= 63, meta["name"]
        for key, value in meta.get("labels", {}).items():
            assert len(value) <= 63 and LABEL_VALUE.match(value), (key, value)


def test_objects_per_install_mode():
    def kinds(values):
        return sorted(
            (d["kind"], d["metadata"].get("namespace", "-"), d["metadata"]["name"])
            for d in chartlib.render(values)
        )

    ns = NAMESPACE
    assert kinds({}) == sorted([
        ("Deployment", ns, "ampx-operator"),
        ("PersistentVolumeClaim", ns, "ampx-history"),
        ("ServiceAccount", ns, "ampx-operator"),
        ("ServiceAccount", ns, "ampx-worker"),
        ("Role", ns, "ampx-operator"),
        ("RoleBinding", ns, "ampx-operator"),
    ])
    assert kinds({"clusterWide": True}) == sorted([
        ("Deployment", ns, "ampx-operator"),
        ("PersistentVolumeClaim", ns, "ampx-history"),
        ("ServiceAccount", ns, "ampx-operator"),
        ("ServiceAccount", ns, "ampx-worker"),
        ("ClusterRole", "-", f"ampx-{ns}-operator"),
        ("ClusterRoleBinding", "-", f"ampx-{ns}-operator"),
    ])
    # the worker has no Role at all; the optional NetworkPolicy, one per task namespace
    assert ("NetworkPolicy", ns, "ampx-worker") in kinds({"networkPolicy": {"enabled": True}})
    per_ns = [
        (kind, n, name)
        for n in ("a", "b")
        for kind, name in [("ServiceAccount", "ampx-worker"), ("Role", "ampx-operator"),
                           ("RoleBinding", "ampx-operator")]
    ]
    assert kinds({"watchNamespaces": ["a", "b"]}) == sorted([
        ("Deployment", ns, "ampx-operator"),
        ("PersistentVolumeClaim", ns, "ampx-history"),
        ("ServiceAccount", ns, "ampx-operator"),
        *per_ns,
    ])


def test_crds_ship_in_the_crds_folder_not_as_templates():
    assert [c["metadata"]["name"] for c in chartlib.crds()] == ["amptasks.ampx.dev"]
    for scenario in SCENARIOS.values():
        assert chartlib.find(chartlib.render(scenario.values), "CustomResourceDefinition") == []


# --- values.schema.json: bad values fail at install ----------------------------------------


def _with(path: str, value):
    """Values with one key set: _with("image.operator.tag", 1.0)."""
    values: dict = {}
    node = values
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return values


BAD_VALUES = {
    "replicas: one operator by design (no kopf peering, one history writer)": {"replicaCount": 2},
    "unknown top-level key": {"serviceAccount": {"create": False}},
    "unknown nested key": _with("image.operator.digest", "sha256:abc"),
    "numeric image tag (--set tag=1.0)": _with("image.operator.tag", 1.0),
    "integer image tag": _with("image.worker.tag", 2),
    "tag inside the repository": _with("image.worker.repository", "ampx-worker:1.0"),
    "bad pull policy": _with("image.worker.pullPolicy", "Sometimes"),
    "clusterWide not a boolean": {"clusterWide": "yes"},
    "namespace not a DNS label": {"watchNamespaces": ["Bad_NS"]},
    "namespace listed twice": {"watchNamespaces": ["a", "a"]},
    "watchNamespaces not a list": {"watchNamespaces": "a"},
    "App id not a number": _with("github.appId", "my-app"),
    "App secret without a name": _with("github.appSecret.name", ""),
    "Amp secret key with a slash": _with("amp.secret.key", "a/b"),
    "API URL without a scheme": _with("github.apiUrl", "api.github.com"),
    "zero poll interval": _with("ci.pollSeconds", 0),
    "storage size not a quantity": _with("persistence.size", "lots"),
    "bad access mode": _with("persistence.accessModes", ["ReadWriteAlways"]),
    "cpu not a quantity": _with("resources.requests.cpu", "a lot"),
    "worker resources with an unknown section": _with("worker.resources.maximum", {}),
    "toleration with a bad operator": {"tolerations": [{"key": "k", "operator": "Is"}]},
    "node selector value not a string": {"nodeSelector": {"gpu": True}},
    "fullnameOverride not a DNS label": {"fullnameOverride": "Ampx"},
    "worker commit email not an address": _with("worker.git.authorEmail", "bot"),
    "worker agent command not a string": _with("worker.agentCommand", ["claude", "-p"]),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_fail_at_install(case):
    values = BAD_VALUES[case]
    with pytest.raises(helm.HelmValuesError):
        chartlib.chart().validate_schema(chartlib.chart().merge_values(copy.deepcopy(values)))
    # `helm install` / `helm template` validate the same way before rendering
    with pytest.raises(helm.HelmValuesError, match="schema"):
        chartlib.chart().render(copy.deepcopy(values), name="ampx", namespace=NAMESPACE)


GOOD_VALUES = {
    "App id as a number (--set github.appId=123)": _with("github.appId", 123),
    "App id as a string": _with("github.appId", "123"),
    "a 7-digit App id as a number": _with("github.appId", 1234567),
    "worker commit identity": _with("worker.git", {"authorName": "Acme Bot",
                                                   "authorEmail": "bot@acme.example"}),
    "semver tag": _with("image.operator.tag", "v1.2.3"),
    "registry with a port": _with("image.worker.repository", "localhost:5000/ampx/worker"),
    "numeric quantity": _with("worker.resources.limits.cpu", 2),
    "fractional quantity": _with("resources.requests.cpu", "0.5"),
    "no storage class provisioning": _with("persistence.storageClassName", ""),
    "Helm global values": {"global": {"imageRegistry": "x"}},
}


@pytest.mark.parametrize("case", sorted(GOOD_VALUES))
def test_good_values_pass(case):
    chartlib.chart().validate_schema(chartlib.chart().merge_values(copy.deepcopy(GOOD_VALUES[case])))
    assert chartlib.render(GOOD_VALUES[case])


def test_poll_interval_bounds_are_ordered():
    with pytest.raises(helm.HelmRenderError, match="pollMaxSeconds"):
        chartlib.chart().render({"ci": {"pollSeconds": 30, "pollMaxSeconds": 10}},
                                name="ampx", namespace=NAMESPACE)


def test_defaults_satisfy_the_schema():
    chartlib.chart().validate_schema(chartlib.chart().values)


def test_notes_show_the_first_task():
    text = chartlib.notes({})
    assert "ampx start --repo" in text
    assert "rollout status deployment/ampx-operator" in text
    assert "github.appId is not set" in text
    assert "github.appId is not set" not in chartlib.notes(_with("github.appId", 42))
    multi = chartlib.notes({"watchNamespaces": ["a", "b"]})
    assert "kubectl -n b create secret generic ampx-amp" in multi
    # the App key goes into the operator's namespace only (it is mounted into the operator)
    assert f"kubectl -n {NAMESPACE} create secret generic ampx-github-app" in multi
    assert "kubectl -n a create secret generic ampx-github-app" not in multi
    assert "kubectl -n b create secret generic ampx-github-app" not in multi
    assert "every namespace" in chartlib.notes({"clusterWide": True})
