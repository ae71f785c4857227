"""Issue 10's decisions without any server: unique branches, a task's own branch under the
prefix, repositories on the configured host only, allow-lists, and the engine's admission."""

from __future__ import annotations

import datetime as dt
import re

import jsonschema
import pytest
from pydantic import ValidationError

from ampx.core.admission import TaskRules, admission_problem
from ampx.core.allowlist import AllowListError, parse_allowlist
from ampx.core.branches import BranchPrefixError, check_prefix, task_branch_problem
from ampx.core.ids import default_branch, new_task_id
from ampx.core.models import REPO_PATTERN, AmpTask, AmpTaskSpec, AmpTaskStatus, Phase
from ampx.core.repo import RepoError, parse_repo
from ampx.engine import Engine
from ampx.github.errors import GitHubNotFound, RetryLater

from core.test_crd_and_models import _k8s_validate, _spec_schema
from core.test_engine import MemForge, MemLauncher, MemStore

GH = "https://github.com"


# ----------------------------------------------------------------------------- unique branches
def test_tasks_created_in_the_same_millisecond_get_different_branches():
    ids = [new_task_id() for _ in range(500)]  # same title, same ms for most of them
    branches = {default_branch("Fix the flaky test", tid) for tid in ids}
    assert len(branches) == len(ids)


def test_the_old_scheme_collided_for_tasks_of_the_same_quarter_hour():
    """Control: the first 6 characters of ULIDs made minutes apart are the same."""
    from ulid import ULID

    start = 1_790_000_000.0 - (1_790_000_000.0 % 1048.576)  # the start of a 2^20 ms window
    ids = [str(ULID.from_timestamp(start + i * 10)).lower() for i in range(50)]  # 8 minutes
    assert len({f"amp/fix-{tid[:6]}" for tid in ids}) == 1
    assert len({default_branch("fix", tid) for tid in ids}) == 50


@pytest.mark.parametrize("title", ["", "???", "x" * 300, "Ünïcode ✓"])
def test_default_branch_is_valid_unique_and_under_the_prefix(title):
    tid = new_task_id()
    for prefix in ("amp/", "bots/ampx-"):
        b = default_branch(title, tid, prefix)
        assert b.startswith(prefix) and b.endswith(tid) and len(b) <= 200
        AmpTaskSpec(repo="a/b", prompt="x", branch=b)
        assert task_branch_problem(b, prefix=prefix) is None


def test_a_long_kubectl_name_keeps_the_branch_within_the_limit():
    name = "a" * 240
    b = default_branch("title", name)
    assert len(b) == 200 and b.startswith("amp/aaa")


# ----------------------------------------------------------------------------- own branch only
@pytest.mark.parametrize("branch,base,default,why", [
    ("main", None, None, "outside the task branch prefix"),
    ("HEAD", None, None, "must not be HEAD"),
    ("refs/heads/amp/x", None, None, "not a ref"),
    ("amp/x", "amp/x", None, "is the base branch"),
    ("amp/trunk", None, "amp/trunk", "repository's default branch"),
    ("amp/", None, None, "outside the task branch prefix"),
    ("ampx/foo", None, None, "outside the task branch prefix"),
    (None, None, None, "has no branch"),
])
def test_branches_a_task_may_not_push(branch, base, default, why):
    assert why in task_branch_problem(branch, base=base, default=default)


def test_its_own_branch_under_the_prefix_is_allowed():
    assert task_branch_problem("amp/fix-1", base="main", default="main") is None
    assert task_branch_problem("team/x", prefix="team/") is None


@pytest.mark.parametrize("prefix", ["", "refs/", "-x", "a..b/", ".hid/", "a b/"])
def test_unusable_prefixes_are_refused(prefix):
    with pytest.raises(BranchPrefixError):
        check_prefix(prefix)
    with pytest.raises(BranchPrefixError):
        TaskRules(branch_prefix=prefix)


@pytest.mark.parametrize("spec", [
    {"repo": "a/b", "prompt": "x", "branch": "HEAD"},
    {"repo": "a/b", "prompt": "x", "branch": "refs/heads/x"},
    {"repo": "a/b", "prompt": "x", "baseBranch": "HEAD"},
    {"repo": "a/b", "prompt": "x", "branch": "amp/x", "baseBranch": "amp/x"},
])
def test_the_models_refuse_reserved_names_and_branch_equal_to_base(spec):
    with pytest.raises(ValidationError):
        AmpTaskSpec.model_validate(spec)


def _cel(rule: str, value) -> bool:
    """The few CEL forms our rules use, evaluated in Python (the API emulator has no CEL)."""
    if "has(self.branch)" in rule:
        return "branch" not in value or "baseBranch" not in value or value["branch"] != value["baseBranch"]
    if "'HEAD'" in rule:
        return value != "HEAD" and not value.startswith("refs/")
    if ".lock" in rule:
        return not value.endswith(".lock") and ".lock/" not in value
    raise AssertionError(f"unknown rule {rule}")


