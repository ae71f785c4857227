"""JSON representations of emulator objects, shaped like GitHub's REST API.

Every field the OpenAPI document marks as required is produced with the right
type, and every URL points back at the emulator itself (PyGithub refuses to
follow URLs to another host).
"""

from __future__ import annotations

from typing import Any

from . import gitrepo
from ._util import iso, node_id
from .state import Account, Installation, IssueComment, Job, PullRequest, Repo, WorkflowRun

GITHUB_ACTIONS_APP_ID = 15368


class Urls:
    """URL builder for one running emulator (``web`` = http://host:port)."""

    def __init__(self, web: str) -> None:
        self.web = web.rstrip("/")
        self.api = self.web + "/api/v3"

    def repo_api(self, repo: Repo) -> str:
        return f"{self.api}/repos/{repo.full_name}"

    def repo_html(self, repo: Repo) -> str:
        return f"{self.web}/{repo.full_name}"


def user(u: Urls, acct: Account) -> dict[str, Any]:
    api = f"{u.api}/users/{acct.login}"
    return {
        "login": acct.login,
        "id": acct.id,
        "node_id": node_id("User" if acct.type != "Organization" else "Organization", acct.id),
        "avatar_url": f"{u.web}/avatars/{acct.login}",
        "gravatar_id": "",
        "url": api,
        "html_url": f"{u.web}/{acct.login}",
        "followers_url": f"{api}/followers",
        "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}",
        "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions",
        "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos",
        "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events",
        "type": acct.type,
        "site_admin": False,
        "user_view_type": "public",
    }


def repository(u: Urls, repo: Repo, permissions: dict[str, bool] | None = None) -> dict[str, Any]:
    """Superset of GitHub's minimal-repository, repository and full-repository."""
    api = u.repo_api(repo)
    host = u.web.split("://", 1)[1].split(":")[0]
    data: dict[str, Any] = {
        "id": repo.id,
        "node_id": node_id("Repository", repo.id),
        "name": repo.name,
        "full_name": repo.full_name,
        "owner": user(u, repo.owner),
        "private": repo.private,
        "html_url": u.repo_html(repo),
        "description": repo.description,
        "fork": False,
        "url": api,
        "archive_url": f"{api}/{{archive_format}}{{/ref}}",
        "assignees_url": f"{api}/assignees{{/user}}",
        "blobs_url": f"{api}/git/blobs{{/sha}}",
        "branches_url": f"{api}/branches{{/branch}}",
        "collaborators_url": f"{api}/collaborators{{/collaborator}}",
        "comments_url": f"{api}/comments{{/number}}",
        "commits_url": f"{api}/commits{{/sha}}",
        "compare_url": f"{api}/compare/{{base}}...{{head}}",
        "contents_url": f"{api}/contents/{{+path}}",
        "contributors_url": f"{api}/contributors",
        "deployments_url": f"{api}/deployments",
        "downloads_url": f"{api}/downloads",
        "events_url": f"{api}/events",
        "forks_url": f"{api}/forks",
        "git_commits_url": f"{api}/git/commits{{/sha}}",
        "git_refs_url": f"{api}/git/refs{{/sha}}",
        "git_tags_url": f"{api}/git/tags{{/sha}}",
        "git_url": f"git://{host}/{repo.full_name}.git",
        "issue_comment_url": f"{api}/issues/comments{{/number}}",
        "issue_events_url": f"{api}/issues/events{{/number}}",
        "issues_url": f"{api}/issues{{/number}}",
        "keys_url": f"{api}/keys{{/key_id}}",
        "labels_url": f"{api}/labels{{/name}}",
        "languages_url": f"{api}/languages",
        "merges_url": f"{api}/merges",
        "milestones_url": f"{api}/milestones{{/number}}",
        "notifications_url": f"{api}/notifications{{?since,all,participating}}",
        "pulls_url": f"{api}/pulls{{/number}}",
        "releases_url": f"{api}/releases{{/id}}",
        "ssh_url": f"git@{host}:{repo.full_name}.git",
        "stargazers_url": f"{api}/stargazers",
        "statuses_url": f"{api}/statuses/{{sha}}",
        "subscribers_url": f"{api}/subscribers",
        "subscription_url": f"{api}/subscription",
        "tags_url": f"{api}/tags",
        "teams_url": f"{api}/teams",
        "trees_url": f"{api}/git/trees{{/sha}}",
        "clone_url": f"{u.web}/{repo.full_name}.git",
        "mirror_url": None,
        "hooks_url": f"{api}/hooks",
        "svn_url": u.repo_html(repo),
        "homepage": None,
        "language": None,
        "forks_count": 0,
        "forks": 0,
        "stargazers_count": 0,
        "watchers_count": 0,
        "watchers": 0,
        "size": 0,
        "default_branch": repo.default_branch,
        "open_issues_count": 0,
        "open_issues": 0,
        "is_template": False,
        "topics": [],
        "has_issues": True,
        "has_projects": False,
        "has_wiki": False,
        "has_pages": False,
        "has_downloads": True,
        "has_discussions": False,
        "archived": False,
        "disabled": False,
        "visibility": "private" if repo.private else "public",
        "pushed_at": iso(repo.pushed_at or repo.created_at),
        "created_at": iso(repo.created_at),
        "updated_at": iso(repo.updated_at),
        "allow_forking": False,
        "web_commit_signoff_required": False,
        "license": None,
    }
    if permissions is not None:
        data["permissions"] = permissions
    return data


