"""The AmpTask API types (`ampx.dev/v1alpha1`).

These pydantic models are the single source of the AmpTask schema: the CRD's
`openAPIV3Schema` is generated from them (`ampx.core.crd`), so the code and what
the API server accepts cannot drift apart. Field names are camelCase on the wire,
snake_case in Python.
"""

from __future__ import annotations

import enum
from typing import Annotated, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from .names import API_VERSION, GROUP, KIND, OWNER_LABEL, PLURAL, VERSION  # noqa: F401

SINGULAR = "amptask"
SHORT_NAMES = ["at"]

TASK_LABEL = "ampx.dev/task"
ATTEMPT_LABEL = "ampx.dev/attempt"

PROMPT_MAX = 32768
MESSAGE_MAX = 16384
EXCERPT_MAX = 4000

# owner/repo, git@HOST:owner/repo(.git), ssh://git@HOST/owner/repo, https://HOST/owner/repo(.git).
# RE2 (no look-arounds): an owner starts with a letter or digit; a name is not empty, not '.'
# or '..', and does not start with '-'. Which host is allowed is a runtime setting, checked by
# `ampx.core.repo.parse_repo` (the CLI and the operator), as are '.git'-suffixed dot names.
_OWNER = r"[A-Za-z0-9][A-Za-z0-9_-]{0,38}"
_REPO_NAME = r"(?:[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}|\.[A-Za-z0-9_-][A-Za-z0-9_.-]{0,98}|\.\.[A-Za-z0-9_.-]{1,98})"
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
REPO_PATTERN = (
    rf"^(?:{_OWNER}/{_REPO_NAME}"
    rf"|git@{_HOST}:{_OWNER}/{_REPO_NAME}"
    rf"|ssh://git@{_HOST}(?::[0-9]+)?/{_OWNER}/{_REPO_NAME}"
    rf"|https?://{_HOST}(?::[0-9]+)?/{_OWNER}/{_REPO_NAME}/?)$"
)
# A safe subset of git ref names (RE2 syntax: Kubernetes evaluates CRD patterns with Go's
# regexp, which has no look-arounds): '/'-separated components of dot-separated words, so no
# '..', '//', leading or trailing '.' or '/'. `check_branch` says why a name is refused, and
# BRANCH_RULES (CEL, evaluated by the API server) add what a pattern cannot: '.lock', and the
# names git gives a meaning of their own (HEAD, refs/...).
_WORD = r"[A-Za-z0-9_-]+"
_COMPONENT = rf"{_WORD}(?:\.{_WORD})*"
BRANCH_PATTERN = rf"^[A-Za-z0-9_](?:[A-Za-z0-9_-]*(?:\.{_WORD})*)(?:/{_COMPONENT})*$"
BRANCH_RULES = [{
    "rule": "!self.endsWith('.lock') && !self.contains('.lock/')",
    "message": "a branch name component must not end with '.lock'",
}, {
    "rule": "self != 'HEAD' && !self.startsWith('refs/')",
    "message": "a branch must be a branch name: not HEAD, not a ref starting with 'refs/'",
}]
# On the whole spec: a task never works on its base branch.
SPEC_RULES = [{
    "rule": "!has(self.branch) || !has(self.baseBranch) || self.branch != self.baseBranch",
    "message": "branch must differ from baseBranch: a task pushes only its own branch",
}]
# Not blank: at least one character that is not white space.
NOT_BLANK_PATTERN = r"\S"


def check_branch(value: str) -> str:
    """Reject names git itself would refuse (git check-ref-format), with the reason."""
    for bad, why in (("..", "'..'"), ("//", "'//'"), ("@{", "'@{'")):
        if bad in value:
            raise ValueError(f"branch name {value!r} must not contain {why}")
    if value.endswith(("/", ".", ".lock")):
        raise ValueError(f"branch name {value!r} must not end with '/', '.' or '.lock'")
    parts = value.split("/")
    if any(part.startswith(".") for part in parts):
        raise ValueError(f"branch name {value!r} has a component starting with '.'")
    if any(part.endswith(".lock") for part in parts):
        raise ValueError(f"branch name {value!r} has a component ending with '.lock'")
    if value == "HEAD" or value.startswith("refs/"):
        raise ValueError(f"{value!r} is not a branch name (HEAD and refs/... are refused)")
    return value