def test_the_crd_carries_the_rules_a_pattern_cannot_say():
    schema = _spec_schema()
    (spec_rule,) = schema["x-kubernetes-validations"]
    assert not _cel(spec_rule["rule"], {"branch": "amp/x", "baseBranch": "amp/x"})
    assert _cel(spec_rule["rule"], {"branch": "amp/x", "baseBranch": "main"})
    assert _cel(spec_rule["rule"], {"branch": "amp/x"})
    for field in ("branch", "baseBranch"):
        rules = schema["properties"][field]["x-kubernetes-validations"]
        for bad in ("HEAD", "refs/heads/x"):
            assert not all(_cel(r["rule"], bad) for r in rules), (field, bad)
        assert all(_cel(r["rule"], "amp/x") for r in rules)


# ----------------------------------------------------------------------------- repositories
@pytest.mark.parametrize("text", [
    "acme/api", "git@github.com:acme/api.git", "https://github.com/acme/api",
    "https://github.com/acme/api.git", "ssh://git@github.com/acme/api.git",
    "https://GitHub.com/acme/api/", "acme/.github",
])
def test_repositories_on_the_configured_host_are_accepted(text):
    ref = parse_repo(text, GH)
    assert ref.owner == "acme" and ref.name in ("api", ".github")
    assert re.match(REPO_PATTERN, text)


@pytest.mark.parametrize("text,why", [
    ("git@gitlab.com:demo/calculator.git", "not on the configured GitHub host"),
    ("https://evil.example.com/demo/calculator", "not on the configured GitHub host"),
    ("https://github.com.evil.example/demo/calculator", "not on the configured GitHub host"),
    ("https://github.com:8443/demo/calculator", "not on the configured GitHub host"),
    ("http://github.com/demo/calculator", "not on the configured GitHub host"),
    ("../..", "dot segment"),
    ("o/..", "dot segment"),
    ("o/.", "dot segment"),
    ("o/..git", "dot segment"),
    ("-x/y", "starting with '-'"),
    ("o/-y", "starting with '-'"),
    ("/y", "empty part"),
    ("o/", "empty part"),
    ("o/.git", "empty part"),
])
def test_foreign_hosts_and_bad_parts_are_refused(text, why):
    with pytest.raises(RepoError, match=re.escape(why)):
        parse_repo(text, GH)


@pytest.mark.parametrize("text", ["../..", "o/..", "o/.", "-x/y", "o/-y", "/y", "o/", "a//b"])
def test_the_crd_pattern_refuses_dot_segments_leading_dash_and_empty_parts(text):
    with pytest.raises(jsonschema.ValidationError):
        _k8s_validate(_spec_schema(), {"repo": text, "prompt": "x"})


def test_an_enterprise_or_test_host_is_the_configured_one():
    assert parse_repo("http://127.0.0.1:8080/o/r", "http://127.0.0.1:8080") == ("o", "r")
    assert parse_repo("git@ghe.corp:o/r.git", "https://ghe.corp") == ("o", "r")
    with pytest.raises(RepoError):
        parse_repo("https://github.com/o/r", "https://ghe.corp")
    with pytest.raises(RepoError):
        parse_repo("http://127.0.0.1:9090/o/r", "http://127.0.0.1:8080")


# ----------------------------------------------------------------------------- allow-lists
def test_allow_list_forms():
    everyone = parse_allowlist(None)
    assert everyone.unrestricted and everyone.allows("any/thing", "ns")
    lst = parse_allowlist(["acme/*", "tools/ci-*"])
    assert lst.allows("acme/api", "x") and lst.allows("ACME/Api", "y")
    assert lst.allows("tools/ci-lint", "x") and not lst.allows("tools/other", "x")
    assert not lst.allows("acme-evil/api", "x"), "a glob never crosses the owner/name boundary"
    per_ns = parse_allowlist('{"team-a": ["acme/api"], "*": ["sandbox/*"]}')
    assert per_ns.allows("acme/api", "team-a") and not per_ns.allows("acme/api", "team-b")
    assert per_ns.allows("sandbox/x", "team-b") and not per_ns.allows("sandbox/x", "team-a")
    assert not parse_allowlist({"team-a": ["acme/*"]}).allows("acme/api", "team-b")
    nothing = parse_allowlist([])
    assert not nothing.allows("acme/api", "x")
    assert "allowed: none" in nothing.problem("acme/api", "x")


@pytest.mark.parametrize("bad", ["[", '"acme/*"', '["acme"]', '["a/b/c"]', '{"ns": "acme/*"}',
                                 "[1]", '["/x"]'])
def test_unreadable_allow_lists_are_refused(bad):
    with pytest.raises(AllowListError):
        parse_allowlist(bad)


