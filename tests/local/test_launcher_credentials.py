"""The local launcher hands the worker its credentials on stdin, not in its environment: a
new process's /proc/<pid>/environ is readable by the user's other processes until it has made
itself non-dumpable, and a concurrently running agent may be watching."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ampx.local.launcher import hand_over, split_credentials


def test_credentials_leave_the_environment_and_arrive_on_stdin(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "GITHUB_TOKEN": "ghp_" + "a" * 36, "AMP_API_KEY": "amp-key-1",
           "AMPX_GITHUB_APP_PRIVATE_KEY": "-----BEGIN KEY-----", "AMPX_HOME": str(tmp_path)}
    plain, creds = split_credentials(env)
    assert plain == {"PATH": "/usr/bin:/bin", "AMPX_HOME": str(tmp_path)}
    assert set(creds) == {"GITHUB_TOKEN", "AMP_API_KEY", "AMPX_GITHUB_APP_PRIVATE_KEY"}
    out = tmp_path / "got.json"
    proc = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; data = sys.stdin.read(); time.sleep(0.3); "
        f"open({str(out)!r}, 'w').write(data)")], stdin=subprocess.PIPE, env=plain)
    environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
    hand_over(proc, creds)
    assert proc.wait(timeout=30) == 0
    assert b"ghp_" not in environ and b"amp-key-1" not in environ
    assert json.loads(out.read_text()) == creds