def full_repository(u: Urls, repo: Repo, permissions: dict[str, bool], open_prs: int) -> dict[str, Any]:
    data = repository(u, repo, permissions)
    data.update(
        {
            "open_issues_count": open_prs,
            "open_issues": open_prs,
            "allow_rebase_merge": True,
            "allow_squash_merge": True,
            "allow_merge_commit": True,
            "allow_auto_merge": False,
            "delete_branch_on_merge": False,
            "allow_update_branch": False,
            "use_squash_pr_title_as_default": False,
            "squash_merge_commit_title": "COMMIT_OR_PR_TITLE",
            "squash_merge_commit_message": "COMMIT_MESSAGES",
            "merge_commit_title": "MERGE_MESSAGE",
            "merge_commit_message": "PR_TITLE",
            "temp_clone_token": None,
            "network_count": 0,
            "subscribers_count": 0,
            "organization": user(u, repo.owner) if repo.owner.type == "Organization" else None,
        }
    )
    return data


def installation(u: Urls, inst: Installation) -> dict[str, Any]:
    return {
        "id": inst.id,
        "account": user(u, inst.account),
        "repository_selection": "selected",
        "access_tokens_url": f"{u.api}/app/installations/{inst.id}/access_tokens",
        "repositories_url": f"{u.api}/installation/repositories",
        "html_url": f"{u.web}/settings/installations/{inst.id}",
        "app_id": inst.app.id,
        "client_id": inst.app.client_id,
        "target_id": inst.account.id,
        "target_type": inst.account.type if inst.account.type == "Organization" else "User",
        "permissions": dict(inst.permissions),
        "events": ["push", "pull_request", "workflow_run", "check_run"],
        "created_at": iso(inst.created_at),
        "updated_at": iso(inst.created_at),
        "single_file_name": None,
        "has_multiple_single_files": False,
        "single_file_paths": [],
        "app_slug": inst.app.slug,
        "suspended_by": None,
        "suspended_at": None,
    }


def _pr_links(u: Urls, pr: PullRequest) -> dict[str, Any]:
    api = u.repo_api(pr.repo)
    html = f"{u.repo_html(pr.repo)}/pull/{pr.number}"
    return {
        "self": {"href": f"{api}/pulls/{pr.number}"},
        "html": {"href": html},
        "issue": {"href": f"{api}/issues/{pr.number}"},
        "comments": {"href": f"{api}/issues/{pr.number}/comments"},
        "review_comments": {"href": f"{api}/pulls/{pr.number}/comments"},
        "review_comment": {"href": f"{api}/pulls/comments{{/number}}"},
        "commits": {"href": f"{api}/pulls/{pr.number}/commits"},
        "statuses": {"href": f"{api}/statuses/{pr.head_sha}"},
    }


def issue_comment(u: Urls, c: "IssueComment", association: str) -> dict[str, Any]:
    api = u.repo_api(c.repo)
    return {
        "id": c.id,
        "node_id": node_id("IssueComment", c.id),
        "url": f"{api}/issues/comments/{c.id}",
        "html_url": f"{u.repo_html(c.repo)}/pull/{c.number}#issuecomment-{c.id}",
        "issue_url": f"{api}/issues/{c.number}",
        "body": c.body,
        "user": user(u, c.user),
        "created_at": iso(c.created_at),
        "updated_at": iso(c.updated_at),
        "author_association": association,
        "performed_via_github_app": None,
        "reactions": {
            "url": f"{api}/issues/comments/{c.id}/reactions",
            "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "confused": 0, "heart": 0,
            "hooray": 0, "eyes": 0, "rocket": 0,
        },
    }


