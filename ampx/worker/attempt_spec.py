"""Everything one attempt needs, as one JSON file: no step needs Kubernetes access.

The operator (or the local worker) writes it from the AmpTask and the attempt number; the three
steps (`prepare`, `agent`, `publish`) read it with `--attempt-file`. It holds no credential.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from ..core.models import (BRANCH_PATTERN, MESSAGE_MAX, PROMPT_MAX, EXCERPT_MAX, REPO_PATTERN,
                           AmpTask, AttemptOutcome, check_branch)

MAX_FILE_BYTES = 256 * 1024
DEFAULT_AUTHOR_NAME = "ampx[bot]"
DEFAULT_AUTHOR_EMAIL = "ampx-bot@users.noreply.github.com"


class AttemptSpecError(Exception):
    """The attempt file is missing, too large or invalid (one line, for the exit message)."""


class AttemptSpec(BaseModel):
    """One attempt of one task (camelCase on the wire, like the AmpTask)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    task: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9][a-z0-9.-]*$")]
    namespace: Annotated[str, Field(min_length=1, max_length=63)] = "local"
    number: Annotated[int, Field(ge=1, le=10_000)]
    repo: Annotated[str, Field(pattern=REPO_PATTERN, max_length=300)]
    branch: Annotated[str, Field(pattern=BRANCH_PATTERN, max_length=200)]
    base_branch: Optional[Annotated[str, Field(pattern=BRANCH_PATTERN, max_length=200)]] = None
    prompt: Annotated[str, Field(min_length=1,
                                 max_length=PROMPT_MAX + EXCERPT_MAX + MESSAGE_MAX)]
    thread_id: Optional[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,200}$")]] = None
    agent: Annotated[str, Field(min_length=1, max_length=2000)] = "amp"
    title: Annotated[str, Field(min_length=1, max_length=200)]
    attempt_timeout_minutes: Annotated[int, Field(ge=1, le=1440)] = 60
    tamper_guard: bool = True
    keep_work_on_stop: bool = True
    protected_paths: Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]],
                               Field(max_length=50)] = Field(default_factory=list)
    git_url: Annotated[str, Field(pattern=r"^(https?|file)://", max_length=500)] = \
        "https://github.com"
    author_name: Annotated[str, Field(min_length=1, max_length=200)] = DEFAULT_AUTHOR_NAME
    author_email: Annotated[str, Field(min_length=3, max_length=200)] = DEFAULT_AUTHOR_EMAIL
    # an earlier attempt of this task pushed the branch: its tip is this task's own work, so the
    # ownership check (never replace another's branch) only applies to a first push
    pushed_before: bool = False

    def wire(self) -> dict:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def dumps(self) -> str:
        return json.dumps(self.wire(), indent=1)

    @property
    def timeout_s(self) -> float:
        return self.attempt_timeout_minutes * 60.0


def attempt_spec_from_task(task: AmpTask, number: int, *, git_url: str,
                           agent_command: Optional[str] = None,
                           author_name: Optional[str] = None,
                           author_email: Optional[str] = None) -> AttemptSpec:
    """The attempt file's content for attempt ``number`` of ``task`` (its prompt comes from the
    operator's record of that attempt). Raises AttemptSpecError when there is no such attempt."""
    rec = next((r for r in task.status.history if r.number == number), None)
    if rec is None:
        raise AttemptSpecError(f"task {task.name} has no attempt {number}")
    spec = task.spec
    if not spec.branch:
        raise AttemptSpecError(f"task {task.name} has no branch yet")
    try:
        return AttemptSpec(
            task=task.name, namespace=task.metadata.get("namespace") or "local", number=number,
            repo=spec.repo, branch=check_branch(spec.branch), base_branch=spec.base_branch,
            prompt=rec.prompt, thread_id=task.status.thread_id,
            agent=agent_command or spec.agent, title=spec.display_title()[:200],
            attempt_timeout_minutes=spec.limits.attempt_timeout_minutes,
            tamper_guard=spec.policy.tamper_guard, keep_work_on_stop=spec.policy.keep_work_on_stop,
            protected_paths=list(spec.policy.protected_paths), git_url=git_url.rstrip("/"),
            author_name=author_name or DEFAULT_AUTHOR_NAME,
            author_email=author_email or DEFAULT_AUTHOR_EMAIL,
            pushed_before=pushed_before(task.status, number))
    except ValidationError as exc:
        raise AttemptSpecError(f"task {task.name}: {_first_error(exc)}") from None


def pushed_before(status, number: int) -> bool:
    """Whether an earlier attempt of this task pushed the branch (a rejected push did not)."""
    return any(r.commit and r.outcome != AttemptOutcome.PUSH_REJECTED
               for r in status.history if r.number < number)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "attempt"
    return f"{where}: {err.get('msg', 'invalid')}"


def parse_attempt_spec(raw: bytes, source: str = "attempt file") -> AttemptSpec:
    if len(raw) > MAX_FILE_BYTES:
        raise AttemptSpecError(f"{source} is larger than {MAX_FILE_BYTES} bytes")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise AttemptSpecError(f"{source} is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise AttemptSpecError(f"{source} must hold a JSON object")
    try:
        return AttemptSpec.model_validate(doc)
    except ValidationError as exc:
        raise AttemptSpecError(f"{source}: {_first_error(exc)}") from None


def load_attempt_spec(path: str | Path) -> AttemptSpec:
    """Read and validate an attempt file (bounded size, one-line errors)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise AttemptSpecError(f"cannot read attempt file {path}: {exc.strerror}") from None
    return parse_attempt_spec(raw, f"attempt file {path}")


def write_attempt_spec(spec: AttemptSpec, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(spec.dumps())
    return path
