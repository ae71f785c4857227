"""No secret reaches anything a user can see.

One red-then-green story runs through the local runtime while the agent and CI do their worst:
the agent's replies print the real secrets and token-shaped strings, and the failing unit test
prints them into the CI log (so they reach the excerpt, the next prompt, the history). Then
every file under AMPX_HOME, the exported history, the CLI's output, the task's status and the
pull request are searched for them. The same for the Kubernetes runtime: the operator's output,
the pod logs, the AmpTasks, Jobs and Pods, the history database and the CLI.

The secrets never appear verbatim in the task's prompt (the user's own text, shown by `ampx
get`): the agent's reply breaks each one with a ``\\`` that the scripted agent drops, and the
test file assembles them at run time from two halves.
"""

from __future__ import annotations

import json
import os
import secrets
import string
import subprocess
import sys
from pathlib import Path

import pytest

from ampx.history.db import HistoryDB
from ampx.local import paths
from ampx.local.backend import LocalBackend
from ampx.local.supervisor import stop_background
from ampx.sandbox.scenarios import DIVIDE_BUG, DIVIDE_OK, Scenario, calc_with, write
from ampx.sandbox.world import DEMO_REPO

from e2e.checks import assert_story, start, wait_all

pytestmark = pytest.mark.e2e

TOKENS = "/app/installations/"


def _random(n: int) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


