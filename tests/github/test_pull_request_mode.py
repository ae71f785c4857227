"""Draft pull requests over the emulator: opened as drafts, CI on `pull_request` (opened and
synchronize) for the exact head, marked ready through GraphQL as PyGithub does it, a comment
for review, and the merge check's view of the branch's pull request."""

from __future__ import annotations

import requests

from ampx.core.models import MergeMethod
from ampx.core.repo import RepoRef

REPO = RepoRef("acme", "widgets")

PR_ONLY = """name: CI
on:
  push:
    branches: [main]
  pull_request:
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - run: test -f ok.txt
"""
ON_READY = """name: Ready
on:
  pull_request:
    types: [ready_for_review]
jobs:
  announce:
    runs-on: ubuntu-latest
    steps:
      - run: echo ready
"""


def test_a_draft_gets_pull_request_runs_for_its_exact_head_on_open_and_synchronize(sandbox) -> None:
    svc = sandbox.service()
    red = sandbox.push("amp/pr-only", {".github/workflows/ci.yml": PR_ONLY})
    sandbox.emu.ci.wait_idle()
    assert svc.poll_ci(REPO, red).state == "none", "nothing runs on push to the task branch"
    pr = svc.open_or_adopt(REPO, "amp/pr-only", None, "PR only", "body", draft=True)
    assert pr.draft and not pr.adopted and pr.head_sha == red
    assert sandbox.emu.pulls(REPO.full_name)[0].draft is True
    obs = sandbox.wait_ci(lambda: svc.poll_ci(REPO, red, event="pull_request"))
    assert obs.state == "red" and obs.runs[0].head_branch == "amp/pr-only"
    green = sandbox.push("amp/pr-only", {"ok.txt": "ok\n"})  # synchronize
    obs = sandbox.wait_ci(lambda: svc.poll_ci(REPO, green, event="pull_request"))
    assert obs.state == "green"
    assert svc.poll_ci(REPO, green).state == "none", "still no push run"
    again = svc.open_or_adopt(REPO, "amp/pr-only", None, "PR only", "body", draft=True)
    assert again.adopted and again.number == pr.number and again.draft and again.head_sha == green


def test_mark_ready_updates_the_body_and_fires_ready_for_review(sandbox) -> None:
    svc = sandbox.service()
    sandbox.push("amp/ready", {".github/workflows/ci.yml": PR_ONLY,
                               ".github/workflows/ready.yml": ON_READY, "ok.txt": "ok\n"})
    pr = svc.open_or_adopt(REPO, "amp/ready", None, "Ready", "first body", draft=True)
    sandbox.emu.ci.wait_idle()
    assert {r.workflow.name for r in sandbox.emu.ci.runs(REPO.full_name)} == {"CI"}
    assert svc.mark_ready(REPO, pr.number, "every attempt") is True
    stored = sandbox.emu.pulls(REPO.full_name)[0]
    assert stored.draft is False and stored.body == "every attempt"
    sandbox.emu.ci.wait_idle()
    ready_runs = [r for r in sandbox.emu.ci.runs(REPO.full_name) if r.workflow.name == "Ready"]
    assert len(ready_runs) == 1 and ready_runs[0].event == "pull_request"
    assert svc.mark_ready(REPO, pr.number) is False, "already ready: nothing to do"


def test_a_draft_cannot_be_merged_until_ready(sandbox) -> None:
    svc = sandbox.service()
    head = sandbox.push("amp/draft-merge", {"ok.txt": "ok\n"})
    pr = svc.open_or_adopt(REPO, "amp/draft-merge", None, "Draft", "", draft=True)
    refused = svc.merge_pr(REPO, pr.number, MergeMethod.SQUASH, head)
    assert not refused.merged and "still a draft" in refused.reason
    svc.mark_ready(REPO, pr.number)
    assert svc.merge_pr(REPO, pr.number, MergeMethod.SQUASH, head).merged


def test_comment_and_the_branch_pull_request(sandbox) -> None:
    svc = sandbox.service()
    head = sandbox.push("amp/comment", {"ok.txt": "ok\n"})
    pr = svc.open_or_adopt(REPO, "amp/comment", None, "Comment", "", draft=True)
    svc.comment_pr(REPO, pr.number, "ampx stopped: CI still red after 3 attempt(s).")
    assert sandbox.emu.comments(REPO.full_name, pr.number) == [
        "ampx stopped: CI still red after 3 attempt(s)."]
    found = svc.pull_for_branch(REPO, "amp/comment")
    assert found.number == pr.number and found.head_sha == head and found.draft
    assert svc.pull_for_branch(REPO, "amp/no-such-branch") is None


def _graphql(sandbox, token: str, node: str) -> dict:
    query = ("mutation Mutation($input: MarkPullRequestReadyForReviewInput!) { "
             "markPullRequestReadyForReview(input: $input) { clientMutationId pullRequest { isDraft } } }")
    resp = requests.post(f"{sandbox.emu.url}/api/graphql", headers={"Authorization": f"bearer {token}"},
                         json={"query": query, "variables": {"input": {"pullRequestId": node}}}, timeout=10)
    assert resp.status_code == 200
    return resp.json()


def test_graphql_refuses_like_github(sandbox) -> None:
    svc = sandbox.service()
    sandbox.push("amp/gql", {"ok.txt": "ok\n"})
    svc.open_or_adopt(REPO, "amp/gql", None, "GQL", "", draft=True)
    stored = sandbox.emu.pulls(REPO.full_name)[0]
    listing = requests.get(f"{sandbox.emu.api_url}/repos/acme/widgets/pulls/{stored.number}",
                           headers={"Authorization": f"token {svc.token_for(REPO)}"}, timeout=10).json()
    node = listing["node_id"]
    reader = sandbox.emu.create_installation_token(
        sandbox.installation_id, permissions={"pull_requests": "read", "metadata": "read"})
    denied = _graphql(sandbox, reader, node)
    assert denied["errors"][0]["type"] == "FORBIDDEN" and stored.draft is True
    missing = _graphql(sandbox, svc.token_for(REPO), "PR_nope")
    assert missing["errors"][0]["type"] == "NOT_FOUND"
    done = _graphql(sandbox, svc.token_for(REPO), node)
    assert done == {"data": {"markPullRequestReadyForReview": {"clientMutationId": None,
                                                                "pullRequest": {"isDraft": False}}}}
    assert stored.draft is False
    anonymous = requests.post(f"{sandbox.emu.url}/api/graphql", json={"query": "{ viewer { login } }"}, timeout=10)
    assert anonymous.status_code == 401
