"""App JWT → installation token → API call; caching, renewal, concurrency, token fallback."""

from __future__ import annotations

import threading
import time

import jwt
import pytest
import requests

from ampx.core.repo import RepoRef
from ampx.github.auth import AppAuth, TokenAuth, provider_from_settings
from ampx.github.errors import GitHubAuthError, GitHubConfigError, GitHubNotFound
from ampx.github.service import GitHubService
from ampx.settings import GitHubSettings

REPO = RepoRef("acme", "widgets")

TOKENS = "POST /app/installations/{installation_id}/access_tokens"
INSTALLATION = "GET /repos/{owner}/{repo}/installation"


def test_app_jwt_to_installation_token_to_call(sandbox) -> None:
    emu = sandbox.emu
    auth = sandbox.auth()
    claims = jwt.decode(auth.app_jwt(), options={"verify_signature": False})
    now = time.time()
    assert claims["iss"] == str(sandbox.app_id)
    assert now - 62 <= claims["iat"] <= now - 58
    assert claims["exp"] - claims["iat"] <= 600 and claims["exp"] <= now + 600

    token = auth.token_for(REPO)
    assert token.startswith("ghs_")
    assert auth.installation_id(REPO) == sandbox.installation_id
    svc = GitHubService(auth, emu.api_url)
    assert svc.default_branch(REPO) == "main"
    assert auth.token_for(REPO) == token  # cached
    assert svc.default_branch("https://github.com/acme/widgets") == "main"
    assert emu.stats[TOKENS].requests == 1 and emu.stats[INSTALLATION].requests == 1


def test_token_is_restricted_to_the_repository_and_permissions(sandbox) -> None:
    emu = sandbox.emu
    auth = sandbox.auth()
    token = auth.token_for(REPO)
    h = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{emu.api_url}/repos/acme/widgets", headers=h, timeout=5).status_code == 200
    # same installation, other repository: the token cannot see it
    assert requests.get(f"{emu.api_url}/repos/acme/other", headers=h, timeout=5).status_code == 404
    other = auth.token_for(RepoRef("acme", "other"))
    assert other != token
    assert emu.stats[INSTALLATION].requests == 2 and emu.stats[TOKENS].requests == 2


def test_token_renewed_when_less_than_five_minutes_left(sandbox) -> None:
    offset = [0.0]
    auth = sandbox.auth(clock=lambda: time.time() + offset[0])
    first = auth.token_for(REPO)
    expires = auth.expires_at(REPO)
    assert expires is not None and 3500 < expires - time.time() <= 3600
    offset[0] = expires - time.time() - 301  # 5 min + 1 s left: still good
    assert auth.token_for(REPO) == first
    offset[0] = expires - time.time() - 299  # less than 5 min left: renew
    second = auth.token_for(REPO)
    assert second != first
    assert auth.token_requests == 2 and auth.installation_lookups == 1


def test_short_lived_tokens_from_github_are_renewed(github_emulator, tmp_path) -> None:
    emu = github_emulator
    emu.token_ttl = 240  # GitHub handing out tokens with < 5 min left: never reuse them
    emu.create_repo(REPO.full_name)
    creds = emu.create_app(99)
    emu.install_app(creds.app_id, REPO.full_name)
    auth = AppAuth(creds.app_id, creds.private_key_pem, emu.api_url)
    assert auth.token_for(REPO) != auth.token_for(REPO)
    assert auth.token_requests == 2


def test_concurrent_callers_share_one_token_request(sandbox) -> None:
    auth = sandbox.auth()
    barrier = threading.Barrier(8)
    results: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        t = auth.token_for(REPO)
        with lock:
            results.append(t)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 8 and len(set(results)) == 1
    assert sandbox.emu.stats[TOKENS].requests == 1
    assert sandbox.emu.stats[INSTALLATION].requests == 1