class Phase(str, enum.Enum):
    """Lifecycle of a task, as shown by `ampx ls` and `kubectl get amptasks`."""

    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    NEEDS_REVIEW = "needs_review"
    SUCCESS = "success"
    ABORTED = "aborted"
    ERROR = "error"

    @property
    def active(self) -> bool:
        return self in (Phase.QUEUED, Phase.RUNNING, Phase.RETRYING)


ACTIVE_PHASES = frozenset(p for p in Phase if p.active)
RESUMABLE_PHASES = frozenset({Phase.NEEDS_REVIEW, Phase.ERROR, Phase.ABORTED, Phase.SUCCESS})


class Stage(str, enum.Enum):
    """What an active task is waiting on."""

    AGENT = "agent"  # an attempt's Job/process is running the agent
    CI = "ci"  # the attempt pushed; waiting on GitHub Actions for that commit
    PR = "pr"  # CI is green; opening (or adopting) the pull request
    IDLE = "idle"  # nothing in flight (finished tasks)


class AttemptOutcome(str, enum.Enum):
    """How one attempt ended, as the worker reports it and the operator records it."""

    PUSHED = "pushed"
    NO_CHANGE = "no_change"
    AGENT_FAILED = "agent_failed"
    TIMEOUT = "timeout"
    PUSH_REJECTED = "push_rejected"
    TAMPERED = "tampered"
    CONFIG_ERROR = "config_error"
    GIT_FAILED = "git_failed"  # clone, fetch or push could not reach the remote (retryable)
    WORKER_ERROR = "worker_error"  # an unexpected failure of the worker itself
    BRANCH_REFUSED = "branch_refused"  # not this task's branch (default/base, someone else's tip)
    INTERRUPTED = "interrupted"
    ABORTED = "aborted"


class CiTrigger(str, enum.Enum):
    """Which workflow runs a task waits on (spec.ci.trigger)."""

    AUTO = "auto"  # push runs when a workflow runs on push to the branch, else a draft PR's
    PUSH = "push"  # runs of the push to the task branch
    PULL_REQUEST = "pull_request"  # runs of a draft pull request into the base branch


class CiEvent(str, enum.Enum):
    """The GitHub event whose runs a task is waiting on."""

    PUSH = "push"
    PULL_REQUEST = "pull_request"


