"""The one GraphQL mutation ampx uses: ``markPullRequestReadyForReview`` (``POST /graphql``).

GitHub has no REST operation that turns a draft pull request into one ready for review; PyGithub's
``PullRequest.mark_ready_for_review`` sends this mutation::

    mutation Mutation($input: MarkPullRequestReadyForReviewInput!) {
      markPullRequestReadyForReview(input: $input) { clientMutationId pullRequest { isDraft } }
    }

with ``{"input": {"pullRequestId": <the PR's node_id>}}``. As on GitHub, the endpoint is
``/graphql`` (``/api/graphql`` on an Enterprise-style host like the emulator's), answers 200
with ``errors`` for a query it cannot resolve (``NOT_FOUND``, ``FORBIDDEN``), 401 without valid
credentials, and the change fires the ``pull_request`` event with action ``ready_for_review``.
Any other query is answered as GitHub answers an unknown field.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from ._util import node_id, utcnow
from .auth import ApiError, authenticate
from .state import PullRequest, grants

if TYPE_CHECKING:
    from .emulator import GitHubEmulator

MUTATION = "markPullRequestReadyForReview"
_QUERY = re.compile(
    r"^\s*mutation\b[^(]*\(\s*\$(?P<var>\w+)\s*:\s*MarkPullRequestReadyForReviewInput!\s*\)\s*\{\s*"
    r"markPullRequestReadyForReview\s*\(\s*input\s*:\s*\$(?P=var)\s*\)\s*\{(?P<fields>.*)\}\s*\}\s*$",
    re.S,
)


def handle(emu: "GitHubEmulator", authorization: str | None, body: bytes) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) for one GraphQL request."""
    try:
        principal = authenticate(emu.store, authorization, jwt_endpoint=False)
    except ApiError as exc:
        return exc.status, exc.body()
    if principal.token is None:
        return 401, {"message": "This endpoint requires you to be authenticated.",
                     "documentation_url": "https://docs.github.com/graphql/guides/forming-calls-with-graphql#authenticating-with-graphql"}
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return 400, {"message": "Problems parsing JSON", "documentation_url": "https://docs.github.com/graphql"}
    query = str(request.get("query") or "") if isinstance(request, dict) else ""
    variables = request.get("variables") or {} if isinstance(request, dict) else {}
    m = _QUERY.match(query)
    if not m:
        return 200, {"errors": [{"message": "ampx's GitHub emulator implements only the "
                                            f"{MUTATION} mutation", "locations": [{"line": 1, "column": 1}]}]}
    fields = m.group("fields")
    inp = variables.get(m.group("var")) if isinstance(variables, dict) else None
    pr_id = inp.get("pullRequestId") if isinstance(inp, dict) else None
    if not isinstance(pr_id, str):
        return 200, {"errors": [{"message": "Variable $input of type MarkPullRequestReadyForReviewInput! "
                                            "was provided invalid value for pullRequestId (Expected value to not be null)",
                                 "locations": [{"line": 1, "column": 10}]}]}
    pr = _find(emu, pr_id)
    token = principal.token
    if pr is None or not emu.token_can_see(token, pr.repo):
        return 200, _error("NOT_FOUND", f"Could not resolve to a node with the global id of '{pr_id}'.")
    if not grants(token.permissions, "pull_requests", "write"):
        who = "integration" if token.kind == "installation" else "personal access token"
        return 200, _error("FORBIDDEN", f"Resource not accessible by {who}")
    with emu.store.lock:
        was_draft = pr.draft and pr.state == "open"
        if was_draft:
            pr.draft, pr.updated_at = False, utcnow()
    if was_draft:
        emu.ci.on_pull_request(pr, "ready_for_review", token.actor)
    out: dict[str, Any] = {}
    if re.search(r"\bclientMutationId\b", fields):
        out["clientMutationId"] = inp.get("clientMutationId")
    sub = re.search(r"\bpullRequest\s*\{([^}]*)\}", fields)
    if sub:
        values = {"isDraft": pr.draft, "number": pr.number, "id": node_id("PullRequest", pr.id),
                  "state": pr.state.upper()}
        out["pullRequest"] = {k: v for k, v in values.items() if re.search(rf"\b{k}\b", sub.group(1))}
    return 200, {"data": {MUTATION: out}}


def _find(emu: "GitHubEmulator", pr_node_id: str) -> PullRequest | None:
    with emu.store.lock:
        for pulls in emu.store.pulls.values():
            for pr in pulls.values():
                if node_id("PullRequest", pr.id) == pr_node_id:
                    return pr
    return None


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"data": {MUTATION: None},
            "errors": [{"type": kind, "path": [MUTATION], "locations": [{"line": 1, "column": 72}],
                        "message": message}]}
