"""The agent's scrubbed environment: its key, PATH, locale, a HOME of its own, named extras."""

from __future__ import annotations

from pathlib import Path

import pytest

from ampx.agent.profiles import get_profile
from ampx.worker.agent_env import AgentEnvError, agent_environment, agent_step_environment

WORKER_ENV = {"PATH": "/usr/bin", "LANG": "C.UTF-8", "HOME": "/home/dev", "AMP_API_KEY": "k-1",
              "AMP_URL": "https://amp.example", "GITHUB_TOKEN": "ghp_x", "AMPX_HOME": "/data",
              "AMPX_GITHUB_APP_PRIVATE_KEY": "pem", "KUBERNETES_SERVICE_HOST": "10.0.0.1",
              "SSH_AUTH_SOCK": "/run/agent", "PYTHONPATH": "/src", "MY_PROXY": "http://p",
              "ANTHROPIC_API_KEY": "other-agent"}


def test_only_the_key_path_locale_and_an_own_home(tmp_path):
    env = agent_environment(get_profile("amp"), WORKER_ENV, tmp_path)
    assert env == {"PATH": "/usr/bin", "LANG": "C.UTF-8", "AMP_API_KEY": "k-1",
                   "AMP_URL": "https://amp.example", "HOME": str(tmp_path),
                   "TMPDIR": str(tmp_path / "tmp"), "XDG_CONFIG_HOME": str(tmp_path / ".config"),
                   "XDG_CACHE_HOME": str(tmp_path / ".cache"),
                   "XDG_DATA_HOME": str(tmp_path / ".local" / "share")}
    claude = agent_environment(get_profile("claude"), WORKER_ENV, tmp_path)
    assert claude["ANTHROPIC_API_KEY"] == "other-agent" and "AMP_API_KEY" not in claude


def test_named_extras_pass_and_credential_names_are_refused(tmp_path):
    env = agent_environment(get_profile("amp"), {**WORKER_ENV, "AMPX_AGENT_ENV": "MY_PROXY"},
                            tmp_path)
    assert env["MY_PROXY"] == "http://p"
    for bad in ("GITHUB_TOKEN", "AMPX_HOME", "KUBERNETES_SERVICE_HOST", "SSH_AUTH_SOCK",
                "GIT_ASKPASS", "GH_TOKEN", "not a name"):
        with pytest.raises(AgentEnvError):
            agent_environment(get_profile("amp"), {**WORKER_ENV, "AMPX_AGENT_ENV": bad}, tmp_path)


def test_the_local_agent_step_also_gets_what_runs_this_ampx(tmp_path):
    env = agent_step_environment(get_profile("amp"), {**WORKER_ENV, "AMPX_AGENT_ENV": "MY_PROXY"},
                                 Path(tmp_path))
    assert env["PYTHONPATH"] == "/src" and env["AMPX_AGENT_ENV"] == "MY_PROXY"
    assert "GITHUB_TOKEN" not in env and "AMPX_HOME" not in env