def test_revoked_token_is_refreshed_once(sandbox) -> None:
    svc = sandbox.service()
    token = svc.token_for(REPO)
    sandbox.emu.revoke_token(token)
    assert svc.default_branch(REPO) == "main"  # 401 → fresh token → retry
    assert svc.token_for(REPO) != token


def test_app_not_installed_is_a_clear_permanent_error(sandbox) -> None:
    sandbox.emu.create_repo("acme/uninstalled")
    with pytest.raises(GitHubNotFound, match=r"App 4711 is not installed on acme/uninstalled"):
        sandbox.auth().token_for(RepoRef("acme", "uninstalled"))


def test_personal_token_fallback(github_emulator) -> None:
    emu = github_emulator
    emu.create_repo(REPO.full_name)
    pat = "ghp_" + "A1b2C3d4E5" * 3 + "f6G7h8"
    emu.add_personal_token(pat, login="dev")
    settings = GitHubSettings(api_url=emu.api_url, git_url=emu.url, app_id=None, private_key=None, token=pat)
    provider = provider_from_settings(settings)
    assert isinstance(provider, TokenAuth) and provider.token_for(REPO) == pat
    assert pat not in repr(provider)
    svc = GitHubService.from_settings(settings, default_branch_ttl=0)  # every call asks GitHub
    assert svc.default_branch(REPO) == "main"
    with pytest.raises(GitHubNotFound, match="acme/missing not found"):
        svc.default_branch("acme/missing")
    emu.revoke_token(pat)
    with pytest.raises(GitHubAuthError) as exc:
        svc.default_branch(REPO)
    assert pat not in str(exc.value) and "401" in str(exc.value)


def test_settings_choose_app_then_token_then_error(sandbox) -> None:
    base = dict(api_url=sandbox.emu.api_url, git_url=sandbox.emu.url)
    app = provider_from_settings(GitHubSettings(**base, app_id=str(sandbox.app_id),
                                                private_key=sandbox.private_key_pem, token="ghp_unused_token_x"))
    assert isinstance(app, AppAuth) and "PRIVATE" not in repr(app)
    with pytest.raises(GitHubConfigError, match="^set AMPX_GITHUB_APP_ID and a private key, or GITHUB_TOKEN$"):
        provider_from_settings(GitHubSettings(**base, app_id=None, private_key=None, token=None))
    with pytest.raises(GitHubConfigError, match="no private key"):
        provider_from_settings(GitHubSettings(**base, app_id="1", private_key=None, token=None))
    with pytest.raises(GitHubConfigError) as exc:
        AppAuth(1, "-----BEGIN RSA PRIVATE KEY-----\nnot-a-key\n-----END RSA PRIVATE KEY-----\n", base["api_url"])
    assert "not-a-key" not in str(exc.value)


def test_settings_from_env(monkeypatch, sandbox, tmp_path) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text(sandbox.private_key_pem)
    for name in ("AMPX_GITHUB_APP_PRIVATE_KEY", "GITHUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AMPX_GITHUB_API_URL", sandbox.emu.api_url + "/")
    monkeypatch.setenv("AMPX_GITHUB_APP_ID", str(sandbox.app_id))
    monkeypatch.setenv("AMPX_GITHUB_APP_PRIVATE_KEY_FILE", str(key_file))
    svc = GitHubService.from_settings()
    assert isinstance(svc.provider, AppAuth)
    assert svc.default_branch(REPO) == "main"