class MergeMethod(str, enum.Enum):
    SQUASH = "squash"
    MERGE = "merge"
    REBASE = "rebase"


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        use_enum_values=False,
    )

    def wire(self) -> dict:
        """The camelCase JSON form stored in the API server (unset optionals omitted)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --------------------------------------------------------------------------- spec


class Limits(_Model):
    """Time budgets. The attempt limit ends the agent's whole process group; the task limit
    (optional) caps a whole run, from its start or its last `continue`, CI waits included."""

    attempt_timeout_minutes: Annotated[int, Field(ge=1, le=1440)] = 60
    task_timeout_minutes: Optional[Annotated[int, Field(ge=1, le=10080)]] = None
    ci_grace_minutes: Annotated[int, Field(ge=1, le=240)] = 10


class Policy(_Model):
    """Per-task behaviour switches, all on the safe side by default."""

    tamper_guard: bool = True
    # globs (fnmatch, `**` any depth) the tamper guard protects besides .github/** and .gitmodules
    protected_paths: Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]],
                               Field(max_length=50)] = Field(default_factory=list)
    keep_work_on_stop: bool = True
    flaky_retry: bool = True
    stop_on_repeated_failure: bool = True
    merge_method: MergeMethod = MergeMethod.SQUASH
    delete_branch_on_merge: bool = True


class CiSpec(_Model):
    """How CI is reached: on push to the task branch, or through a draft pull request."""

    trigger: CiTrigger = CiTrigger.AUTO


class FollowUp(_Model):
    """An instruction appended by `ampx continue`."""

    message: Annotated[str, Field(min_length=1, max_length=MESSAGE_MAX)]
    at: Optional[str] = None
    by: Optional[str] = None


class AmpTaskSpec(_Model):
    """What the user asked for. Written by the CLI (the operator only defaults the branch)."""

    model_config = ConfigDict(**_Model.model_config,
                              json_schema_extra={"x-kubernetes-validations": SPEC_RULES})

    repo: Annotated[str, Field(pattern=REPO_PATTERN, max_length=300)]
    prompt: Annotated[str, Field(min_length=1, max_length=PROMPT_MAX, pattern=NOT_BLANK_PATTERN)]
    title: Optional[Annotated[str, Field(max_length=200)]] = None
    branch: Optional[Annotated[str, Field(pattern=BRANCH_PATTERN, max_length=200,
                                          json_schema_extra={"x-kubernetes-validations": BRANCH_RULES})]] = None
    base_branch: Optional[Annotated[str, Field(pattern=BRANCH_PATTERN, max_length=200,
                                               json_schema_extra={"x-kubernetes-validations": BRANCH_RULES})]] = None
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 3
    agent: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")] = "amp"
    limits: Limits = Field(default_factory=Limits)
    policy: Policy = Field(default_factory=Policy)
    ci: CiSpec = Field(default_factory=CiSpec)
    follow_ups: Annotated[list[FollowUp], Field(max_length=100)] = Field(default_factory=list)
    abort_requested_at: Optional[str] = None
    merge_requested_at: Optional[str] = None

    # "before" validators: their reasons beat the patterns' "should match pattern" message
    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_not_blank(cls, v):
        if isinstance(v, str) and v and not v.strip():
            raise ValueError("prompt must not be blank")
        return v

    @field_validator("branch", "base_branch", mode="before")
    @classmethod
    def _branch_ok(cls, v):
        return check_branch(v) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _own_branch(self):
        if self.branch and self.base_branch and self.branch == self.base_branch:
            raise ValueError(f"branch {self.branch!r} is the base branch; a task pushes only "
                             "its own branch")
        return self

    def display_title(self) -> str:
        """The task's one-line title: given, or the prompt's first non-empty line."""
        if self.title:
            return self.title
        for line in self.prompt.splitlines():
            if line.strip():
                line = line.strip()
                return line if len(line) <= 72 else line[:71] + "…"
        return "task"


# --------------------------------------------------------------------------- status


class WorkerReport(_Model):
    """What a worker writes about its own attempt (status.reports["<N>"]); nobody else does."""

    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    outcome: Optional[AttemptOutcome] = None
    commit: Optional[str] = None
    base_commit: Optional[str] = None
    thread_id: Optional[str] = None
    reason: Optional[Annotated[str, Field(max_length=4000)]] = None
    files: Optional[list[str]] = None
    tokens_in: Optional[int] = None
    tokens_out: Optional[int] = None
    exit_code: Optional[int] = None
    # which workflows of the pushed tree run on push to the task branch and on pull_request
    # to the base (None: not read); `workflows` names every workflow file read
    workflows: Optional[Annotated[list[str], Field(max_length=200)]] = None
    push_workflows: Optional[Annotated[list[str], Field(max_length=200)]] = None
    pull_request_workflows: Optional[Annotated[list[str], Field(max_length=200)]] = None


class AttemptRecord(_Model):
    """The operator's record of one attempt: what was asked and what came of it."""

    number: Annotated[int, Field(ge=1)]
    prompt: Annotated[str, Field(max_length=PROMPT_MAX + EXCERPT_MAX + MESSAGE_MAX)]
    job: Optional[str] = None
    queued_at: Optional[str] = None  # when the attempt was decided: its place in a slot queue
    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    outcome: Optional[AttemptOutcome] = None
    commit: Optional[str] = None
    reason: Optional[str] = None
    ci_run_id: Optional[int] = None
    ci_run_url: Optional[str] = None
    ci_conclusion: Optional[str] = None
    excerpt: Optional[Annotated[str, Field(max_length=EXCERPT_MAX + 200)]] = None
    signature: Optional[str] = None
    flaky: Optional[bool] = None
    tokens_in: Optional[int] = None
    tokens_out: Optional[int] = None


