"""The kopf operator: thin handlers that hand every AmpTask and Job event to the engine.

Watch-driven: the operator learns of every change from its two watch streams and reads nothing
back in the steady state.
- AmpTask events (any change, including a worker's report) -> the body goes into a `TaskCache`,
  then `engine.reconcile` reads the task from there.
- Attempt Jobs (labelled `ampx.dev/task`) are kept in a kopf index by task: the engine's
  `Launcher` reads Job state from it; a Job event reconciles its task. kopf runs no handler
  before the index is fully listed, so a restarted operator never takes a running Job for a
  missing one.
- One periodic loop (a thread, `Periodic`) does what only time can change: CI polls per
  repository on `CiSchedule`'s cadence, time budgets, GitHub retries when due, and a slow
  safety pass (every AMPX_RESYNC_SECONDS, 60) over tasks that still want work.
Nothing is stored in kopf's annotations: the AmpTask status is the whole state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import kopf

from ..core.ids import default_branch
from ..core.models import (
    GROUP,
    OWNER_LABEL,
    PLURAL,
    TASK_LABEL,
    VERSION,
    AmpTaskSpec,
    spec_problem,
)
from ..core.decide import invalid_spec_status
from ..engine import Engine, iso, utcnow
from ..schedule import CiSchedule
from ..record import record
from ..settings import GitHubSettings, env, register_env_secrets
from ..task_rules import rules_from_env
from .api import KubeApi, load_config
from .attempt_secret import PushTokens
from .capacity import job_changed, operator_capacity
from .jobs import KubeLauncher, KubeStore, WorkerSettings, status_patch, to_task
from .masking import AgentKeyMask
from .periodic import Periodic
from .views import JobView, TaskCache, job_summary

log = logging.getLogger("ampx.operator")


@dataclass
class OperatorState:
    api: KubeApi
    engine: Engine
    namespaces: dict[str, str]
    schedule: CiSchedule
    history: Any = None
    branch_prefix: str = "amp/"
    masks: Any = None
    slots: Any = None  # the concurrency limits' SlotBook (None: unlimited)
    tasks: TaskCache = field(default_factory=TaskCache)
    jobs: Optional[JobView] = None
    periodic: Optional[Periodic] = None


STATE: dict[str, OperatorState] = {}


def _forge():
    gh = GitHubSettings.from_env()
    if not (gh.app_id and gh.private_key) and not gh.token:
        log.warning("GitHub is not configured: tasks will wait at the CI stage "
                    "(set AMPX_GITHUB_APP_ID and AMPX_GITHUB_APP_PRIVATE_KEY[_FILE], or GITHUB_TOKEN)")
        return None
    from ..github.service import GitHubService

    return GitHubService.from_settings(gh)


def build_state() -> OperatorState:
    register_env_secrets()  # the App key (and a fallback token) never reach a status or log
    rules = rules_from_env()  # a setting it cannot read stops the operator, with the reason
    api = KubeApi(load_config())
    namespaces: dict[str, str] = {}
    history = None
    db_path = env("AMPX_HISTORY_DB")
    if db_path:
        from ..history.db import HistoryDB

        history = HistoryDB(db_path)

    def on_change(task):
        if history is not None:
            record(history, task)

    workers = WorkerSettings.from_env()
    # the App key stays here: each attempt gets a push token minted for its repository
    tokens = PushTokens.from_settings(GitHubSettings.from_env())
    tasks, jobs = TaskCache(), JobView(api.get_job)
    engine = Engine(store=KubeStore(api, namespaces, tasks),
                    launcher=KubeLauncher(api, workers, tokens, jobs=jobs, cache=tasks),
                    forge=_forge(), on_change=on_change, rules=lambda: rules)
    masks = AgentKeyMask(api, workers.amp_secret, workers.amp_secret_key)
    # issue 12 (concurrency limits): the engine asks the book before it launches a Job
    engine.capacity = slots = operator_capacity(api, engine.reconcile)
    return OperatorState(api, engine, namespaces, CiSchedule(), history, rules.branch_prefix,
                         masks, slots=slots, tasks=tasks, jobs=jobs)


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.scanning.disabled = True
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.execution.max_workers = 8
    op = STATE["op"] = build_state()
    # GitHub webhook deliveries (--webhook-listen / AMPX_WEBHOOK_LISTEN) name repositories in
    # ampx.webhooks.HEARD; the periodic loop polls those at once
    from ..webhooks import HEARD, from_env as webhooks_from_env

    listener = webhooks_from_env(HEARD.add)
    op.periodic = Periodic(op.engine, op.tasks, op.schedule, before_ci=op.masks.ensure,
                           heard=HEARD)
    op.periodic.start()
    if listener is not None:
        listener.start()


@kopf.on.cleanup()
def cleanup(**_: Any) -> None:
    op = STATE.get("op")
    if op is not None and op.periodic is not None:
        op.periodic.stop()


def _op() -> OperatorState:
    return STATE["op"]


def _defaults(op: OperatorState, body: Any, name: str, namespace: str) -> None:
    """kubectl-created tasks get what `ampx start` would have set: branch and owner label."""
    spec = body.get("spec", {})
    labels = body.get("metadata", {}).get("labels") or {}
    patch: dict = {}
    if not spec.get("branch"):
        try:
            title = AmpTaskSpec.model_validate(spec).display_title()
        except ValueError:
            title = "task"
        patch.setdefault("spec", {})["branch"] = default_branch(title, name, op.branch_prefix)
    if OWNER_LABEL not in labels:
        patch.setdefault("metadata", {})["labels"] = {OWNER_LABEL: "unknown"}
    if patch:
        op.tasks.put(op.api.patch_task(namespace, name, patch))


def _refuse_invalid(op: OperatorState, body: Any, name: str, namespace: str) -> bool:
    """A spec the models reject (what the CRD schema cannot say) ends the task in `error`."""
    problem = spec_problem(body.get("spec") or {})
    if problem is None:
        return False
    status = body.get("status") or {}
    if status.get("phase") != "error" or status.get("summary") != problem:
        op.tasks.put(op.api.patch_task_status(
            namespace, name, status_patch(invalid_spec_status(problem, iso(utcnow())))))
        log.warning("task %s: %s", name, problem)
    return True


@kopf.index("batch", "v1", "jobs", labels={TASK_LABEL: kopf.PRESENT})
def attempt_jobs(name: str, namespace: str, labels: Any, status: Any, **_: Any) -> dict:
    """Attempt Jobs by task: what `KubeLauncher.state` reads instead of a GET."""
    return {labels[TASK_LABEL]: job_summary(name, namespace, status)}


@kopf.on.event(GROUP, VERSION, PLURAL)
def task_event(type: str, body: Any, name: str, namespace: str, attempt_jobs: kopf.Index,
               **_: Any) -> None:
    op = _op()
    if op.jobs is not None and not op.jobs.attached:
        op.jobs.attach(attempt_jobs)  # fully listed: kopf runs handlers only after that
    if type == "DELETED":
        if op.slots is not None:  # issue 12: a deleted task leaves the line
            op.slots.forget(namespace, name, deleted=True)
        op.namespaces.pop(name, None)
        op.tasks.drop(name)
        op.engine.forget(name)
        op.schedule.next_at.pop(name, None)
        if op.history is not None:
            op.history.mark_deleted(name, namespace=namespace)
        return
    op.namespaces[name] = namespace
    op.tasks.put(body)
    op.masks.ensure(namespace)  # before any CI output of this namespace is copied
    try:
        if _refuse_invalid(op, body, name, namespace):
            return
        if op.history is not None and not (body.get("status") or {}).get("phase"):
            record(op.history, to_task(dict(body)))
        _defaults(op, body, name, namespace)
        op.engine.reconcile(name)
    except Exception as exc:  # one line, not a traceback; the periodic pass retries
        log.warning("task %s: %s", name, exc)


@kopf.on.event("batch", "v1", "jobs", labels={TASK_LABEL: kopf.PRESENT})
def job_event(type: str, body: Any, namespace: str, attempt_jobs: kopf.Index, **_: Any) -> None:
    op = _op()
    if op.jobs is not None and not op.jobs.attached:
        op.jobs.attach(attempt_jobs)
    if op.slots is not None:  # issue 12: a Job holds a slot until it finishes or is deleted
        job_changed(op.slots, type, dict(body), namespace)
    task = body.get("metadata", {}).get("labels", {}).get(TASK_LABEL)
    if not task or task not in op.namespaces:  # a task not seen (yet): its own event comes
        return
    try:
        op.engine.reconcile(task)
    except Exception as exc:  # one line, not a traceback; the periodic pass retries
        log.warning("task %s: %s", task, exc)
