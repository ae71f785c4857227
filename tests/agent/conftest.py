from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from ampx.sandbox.fake_amp import install_fake_amp

API_KEY = "amp-key-0123456789abcdef"


@dataclass
class FakeAmp:
    env: dict[str, str]
    home: Path
    workspace: Path
    lines: list[str]
    api_key: str = API_KEY

    def threads(self) -> list[Path]:
        return sorted((self.home / "threads").glob("T-*.json"))


@pytest.fixture
def fake_amp(tmp_path) -> FakeAmp:
    bin_dir = tmp_path / "bin"
    install_fake_amp(bin_dir)
    workspace = tmp_path / "repo"
    workspace.mkdir()
    env = dict(os.environ)
    env.update({
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "AMP_FAKE_HOME": str(tmp_path / "amp-home"),
        "AMP_API_KEY": API_KEY,
    })
    return FakeAmp(env=env, home=tmp_path / "amp-home", workspace=workspace, lines=[])
