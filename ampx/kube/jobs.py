"""One batch/v1 Job per attempt, and reading back how it went.

The Job is named `<task>-a<N>`, so creating it twice is a 409 and a restarted operator can
never run an attempt twice. Secrets reach the worker only through `secretKeyRef`; the prompt
is not in the Job at all (the worker reads it from the AmpTask).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

from pydantic import ValidationError

from ..core.models import API_VERSION, ATTEMPT_LABEL, KIND, TASK_LABEL, AmpTask
from ..core.observe import AttemptState
from ..settings import env
from .api import KubeApi, KubeError
from .views import JobView, TaskCache

JOB_SUFFIX = "-a"


def job_name(task: str, number: int) -> str:
    return f"{task}{JOB_SUFFIX}{number}"


@dataclass(frozen=True)
class WorkerSettings:
    """What the operator puts into every worker Job (from its own environment)."""

    image: str = "ghcr.io/ampx-dev/ampx-worker:latest"
    pull_policy: str = "IfNotPresent"
    service_account: Optional[str] = None
    resources: dict = field(default_factory=dict)
    app_secret: Optional[str] = None
    app_secret_key: str = "private-key.pem"
    amp_secret: Optional[str] = None
    amp_secret_key: str = "api-key"
    passthrough: tuple[tuple[str, str], ...] = ()  # plain settings handed on (never secrets)

    @classmethod
    def from_env(cls) -> "WorkerSettings":
        resources = env("AMPX_WORKER_RESOURCES")
        try:
            parsed = json.loads(resources) if resources else {}
        except ValueError:
            raise ValueError("AMPX_WORKER_RESOURCES must be a JSON object") from None
        plain = tuple(
            (name, value)
            for name in ("AMPX_GITHUB_API_URL", "AMPX_GITHUB_URL", "AMPX_GITHUB_APP_ID", "AMP_URL",
                         "AMPX_GIT_AUTHOR_NAME", "AMPX_GIT_AUTHOR_EMAIL", "AMPX_AGENT_COMMAND")
            if (value := env(name)) is not None
        )
        return cls(
            image=env("AMPX_WORKER_IMAGE", cls.image),
            pull_policy=env("AMPX_WORKER_IMAGE_PULL_POLICY", cls.pull_policy),
            service_account=env("AMPX_WORKER_SERVICE_ACCOUNT"),
            resources=parsed,
            app_secret=env("AMPX_GITHUB_APP_SECRET"),
            app_secret_key=env("AMPX_GITHUB_APP_SECRET_KEY", cls.app_secret_key),
            amp_secret=env("AMPX_AMP_SECRET"),
            amp_secret_key=env("AMPX_AMP_SECRET_KEY", cls.amp_secret_key),
            passthrough=plain,
        )


def build_job(task: AmpTask, number: int, ws: WorkerSettings) -> dict:
    """The Job manifest of attempt `number`."""
    name = job_name(task.name, number)
    labels = {TASK_LABEL: task.name, ATTEMPT_LABEL: str(number),
              "app.kubernetes.io/name": "ampx-worker", "app.kubernetes.io/managed-by": "ampx"}
    env_list: list[dict] = [{"name": k, "value": v} for k, v in ws.passthrough]
    if ws.app_secret:
        env_list.append({"name": "AMPX_GITHUB_APP_PRIVATE_KEY", "valueFrom": {
            "secretKeyRef": {"name": ws.app_secret, "key": ws.app_secret_key}}})
    if ws.amp_secret:
        env_list.append({"name": "AMP_API_KEY", "valueFrom": {
            "secretKeyRef": {"name": ws.amp_secret, "key": ws.amp_secret_key}}})
    limit_s = task.spec.limits.attempt_timeout_minutes * 60
    container = {
        "name": "worker",
        "image": ws.image,
        "imagePullPolicy": ws.pull_policy,
        "command": ["ampx", "worker"],
        "args": ["--task", task.name, "--attempt", str(number), "-n", task.namespace],
        "env": env_list,
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if ws.resources:
        container["resources"] = ws.resources
    pod_spec: dict = {
        "restartPolicy": "Never",
        "containers": [container],
        # the worker commits a WIP on SIGTERM: give it time to push
        "terminationGracePeriodSeconds": 60,
    }
    if ws.service_account:
        pod_spec["serviceAccountName"] = ws.service_account
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": task.namespace,
            "labels": labels,
            "ownerReferences": [{
                "apiVersion": API_VERSION, "kind": KIND, "name": task.name,
                "uid": task.metadata.get("uid", ""), "controller": True,
            }],
        },
        "spec": {
            "backoffLimit": 0,
            # the worker's own limit ends the agent first; this catches a stuck worker
            "activeDeadlineSeconds": limit_s + 600,
            "ttlSecondsAfterFinished": 7 * 24 * 3600,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def job_state(job: Optional[dict]) -> AttemptState:
    """Read a Job's status the way the core needs it."""
    if job is None:
        return AttemptState("missing")
    name = job.get("metadata", {}).get("name")
    status = job.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return AttemptState("succeeded", job=name)
        if cond.get("type") in ("Failed", "FailureTarget"):
            why = cond.get("reason") or "Failed"
            msg = cond.get("message")
            return AttemptState("failed", f"Job {why}" + (f": {msg}" if msg else ""), job=name)
    if status.get("succeeded"):
        return AttemptState("succeeded", job=name)
    if status.get("failed"):
        return AttemptState("failed", "Job failed", job=name)
    if status.get("active") or status.get("startTime"):
        return AttemptState("running", job=name)
    return AttemptState("pending", job=name)


