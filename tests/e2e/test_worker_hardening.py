"""The agent, running as the worker's user, cannot read the worker's environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

SECRET = "AMPX_GITHUB_APP_PRIVATE_KEY=-----BEGIN PRIVATE KEY-----sekrit"

HOLDER = """
import os, sys, time
from ampx.worker.harden import forbid_inspection, is_dumpable
if sys.argv[1] == "harden":
    assert forbid_inspection() and not is_dumpable()
print("ready", flush=True)
time.sleep(30)
"""


def _unprivileged() -> list[str]:
    """The pod's standing for both the worker and the agent: one user, no capabilities. Under
    root (as these tests may run) that is uid 0 with every capability dropped."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without util-linux's setpriv to drop capabilities")
    return ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"]


def _peer_can_read_environ(mode: str) -> bool:
    env = dict(os.environ, AMPX_GITHUB_APP_PRIVATE_KEY=SECRET.split("=", 1)[1])
    holder = subprocess.Popen([*_unprivileged(), sys.executable, "-c", HOLDER, mode], env=env, text=True,
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "ready"
        peer = subprocess.run(
            [*_unprivileged(), sys.executable, "-c",
             f"print(open('/proc/{holder.pid}/environ','rb').read().decode(errors='replace'))"],
            capture_output=True, text=True, timeout=30)
        return SECRET in peer.stdout.replace("\0", "\n")
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_a_hardened_worker_hides_its_environment_from_processes_of_its_user():
    assert _peer_can_read_environ("plain"), "control: without hardening the peer reads the key"
    assert not _peer_can_read_environ("harden")
