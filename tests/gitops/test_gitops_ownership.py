"""A task never pushes the default or base branch, and never replaces work that is not its own."""

from __future__ import annotations

import pytest

from ampx.gitops import Workspace, attempt_message
from ampx.gitops.ownership import (
    BranchNotOwned,
    ProtectedBranch,
    ownership_problem,
    protected_problem,
    task_of,
)

ME = ("ampx bot", "ampx@example.com")


def fresh(remote, tmp_path, name="ws") -> Workspace:
    return Workspace.clone(remote.url, tmp_path / name)


def push_attempt(remote, tmp_path, branch, task_id, name, attempt=1) -> str:
    """What a task's attempt leaves on the remote: one commit with its trailer."""
    ws = fresh(remote, tmp_path, name)
    checkout = ws.prepare(branch, attempt, task_id=task_id)
    (ws.path / f"{task_id}.txt").write_text(task_id + "\n")
    sha = ws.commit(*ME, attempt_message("work", attempt, task_id))
    ws.push(branch, checkout.lease_sha)
    return sha


# ----------------------------------------------------------------------------- plain functions
def test_task_of_reads_the_trailer_of_the_last_paragraph():
    assert task_of(attempt_message("t", 1, "01jabc")) == "01jabc"
    assert task_of(attempt_message("t", 2, "01jabc", interrupted=True)) == "01jabc"
    assert task_of("fix things\n\nSigned-off-by: a <a@b>\nampx-task: 01XYZ\n") == "01XYZ"
    assert task_of("Ampx-Task: 01jabc") is None, "a subject line is not a trailer"
    assert task_of("subject\n\nAmpx-Task: 01jabc\n\nsomething after") is None
    assert task_of("subject\n\nbody mentions Ampx-Task: x inline") is None


def test_ownership_problem_names_the_commit_and_its_task():
    mine = attempt_message("t", 1, "01mine")
    assert ownership_problem("amp/x", "a" * 40, mine, "01MINE") is None
    why = ownership_problem("amp/x", "b" * 40, attempt_message("t", 1, "01other"), "01mine")
    assert "bbbbbbbbbbbb" in why and "task 01other's" in why
    why = ownership_problem("amp/x", "c" * 40, "hand-made commit\n", "01mine")
    assert "cccccccccccc" in why and "not made by an ampx task" in why


def test_protected_problem():
    assert "default branch" in protected_problem("main", None, "main")
    assert "base branch" in protected_problem("amp/base", "amp/base", "main")
    assert "not a task branch" in protected_problem("HEAD", None, "main")
    assert protected_problem("amp/x", "main", "main") is None


# ----------------------------------------------------------------------------- against a remote
def test_a_task_naming_another_tasks_branch_stops_before_its_agent_runs(remote, tmp_path):
    theirs = push_attempt(remote, tmp_path, "amp/shared", "01taskA", "a")
    ws = fresh(remote, tmp_path, "b")
    with pytest.raises(BranchNotOwned, match=f"{theirs[:12]} is task 01taskA's commit"):
        ws.prepare("amp/shared", 1, task_id="01taskB")
    with pytest.raises(BranchNotOwned):  # a later attempt that never pushed is no different
        fresh(remote, tmp_path, "b2").prepare("amp/shared", 2, task_id="01taskB")
    assert remote.head("amp/shared") == theirs


def test_control_without_the_check_the_branch_is_replaced(remote, tmp_path):
    """What the check prevents: a first push with a lease on the tip replaces the other work."""
    theirs = push_attempt(remote, tmp_path, "amp/shared", "01taskA", "a")
    ws = fresh(remote, tmp_path, "b")
    checkout = ws.prepare("amp/shared", 1)  # no task id: no ownership check
    (ws.path / "b.txt").write_text("b\n")
    mine = ws.commit(*ME, attempt_message("b", 1, "01taskB"))
    ws.push("amp/shared", checkout.lease_sha)
    assert remote.head("amp/shared") == mine != theirs


def test_a_branch_made_by_a_person_is_not_replaced(remote, tmp_path):
    sha = remote.commit_on("amp/by-hand", "notes.txt", "mine\n", "my own work")
    with pytest.raises(BranchNotOwned, match="not made by an ampx task"):
        fresh(remote, tmp_path).prepare("amp/by-hand", 1, task_id="01task")
    assert remote.head("amp/by-hand") == sha


def test_its_own_branch_is_taken_up_again(remote, tmp_path):
    first = push_attempt(remote, tmp_path, "amp/mine", "01task", "a1")
    # attempt 1 again (a re-run Job) and attempt 2 find their own tip
    assert fresh(remote, tmp_path, "a1b").prepare("amp/mine", 1, task_id="01task").lease_sha == first
    second = fresh(remote, tmp_path, "a2").prepare("amp/mine", 2, task_id="01task")
    assert second.source_branch == "amp/mine" and second.start_sha == first


def test_after_its_first_push_a_person_may_add_to_the_branch(remote, tmp_path):
    push_attempt(remote, tmp_path, "amp/mine", "01task", "a1")
    fix = remote.commit_on("amp/mine", "fix.txt", "by hand\n", "a reviewer's fix")
    checkout = fresh(remote, tmp_path, "a2").prepare("amp/mine", 2, task_id="01task",
                                                     pushed_before=True)
    assert checkout.start_sha == fix


@pytest.mark.parametrize("branch,base", [("main", None), ("develop", "develop")])
def test_the_default_and_the_base_branch_are_never_checked_out_for_a_task(remote, tmp_path,
                                                                          branch, base):
    before = remote.head(branch)
    with pytest.raises(ProtectedBranch):
        fresh(remote, tmp_path).prepare(branch, 1, base, task_id="01task")
    assert remote.head(branch) == before
