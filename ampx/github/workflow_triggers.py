"""Which workflows of a tree GitHub Actions would run: on push to a branch, on a pull request.

ampx waits on CI runs of one exact commit. Many repositories run CI on ``pull_request`` and on
``push`` to ``main`` only; for them no run ever appears for a push to ``amp/*``. Reading the
pushed tree's ``.github/workflows/*.yml|yaml`` with GitHub's rules for ``on``, ``branches``,
``branches-ignore``, ``paths`` and ``paths-ignore`` tells, right after the push, whether to
wait on push runs, open a draft pull request, or say at once that nothing will run.

Rules (docs.github.com, "Events that trigger workflows" and "Workflow syntax"):
- ``on`` is an event name, a list of names, or a mapping of names to filters;
- ``branches``/``branches-ignore`` match the pushed branch (push) or the base branch (pull
  request); filtering only ``tags`` on push means branch pushes never match;
- ``paths``/``paths-ignore`` match the changed files; ``paths`` needs one match,
  ``paths-ignore`` needs one file it does not ignore; ``!`` negates a pattern, later patterns win;
- pattern syntax: ``*`` matches anything but ``/``, ``**`` anything, ``?``/``+`` repeat the
  previous character, ``[...]`` a class, ``\\`` escapes;
- ``pull_request`` without ``types`` runs on ``opened``, ``synchronize`` and ``reopened``;
- a file GitHub cannot parse gets a failed run on push (its error is the run's title).

When the changed files are not known (``None``), path filters count as matching: ampx then
waits for a run that may not come, rather than refusing a task whose CI would have run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Mapping, Optional, Sequence

import yaml

WORKFLOWS_DIR = ".github/workflows"
DEFAULT_PR_TYPES = ("opened", "synchronize", "reopened")


@dataclass(frozen=True)
class WorkflowFile:
    path: str
    spec: Optional[dict]
    error: Optional[str] = None


@dataclass(frozen=True)
class Triggers:
    """The workflow files read, and those that run on each event."""

    workflows: tuple[str, ...]
    push: tuple[str, ...]
    pull_request: tuple[str, ...]


def is_workflow_path(path: str) -> bool:
    head, _, name = path.rpartition("/")
    return head == WORKFLOWS_DIR and name.endswith((".yml", ".yaml"))


def parse_workflow(path: str, text: bytes | str) -> WorkflowFile:
    """A workflow file as GitHub reads it (YAML 1.1: PyYAML turns the ``on`` key into True)."""
    raw = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
    try:
        spec = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        return WorkflowFile(path, None, f"invalid YAML: {str(exc).splitlines()[0]}")
    if not isinstance(spec, dict):
        return WorkflowFile(path, None, "not a mapping")
    if True in spec and "on" not in spec:
        spec["on"] = spec.pop(True)
    if "on" not in spec:
        return WorkflowFile(path, None, "no event triggers defined in `on`")
    if not isinstance(spec.get("jobs"), dict) or not spec["jobs"]:
        return WorkflowFile(path, None, "no jobs defined in `jobs`")
    return WorkflowFile(path, spec)


def event_filters(spec: Mapping[str, Any], event: str) -> Optional[dict]:
    """The filters of ``event`` under ``on`` ({} when unfiltered), or None when not listed."""
    on = spec.get("on")
    if isinstance(on, str):
        return {} if on == event else None
    if isinstance(on, list):
        return {} if event in on else None
    if isinstance(on, dict) and event in on:
        value = on[event]
        return value if isinstance(value, dict) else {}
    return None


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


@lru_cache(maxsize=512)
def _pattern(glob: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            if glob.startswith("**", i):
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
        elif c in "?+":
            out.append(c)
        elif c == "[" and "]" in glob[i + 1:]:
            end = glob.index("]", i + 1)
            out.append(glob[i:end + 1])
            i = end + 1
            continue
        elif c == "\\" and i + 1 < len(glob):
            out.append(re.escape(glob[i + 1]))
            i += 2
            continue
        else:
            out.append(re.escape(c))
        i += 1
    try:
        return re.compile("^(?:" + "".join(out) + ")$")
    except re.error:  # a pattern GitHub would reject: matches nothing
        return re.compile(r"(?!)")


def matches(patterns: Iterable[str], value: str) -> bool:
    """A GitHub filter list: each pattern in order, ``!`` negates, the last match wins."""
    hit = False
    for raw in patterns:
        negate = raw.startswith("!")
        if _pattern(raw[1:] if negate else raw).match(value):
            hit = not negate
    return hit


def _branch_ok(filters: Mapping[str, Any], branch: str, tag_keys: bool) -> bool:
    inc, exc = filters.get("branches"), filters.get("branches-ignore")
    if inc is None and exc is None:
        # filtering only tags means branch pushes never match (push only)
        return not (tag_keys and ("tags" in filters or "tags-ignore" in filters))
    if inc is not None and not matches(_as_list(inc), branch):
        return False
    return not (exc is not None and matches(_as_list(exc), branch))


def _paths_ok(filters: Mapping[str, Any], changed: Optional[Sequence[str]]) -> bool:
    inc, exc = filters.get("paths"), filters.get("paths-ignore")
    if (inc is None and exc is None) or changed is None:
        return True
    if inc is not None:
        return any(matches(_as_list(inc), f) for f in changed)
    return any(not matches(_as_list(exc), f) for f in changed)


def runs_on_push(wf: WorkflowFile, branch: str, changed: Optional[Sequence[str]]) -> bool:
    if wf.spec is None:
        return True  # GitHub records a failed run for a file it cannot read
    filters = event_filters(wf.spec, "push")
    return filters is not None and _branch_ok(filters, branch, True) and _paths_ok(filters, changed)


def runs_on_pull_request(wf: WorkflowFile, base: str, changed: Optional[Sequence[str]],
                         action: str = "opened") -> bool:
    if wf.spec is None:
        return False
    filters = event_filters(wf.spec, "pull_request")
    if filters is None:
        return False
    types = _as_list(filters.get("types")) or list(DEFAULT_PR_TYPES)
    return action in types and _branch_ok(filters, base, False) and _paths_ok(filters, changed)


def predict(files: Mapping[str, bytes | str], branch: str, base: str, *,
            push_changed: Optional[Sequence[str]] = None,
            pr_changed: Optional[Sequence[str]] = None) -> Triggers:
    """Which of ``files`` (path -> content, the tree's workflow files) run on a push to
    ``branch`` (files changed by the push: ``push_changed``) and on a pull request from it
    into ``base`` (files changed against the base: ``pr_changed``)."""
    wfs = [parse_workflow(p, files[p]) for p in sorted(files) if is_workflow_path(p)]
    return Triggers(
        workflows=tuple(w.path for w in wfs),
        push=tuple(w.path for w in wfs if runs_on_push(w, branch, push_changed)),
        pull_request=tuple(w.path for w in wfs
                           if runs_on_pull_request(w, base, pr_changed, "opened")
                           or runs_on_pull_request(w, base, pr_changed, "synchronize")),
    )