class KubeLauncher:
    """Attempts as Jobs."""

    def __init__(self, api: KubeApi, settings: WorkerSettings, jobs: Optional[JobView] = None) -> None:
        self.api = api
        self.settings = settings
        self.jobs = jobs  # the operator's watch-fed view; None: GET each time

    def read_job(self, task: AmpTask, number: int) -> Optional[dict]:
        name = job_name(task.name, number)
        if self.jobs is not None:
            return self.jobs.read(task.namespace, task.name, name)
        return self.api.get_job(task.namespace, name)

    def start(self, task: AmpTask, number: int) -> str:
        body = build_job(task, number, self.settings)
        try:
            self.api.create_job(task.namespace, body)
        except KubeError as exc:
            if exc.status != 409:  # AlreadyExists: this attempt was launched before
                raise
        return body["metadata"]["name"]

    def stop(self, task: AmpTask, number: int) -> None:
        self.api.delete_job(task.namespace, job_name(task.name, number))

    def state(self, task: AmpTask, number: int) -> AttemptState:
        seen = job_state(self.read_job(task, number))
        if seen.state == "failed":
            seen = AttemptState("failed", self._why_failed(task, number, seen.reason), seen.job)
        return seen

    def _why_failed(self, task: AmpTask, number: int, reason: str) -> str:
        """Add the worker's exit code and last log lines to a Job failure."""
        try:
            pods = self.api.list_pods(task.namespace, f"job-name={job_name(task.name, number)}")
        except KubeError:
            return reason
        for pod in pods:
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                term = (cs.get("state") or {}).get("terminated") or {}
                if "exitCode" in term:
                    reason = f"{reason} (worker exit {term['exitCode']}" + (
                        f", {term['reason']})" if term.get("reason") else ")")
            try:
                tail = self.api.pod_log(task.namespace, pod["metadata"]["name"], tail_lines=3)
            except KubeError:
                tail = ""
            if tail.strip():
                reason = f"{reason}: {' | '.join(tail.strip().splitlines()[-3:])}"[:600]
        return reason


class KubeStore:
    """AmpTasks in the API server; the operator writes every status field but `reports`."""

    def __init__(self, api: KubeApi, namespace_of: dict[str, str],
                 cache: Optional[TaskCache] = None) -> None:
        self.api = api
        self.namespace_of = namespace_of  # task name -> namespace (names are ULIDs: unique)
        self.cache = cache  # the operator's watch-fed bodies; None: GET each time

    def load(self, name: str) -> Optional[AmpTask]:
        body = self.cache.get(name) if self.cache is not None else None
        if body is not None:
            return to_task(body)
        return self.reload(name)

    def reload(self, name: str) -> Optional[AmpTask]:
        """The task as the API server has it now (one GET), kept in the cache."""
        ns = self.namespace_of.get(name)
        if ns is None:
            return None
        try:
            body = self.api.get_task(ns, name)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        if self.cache is not None:
            self.cache.put(body)
        return to_task(body)

    def save_status(self, task: AmpTask, status) -> AmpTask:
        status = status.model_copy(update={"observed_generation": task.metadata.get("generation")})
        body = self.api.patch_task_status(task.namespace, task.name, status_patch(status))
        if self.cache is not None:
            self.cache.put(body)
        return to_task(body)


def status_patch(status) -> dict:
    """A merge patch of every operator-owned status field; unset fields are sent as null."""
    body = status.model_dump(mode="json", by_alias=True, exclude={"reports", "history",
                                                                  "ci", "conditions"})
    body["history"] = [rec.wire() for rec in status.history]
    body["ci"] = status.ci.wire() if status.ci else None
    body["conditions"] = [c.wire() for c in status.conditions]
    return body


def to_task(obj: dict, lenient: bool = False) -> AmpTask:
    """An AmpTask from the API server's JSON (status may be absent or partial).

    `lenient` (for showing tasks, never for running them): optional spec fields the models
    refuse are dropped instead of failing, so `ampx ls` still lists a task the operator
    refused (its summary says why)."""
    data = {
        "apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
        "metadata": obj.get("metadata", {}), "spec": obj.get("spec", {}),
        "status": obj.get("status") or {},
    }
    try:
        return AmpTask.model_validate(data)
    except ValidationError as exc:
        bad = {e["loc"][1] for e in exc.errors() if len(e["loc"]) > 1 and e["loc"][0] == "spec"}
        if not lenient or not bad or bad & {"repo", "prompt"}:
            raise
        data["spec"] = {k: v for k, v in data["spec"].items() if k not in bad}
        return AmpTask.model_validate(data)

