"""The kopf operator: thin handlers that hand every AmpTask and Job event to the engine.

- AmpTask watch events (any change, including a worker's report) -> `engine.reconcile`.
- Attempt Job events (labelled `ampx.dev/task`) -> reconcile the task they belong to.
- A timer per AmpTask polls CI on the schedule of `CiSchedule` and reconciles, so an event
  missed while the operator was down is picked up on the next tick.
Nothing is stored in kopf's annotations: the AmpTask status is the whole state.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import kopf

from ..core.ids import default_branch
from ..core.models import (
    GROUP,
    OWNER_LABEL,
    PLURAL,
    TASK_LABEL,
    VERSION,
    AmpTaskSpec,
    AmpTaskStatus,
    spec_problem,
)
from ..core.observe import pr_comment_due
from ..core.decide import invalid_spec_status
from ..engine import Engine, iso, parse_iso, utcnow
from ..schedule import CiSchedule
from ..record import record
from ..settings import GitHubSettings, env, register_env_secrets
from ..task_rules import rules_from_env
from .api import KubeApi, load_config
from .attempt_secret import PushTokens
from .capacity import job_changed, operator_capacity
from .jobs import KubeLauncher, KubeStore, WorkerSettings, status_patch, to_task
from .masking import AgentKeyMask

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
    engine = Engine(store=KubeStore(api, namespaces),
                    launcher=KubeLauncher(api, workers, tokens),
                    forge=_forge(), on_change=on_change, rules=lambda: rules)
    masks = AgentKeyMask(api, workers.amp_secret, workers.amp_secret_key)
    # issue 12 (concurrency limits): the engine asks the book before it launches a Job
    engine.capacity = slots = operator_capacity(api, engine.reconcile)
    return OperatorState(api, engine, namespaces, CiSchedule(), history, rules.branch_prefix,
                         masks, slots)


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.scanning.disabled = True
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.execution.max_workers = 8
    STATE["op"] = build_state()
    # --- issue 12 item 4 (scale-github): GitHub webhook deliveries (--webhook-listen /
    # AMPX_WEBHOOK_LISTEN) collect their repositories in ampx.webhooks.HEARD for the CI loop
    from ..webhooks import HEARD, from_env as webhooks_from_env

    listener = webhooks_from_env(HEARD.add)
    if listener is not None:
        listener.start()
    # ---


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
        op.api.patch_task(namespace, name, patch)


def _refuse_invalid(op: OperatorState, body: Any, name: str, namespace: str) -> bool:
    """A spec the models reject (what the CRD schema cannot say) ends the task in `error`."""
    problem = spec_problem(body.get("spec") or {})
    if problem is None:
        return False
    status = body.get("status") or {}
    if status.get("phase") != "error" or status.get("summary") != problem:
        op.api.patch_task_status(namespace, name,
                                 status_patch(invalid_spec_status(problem, iso(utcnow()))))
        log.warning("task %s: %s", name, problem)
    return True


@kopf.on.event(GROUP, VERSION, PLURAL)
def task_event(type: str, body: Any, name: str, namespace: str, **_: Any) -> None:
    op = _op()
    if type == "DELETED":
        if op.slots is not None:  # issue 12: a deleted task leaves the line
            op.slots.forget(namespace, name, deleted=True)
        op.namespaces.pop(name, None)
        if op.history is not None:
            op.history.mark_deleted(name, namespace=namespace)
        return
    op.namespaces[name] = namespace
    op.masks.ensure(namespace)  # before any CI output of this namespace is copied
    try:
        if _refuse_invalid(op, body, name, namespace):
            return
        if op.history is not None and not (body.get("status") or {}).get("phase"):
            record(op.history, to_task(dict(body)))
        _defaults(op, body, name, namespace)
        op.engine.reconcile(name)
    except Exception as exc:  # one line, not a traceback; the next tick retries
        log.warning("task %s: %s", name, exc)


@kopf.on.event("batch", "v1", "jobs", labels={TASK_LABEL: kopf.PRESENT})
def job_event(type: str, body: Any, namespace: str, **_: Any) -> None:
    op = _op()
    task = body.get("metadata", {}).get("labels", {}).get(TASK_LABEL)
    if not task:
        return
    op.namespaces[task] = namespace
    if op.slots is not None:  # issue 12: a Job holds a slot until it finishes or is deleted
        job_changed(op.slots, type, dict(body), namespace)
    try:
        op.engine.reconcile(task)
    except Exception as exc:  # one line, not a traceback; the next tick retries
        log.warning("task %s: %s", task, exc)


@kopf.timer(GROUP, VERSION, PLURAL, interval=1.0, sharp=False)
def tick(body: Any, name: str, namespace: str, **_: Any) -> None:
    """Poll CI when due and reconcile active tasks (this is what makes a missed event harmless)."""
    op = _op()
    op.namespaces[name] = namespace
    op.masks.ensure(namespace)
    status = body.get("status") or {}
    phase = status.get("phase")
    if phase not in (None, "queued", "running", "retrying") and status.get("prState") != "merging" \
            and not (phase == "needs_review" and status.get("prState") == "draft"
                     and pr_comment_due(AmpTaskStatus.model_validate(status))):
        return
    now = time.monotonic()
    try:
        if phase is None and _refuse_invalid(op, body, name, namespace):
            return
        if status.get("stage") == "ci":
            if op.schedule.due(name, now):
                since = (status.get("ci") or {}).get("since")
                waited = (utcnow() - parse_iso(since)).total_seconds() if since else 0.0
                retry = op.engine.poll_ci(name)
                op.schedule.after_poll(name, time.monotonic(), waited, retry)
        elif op.schedule.due(name + "/reconcile", now):
            op.engine.reconcile(name)
            op.schedule.next_at[name + "/reconcile"] = now + op.schedule.fast
    except Exception as exc:  # one line, not a traceback; the next tick retries
        log.warning("task %s: %s", name, exc)