def broken(secret: str) -> str:
    """``secret`` for a ``@fake reply``: a backslash inside it, which the agent drops (never
    before n or t, which would become a newline or a tab)."""
    i = next(i for i in range(len(secret) // 2, len(secret)) if secret[i] not in "nt\\")
    return secret[:i] + "\\" + secret[i:]


def halves(secret: str) -> str:
    """A Python expression that builds ``secret`` at run time, from two literals."""
    mid = len(secret) // 2
    return f"{secret[:mid]!r} + {secret[mid:]!r}"


def leaky_test(secrets_: list[str]) -> str:
    """test_divide.py that prints ``secrets_`` and fails (while divide is wrong) with them in its
    assertion message."""
    joined = " + ' ' + ".join(f"({halves(x)})" for x in secrets_)
    return ("import unittest\n\nfrom calc import divide\n\n"
            f"LEAK = {joined}\n\n\n"
            "class DivideTest(unittest.TestCase):\n"
            "    def test_divide(self):\n"
            "        print('debug: credentials in use:', LEAK)\n"
            "        self.assertEqual(divide(6, 3), 2, 'leaked ' + LEAK)\n\n\n"
            "if __name__ == \"__main__\":\n    unittest.main()\n")


def leaky_story(agent_prints: list[str], ci_prints: list[str], fix: bool = True) -> Scenario:
    """Red then green (``fix``), or red once: the agent's replies print ``agent_prints``, the
    failing test prints ``ci_prints`` into the CI log."""
    reply = "Done. I used these credentials: " + " ".join(broken(x) for x in agent_prints)
    lines = [
        "Add a divide function to calc.py, with a unit test.",
        write("calc.py", calc_with(DIVIDE_BUG)),
        write("test_divide.py", leaky_test(ci_prints)),
        f"@fake reply {reply}",
    ]
    if fix:
        again = "Fixed divide. Credentials: " + " ".join(broken(x) for x in reversed(agent_prints))
        lines += ['@fake when "AssertionError: 18 != 2" '
                  + write("calc.py", calc_with(DIVIDE_OK)).removeprefix("@fake "),
                  f'@fake when "AssertionError: 18 != 2" reply {again}']
    return Scenario(key="leaky", title="Add divide (leaky)", prompt="\n".join(lines),
                    max_attempts=3 if fix else 1,
                    expect_phase="success" if fix else "needs_review",
                    expect_attempts=2 if fix else 1, expect_pr="open" if fix else None)


@pytest.fixture(params=["personal-token", "github-app"])
def auth_mode(request, world, monkeypatch):
    """How the runtime talks to GitHub. In App mode, every installation token the stand-in mints
    is captured from its answers (it stores only their digests)."""
    minted: list[str] = []
    extra: list[str] = []
    if request.param == "github-app":
        creds = world.emulator.create_app()
        world.emulator.install_app(creds.app_id, DEMO_REPO)
        key_file = world.root / "app.pem"
        key_file.write_text(creds.private_key_pem)
        monkeypatch.setenv("AMPX_GITHUB_APP_ID", str(creds.app_id))
        monkeypatch.setenv("AMPX_GITHUB_APP_PRIVATE_KEY_FILE", str(key_file))
        extra = key_lines(creds.private_key_pem)
        world.emulator.response_observers.append(token_observer(minted))
    return request.param, minted, extra


def key_lines(pem: str) -> list[str]:
    """The base64 lines of a PEM key: each is secret."""
    return [ln for ln in pem.splitlines() if ln and "-----" not in ln]


def token_observer(sink: list[str]):
    def observe(method, path, status, headers, body):
        if method == "POST" and TOKENS in path and path.endswith("/access_tokens") and status == 201:
            sink.append(json.loads(body)["token"])
    return observe


def installation_tokens_stored(world) -> int:
    with world.emulator.store.lock:
        return sum(1 for t in world.emulator.store.tokens.values() if t.kind == "installation")


@pytest.fixture
def backend(world, auth_mode):
    b = LocalBackend.from_env(ensure_supervisor=True)
    yield b
    stop_background()


def ampx(*args: str, env: dict | None = None) -> str:
    r = subprocess.run([sys.executable, "-m", "ampx", *args], capture_output=True, text=True,
                       env=env or os.environ.copy(), timeout=60)
    assert r.returncode == 0, (args, r.stderr)
    return r.stdout + r.stderr


def cli_views(tid: str, attempts: int, env: dict | None = None) -> dict[str, bytes]:
    seen = {
        "ampx get": ampx("get", tid, env=env),
        "ampx get -o json": ampx("get", tid, "-o", "json", env=env),
        "ampx get -o yaml": ampx("get", tid, "-o", "yaml", env=env),
        "ampx ls -o json": ampx("ls", "--all", "-o", "json", env=env),
        "ampx ls": ampx("ls", "--all", env=env),
    }
    for n in range(1, attempts + 1):
        seen[f"ampx logs --attempt {n}"] = ampx("logs", tid, "--attempt", str(n), env=env)
    return {k: v.encode() for k, v in seen.items()}


def local_views(world, backend, tid: str) -> dict[str, bytes]:
    """Every file under AMPX_HOME (logs, the SQLite database and its WAL as bytes), the export
    and its rows, the CLI's output, the task as stored, and the pull requests."""
    seen: dict[str, bytes] = {}
    home = Path(os.environ["AMPX_HOME"])
    for p in sorted(home.rglob("*")):
        if p.is_file():
            seen[f"file {p.relative_to(home)}"] = p.read_bytes()
    assert any(k.startswith("file runs/") for k in seen) and f"file {paths.db_path().name}" in seen
    export = world.root / "export.db"
    seen["ampx export"] = ampx("export", "--db", str(export)).encode()
    seen["export.db"] = export.read_bytes()
    exported, history = HistoryDB(export), HistoryDB(paths.db_path())
    seen["export rows"] = json.dumps([exported.get_task(tid), exported.attempts(tid)], default=str).encode()
    seen["history rows"] = json.dumps([history.get_task(tid), history.attempts(tid)], default=str).encode()
    task = backend.get(tid)
    seen.update(cli_views(tid, task.status.attempts))
    seen["status"] = task.status.model_dump_json().encode()
    seen["task"] = task.model_dump_json().encode()
    for pr in world.emulator.pulls(DEMO_REPO):
        seen[f"PR #{pr.number}"] = f"{pr.title}\n{pr.body}".encode()
    return seen


def leaks(secrets_: dict[str, str], seen: dict[str, bytes]) -> str:
    found = {name: [where for where, blob in seen.items() if value.encode() in blob]
             for name, value in secrets_.items()}
    return "\n".join(f"{name} in: {', '.join(where)}" for name, where in found.items() if where)


def ci_log(world, sha: str) -> str:
    return "".join(j.log_text() for r in world.emulator.ci.runs(DEMO_REPO) if r.head_sha == sha
                   for j in r.latest_jobs())


def agent_threads() -> str:
    home = Path(os.environ["AMP_FAKE_HOME"]) / "threads"
    return "".join(p.read_text() for p in home.glob("*.json"))


def test_no_secret_in_anything_a_user_can_see(world, auth_mode, backend):
    mode, minted, app_key = auth_mode
    amp_key = os.environ["AMP_API_KEY"]
    decoy_agent = "ghp_" + _random(36)   # token-shaped strings the agent and CI print
    decoy_ci = "ghs_" + _random(36)
    agent_prints = [world.token, amp_key, decoy_agent]
    ci_prints = [world.token, decoy_ci]  # the AMP key in a CI log: see test_agent_key_printed_by_ci_is_masked
    sc = leaky_story(agent_prints, ci_prints)
    for x in agent_prints + ci_prints:
        assert x not in sc.prompt  # the user's own text does not hold them
    run = start(backend, sc)
    wait_all(backend, [run], timeout=120)
    assert_story(world, run, HistoryDB(paths.db_path()))

    # the secrets really went around: through attempt 1's CI log and the agent's replies
    first = run.task.status.history[0]
    assert all(x in ci_log(world, first.commit) for x in ci_prints)
    assert all(x in agent_threads() for x in agent_prints)
    assert "AssertionError: 18 != 2 : leaked *** ***" in first.excerpt  # and came back masked
    if mode == "github-app":
        assert minted and len(minted) == installation_tokens_stored(world)  # all of them
    else:
        assert minted == []

    seen = local_views(world, backend, run.task_id)
    # the sweep reads real content: the agent's masked reply and the masked excerpt
    assert b"Done. I used these credentials: *** *** ***" in seen[f"file runs/{run.task_id}-a1.log"]
    assert b"leaked *** ***" in seen["ampx logs --attempt 1"]
    secrets_ = {"GITHUB_TOKEN (personal token)": world.token, "AMP_API_KEY": amp_key,
                "ghp_ string the agent printed": decoy_agent, "ghs_ string CI printed": decoy_ci}
    secrets_.update({f"installation token {i + 1}": t for i, t in enumerate(minted)})
    secrets_.update({f"App private key line {i + 1}": ln for i, ln in enumerate(app_key)})
    found = leaks(secrets_, seen)
    assert not found, found


@pytest.mark.parametrize("auth_mode", ["personal-token"], indirect=True)
def test_agent_key_printed_by_ci_is_masked(world, auth_mode, backend):
    amp_key = os.environ["AMP_API_KEY"]
    run = start(backend, leaky_story([], [amp_key], fix=False))
    wait_all(backend, [run], timeout=90)
    assert_story(world, run, HistoryDB(paths.db_path()))
    assert amp_key in ci_log(world, run.task.status.history[0].commit)
    seen = local_views(world, backend, run.task_id)
    found = leaks({"AMP_API_KEY": amp_key}, seen)
    assert not found, found


# ----------------------------------------------------------------------------- Kubernetes
# The operator e2e's `cluster` fixture (the real kopf operator, the Kubernetes API emulator, the
# kubelet stand-in, GitHub App auth), reused as is.
try:
    from kube.test_operator_e2e import AMPTASKS, JOBS, cluster  # noqa: F401  (a fixture)
except ImportError as exc:  # pragma: no cover - the Kubernetes harness is not installed
    _KUBE = f"the Kubernetes e2e fixtures cannot be imported: {exc}"
else:
    _KUBE = None


@pytest.fixture
def minted_tokens(world):
    """Installation tokens minted by the stand-in; attached before the operator starts."""
    sink: list[str] = []
    world.emulator.response_observers.append(token_observer(sink))
    return sink


@pytest.mark.skipif(_KUBE is not None, reason=_KUBE or "")
def test_no_secret_in_anything_the_operator_shows(world, minted_tokens, cluster):
    from ampx.cli.backend import KubeBackend

    amp_key = world.env["AMP_API_KEY"]
    decoy_agent = "ghp_" + _random(36)
    decoy_ci = "ghs_" + _random(36)
    backend = KubeBackend()
    run = start(backend, leaky_story([amp_key, decoy_agent], [decoy_ci]))
    wait_all(backend, [run], timeout=150)
    assert_story(cluster.world, run, HistoryDB(cluster.history_path))
    first = run.task.status.history[0]
    assert decoy_ci in ci_log(world, first.commit)
    assert amp_key in agent_threads() and decoy_agent in agent_threads()
    assert "leaked ***" in first.excerpt
    assert minted_tokens and len(minted_tokens) == installation_tokens_stored(world)

    server = cluster.server
    seen: dict[str, bytes] = {"operator stdout/stderr": cluster.operator.output.encode()}
    for p in sorted(cluster.history_path.parent.glob(cluster.history_path.name + "*")):
        seen[f"file {p.name}"] = p.read_bytes()
    assert f"file {cluster.history_path.name}" in seen
    history = HistoryDB(cluster.history_path)
    seen["history rows"] = json.dumps([history.get_task(run.task_id), history.attempts(run.task_id)],
                                      default=str).encode()
    for resource in (AMPTASKS, JOBS, "v1/pods"):
        seen[resource] = json.dumps(server.objects(resource), default=str).encode()
    assert run.task_id.encode() in seen[AMPTASKS]
    logs = server.call(lambda: {k: bytes(v) for k, v in server.emulator.pod_logs.items()})
    seen.update({f"pod log {ns}/{name}": blob for (ns, name), blob in logs.items()})
    assert any(b"Done. I used these credentials: *** ***" in b for b in logs.values()), list(logs)
    seen.update(cli_views(run.task_id, run.task.status.attempts, env=server.env(AMPX_BACKEND="kube")))
    for pr in world.emulator.pulls(DEMO_REPO):
        seen[f"PR #{pr.number}"] = f"{pr.title}\n{pr.body}".encode()

    key_file = Path(cluster.op_env["AMPX_GITHUB_APP_PRIVATE_KEY_FILE"])
    secrets_ = {"AMP_API_KEY": amp_key, "GITHUB_TOKEN (personal token)": world.token,
                "ghp_ string the agent printed": decoy_agent, "ghs_ string CI printed": decoy_ci}
    secrets_.update({f"installation token {i + 1}": t for i, t in enumerate(minted_tokens)})
    secrets_.update({f"App private key line {i + 1}": ln
                     for i, ln in enumerate(key_lines(key_file.read_text()))})
    found = leaks(secrets_, seen)
    assert not found, found
