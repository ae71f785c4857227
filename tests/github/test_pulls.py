"""Opening/adopting and merging pull requests over the emulator."""

from __future__ import annotations

import pytest

from ampx.core.repo import RepoRef
from ampx.core.models import MergeMethod
from ampx.github.pulls import AttemptRow, render_pr_body

REPO = RepoRef("acme", "widgets")


def test_open_then_adopt(sandbox) -> None:
    svc = sandbox.service()
    sandbox.push("amp/feature-abc123", {"src/new.py": "X = 1\n"})
    body = render_pr_body("Add X", [(1, "a" * 40, "failure"), AttemptRow(2, "b" * 40, "success")],
                          "http://ci/run/1", "T-123")
    url, number, adopted = svc.open_or_adopt_pr(REPO, "amp/feature-abc123", None, "Add X", body)
    assert not adopted and number == 1 and url.endswith("/acme/widgets/pull/1")
    again = svc.open_or_adopt_pr(REPO, "amp/feature-abc123", None, "Add X", body)
    assert again == (url, number, True)
    pulls = sandbox.emu.pulls(REPO.full_name)
    assert len(pulls) == 1 and pulls[0].base_ref == "main"
    assert "https://ampcode.com/threads/T-123" in pulls[0].body
    assert "| 2 | `bbbbbbbbbbbb` | success |" in pulls[0].body


def test_lost_creation_race_adopts_the_other_pr(sandbox, monkeypatch) -> None:
    svc = sandbox.service()
    sandbox.push("amp/race", {"src/race.py": "R = 1\n"})
    # someone else opens the PR between our "list" and our "create"
    other = sandbox.service()
    real_find = svc.pulls.find_open_pr
    calls = []

    def find(repo, branch, base=None):
        calls.append(branch)
        if len(calls) == 1:
            other.open_or_adopt_pr(REPO, "amp/race", "main", "theirs", "")
            return None
        return real_find(repo, branch, base)

    monkeypatch.setattr(svc.pulls, "find_open_pr", find)
    url, number, adopted = svc.open_or_adopt_pr(REPO, "amp/race", "main", "ours", "")
    assert adopted and len(sandbox.emu.pulls(REPO.full_name)) == 1 and len(calls) == 2


def test_merge_squash_updates_base_and_deletes_branch(sandbox) -> None:
    svc = sandbox.service()
    head = sandbox.push("amp/merge-me", {"src/merge.py": "M = 1\n"})
    _, number, _ = svc.open_or_adopt_pr(REPO, "amp/merge-me", None, "Merge me", "body")
    result = svc.merge_pr(REPO, number, MergeMethod.SQUASH, head, True, "amp/merge-me")
    assert result.merged and result.sha and result.branch_deleted and result.reason is None
    branches = sandbox.emu.branches(REPO.full_name)
    assert branches["main"] == result.sha and "amp/merge-me" not in branches
    # merging again is idempotent
    again = svc.merge_pr(REPO, number, "squash", head, True, "amp/merge-me")
    assert again.merged and again.sha == result.sha and "already merged" in again.reason


def test_merge_waits_for_mergeable_to_be_computed(sandbox) -> None:
    svc = sandbox.service()
    sandbox.push("amp/slow", {"src/slow.py": "S = 1\n"})
    _, number, _ = svc.open_or_adopt_pr(REPO, "amp/slow", None, "Slow", "")
    sandbox.emu.set_mergeable(REPO.full_name, number, None)
    waits = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        sandbox.emu.clear_mergeable(REPO.full_name, number)

    svc.pulls.sleep = sleep
    result = svc.merge_pr(REPO, number, MergeMethod.MERGE)
    assert result.merged and len(waits) == 1


def test_unmergeable_is_refused_with_reason(sandbox) -> None:
    svc = sandbox.service()
    sandbox.push("amp/conflict", {"src/c.py": "C = 1\n"})
    _, number, _ = svc.open_or_adopt_pr(REPO, "amp/conflict", None, "Conflict", "")
    sandbox.emu.set_mergeable(REPO.full_name, number, False)
    main_before = sandbox.emu.branches(REPO.full_name)["main"]
    result = svc.merge_pr(REPO, number, MergeMethod.SQUASH, None, True, "amp/conflict")
    assert not result.merged and result.sha is None
    assert "405 not mergeable" in result.reason and f"PR #{number}" in result.reason
    assert "Pull Request is not mergeable" in result.reason
    branches = sandbox.emu.branches(REPO.full_name)
    assert branches["main"] == main_before and "amp/conflict" in branches  # nothing changed


def test_stale_sha_is_refused_with_reason(sandbox) -> None:
    svc = sandbox.service()
    first = sandbox.push("amp/moving", {"src/m.py": "M = 1\n"})
    _, number, _ = svc.open_or_adopt_pr(REPO, "amp/moving", None, "Moving", "")
    sandbox.push("amp/moving", {"src/m.py": "M = 2\n"})
    result = svc.merge_pr(REPO, number, MergeMethod.REBASE, first, True, "amp/moving")
    assert not result.merged
    assert "409 head changed" in result.reason and first[:12] in result.reason
    assert sandbox.emu.pulls(REPO.full_name)[0].state == "open"


def test_render_pr_body_redacts_and_quotes() -> None:
    body = render_pr_body("fix it\nGITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123", [], None, None, task_id="01abc")
    assert body.startswith("Opened by ampx for task `01abc`.")
    assert "> fix it" in body and "ghp_abcdef" not in body


@pytest.mark.parametrize("method", list(MergeMethod))
def test_merge_methods(sandbox, method) -> None:
    svc = sandbox.service()
    branch = f"amp/{method.value}"
    sandbox.push(branch, {f"src/{method.value}.py": "V = 1\n"})
    _, number, _ = svc.open_or_adopt_pr(REPO, branch, "main", method.value, "")
    assert svc.merge_pr(REPO, number, method, None, False, branch).merged
    assert branch in sandbox.emu.branches(REPO.full_name)