def test_token_request_asks_for_one_repository_and_exactly_the_needed_permissions(sandbox) -> None:
    """The POST .../access_tokens body as it left the client, GitHub's answer, and the token the
    stand-in stored all say: this one repository; contents, pull_requests and actions write
    (actions write, not read, because re-running failed jobs needs it) and nothing more, although
    the installation grants more (workflows: write, checks: read)."""
    import json

    from ampx.github.client import new_session
    from ampx.sandbox.github_emulator.auth import digest

    wanted = {"contents": "write", "pull_requests": "write", "actions": "write"}
    emu = sandbox.emu
    granted = emu.store.installations[sandbox.installation_id].permissions
    assert granted.get("workflows") == "write" and granted.get("checks") == "read"  # more than asked
    sent: list[requests.PreparedRequest] = []
    session = new_session()
    session.hooks["response"].append(lambda resp, *a, **kw: sent.append(resp.request))
    answers: list[tuple[str, str, int, object]] = []
    emu.response_observers.append(lambda m, p, s, h, b: answers.append((m, p, s, b)))

    token = sandbox.auth(session=session).token_for(REPO)

    path = f"/api/v3/app/installations/{sandbox.installation_id}/access_tokens"
    posts = [r for r in sent if r.method == "POST"]
    assert [r.path_url for r in posts] == [path]
    assert json.loads(posts[0].body) == {"repositories": ["widgets"], "permissions": wanted}
    [(_, _, status, body)] = [a for a in answers if a[0] == "POST" and a[1] == path]
    data = json.loads(body)
    assert status == 201 and data["token"] == token
    assert data["permissions"] == wanted
    assert [r["full_name"] for r in data["repositories"]] == ["acme/widgets"]
    stored = emu.store.tokens[digest(token)]
    assert stored.kind == "installation" and stored.permissions == wanted
    assert stored.repos == {"acme/widgets"}


def test_an_installation_granting_actions_read_only_still_works_without_reruns(sandbox) -> None:
    """The PRD's permissions (actions: read): tokens fall back to read, everything but the
    flaky guard's re-run works, and the re-run's refusal is a clear permanent error."""
    from ampx.github.errors import GitHubPermissionError

    sandbox.emu.install_app(sandbox.app_id, REPO.full_name, permissions={
        "contents": "write", "pull_requests": "write", "actions": "read"})
    auth = sandbox.auth()
    token = auth.token_for(REPO)
    assert auth.token_requests == 2  # asked for write, then took what the installation grants
    from ampx.sandbox.github_emulator.auth import digest

    assert sandbox.emu.store.tokens[digest(token)].permissions["actions"] == "read"
    sha = sandbox.push("amp/x-abc123", {".github/workflows/ci.yml": sandbox.workflow("CI", ["exit 1"])})
    svc = GitHubService(auth, sandbox.emu.api_url)
    obs = sandbox.wait_ci(lambda: svc.poll_ci(REPO, sha))  # reading runs and logs: fine
    assert obs.state == "red" and obs.run_id and obs.excerpt
    with pytest.raises(GitHubPermissionError):
        svc.rerun_failed_jobs(REPO, obs.run_id)
    auth.invalidate(REPO)
    auth.token_for(REPO)
    assert auth.token_requests == 3, "the reduced grant is remembered: one request per renewal"

    sandbox.emu.install_app(sandbox.app_id, "acme/other", permissions={"contents": "read"})
    with pytest.raises(GitHubPermissionError) as exc:
        auth.token_for(RepoRef("acme", "other"))
    assert exc.value.status == 422 and "acme/other" in str(exc.value)


def test_a_failed_early_renewal_keeps_using_the_valid_token(sandbox) -> None:
    from ampx.github.errors import RetryLater

    offset = [0.0]
    auth = sandbox.auth(clock=lambda: time.time() + offset[0])
    first = auth.token_for(REPO)
    expires = auth.expires_at(REPO)
    offset[0] = expires - time.time() - 200  # due for renewal, 200 s of validity left
    sandbox.emu.faults.fail_next(1, 502, path=r"/access_tokens$")
    assert auth.token_for(REPO) == first, "a GitHub hiccup while renewing early is not an error"
    offset[0] = expires - time.time() - 30  # 30 s left: too close to lend it out
    sandbox.emu.faults.fail_next(1, 502, path=r"/access_tokens$")
    with pytest.raises(RetryLater):
        auth.token_for(REPO)
    assert auth.token_for(REPO) != first  # GitHub is back: renewed
