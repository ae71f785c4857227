"""The chart's optional GitHub webhooks: off by default; on, the operator listens on the port
the Service targets, reads the secret from a mounted Secret file (never from values or the
pod spec), and an optional Ingress routes GitHub to it."""

from __future__ import annotations

import json
import os
import posixpath
import subprocess
import sys

import pytest
from kubernetes_validate import utils as kube_validate

import chartlib
from ampx.webhooks import parse_listen
from pss import violations

ON = {"webhooks": {"enabled": True}}
INGRESS = {"webhooks": {"enabled": True, "ingress": {
    "enabled": True, "className": "nginx", "host": "ampx.example.com", "path": "/",
    "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "2m"},
    "tls": [{"secretName": "ampx-webhooks-tls", "hosts": ["ampx.example.com"]}]}}}
HA_ON = {"replicas": 2, "persistence": {"accessModes": ["ReadWriteMany"]}, **ON}


def _pod(docs):
    return chartlib.one(docs, "Deployment")["spec"]["template"]["spec"]


def test_off_by_default():
    docs = chartlib.render({})
    env = chartlib.env_of(chartlib.operator_container(docs))
    assert not [n for n in env if n.startswith("AMPX_WEBHOOK")]
    assert chartlib.find(docs, "Service") == [] and chartlib.find(docs, "Ingress") == []
    assert [p["name"] for p in chartlib.operator_container(docs)["ports"]] == ["health"]
    assert "webhook-secret" not in [v["name"] for v in _pod(docs)["volumes"]]


@pytest.mark.parametrize("port", [8443, 9443])
def test_on_the_operator_listens_where_the_service_sends(port):
    docs = chartlib.render({"webhooks": {"enabled": True, "port": port}})
    container = chartlib.operator_container(docs)
    env = chartlib.env_of(container)
    # what `ampx operator` parses at startup (ampx.webhooks.from_env)
    assert parse_listen(env["AMPX_WEBHOOK_LISTEN"]) == ("0.0.0.0", port)
    (named,) = [p for p in container["ports"] if p["name"] == "webhooks"]
    assert named == {"name": "webhooks", "containerPort": port, "protocol": "TCP"}
    service = chartlib.one(docs, "Service", "ampx-webhooks", chartlib.NAMESPACE)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "webhooks", "port": 8443, "targetPort": "webhooks", "protocol": "TCP"}]
    pod_labels = chartlib.one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert chartlib.find(docs, "Ingress") == []


def test_the_secret_is_a_read_only_file_from_the_named_secret():
    docs = chartlib.render({"webhooks": {"enabled": True, "secretName": "gh-hook",
                                         "secretKey": "hmac"}})
    container = chartlib.operator_container(docs)
    path = chartlib.env_of(container)["AMPX_WEBHOOK_SECRET_FILE"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "webhook-secret"]
    assert mount["readOnly"] is True
    (volume,) = [v for v in _pod(docs)["volumes"] if v["name"] == "webhook-secret"]
    secret = volume["secret"]
    assert secret["secretName"] == "gh-hook"
    (item,) = secret["items"]
    assert item["key"] == "hmac"
    assert posixpath.join(mount["mountPath"], item["path"]) == path
    assert secret["defaultMode"] & 0o007 == 0  # not world-readable


def test_the_secret_never_comes_from_values_or_reaches_the_manifests():
    # there is no value for the secret itself: the schema refuses one
    with pytest.raises(Exception, match="secret"):
        chartlib.render({"webhooks": {"enabled": True, "secret": "hunter2-webhook"}})
    for values in (ON, INGRESS, chartlib.CONFIGURED):
        docs = chartlib.render(values)
        assert chartlib.find(docs, "Secret") == []
        env = chartlib.env_of(chartlib.operator_container(docs))
        assert "AMPX_WEBHOOK_SECRET" not in env  # only the _FILE form


