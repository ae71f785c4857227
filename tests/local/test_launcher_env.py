"""Where local attempts clone: under the data directory unless AMPX_WORKSPACE says otherwise."""

from __future__ import annotations

from ampx.local.launcher import LocalLauncher


def test_local_clones_go_under_the_data_directory(tmp_path):
    runs = tmp_path / "home" / "runs"
    runs.mkdir(parents=True)
    env = LocalLauncher(runs, env={"PATH": "/usr/bin"})._worker_env()
    assert env["AMPX_WORKSPACE"] == str(tmp_path / "home" / "workspaces")
    assert (tmp_path / "home" / "workspaces").is_dir()
    given = LocalLauncher(runs, env={"AMPX_WORKSPACE": str(tmp_path / "elsewhere")})._worker_env()
    assert given["AMPX_WORKSPACE"] == str(tmp_path / "elsewhere")
