"""The pod of one attempt: three steps that share no credential with the agent.

    prepare (initContainer)  the push token + attempt.json; clones privately, then leaves the
                             agent a checkout without credentials in the workspace
    agent                    the agent's key (secretKeyRef) + attempt.json; no GitHub token,
                             no App key, no ServiceAccount token; writes its result into the
                             control directory
    publish                  the push token + attempt.json + the workspace read-only; commits a
                             private snapshot, pushes, and writes the report as its termination
                             message (the operator reads it from the pod's status)

Every container has its own PID namespace (no `shareProcessNamespace`), a read-only root
filesystem with writable emptyDirs, no capabilities, and only the volumes it needs: the token
is mounted (Secret volume `items`) into prepare and publish only. Abort, the time limit and a
node drain send SIGTERM to every container; publish then keeps the work as a WIP commit.
"""

from __future__ import annotations

from typing import Optional

ATTEMPT_DIR = "/var/run/ampx/attempt"
TOKEN_DIR = "/var/run/ampx/token"
ATTEMPT_FILE = f"{ATTEMPT_DIR}/attempt.json"
TOKEN_FILE = f"{TOKEN_DIR}/token"
WORKSPACE_MOUNT = "/workspace"
# the checkout: a directory prepare creates inside the emptyDir (whose root belongs to root, and
# git refuses a repository its user does not own)
WORKSPACE = f"{WORKSPACE_MOUNT}/repo"
PRIVATE_MOUNT = "/var/lib/ampx/private"
# a directory prepare creates (0700, its own) inside the emptyDir, which belongs to root
PRIVATE = f"{PRIVATE_MOUNT}/attempt"
CONTROL = "/var/run/ampx/control"
REPORT_FILE = "/dev/termination-log"
RUN_AS = 10001

#: the keys of the per-attempt Secret
TOKEN_KEY = "token"
ATTEMPT_KEY = "attempt.json"

RESTRICTED = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _mount(name: str, path: str, read_only: bool = False) -> dict:
    m = {"name": name, "mountPath": path}
    if read_only:
        m["readOnly"] = True
    return m


def _container(name: str, image: str, pull: str, args: list[str], mounts: list[dict],
               env: list[dict], resources: dict) -> dict:
    c = {
        "name": name,
        "image": image,
        "imagePullPolicy": pull,
        "command": ["ampx", "worker"],
        "args": args,
        "env": [{"name": "HOME", "value": "/tmp"}, {"name": "TMPDIR", "value": "/tmp"}, *env],
        "volumeMounts": [_mount(f"tmp-{name}", "/tmp"), *mounts],
        "securityContext": dict(RESTRICTED),
        "terminationMessagePath": REPORT_FILE,
        "terminationMessagePolicy": "File",
    }
    if resources:
        c["resources"] = resources
    return c


def build_pod_spec(secret: str, *, image: str, pull_policy: str, agent_env: list[dict],
                   agent_resources: dict, step_resources: dict,
                   service_account: Optional[str] = None) -> dict:
    """The pod template's spec for an attempt whose Secret is `secret`."""
    attempt = _mount("attempt", ATTEMPT_DIR, True)
    token = _mount("token", TOKEN_DIR, True)
    af = ["--attempt-file", ATTEMPT_FILE]
    prepare = _container(
        "prepare", image, pull_policy,
        ["prepare", *af, "--token-file", TOKEN_FILE, "--private", PRIVATE, "--workspace", WORKSPACE,
         "--report-file", REPORT_FILE],
        [attempt, token, _mount("private", PRIVATE_MOUNT), _mount("workspace", WORKSPACE_MOUNT)],
        [], step_resources)
    agent = _container(
        "agent", image, pull_policy,
        ["agent", *af, "--workspace", WORKSPACE, "--control", CONTROL],
        [attempt, _mount("workspace", WORKSPACE_MOUNT), _mount("control", CONTROL)],
        agent_env, agent_resources)
    publish = _container(
        "publish", image, pull_policy,
        ["publish", *af, "--token-file", TOKEN_FILE, "--private", PRIVATE,
         "--workspace", WORKSPACE, "--control", CONTROL, "--report-file", REPORT_FILE],
        [attempt, token, _mount("private", PRIVATE_MOUNT), _mount("workspace", WORKSPACE_MOUNT, True),
         _mount("control", CONTROL, True)],
        [], step_resources)

    def secret_volume(name: str, key: str) -> dict:
        return {"name": name, "secret": {"secretName": secret, "defaultMode": 0o440,
                                         "items": [{"key": key, "path": key}]}}

    volumes = [secret_volume("attempt", ATTEMPT_KEY), secret_volume("token", TOKEN_KEY)]
    volumes += [{"name": n, "emptyDir": {}} for n in ("workspace", "private", "control")]
    volumes += [{"name": f"tmp-{n}", "emptyDir": {"sizeLimit": "1Gi"}}
                for n in ("prepare", "agent", "publish")]
    spec: dict = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "shareProcessNamespace": False,
        "securityContext": {
            "runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [prepare],
        "containers": [agent, publish],
        "volumes": volumes,
        # publish commits a WIP on SIGTERM: give it time to push
        "terminationGracePeriodSeconds": 60,
    }
    if service_account:
        spec["serviceAccountName"] = service_account
    return spec