def pull_request_simple(u: Urls, pr: PullRequest, base_sha: str) -> dict[str, Any]:
    api = u.repo_api(pr.repo)
    html = f"{u.repo_html(pr.repo)}/pull/{pr.number}"
    repo_json = repository(u, pr.repo)
    owner = pr.repo.owner.login
    return {
        "url": f"{api}/pulls/{pr.number}",
        "id": pr.id,
        "node_id": node_id("PullRequest", pr.id),
        "html_url": html,
        "diff_url": f"{html}.diff",
        "patch_url": f"{html}.patch",
        "issue_url": f"{api}/issues/{pr.number}",
        "commits_url": f"{api}/pulls/{pr.number}/commits",
        "review_comments_url": f"{api}/pulls/{pr.number}/comments",
        "review_comment_url": f"{api}/pulls/comments{{/number}}",
        "comments_url": f"{api}/issues/{pr.number}/comments",
        "statuses_url": f"{api}/statuses/{pr.head_sha}",
        "number": pr.number,
        "state": pr.state,
        "locked": False,
        "title": pr.title,
        "user": user(u, pr.user),
        "body": pr.body,
        "labels": [],
        "milestone": None,
        "active_lock_reason": None,
        "created_at": iso(pr.created_at),
        "updated_at": iso(pr.updated_at),
        "closed_at": iso(pr.closed_at),
        "merged_at": iso(pr.merged_at),
        "merge_commit_sha": pr.merge_commit_sha,
        "assignee": None,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "head": {
            "label": f"{owner}:{pr.head_ref}",
            "ref": pr.head_ref,
            "sha": pr.head_sha,
            "user": user(u, pr.repo.owner),
            "repo": repo_json,
        },
        "base": {
            "label": f"{owner}:{pr.base_ref}",
            "ref": pr.base_ref,
            "sha": base_sha,
            "user": user(u, pr.repo.owner),
            "repo": repo_json,
        },
        "_links": _pr_links(u, pr),
        "author_association": "OWNER" if pr.user.login == owner else "CONTRIBUTOR",
        "auto_merge": None,
        "draft": pr.draft,
    }


def pull_request(
    u: Urls,
    pr: PullRequest,
    base_sha: str,
    *,
    mergeable: bool | None,
    mergeable_state: str,
    stats: tuple[int, int, int, int],
) -> dict[str, Any]:
    commits, additions, deletions, changed = stats
    data = pull_request_simple(u, pr, base_sha)
    data.update(
        {
            "merged": pr.merged_at is not None,
            "mergeable": mergeable,
            "rebaseable": mergeable,
            "mergeable_state": mergeable_state,
            "merged_by": user(u, pr.merged_by) if pr.merged_by else None,
            "comments": 0,
            "review_comments": 0,
            "maintainer_can_modify": pr.maintainer_can_modify,
            "commits": commits,
            "additions": additions,
            "deletions": deletions,
            "changed_files": changed,
        }
    )
    return data


def pull_request_minimal(u: Urls, pr: PullRequest, base_sha: str) -> dict[str, Any]:
    repo = {"id": pr.repo.id, "url": u.repo_api(pr.repo), "name": pr.repo.name}
    return {
        "id": pr.id,
        "number": pr.number,
        "url": f"{u.repo_api(pr.repo)}/pulls/{pr.number}",
        "head": {"ref": pr.head_ref, "sha": pr.head_sha, "repo": repo},
        "base": {"ref": pr.base_ref, "sha": base_sha, "repo": repo},
    }


def head_commit(info: gitrepo.CommitInfo) -> dict[str, Any]:
    from datetime import datetime, timezone

    return {
        "id": info.sha,
        "tree_id": info.tree,
        "message": info.message,
        "timestamp": iso(datetime.fromtimestamp(info.committer_time, timezone.utc)),
        "author": {"name": info.author_name, "email": info.author_email},
        "committer": {"name": info.committer_name, "email": info.committer_email},
    }