# ----------------------------------------------------------------------------- admission
RULES = TaskRules(git_url=GH, allowed_repos=parse_allowlist({"team-a": ["acme/*"]}))


@pytest.mark.parametrize("spec,why", [
    ({"repo": "git@gitlab.com:acme/api.git", "branch": "amp/x"}, "not on the configured"),
    ({"repo": "other/api", "branch": "amp/x"}, "not in the allow-list of namespace team-a"),
    ({"repo": "acme/api", "branch": "main"}, "outside the task branch prefix"),
    ({"repo": "acme/api", "branch": "amp/x", "baseBranch": "amp/x"}, "base branch"),
    ({"repo": "acme/api", "branch": "amp/x.lock"}, "invalid spec.branch"),
])
def test_admission_refuses_with_the_reason(spec, why):
    problem = admission_problem({"prompt": "x", **spec}, "team-a", RULES)
    assert problem and why in problem


def test_admission_refuses_the_default_branch_when_github_names_it():
    spec = {"repo": "acme/api", "prompt": "x", "branch": "amp/trunk"}
    assert admission_problem(spec, "team-a", RULES) is None
    assert "default branch" in admission_problem(spec, "team-a", RULES, default_branch="amp/trunk")


class DefaultForge(MemForge):
    def __init__(self, answer):
        super().__init__()
        self.answer, self.asked = answer, 0

    def default_branch(self, repo):
        self.asked += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def engine_with(spec_kw, forge, namespace="team-a", rules=RULES):
    store, launcher = MemStore(), MemLauncher()
    spec = AmpTaskSpec(repo=spec_kw.pop("repo", "acme/api"), prompt="Fix it", **spec_kw)
    store.tasks["t1"] = AmpTask(metadata={"name": "t1", "namespace": namespace}, spec=spec,
                                status=AmpTaskStatus())
    clock = [dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.timezone.utc)]
    eng = Engine(store=store, launcher=launcher, forge=forge, clock=lambda: clock[0],
                 rules=lambda: rules)
    return eng, store, launcher, clock


def test_engine_refuses_before_any_attempt_and_finishes_the_task():
    eng, store, launcher, _ = engine_with({"branch": "amp/trunk"}, DefaultForge("amp/trunk"))
    eng.reconcile("t1")
    st = store.tasks["t1"].status
    assert launcher.started == [] and st.attempts == 0
    assert st.phase == Phase.ERROR and "default branch" in st.summary
    assert {c.type: c.status for c in st.conditions} == {"Finished": "True", "Succeeded": "False"}
    eng.reconcile("t1")
    assert launcher.started == []


def test_engine_refuses_a_repository_outside_the_allow_list_without_asking_github():
    forge = DefaultForge("main")
    eng, store, launcher, _ = engine_with({"repo": "other/x", "branch": "amp/x"}, forge)
    eng.reconcile("t1")
    assert store.tasks["t1"].status.phase == Phase.ERROR and launcher.started == []
    assert "allow-list" in store.tasks["t1"].status.summary and forge.asked == 0


def test_engine_starts_an_admitted_task():
    eng, store, launcher, _ = engine_with({"branch": "amp/x"}, DefaultForge("main"))
    eng.reconcile("t1")
    assert launcher.started == [1] and store.tasks["t1"].status.phase == Phase.QUEUED


def test_engine_waits_when_github_says_later_and_refuses_a_missing_repository():
    forge = DefaultForge(RetryLater(30, "rate limited"))
    eng, store, launcher, clock = engine_with({"branch": "amp/x"}, forge)
    eng.reconcile("t1")
    eng.reconcile("t1")  # not asked again before GitHub's retry time
    assert launcher.started == [] and store.tasks["t1"].status.phase is None and forge.asked == 1
    clock[0] += dt.timedelta(seconds=31)
    forge.answer = "main"
    eng.reconcile("t1")
    assert launcher.started == [1]
    forge = DefaultForge(GitHubNotFound("repository acme/api not found", status=404))
    eng, store, launcher, _ = engine_with({"branch": "amp/x"}, forge)
    eng.reconcile("t1")
    assert store.tasks["t1"].status.phase == Phase.ERROR and "not found" in store.tasks["t1"].status.summary


def test_engine_waits_for_the_branch_default_and_refuses_on_unreadable_rules():
    eng, store, launcher, _ = engine_with({}, DefaultForge("main"))
    eng.reconcile("t1")
    assert store.tasks["t1"].status.phase is None and launcher.started == []

    def broken():
        raise ValueError("allowedRepos is not valid JSON")

    eng, store, launcher, _ = engine_with({"branch": "amp/x"}, DefaultForge("main"))
    eng.rules = broken
    eng.reconcile("t1")
    assert store.tasks["t1"].status.phase == Phase.ERROR and "not valid JSON" in store.tasks["t1"].status.summary
