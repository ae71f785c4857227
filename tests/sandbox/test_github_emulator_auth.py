"""GitHub's auth model in the emulator: app JWT -> installation token, expiry,
repository restrictions and permissions, with GitHub's status codes and bodies."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from github import Auth, BadCredentialsException, Github, GithubException, GithubIntegration, UnknownObjectException

from ampx.sandbox.github_emulator import GitHubEmulator

FAST = {"seconds_between_requests": 0, "seconds_between_writes": 0}


def gh(emu: GitHubEmulator, token: str) -> Github:
    return Github(base_url=emu.api_url, auth=Auth.Token(token), retry=None, **FAST)


@pytest.fixture
def app(github_emulator: GitHubEmulator, app_key_pem: str):
    emu = github_emulator
    emu.create_repo("acme/api")
    emu.create_repo("acme/web")
    emu.create_repo("other/private")
    creds = emu.create_app(4242, slug="ampx-test", private_key_pem=app_key_pem)
    installation_id = emu.install_app(creds.app_id, "acme/api")
    assert emu.install_app(creds.app_id, "acme/web") == installation_id  # one installation per account
    integration = GithubIntegration(auth=Auth.AppAuth(creds.app_id, creds.private_key_pem), base_url=emu.api_url, **FAST)
    return creds, installation_id, integration


def test_app_jwt_to_installation_token_to_authorized_call(github_emulator: GitHubEmulator, app) -> None:
    creds, installation_id, integration = app
    installation = integration.get_repo_installation("acme", "api")
    assert installation.id == installation_id
    assert installation.app_id == creds.app_id

    auth = integration.get_access_token(installation_id)
    assert auth.token.startswith("ghs_") and len(auth.token) == 40
    remaining = (auth.expires_at - datetime.now(timezone.utc)).total_seconds()
    assert 3500 < remaining <= 3600

    repo = gh(github_emulator, auth.token).get_repo("acme/api")
    assert repo.full_name == "acme/api"
    assert repo.clone_url == f"{github_emulator.url}/acme/api.git"
    assert repo.permissions.push is True

    # PyGithub's auto-refreshing installation auth works end to end too.
    g = integration.get_github_for_installation(installation_id)
    assert g.get_repo("acme/web").name == "web"


def test_app_not_installed_on_repo_is_404(app) -> None:
    _, _, integration = app
    with pytest.raises(UnknownObjectException):
        integration.get_repo_installation("other", "private")


def test_bad_jwts_are_rejected_like_github(github_emulator: GitHubEmulator, app) -> None:
    creds, installation_id, _ = app
    url = f"{github_emulator.api_url}/app/installations/{installation_id}/access_tokens"
    now = int(time.time())

    def post(token: str) -> requests.Response:
        return requests.post(url, headers={"Authorization": f"Bearer {token}"}, json={}, timeout=10)

    wrong_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode({"iat": now - 60, "exp": now + 300, "iss": str(creds.app_id)}, wrong_key, algorithm="RS256")
    assert post(forged).status_code == 401

    too_long = jwt.encode({"iat": now, "exp": now + 1200, "iss": str(creds.app_id)}, creds.private_key_pem, algorithm="RS256")
    resp = post(too_long)
    assert resp.status_code == 401
    assert "too far in the future" in resp.json()["message"]

    expired = jwt.encode({"iat": now - 900, "exp": now - 400, "iss": str(creds.app_id)}, creds.private_key_pem, algorithm="RS256")
    assert post(expired).status_code == 401

    # An installation token cannot mint tokens, and a JWT cannot call repo endpoints.
    token = github_emulator.create_installation_token(installation_id)
    assert requests.post(url, headers={"Authorization": f"token {token}"}, timeout=10).status_code == 401
    good = jwt.encode({"iat": now - 60, "exp": now + 300, "iss": str(creds.app_id)}, creds.private_key_pem, algorithm="RS256")
    resp = requests.get(f"{github_emulator.api_url}/repos/acme/api", headers={"Authorization": f"Bearer {good}"}, timeout=10)
    assert resp.status_code == 401 and resp.json()["message"] == "Bad credentials"


def test_expired_installation_token_gets_401(github_emulator: GitHubEmulator, app) -> None:
    _, installation_id, integration = app
    github_emulator.token_ttl = 0.5
    auth = integration.get_access_token(installation_id)
    client = gh(github_emulator, auth.token)
    assert client.get_repo("acme/api").id
    time.sleep(0.6)
    with pytest.raises(BadCredentialsException) as err:
        client.get_repo("acme/api")
    assert err.value.status == 401
    assert err.value.data["message"] == "Bad credentials"
    assert err.value.data["documentation_url"].startswith("https://docs.github.com/")

    other = integration.get_access_token(installation_id).token
    github_emulator.expire_token(other)
    with pytest.raises(BadCredentialsException):
        gh(github_emulator, other).get_repo("acme/api")


def test_token_restricted_to_one_repository(github_emulator: GitHubEmulator, app) -> None:
    creds, installation_id, _ = app
    app_jwt = Auth.AppAuth(creds.app_id, creds.private_key_pem).create_jwt()
    resp = requests.post(
        f"{github_emulator.api_url}/app/installations/{installation_id}/access_tokens",
        headers={"Authorization": f"Bearer {app_jwt}", "Accept": "application/vnd.github+json"},
        json={"repositories": ["api"], "permissions": {"contents": "read", "pull_requests": "read"}},
        timeout=10,
    )
    assert resp.status_code == 201
    body = resp.json()
    assert [r["full_name"] for r in body["repositories"]] == ["acme/api"]
    assert body["permissions"] == {"contents": "read", "pull_requests": "read"}

    client = gh(github_emulator, body["token"])
    assert client.get_repo("acme/api").name == "api"
    # A private repository the token cannot see does not exist, as on GitHub.
    with pytest.raises(UnknownObjectException):
        client.get_repo("acme/web")
    with pytest.raises(UnknownObjectException):
        client.get_repo("other/private")

    # Read-only pull_requests: creating a PR is forbidden, naming the permission needed.
    with pytest.raises(GithubException) as err:
        lazy = Github(base_url=github_emulator.api_url, auth=Auth.Token(body["token"]), lazy=True, retry=None, **FAST)
        lazy.get_repo("acme/api").create_pull(base="main", head="x", title="t")
    assert err.value.status == 403
    assert err.value.data["message"] == "Resource not accessible by integration"
    assert err.value.headers["x-accepted-github-permissions"] == "pull_requests=write"

    # Asking for more than the installation has, or for a repo outside it, is a 422.
    for payload in ({"permissions": {"administration": "write"}}, {"repositories": ["private"]}):
        resp = requests.post(
            f"{github_emulator.api_url}/app/installations/{installation_id}/access_tokens",
            headers={"Authorization": f"Bearer {app_jwt}"},
            json=payload,
            timeout=10,
        )
        assert resp.status_code == 422, payload


def test_missing_or_bad_credentials(github_emulator: GitHubEmulator) -> None:
    github_emulator.create_repo("acme/api")
    url = f"{github_emulator.api_url}/repos/acme/api"
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 401
    assert resp.json()["message"] == "Requires authentication"
    resp = requests.get(url, headers={"Authorization": "token ghp_notARealToken000000000000000000000000"}, timeout=10)
    assert resp.status_code == 401
    assert resp.json()["message"] == "Bad credentials"
    assert resp.headers["x-ratelimit-limit"]

    github_emulator.add_personal_token("ghp_" + "a" * 36, login="octocat")
    resp = requests.get(url, headers={"Authorization": "Bearer ghp_" + "a" * 36}, timeout=10)
    assert resp.status_code == 200
    assert resp.json()["permissions"]["admin"] is True

    # Unauthenticated rate_limit is allowed (GitHub's anonymous quota of 60).
    resp = requests.get(f"{github_emulator.api_url}/rate_limit", timeout=10)
    assert resp.status_code == 200 and resp.json()["rate"]["limit"] == 60


def test_fine_grained_personal_token_permissions(github_emulator: GitHubEmulator) -> None:
    github_emulator.create_repo("acme/api")
    github_emulator.add_personal_token("ghp_" + "b" * 36, repos=["acme/api"], permissions={"contents": "read"})
    client = gh(github_emulator, "ghp_" + "b" * 36)
    repo = client.get_repo("acme/api")
    with pytest.raises(GithubException) as err:
        list(repo.get_workflow_runs())
    assert err.value.status == 403
    assert err.value.data["message"] == "Resource not accessible by personal access token"