def test_the_ingress_routes_to_the_webhook_service():
    docs = chartlib.render(INGRESS)
    ingress = chartlib.one(docs, "Ingress", "ampx-webhooks", chartlib.NAMESPACE)
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"secretName": "ampx-webhooks-tls", "hosts": ["ampx.example.com"]}]
    assert ingress["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/proxy-body-size": "2m"}
    (rule,) = spec["rules"]
    assert rule["host"] == "ampx.example.com"
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/" and path["pathType"] == "Prefix"
    assert path["backend"] == {"service": {"name": "ampx-webhooks", "port": {"name": "webhooks"}}}
    service = chartlib.one(docs, "Service", "ampx-webhooks")
    assert [p["name"] for p in service["spec"]["ports"]] == ["webhooks"]


def test_an_ingress_without_host_or_class_is_still_valid():
    docs = chartlib.render({"webhooks": {"enabled": True, "ingress": {"enabled": True}}})
    spec = chartlib.one(docs, "Ingress")["spec"]
    assert "ingressClassName" not in spec and "tls" not in spec
    assert "host" not in spec["rules"][0]


@pytest.mark.parametrize("values", [ON, INGRESS, HA_ON, chartlib.CONFIGURED])
def test_the_pod_stays_restricted(values):
    assert violations(_pod(chartlib.render(values)), "restricted") == []


@pytest.mark.parametrize("version", chartlib.kube_versions())
def test_manifests_valid_for_kubernetes(version):
    manifests = []
    for values in (ON, INGRESS, HA_ON, {"webhooks": {"enabled": True, "ingress": {"enabled": True}},
                                         "fullnameOverride": "a" * 40}):
        manifests += chartlib.render(values)
    unique = {json.dumps(m, sort_keys=True): m for m in manifests}
    for manifest in unique.values():
        try:
            kube_validate.validate(manifest, version, strict=True)
        except kube_validate.ValidationError as e:
            pytest.fail(f"{manifest['kind']}/{manifest['metadata']['name']} invalid for "
                        f"Kubernetes {version}: {e.message} at {list(e.path)}")


@pytest.mark.parametrize("bad", [
    {"port": 80},  # below 1024: the operator runs as non-root
    {"port": 8080},  # the liveness port
    {"port": "8443"},
    {"secretName": "Not_A_Name"},
    {"service": {"type": "ExternalName"}},
    {"ingress": {"enabled": True, "path": "github"}},
    {"ingress": {"enabled": True, "tls": [{"hosts": ["x"]}]}},
])
def test_bad_webhook_values_fail_at_install(bad):
    with pytest.raises(Exception):
        chartlib.render({"webhooks": {"enabled": True, **bad}})


def test_lint_is_clean_with_webhooks():
    report = chartlib.lint(INGRESS)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_several_replicas_all_back_the_service_without_a_readiness_gate():
    """Only the leader listens; a standby refuses the connection, and the CI poll is the safety
    net. The Service selects every operator pod (a readiness gate on the leader would keep the
    standby unready, stalling rollouts and the PodDisruptionBudget)."""
    docs = chartlib.render(HA_ON)
    container = chartlib.operator_container(docs)
    assert "readinessProbe" not in container
    assert chartlib.one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


@pytest.mark.parametrize("secret", [None, "", "  \n"])
def test_every_replica_refuses_a_missing_or_empty_secret_at_start(tmp_path, secret):
    """With the chart's environment (AMPX_WEBHOOK_LISTEN, no flag), `ampx operator` checks the
    mounted secret before it stands by or leads: one line, a non-zero exit, no API contact."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMPX_")}
    chart_env = chartlib.env_of(chartlib.operator_container(chartlib.render(ON)))
    env["AMPX_WEBHOOK_LISTEN"] = chart_env["AMPX_WEBHOOK_LISTEN"]
    secret_file = tmp_path / "secret"
    if secret is not None:
        secret_file.write_text(secret)
    env["AMPX_WEBHOOK_SECRET_FILE"] = str(secret_file)
    env["KUBECONFIG"] = str(tmp_path / "no-kubeconfig")  # would fail differently if reached
    done = subprocess.run([sys.executable, "-m", "ampx", "operator"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --webhook-listen: "), done.stderr
