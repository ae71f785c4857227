"""The chart agrees with the code: RBAC, environment variables, CRD, version, the operator pod.

The code declares what it needs in one place each (`ampx.kube.rbac`, `ampx.settings.ENV_VARS`,
`crds/amptask.yaml`, `ampx.__version__`); these tests hold the rendered chart to it.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes_validate import utils as kube_validate

import ampx
import chartlib
import sync_chart
from ampx.kube import rbac
from ampx.settings import ENV_VARS
from chartlib import NAMESPACE, SCENARIOS

# --- RBAC --------------------------------------------------------------------------------------


def test_generated_chart_files_are_in_sync():
    stale = [str(p.relative_to(chartlib.ROOT)) for p, data in sync_chart.expected().items()
             if not p.exists() or p.read_bytes() != data]
    assert stale == [], f"run `python tests/packaging/sync_chart.py`: stale {stale}"


def test_declared_rbac_is_what_the_code_calls():
    """ampx.kube.api marks every API call with the permission it needs and who makes it; the
    declared lists (which the chart renders) must be exactly those calls."""
    api = pytest.importorskip("ampx.kube.api")
    assert api.permissions_used("operator") == rbac.OPERATOR
    assert api.permissions_used("worker") == rbac.WORKER


def _rules_without_wildcards(role):
    for rule in role["rules"]:
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert "*" not in rule.get(field, []), f"wildcard in {role['metadata']['name']}: {rule}"
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule
    return role["rules"]


def _permissions(rules, agent_secret):
    """PolicyRules back to the set of permissions they grant (the agent-key Secret's name in
    resourceNames back to its placeholder)."""
    return {
        rbac.Permission(g, r, v, tuple(rbac.AGENT_KEY_SECRET if n == agent_secret else n
                                       for n in rule.get("resourceNames", [])))
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


def _declared_rules(agent_secret):
    return yaml.safe_load(yaml.safe_dump(rbac.as_rules(rbac.OPERATOR)).replace(
        rbac.AGENT_KEY_SECRET, agent_secret))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_rbac_grants_exactly_what_the_code_calls(scenario):
    docs = chartlib.render(SCENARIOS[scenario].values)
    prefix = SCENARIOS[scenario].values.get("fullnameOverride", "ampx")
    operator, worker = f"{prefix}-operator", f"{prefix}-worker"
    roles = chartlib.find(docs, "Role") + chartlib.find(docs, "ClusterRole")
    agent_secret = chartlib.chart().merge_values(SCENARIOS[scenario].values)["amp"]["secret"]["name"]
    assert roles
    for role in roles:
        name = role["metadata"]["name"]
        assert name.endswith("-operator"), f"only the operator has rules: {name}"
        assert _rules_without_wildcards(role) == _declared_rules(agent_secret), name
        assert _permissions(role["rules"], agent_secret) == rbac.OPERATOR, name
        # the operator may read exactly one Secret: the agent's key, to mask it
        reads = [r for r in role["rules"] if "secrets" in r["resources"] and "get" in r["verbs"]]
        assert [r["resourceNames"] for r in reads] == [[agent_secret]], name

    cluster_wide = SCENARIOS[scenario].values.get("clusterWide", False)
    cluster = f"{prefix}-{NAMESPACE}"
    if cluster_wide:
        assert chartlib.find(docs, "Role") == []
        binding = chartlib.one(docs, "ClusterRoleBinding", f"{cluster}-operator")
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                      "kind": "ClusterRole", "name": f"{cluster}-operator"}
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": operator, "namespace": NAMESPACE}]
        assert len(chartlib.find(docs, "ClusterRoleBinding")) == 1
    else:
        assert chartlib.find(docs, "ClusterRole") == []
        assert chartlib.find(docs, "ClusterRoleBinding") == []

    for ns in SCENARIOS[scenario].task_namespaces:
        # the worker: its own ServiceAccount in each task namespace, bound to nothing
        chartlib.one(docs, "ServiceAccount", worker, ns)
        assert not [b for b in chartlib.find(docs, "RoleBinding") + chartlib.find(docs, "ClusterRoleBinding")
                    if any(s["name"] == worker for s in b["subjects"])]
        if not cluster_wide:
            chartlib.one(docs, "Role", operator, ns)
            op_binding = chartlib.one(docs, "RoleBinding", operator, ns)
            assert op_binding["roleRef"]["name"] == operator
            assert op_binding["subjects"] == [
                {"kind": "ServiceAccount", "name": operator, "namespace": NAMESPACE}]

    # every binding points at a role the chart defines, every subject at an account it creates
    accounts = {(d["metadata"]["namespace"], d["metadata"]["name"])
                for d in chartlib.find(docs, "ServiceAccount")}
    for binding in chartlib.find(docs, "RoleBinding") + chartlib.find(docs, "ClusterRoleBinding"):
        ref = binding["roleRef"]
        ns = binding["metadata"].get("namespace") if ref["kind"] == "Role" else None
        chartlib.one(docs, ref["kind"], ref["name"], ns)
        for subject in binding["subjects"]:
            assert (subject["namespace"], subject["name"]) in accounts


def test_operator_and_worker_use_their_own_accounts():
    docs = chartlib.render({})
    pod = chartlib.one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ampx-operator"
    env = chartlib.env_of(chartlib.operator_container(docs))
    assert env["AMPX_WORKER_SERVICE_ACCOUNT"] == "ampx-worker"


# --- environment variables ---------------------------------------------------------------------

# Variables the operator may read that the chart deliberately leaves unset.
NOT_SET_BY_CHART = {
    "AMPX_GITHUB_APP_PRIVATE_KEY": "the key is mounted as a file from its Secret "
                                   "(AMPX_GITHUB_APP_PRIVATE_KEY_FILE), never put in the pod spec",
    "GITHUB_TOKEN": "personal-token fallback of the local runtime; a cluster uses the GitHub App",
    "AMPX_RESYNC_SECONDS": "the safety pass's period: a tuning knob, 60 s by default",
    "AMPX_LEASE_NAMESPACE": "the Lease lives where the operator's Role grants it (first watched "
                            "namespace, or the operator's own cluster-wide)",
    "AMPX_WEBHOOK_SECRET": "the webhook secret is mounted as a file from its Secret "
                           "(AMPX_WEBHOOK_SECRET_FILE), never put in the pod spec",
}
# Set only when the value is given (empty means unset to the code anyway).
# from github.appId, amp.url, worker.git.*, worker.agentCommand, webhooks.enabled
SET_WHEN_GIVEN = {"AMPX_GITHUB_APP_ID", "AMP_URL", "AMPX_GIT_AUTHOR_NAME", "AMPX_GIT_AUTHOR_EMAIL",
                  "AMPX_AGENT_COMMAND", "AMPX_ALLOWED_REPOS", "AMPX_MAX_CONCURRENT_ATTEMPTS",
                  "AMPX_MAX_CONCURRENT_ATTEMPTS_PER_REPO", "AMPX_WEBHOOK_LISTEN",
                  "AMPX_WEBHOOK_SECRET_FILE"}
# Read by the worker, set on the operator, which hands them on to the worker Jobs
# (checked against the Jobs the operator builds in test_operator_builds_jobs_the_chart_can_run).
HANDED_TO_WORKERS = {"AMP_URL", "AMPX_GIT_AUTHOR_NAME", "AMPX_GIT_AUTHOR_EMAIL",
                     "AMPX_AGENT_COMMAND"}

OPERATOR_READERS = {"operator", "all"}


def _with_app_id(app_id):
    return {"github": {"appId": app_id}}


def _env(values):
    return chartlib.env_of(chartlib.operator_container(chartlib.render(values)))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_variable_the_chart_sets_is_read_by_the_code(scenario):
    for name in _env(SCENARIOS[scenario].values):
        assert name in ENV_VARS, f"the chart sets {name}, which ampx never reads"
        reader = ENV_VARS[name][0]
        assert reader in OPERATOR_READERS or name in HANDED_TO_WORKERS, (
            f"the chart sets {name} on the operator; only the {reader} reads it")


def test_every_variable_the_operator_reads_is_settable_from_the_chart():
    default = _env({})
    configured = _env(chartlib.CONFIGURED)
    for name, (reader, _) in ENV_VARS.items():
        if reader not in OPERATOR_READERS:
            continue
        if name in NOT_SET_BY_CHART:
            assert name not in configured
        elif name in SET_WHEN_GIVEN:
            assert name not in default and name in configured
        else:
            assert name in default, f"the operator reads {name}; the chart never sets it"
    # the allowlists name real variables
    for name in {*NOT_SET_BY_CHART, *SET_WHEN_GIVEN, *HANDED_TO_WORKERS}:
        assert name in ENV_VARS, name
    for name in NOT_SET_BY_CHART:
        assert ENV_VARS[name][0] in OPERATOR_READERS, name


def test_operator_builds_jobs_the_chart_can_run(monkeypatch):
    """The operator's own Job builder, fed the chart's environment, makes Jobs that use the
    worker ServiceAccount, image and Secrets the chart set up, and that Kubernetes accepts."""
    jobs = pytest.importorskip("ampx.kube.jobs")
    for scenario in ("default", "configured", "namespaces"):
        values = SCENARIOS[scenario].values
        docs = chartlib.render(values)
        env = chartlib.env_of(chartlib.operator_container(docs))
        merged = chartlib.chart().merge_values(values)
        for name in ENV_VARS:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = jobs.WorkerSettings.from_env()
        for ns in SCENARIOS[scenario].task_namespaces:
            task = jobs.to_task({
                "apiVersion": "ampx.dev/v1alpha1", "kind": "AmpTask",
                "metadata": {"name": "01j9zyxwvtsrqpnmkjhgfedcba", "namespace": ns, "uid": "u1"},
                "spec": {"repo": "https://github.com/acme/api", "prompt": "fix it"},
            })
            job = jobs.build_job(task, 1, settings)
            for version in chartlib.kube_versions()[:: max(1, len(chartlib.kube_versions()) - 1)]:
                kube_validate.validate(job, version, strict=True)
            pod = job["spec"]["template"]["spec"]
            containers = {c["name"]: c for c in pod["initContainers"] + pod["containers"]}
            assert set(containers) == {"prepare", "agent", "publish"}
            account = pod["serviceAccountName"]
            sa = chartlib.one(docs, "ServiceAccount", account, ns)  # exists where the Job runs
            # a private registry's pull secrets reach the Jobs through their ServiceAccount
            assert sa.get("imagePullSecrets", []) == merged["imagePullSecrets"]
            assert pod["automountServiceAccountToken"] is False
            for name, container in containers.items():
                assert container["image"] == env["AMPX_WORKER_IMAGE"]
                assert container["imagePullPolicy"] == env["AMPX_WORKER_IMAGE_PULL_POLICY"]
                assert container["resources"] == merged["worker"][
                    "resources" if name == "agent" else "stepResources"]
            refs = {(n, e["name"]): e["valueFrom"]["secretKeyRef"]
                    for n, c in containers.items() for e in c.get("env", []) if "valueFrom" in e}
            # the agent's key, by reference, in the agent only; the App key in no worker
            assert refs == {("agent", "AMP_API_KEY"): merged["amp"]["secret"]}
            plain = {e["name"]: e["value"] for e in containers["agent"]["env"] if "value" in e}
            if "AMP_URL" in env:
                assert plain["AMP_URL"] == env["AMP_URL"]
            # the other settings reach the steps in attempt.json (in the per-attempt Secret)
            if scenario == "configured":
                record = dict(task.model_dump(mode="json", by_alias=True), status={
                    "phase": "queued", "attempts": 1, "history": [{"number": 1, "prompt": "fix it"}]})
                record["spec"]["branch"] = "amp/fix-it-01j9zy"
                spec = json.loads(jobs.attempt_file(jobs.to_task(record), 1, settings))
                assert spec["authorName"] == env["AMPX_GIT_AUTHOR_NAME"]
                assert spec["agent"] == env["AMPX_AGENT_COMMAND"]
                assert spec["gitUrl"] == env["AMPX_GITHUB_URL"]


def test_variables_carry_the_values():
    env = _env(chartlib.CONFIGURED)
    v = chartlib.CONFIGURED
    assert env["AMPX_WORKER_IMAGE"] == "registry.example.com:5000/ampx/worker:v9.9.9"
    assert env["AMPX_WORKER_IMAGE_PULL_POLICY"] == "Always"
    assert env["AMPX_WORKER_SERVICE_ACCOUNT"] == "acme-ampx-worker"
    # Helm merges maps with the defaults: limits keep memory: 4Gi beside the given cpu: 2
    merged = chartlib.chart().merge_values(v)
    assert json.loads(env["AMPX_WORKER_RESOURCES"]) == merged["worker"]["resources"]
    assert merged["worker"]["resources"]["limits"] == {"cpu": 2, "memory": "4Gi",
                                                       "ephemeral-storage": "8Gi"}
    assert json.loads(env["AMPX_WORKER_STEP_RESOURCES"]) == merged["worker"]["stepResources"]
    assert "AMPX_GITHUB_APP_SECRET" not in env  # the App key is the operator's alone
    assert env["AMPX_AMP_SECRET"] == "amp-token"
    assert env["AMPX_AMP_SECRET_KEY"] == "token"
    assert env["AMPX_GITHUB_API_URL"] == "https://ghe.example.com/api/v3"
    assert env["AMPX_GITHUB_URL"] == "https://ghe.example.com"
    assert env["AMPX_GITHUB_APP_ID"] == "1234567"  # a 7-digit number, not 1.234567e+06
    assert env["AMPX_GIT_AUTHOR_NAME"] == "Acme Bot"
    assert env["AMPX_GIT_AUTHOR_EMAIL"] == "bot@acme.example"
    assert env["AMPX_AGENT_COMMAND"] == "claude -p --output-format stream-json --verbose"
    assert _env(_with_app_id("7654321"))["AMPX_GITHUB_APP_ID"] == "7654321"
    assert env["AMPX_CI_POLL_SECONDS"] == "10"
    assert env["AMPX_CI_POLL_MAX_SECONDS"] == "120"
    assert env["AMP_URL"] == "https://amp.example.com/"

    default = _env({})
    version = chartlib.chart_yaml()["appVersion"]
    assert default["AMPX_WORKER_IMAGE"] == f"ampx-worker:{version}"
    assert json.loads(default["AMPX_WORKER_RESOURCES"]) == chartlib.chart().values["worker"]["resources"]
    assert default["AMPX_GITHUB_API_URL"] == "https://api.github.com"
    assert default["AMPX_AMP_SECRET_KEY"] == "api-key"


def test_file_paths_in_variables_are_mounted():
    docs = chartlib.render({})
    container = chartlib.operator_container(docs)
    env = chartlib.env_of(container)
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in chartlib.one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}

    key_file = env["AMPX_GITHUB_APP_PRIVATE_KEY_FILE"]
    assert key_file == "/var/run/secrets/ampx/github-app/private-key.pem"
    secret = volumes["github-app"]["secret"]
    assert secret["secretName"] == "ampx-github-app"
    assert secret["items"] == [{"key": "private-key.pem", "path": "private-key.pem"}]
    assert mounts["github-app"]["readOnly"] is True
    assert key_file == f"{mounts['github-app']['mountPath']}/{secret['items'][0]['path']}"

    assert env["AMPX_HISTORY_DB"] == "/var/lib/ampx/history.db"
    assert mounts["history"]["mountPath"] == "/var/lib/ampx"
    assert volumes["history"] == {"name": "history",
                                  "persistentVolumeClaim": {"claimName": "ampx-history"}}


# --- CRD and version ---------------------------------------------------------------------------


def test_chart_crd_is_a_byte_copy_of_crds_amptask_yaml():
    source = (chartlib.ROOT / "crds" / "amptask.yaml").read_bytes()
    copy = (chartlib.CHART_DIR / "crds" / "amptask.yaml").read_bytes()
    assert copy == source, "run `python tests/packaging/sync_chart.py`"
    assert [c["data"].encode() for c in chartlib.chart().crds] == [source]
    assert sorted(p.name for p in (chartlib.CHART_DIR / "crds").iterdir()) == ["amptask.yaml"]


def test_app_version_is_the_package_version():
    assert chartlib.chart_yaml()["appVersion"] == ampx.__version__
    assert chartlib.chart().metadata["appVersion"] == ampx.__version__
    image = chartlib.operator_container(chartlib.render({}))["image"]
    assert image == f"ampx-operator:{ampx.__version__}"


def test_files_rbac_yaml_is_the_declared_list():
    files = yaml.safe_load((chartlib.CHART_DIR / "files" / "rbac.yaml").read_text())
    assert files == {"operator": rbac.as_rules(rbac.OPERATOR), "worker": rbac.as_rules(rbac.WORKER)}


# --- the operator Deployment -------------------------------------------------------------------

RESTRICTED_CONTAINER = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "privileged": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def test_operator_pod_is_locked_down():
    docs = chartlib.render({})
    deployment = chartlib.one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = chartlib.operator_container(docs)
    assert container["securityContext"] == RESTRICTED_CONTAINER
    assert container["resources"] == chartlib.chart().values["resources"]
    # a read-only root filesystem needs a writable /tmp for Python and kopf
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])
    assert {m["mountPath"] for m in container["volumeMounts"]} == {
        "/tmp", "/var/lib/ampx", "/var/run/secrets/ampx/github-app"}


def test_liveness_probe_is_kopfs_endpoint():
    container = chartlib.operator_container(chartlib.render({}))
    args = container["args"]
    assert container["command"] == ["ampx"]
    assert args[0] == "operator"
    url = urlsplit(args[args.index("--liveness") + 1])
    probe = container["livenessProbe"]["httpGet"]
    port = {p["name"]: p["containerPort"] for p in container["ports"]}[probe["port"]]
    assert (url.scheme, url.hostname, url.port, url.path) == ("http", "0.0.0.0", port, probe["path"])
    assert (port, probe["path"]) == (8080, "/healthz")


@pytest.mark.parametrize("values, expected", [
    ({}, ["-n", NAMESPACE]),
    ({"watchNamespaces": ["a", "b"]}, ["-n", "a", "-n", "b"]),
    ({"clusterWide": True}, ["--all-namespaces"]),
    ({"clusterWide": True, "watchNamespaces": ["a", "b"]}, ["--all-namespaces"]),
])
def test_operator_watches_the_right_namespaces(values, expected):
    args = chartlib.operator_container(chartlib.render(values))["args"]
    assert args == ["operator", "--liveness", "http://0.0.0.0:8080/healthz", *expected]


def test_scheduling_and_pod_metadata_pass_through():
    docs = chartlib.render(chartlib.CONFIGURED)
    template = chartlib.one(docs, "Deployment")["spec"]["template"]
    pod = template["spec"]
    v = chartlib.CONFIGURED
    assert pod["nodeSelector"] == v["nodeSelector"]
    assert pod["tolerations"] == v["tolerations"]
    assert pod["affinity"] == v["affinity"]
    assert pod["imagePullSecrets"] == v["imagePullSecrets"]
    assert template["metadata"]["annotations"] == v["podAnnotations"]
    assert template["metadata"]["labels"]["team"] == "platform"
    container = chartlib.operator_container(docs)
    assert container["image"] == "registry.example.com:5000/ampx/operator:v9.9.9"
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"] == chartlib.chart().merge_values(v)["resources"]
    default_pod = chartlib.one(chartlib.render({}), "Deployment")["spec"]["template"]["spec"]
    assert not {"nodeSelector", "tolerations", "affinity", "imagePullSecrets"} & set(default_pod)


def test_history_volume():
    claim = chartlib.one(chartlib.render({}), "PersistentVolumeClaim", "ampx-history")
    assert claim["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"],
                             "resources": {"requests": {"storage": "1Gi"}}}  # default class
    configured = chartlib.one(chartlib.render(chartlib.CONFIGURED), "PersistentVolumeClaim")
    assert configured["spec"]["storageClassName"] == "fast"
    assert configured["spec"]["accessModes"] == ["ReadWriteOncePod"]
    no_class = chartlib.render({"persistence": {"storageClassName": ""}})
    assert chartlib.one(no_class, "PersistentVolumeClaim")["spec"]["storageClassName"] == ""

    def history(values):
        docs = chartlib.render(values)
        volumes = chartlib.one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
        return chartlib.find(docs, "PersistentVolumeClaim"), next(
            v for v in volumes if v["name"] == "history")

    claims, volume = history({"persistence": {"enabled": False}})
    assert claims == [] and volume == {"name": "history", "emptyDir": {}}
    claims, volume = history({"persistence": {"existingClaim": "old-history"}})
    assert claims == [] and volume["persistentVolumeClaim"] == {"claimName": "old-history"}