def workflow_run(u: Urls, run: WorkflowRun, pulls: list[dict[str, Any]]) -> dict[str, Any]:
    api = f"{u.repo_api(run.repo)}/actions/runs/{run.id}"
    repo_json = repository(u, run.repo)
    data = {
        "id": run.id,
        "name": run.workflow.name,
        "node_id": node_id("WorkflowRun", run.id),
        "check_suite_id": run.check_suite_id,
        "check_suite_node_id": node_id("CheckSuite", run.check_suite_id),
        "head_branch": run.head_branch,
        "head_sha": run.head_sha,
        "path": run.workflow.path,
        "run_number": run.run_number,
        "event": run.event,
        "display_title": run.display_title,
        "status": run.status,
        "conclusion": run.conclusion,
        "workflow_id": run.workflow.id,
        "url": api,
        "html_url": f"{u.repo_html(run.repo)}/actions/runs/{run.id}",
        "pull_requests": pulls,
        "created_at": iso(run.created_at),
        "updated_at": iso(run.updated_at),
        "actor": user(u, run.actor),
        "triggering_actor": user(u, run.actor),
        "run_attempt": run.run_attempt,
        "referenced_workflows": [],
        "run_started_at": iso(run.run_started_at or run.created_at),
        "jobs_url": f"{api}/jobs",
        "logs_url": f"{api}/logs",
        "check_suite_url": f"{u.repo_api(run.repo)}/check-suites/{run.check_suite_id}",
        "artifacts_url": f"{api}/artifacts",
        "cancel_url": f"{api}/cancel",
        "rerun_url": f"{api}/rerun",
        "previous_attempt_url": f"{api}/attempts/{run.run_attempt - 1}" if run.run_attempt > 1 else None,
        "workflow_url": f"{u.repo_api(run.repo)}/actions/workflows/{run.workflow.id}",
        "head_commit": run.head_commit,
        "repository": repo_json,
        "head_repository": repo_json,
        "head_repository_id": run.repo.id,
    }
    return data


def job(u: Urls, j: Job) -> dict[str, Any]:
    run = j.run
    repo_api = u.repo_api(run.repo)
    return {
        "id": j.id,
        "run_id": run.id,
        "run_url": f"{repo_api}/actions/runs/{run.id}",
        "run_attempt": j.run_attempt,
        "node_id": node_id("CheckRun", j.id),
        "head_sha": run.head_sha,
        "url": f"{repo_api}/actions/jobs/{j.id}",
        "html_url": f"{u.repo_html(run.repo)}/actions/runs/{run.id}/job/{j.id}",
        "status": j.status,
        "conclusion": j.conclusion,
        "created_at": iso(j.created_at),
        "started_at": iso(j.started_at or j.created_at),
        "completed_at": iso(j.completed_at),
        "name": j.name,
        "steps": [
            {
                "name": s.name,
                "status": s.status,
                "conclusion": s.conclusion,
                "number": s.number,
                "started_at": iso(s.started_at),
                "completed_at": iso(s.completed_at),
            }
            for s in j.steps
        ],
        "check_run_url": f"{repo_api}/check-runs/{j.id}",
        "labels": list(j.labels),
        "runner_id": 1 if j.started_at else None,
        "runner_name": "ampx-emulator-runner" if j.started_at else None,
        "runner_group_id": 1 if j.started_at else None,
        "runner_group_name": "Default" if j.started_at else None,
        "workflow_name": run.workflow.name,
        "head_branch": run.head_branch,
    }


def github_actions_app(u: Urls) -> dict[str, Any]:
    owner = Account(login="github", id=9919, type="Organization")
    return {
        "id": GITHUB_ACTIONS_APP_ID,
        "slug": "github-actions",
        "node_id": node_id("Integration", GITHUB_ACTIONS_APP_ID),
        "owner": user(u, owner),
        "name": "GitHub Actions",
        "description": "Automate your workflow from idea to production",
        "external_url": f"{u.web}/features/actions",
        "html_url": f"{u.web}/apps/github-actions",
        "created_at": "2018-07-30T09:30:17Z",
        "updated_at": "2019-12-10T19:04:12Z",
        "permissions": {"actions": "write", "checks": "write", "contents": "write", "metadata": "read"},
        "events": ["check_run", "check_suite", "push", "pull_request", "workflow_dispatch"],
    }


def check_run(u: Urls, j: Job, pulls: list[dict[str, Any]]) -> dict[str, Any]:
    repo_api = u.repo_api(j.run.repo)
    html = f"{u.repo_html(j.run.repo)}/actions/runs/{j.run.id}/job/{j.id}"
    return {
        "id": j.id,
        "head_sha": j.run.head_sha,
        "node_id": node_id("CheckRun", j.id),
        "external_id": "",
        "url": f"{repo_api}/check-runs/{j.id}",
        "html_url": html,
        "details_url": html,
        "status": j.status,
        "conclusion": j.conclusion,
        "started_at": iso(j.started_at),
        "completed_at": iso(j.completed_at),
        "output": {
            "title": None,
            "summary": None,
            "text": None,
            "annotations_count": 0,
            "annotations_url": f"{repo_api}/check-runs/{j.id}/annotations",
        },
        "name": j.name,
        "check_suite": {"id": j.run.check_suite_id},
        "app": github_actions_app(u),
        "pull_requests": pulls,
    }
