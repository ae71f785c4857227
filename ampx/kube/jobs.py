"""One batch/v1 Job per attempt, its Secret, and reading back how it went.

The Job is named `<task>-a<N>`, so creating it twice is a 409 and a restarted operator can
never run an attempt twice. Its pod (`ampx.kube.pod`) runs prepare, agent and publish; the
push token and attempt.json come from the per-attempt Secret (`ampx.kube.attempt_secret`), the
agent's key from its own Secret by `secretKeyRef`. The worker holds no Kubernetes credential:
the operator reads the report from the pod (`ampx.kube.reports`) and records it as
`status.reports["<N>"]`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from pydantic import ValidationError

from ..core.models import (API_VERSION, ATTEMPT_LABEL, KIND, TASK_LABEL, AmpTask, AttemptOutcome,
                           WorkerReport)
from ..core.observe import AttemptState
from ..redact import redact
from ..settings import env
from .api import KubeApi, KubeError
from .attempt_secret import RENEW_BELOW_S, PushTokens, build_secret, secret_name, token_patch
from .pod import build_pod_spec
from .reports import (AGENT_CONTAINER, PREPARE_CONTAINER, REPORT_CONTAINER, THREAD_LOG_BYTES, BadReport,
                      parse_report, terminated, thread_in_log)

log = logging.getLogger("ampx.operator")

JOB_SUFFIX = "-a"
#: how often the operator looks for the thread id in a running attempt's agent log
THREAD_PROBE_S = 5.0


def job_name(task: str, number: int) -> str:
    return f"{task}{JOB_SUFFIX}{number}"


def _json_env(name: str) -> dict:
    raw = env(name)
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        raise ValueError(f"{name} must be a JSON object") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{name} must be a JSON object")
    return parsed


@dataclass(frozen=True)
class WorkerSettings:
    """What the operator puts into every worker Job (from its own environment)."""

    image: str = "ghcr.io/ampx-dev/ampx-worker:latest"
    pull_policy: str = "IfNotPresent"
    service_account: Optional[str] = None
    resources: dict = field(default_factory=dict)  # the agent container
    step_resources: dict = field(default_factory=dict)  # prepare and publish
    amp_secret: Optional[str] = None
    amp_secret_key: str = "api-key"
    git_url: str = "https://github.com"
    agent_command: Optional[str] = None
    author_name: Optional[str] = None
    author_email: Optional[str] = None
    agent_plain: tuple[tuple[str, str], ...] = ()  # plain settings for the agent (never secrets)

    @classmethod
    def from_env(cls) -> "WorkerSettings":
        return cls(
            image=env("AMPX_WORKER_IMAGE", cls.image),
            pull_policy=env("AMPX_WORKER_IMAGE_PULL_POLICY", cls.pull_policy),
            service_account=env("AMPX_WORKER_SERVICE_ACCOUNT"),
            resources=_json_env("AMPX_WORKER_RESOURCES"),
            step_resources=_json_env("AMPX_WORKER_STEP_RESOURCES"),
            amp_secret=env("AMPX_AMP_SECRET"),
            amp_secret_key=env("AMPX_AMP_SECRET_KEY", cls.amp_secret_key),
            git_url=env("AMPX_GITHUB_URL", cls.git_url),
            agent_command=env("AMPX_AGENT_COMMAND"),
            author_name=env("AMPX_GIT_AUTHOR_NAME"),
            author_email=env("AMPX_GIT_AUTHOR_EMAIL"),
            agent_plain=tuple((n, v) for n in ("AMP_URL",) if (v := env(n)) is not None),
        )


def attempt_file(task: AmpTask, number: int, ws: WorkerSettings) -> str:
    """attempt.json: everything the three steps need (no credential)."""
    from ..worker.attempt_spec import attempt_spec_from_task

    return attempt_spec_from_task(task, number, git_url=ws.git_url,
                                  agent_command=ws.agent_command, author_name=ws.author_name,
                                  author_email=ws.author_email).dumps()


def build_job(task: AmpTask, number: int, ws: WorkerSettings) -> dict:
    """The Job manifest of attempt `number` (its Secret is `secret_name(task, number)`)."""
    name = job_name(task.name, number)
    labels = {TASK_LABEL: task.name, ATTEMPT_LABEL: str(number),
              "app.kubernetes.io/name": "ampx-worker", "app.kubernetes.io/managed-by": "ampx"}
    agent_env: list[dict] = [{"name": k, "value": v} for k, v in ws.agent_plain]
    if ws.amp_secret:
        agent_env.append({"name": "AMP_API_KEY", "valueFrom": {
            "secretKeyRef": {"name": ws.amp_secret, "key": ws.amp_secret_key}}})
    limit_s = task.spec.limits.attempt_timeout_minutes * 60
    pod_spec = build_pod_spec(secret_name(task.name, number), image=ws.image,
                              pull_policy=ws.pull_policy, agent_env=agent_env,
                              agent_resources=ws.resources, step_resources=ws.step_resources,
                              service_account=ws.service_account)
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
            # the agent's own limit ends it first; this catches a stuck pod
            "activeDeadlineSeconds": limit_s + 600,
            "ttlSecondsAfterFinished": 7 * 24 * 3600,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def _failed(term: Optional[dict]) -> Optional[dict]:
    return term if term is not None and term.get("exitCode") not in (None, 0) else None


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


#: the state of an attempt whose report the operator has just recorded: the AmpTask changed,
#: and the next reconcile turns the report into the core's event (`report_event`)
REPORTED = "reported"


class KubeLauncher:
    """Attempts as Jobs, each with its Secret; reports read from the pods."""

    def __init__(self, api: KubeApi, settings: WorkerSettings,
                 tokens: Optional[PushTokens] = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.api = api
        self.settings = settings
        self.tokens = tokens
        self.clock = clock
        self._expires: dict[str, Optional[float]] = {}  # Secret -> its token's expiry
        self._probed: dict[str, float] = {}  # Job -> last look for the thread id

    # ------------------------------------------------------------------ start / stop
    def start(self, task: AmpTask, number: int) -> str:
        name = job_name(task.name, number)
        try:
            spec = attempt_file(task, number, self.settings)
        except Exception as exc:  # no such attempt, or a spec the attempt file refuses
            self._record(task, number, WorkerReport(
                outcome=AttemptOutcome.CONFIG_ERROR, reason=redact(str(exc)), exit_code=2))
            return name
        if self.tokens is None:
            self._record(task, number, WorkerReport(
                outcome=AttemptOutcome.CONFIG_ERROR, exit_code=2,
                reason="GitHub is not configured: the operator has no App key or token "
                       "to mint the attempt's push token"))
            return name
        try:
            token, expires = self.tokens.token(task.spec.repo)
        except Exception as exc:
            from ..github.errors import RetryLater

            if isinstance(exc, RetryLater):
                raise
            self._record(task, number, WorkerReport(
                outcome=AttemptOutcome.CONFIG_ERROR, exit_code=2,
                reason=f"no push token for {task.spec.repo}: {redact(str(exc))}"))
            return name
        secret = build_secret(task, number, token, spec)
        try:
            self.api.create_secret(task.namespace, secret)
        except KubeError as exc:
            if exc.status != 409:
                raise
            # left by an operator that stopped before its Job: replace it (a fresh token)
            self.api.delete_secret(task.namespace, secret["metadata"]["name"])
            self.api.create_secret(task.namespace, secret)
        self._expires[secret["metadata"]["name"]] = expires
        body = build_job(task, number, self.settings)
        try:
            self.api.create_job(task.namespace, body)
        except KubeError as exc:
            if exc.status != 409:  # AlreadyExists: this attempt was launched before
                raise
        return name

    def stop(self, task: AmpTask, number: int) -> None:
        self.api.delete_job(task.namespace, job_name(task.name, number))
        self._forget(task, number)

    def _forget(self, task: AmpTask, number: int) -> None:
        """The attempt is over: its token goes (a running pod keeps the files it mounted)."""
        name = secret_name(task.name, number)
        self._expires.pop(name, None)
        self._probed.pop(job_name(task.name, number), None)
        try:
            self.api.delete_secret(task.namespace, name)
        except KubeError as exc:
            log.warning("task %s: could not delete Secret %s: %s", task.name, name, exc)

    # ------------------------------------------------------------------ observing
    def state(self, task: AmpTask, number: int) -> AttemptState:
        seen = job_state(self.api.get_job(task.namespace, job_name(task.name, number)))
        report = task.status.reports.get(str(number))
        final = report is not None and report.outcome is not None
        if seen.state in ("succeeded", "failed") and not final:
            return self._ended(task, number, seen)
        if seen.state in ("succeeded", "failed", "missing") and final:
            self._forget(task, number)
        if seen.state == "running" and not final:
            self._renew(task, number)
            self._probe_thread(task, number, report)
        return seen

    def _pods(self, task: AmpTask, number: int) -> list[dict]:
        try:
            return self.api.list_pods(task.namespace, f"job-name={job_name(task.name, number)}")
        except KubeError:
            return []

    def _ended(self, task: AmpTask, number: int, seen: AttemptState) -> AttemptState:
        """The Job is over: record the publish step's report, or why there is none."""
        pods = self._pods(task, number)
        problem = "no pod"
        for pod in reversed(pods):  # the newest pod first
            # publish reports; prepare does when the attempt could not start (the agent's own
            # termination message is never read)
            term = terminated(pod, REPORT_CONTAINER) or _failed(terminated(pod, PREPARE_CONTAINER))
            if term is None:
                continue
            try:
                report = parse_report(term.get("message"))
            except BadReport as exc:
                problem = str(exc)
                continue
            if report.thread_id is None:
                report = report.model_copy(update={"thread_id": self._thread(task, pod)})
            self._record(task, number, report)
            return AttemptState(REPORTED, job=seen.job)
        reason = self._why_failed(task, pods, seen.reason if seen.state == "failed" else
                                  "the worker exited without a report")
        if problem != "no pod":
            reason = f"{reason}; no report: {problem}"
        thread = next((t for pod in reversed(pods) if (t := self._thread(task, pod))), None)
        self._record(task, number, WorkerReport(outcome=AttemptOutcome.AGENT_FAILED,
                                                reason=redact(reason)[:4000], thread_id=thread))
        return AttemptState(REPORTED, job=seen.job)

    def _why_failed(self, task: AmpTask, pods: list[dict], reason: str) -> str:
        """Add the failed step's exit code and last log lines to a Job failure."""
        order = {REPORT_CONTAINER: 0, PREPARE_CONTAINER: 1, AGENT_CONTAINER: 2}  # the telling step first
        for pod in reversed(pods):
            st = pod.get("status") or {}
            steps = (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or [])
            for cs in sorted(steps, key=lambda cs: order.get(cs.get("name"), 3)):
                term = (cs.get("state") or {}).get("terminated") or {}
                if term.get("exitCode") in (None, 0):
                    continue
                reason = f"{reason} ({cs.get('name')} exit {term['exitCode']}" + (
                    f", {term['reason']})" if term.get("reason") else ")")
                try:
                    tail = self.api.pod_log(task.namespace, pod["metadata"]["name"], tail_lines=3,
                                            container=cs.get("name"))
                except KubeError:
                    tail = ""
                if tail.strip():
                    reason = f"{reason}: {' | '.join(tail.strip().splitlines()[-3:])}"
                return redact(reason)[:600]
            break
        return reason

    def _thread(self, task: AmpTask, pod: dict) -> Optional[str]:
        """The thread id the agent announced in its log, if any."""
        try:
            text = self.api.pod_log(task.namespace, pod["metadata"]["name"],
                                    container=AGENT_CONTAINER, limit_bytes=THREAD_LOG_BYTES)
        except KubeError:
            return None
        return thread_in_log(text)

    def _probe_thread(self, task: AmpTask, number: int, report: Optional[WorkerReport]) -> None:
        """While the attempt runs without a known thread: look for it at a bounded rate."""
        if task.status.thread_id or (report is not None and report.thread_id):
            return
        key = job_name(task.name, number)
        now = self.clock()
        if now - self._probed.get(key, 0.0) < THREAD_PROBE_S:
            return
        self._probed[key] = now
        for pod in self._pods(task, number):
            thread = self._thread(task, pod)
            if thread:
                self._record(task, number, WorkerReport(thread_id=thread))
                return

    def _renew(self, task: AmpTask, number: int) -> None:
        """Keep the push token of a long attempt alive (unknown expiry: after a restart)."""
        if self.tokens is None:
            return
        name = secret_name(task.name, number)
        if name in self._expires:
            expires = self._expires[name]
            if expires is None or expires - self.clock() > RENEW_BELOW_S:
                return
        try:
            token, expires = self.tokens.token(task.spec.repo)
            self.api.patch_secret(task.namespace, name, token_patch(token))
        except Exception as exc:  # the next reconcile tries again
            log.warning("task %s: could not renew the push token: %s", task.name, redact(str(exc)))
            return
        self._expires[name] = expires

    def _record(self, task: AmpTask, number: int, report: WorkerReport) -> None:
        """Write status.reports["<N>"] (a merge patch of that attempt's entry only)."""
        self.api.patch_task_status(task.namespace, task.name,
                                   {"reports": {str(number): report.wire()}})


class KubeStore:
    """AmpTasks in the API server (the launcher records the attempts' reports)."""

    def __init__(self, api: KubeApi, namespace_of: dict[str, str]) -> None:
        self.api = api
        self.namespace_of = namespace_of  # task name -> namespace (names are ULIDs: unique)

    def load(self, name: str) -> Optional[AmpTask]:
        ns = self.namespace_of.get(name)
        if ns is None:
            return None
        try:
            return to_task(self.api.get_task(ns, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def save_status(self, task: AmpTask, status) -> AmpTask:
        status = status.model_copy(update={"observed_generation": task.metadata.get("generation")})
        body = status_patch(status)
        return to_task(self.api.patch_task_status(task.namespace, task.name, body))


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