class CiWait(_Model):
    """Operator-private state of waiting on CI for one commit."""

    sha: str
    since: Optional[str] = None
    event: CiEvent = CiEvent.PUSH  # push runs of the branch, or the pull request's runs
    pr_number: Optional[int] = None  # pull_request: the PR opened or adopted for this wait
    rerun_requested: bool = False
    rerun_run_id: Optional[int] = None
    # the re-run request went through (or GitHub refused it for good); until then the
    # request is repeated, and a red result is not yet counted
    rerun_sent: bool = False


class Condition(_Model):
    type: str
    status: Annotated[str, Field(pattern=r"^(True|False|Unknown)$")]
    reason: Optional[str] = None
    message: Optional[str] = None
    last_transition_time: Optional[str] = None


class AmpTaskStatus(_Model):
    """What happened so far. The operator writes every field except `reports`."""

    phase: Optional[Phase] = None
    stage: Optional[Stage] = None
    thread_id: Optional[str] = None
    attempts: int = 0
    budget_start: int = 0
    run_started_at: Optional[str] = None
    ci_run_id: Optional[int] = None
    ci_run_url: Optional[str] = None
    pr_url: Optional[str] = None
    pr_number: Optional[int] = None
    pr_state: Optional[str] = None  # draft, readying (being marked ready), open, merging, merged
    pr_commented: Optional[int] = None  # the attempt whose needs_review comment the PR has
    summary: Optional[str] = None
    # the current attempt waits for a free slot (maxConcurrentAttempts): its place in line
    queue_position: Optional[Annotated[int, Field(ge=1)]] = None
    history: list[AttemptRecord] = Field(default_factory=list)
    ci: Optional[CiWait] = None
    follow_ups_seen: int = 0
    abort_handled_at: Optional[str] = None
    merge_handled_at: Optional[str] = None
    reports: dict[str, WorkerReport] = Field(default_factory=dict)
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: Optional[int] = None
    updated_at: Optional[str] = None

    def current(self) -> Optional[AttemptRecord]:
        return self.history[-1] if self.history else None

    def attempts_in_budget(self) -> int:
        """Attempts spent since the task was created or last continued."""
        return self.attempts - self.budget_start


class AmpTask(_Model):
    """A whole AmpTask object as the API server holds it."""

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    kind: str = KIND
    metadata: dict = Field(default_factory=dict)
    spec: AmpTaskSpec
    status: AmpTaskStatus = Field(default_factory=AmpTaskStatus)

    @property
    def name(self) -> str:
        return self.metadata.get("name", "")

    @property
    def namespace(self) -> str:
        return self.metadata.get("namespace", "")


def camel(name: str) -> str:
    return to_camel(name)



def spec_problem(spec: dict) -> Optional[str]:
    """Why a spec as stored (camelCase JSON) is not one ampx can run, or None when it is.

    The CRD refuses almost every bad spec; this catches what its schema cannot say (and specs
    stored before a stricter schema), so the operator can set `error` instead of failing
    quietly on every event."""
    try:
        AmpTaskSpec.model_validate(spec)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(camel(str(p)) if isinstance(p, str) else str(p) for p in err["loc"])
        return f"invalid spec{'.' + where if where else ''}: {err['msg'].removeprefix('Value error, ')}"
    return None
