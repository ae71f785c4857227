"""The `hostile` fixture: the offline world with the worker's directories given to the
unprivileged uid (see attacklib.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from ampx.sandbox.world import start_world

from attacklib import Hostile, give, python_for_the_user


@pytest.fixture
def hostile():
    base = Path(tempfile.mkdtemp(prefix="ampx-attack-", dir="/tmp"))
    base.chmod(0o755)
    world = start_world(base / "world")
    os.chmod(base / "world", 0o755)
    (base / "world" / "github").chmod(0o700)  # GitHub's storage is not on the agent's disk
    for name in ("amp-threads", "ampx-home", "workspaces", "bin"):
        path = base / "world" / name
        path.mkdir(exist_ok=True)
        give(path)
    (base / "world" / "ampx-home").chmod(0o700)
    home = give(Path(tempfile.mkdtemp(dir=base, prefix="home-")))
    loot = give(Path(tempfile.mkdtemp(dir=base, prefix="loot-")))
    loot.chmod(0o777)
    python, pythonpath = python_for_the_user()
    from ampx.sandbox import fake_amp

    amp = base / "world" / "bin" / "amp"  # the fake amp, started by an interpreter the user can run
    amp.write_text(fake_amp.WRAPPER.format(python=python, script=Path(fake_amp.__file__).resolve()))
    env = {**world.env, "PYTHONPATH": pythonpath, "HOME": str(home), "LANG": "C.UTF-8"}
    env["PATH"] = f"{Path(python).parent}{os.pathsep}{env['PATH']}"
    yield Hostile(base=base, world=world, env=env, loot=loot, home=home)
    world.stop()
    shutil.rmtree(base, ignore_errors=True)
