"""The three steps as a pod runs them (all as the unprivileged uid): a daemon the agent leaves
behind survives the agent step (as it would in the agent's container) and keeps creating and
deleting `.github/workflows/evil.yml` while publish runs. Publish checks and commits one private
snapshot, so the workflow is either named by the tamper guard or absent: never pushed."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from ampx.core.models import AttemptOutcome, WorkerReport
from ampx.gitops.tamper import tamper_check
from ampx.worker.attempt_spec import attempt_spec_from_task, write_attempt_spec

from attacklib import alive, as_user, give, python_for_the_user, the_uid

DAEMON = Path(__file__).with_name("daemon.py")
EVIL = ".github/workflows/evil.yml"


def step(hostile, *args: str) -> subprocess.CompletedProcess:
    python, pythonpath = python_for_the_user()
    env = {k: hostile.env[k] for k in ("PATH", "HOME", "AMP_API_KEY", "AMP_FAKE_HOME",
                                       "AMPX_AGENT_ENV", "LANG")}
    env["PYTHONPATH"] = pythonpath
    return subprocess.run([*as_user(the_uid()), python, "-m", "ampx", "worker", *args],
                          capture_output=True, text=True, env=env, timeout=120,
                          cwd=str(hostile.base))


def kill_all(pidfile: Path) -> None:
    if pidfile.exists():
        for pid in (int(p) for p in pidfile.read_text().split()):
            subprocess.run(["kill", "-9", str(pid)], check=False)


def test_a_workflow_written_during_publish_is_never_pushed(hostile):
    outcomes = []
    for i in range(3):
        d = give(hostile.base / f"pod-{i}")
        d.mkdir(exist_ok=True)
        give(d)
        pidfile = hostile.loot / f"daemon-{i}.pids"
        task = hostile.new_task(
            f"Add mul\n@fake write calc.py def mul(a, b):\\n    return a * b\\n\n"
            f"@fake sh setsid python3 {DAEMON} {hostile.loot} {pidfile} flip-workflow "
            f">/dev/null 2>&1 </dev/null &\n@fake sleep 0.3", name=f"01jrace0000000000000000{i:03d}")
        spec = attempt_spec_from_task(task, 1, git_url=hostile.world.emulator.url)
        attempt = write_attempt_spec(spec, d / "attempt.json")
        token = d / "token"
        token.write_text(hostile.world.token)
        give(d)
        token.chmod(0o600)
        af = ["--attempt-file", str(attempt)]
        dirs = ["--private", str(d / "private"), "--workspace", str(d / "work")]
        try:
            r = step(hostile, "prepare", *af, "--token-file", str(token), *dirs)
            assert r.returncode == 0, r.stdout + r.stderr
            r = step(hostile, "agent", *af, "--workspace", str(d / "work"), "--control",
                     str(d / "control"))
            assert r.returncode == 0, r.stdout + r.stderr
            pids = [int(p) for p in pidfile.read_text().split()]
            assert pids and all(alive(p) for p in pids), "the daemon survives the agent step"
            r = step(hostile, "publish", *af, "--token-file", str(token), *dirs, "--control",
                     str(d / "control"), "--report-file", str(d / "report.json"))
            report = WorkerReport.model_validate(json.loads((d / "report.json").read_text()))
            pushed = hostile.world.emulator.branches("demo/calculator").get(task.spec.branch)
            if report.outcome == AttemptOutcome.PUSHED:
                files = hostile.remote("ls-tree", "-r", "--name-only", report.commit).split()
                assert pushed == report.commit and EVIL not in files and "calc.py" in files
            else:
                assert report.outcome == AttemptOutcome.TAMPERED, r.stdout + r.stderr
                assert report.files == [EVIL] and pushed is None
            outcomes.append(report.outcome)
            if i == 2:  # control: checking the live checkout, then adding it, races the daemon
                assert race_between_check_and_add(d / "work") > 0
        finally:
            kill_all(pidfile)
    assert len(outcomes) == 3


def race_between_check_and_add(work: Path, tries: int = 40) -> int:
    """How often `git add -A` took a different state of evil.yml than a check just before it."""
    git = ["git", "-c", "safe.directory=*", "-c", "core.hooksPath=/dev/null"]
    mismatches = 0
    for _ in range(tries):
        subprocess.run([*git, "reset", "-q"], cwd=work, capture_output=True)
        checked = tamper_check([("A", EVIL)] if (work / EVIL).exists() else [])
        subprocess.run([*git, "add", "-A"], cwd=work, capture_output=True)
        staged = subprocess.run([*git, "diff", "--cached", "--name-only", "HEAD"], cwd=work,
                                capture_output=True, text=True).stdout.split()
        if (EVIL in staged) and not checked:
            mismatches += 1
        time.sleep(0.001)
    return mismatches
