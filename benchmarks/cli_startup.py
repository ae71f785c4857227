"""Start-up of the `ampx` command, whole process, beside `kubectl version --client`.

    python benchmarks/cli_startup.py [--runs 15] [--tasks 1000] [--root PATH]

Builds a local runtime (AMPX_HOME in a temporary directory) holding --tasks finished tasks,
then runs each command --runs times as a fresh process (`python -m ampx` with this tree first
on PYTHONPATH, or the tree given by --root) and prints the median wall time of each. The
targets: `ampx --help` <= 0.15 s, `ampx ls` <= 0.2 s with 1,000 local tasks.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def populate(home: Path, n: int, root: Path) -> None:
    """n finished tasks of this user (half success with a PR, a quarter needs_review...)."""
    code = f"""
import sys
sys.path.insert(0, {str(root)!r})
from ampx.core.models import AmpTaskSpec, AmpTaskStatus, AttemptRecord, Phase, Stage
from ampx.core.ids import new_task_id, default_branch
from ampx.local.store import LocalStore
store = LocalStore({str(home / 'ampx.db')!r})
phases = [Phase.SUCCESS, Phase.SUCCESS, Phase.NEEDS_REVIEW, Phase.ERROR]
for i in range({n}):
    tid = new_task_id()
    spec = AmpTaskSpec(repo='acme/api', prompt=f'Task number {{i}}: make the tests pass',
                       branch=default_branch(f'task {{i}}', tid))
    t = store.create(tid, spec, 'bench', '2026-01-01T00:00:00Z')
    phase = phases[i % 4]
    st = AmpTaskStatus(phase=phase, stage=Stage.IDLE, attempts=2, summary='CI green after 2 attempt(s); PR #1 opened',
                       history=[AttemptRecord(number=1, prompt='x'), AttemptRecord(number=2, prompt='y')],
                       pr_url='https://github.com/acme/api/pull/1' if phase == Phase.SUCCESS else None,
                       pr_state='open' if phase == Phase.SUCCESS else None)
    store.save_status(t, st)
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=home)


def median_time(argv: list[str], env: dict, runs: int, cwd: Path) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        # cwd elsewhere: `python -m` puts the working directory first on sys.path
        r = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd)
        times.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {r.stderr.decode()[-500:]}")
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--root", type=Path, default=HERE, help="the ampx source tree to measure")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ampx-startup-"))
    try:
        home = tmp / "home"
        home.mkdir()
        populate(home, args.tasks, args.root)
        env = dict(os.environ, AMPX_HOME=str(home), AMPX_OWNER="bench", AMPX_BACKEND="local",
                   PYTHONPATH=str(args.root))
        ampx = [sys.executable, "-m", "ampx"]
        cases = [("ampx --help", ampx + ["--help"]), ("ampx ls", ampx + ["ls"]),
                 ("ampx ls --all", ampx + ["ls", "--all"])]
        if shutil.which("kubectl"):
            cases.insert(0, ("kubectl version --client", ["kubectl", "version", "--client"]))
        print(f"median of {args.runs} runs, {args.tasks} local tasks, tree {args.root}, "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        for label, argv in cases:
            print(f"  {label:26} {median_time(argv, env, args.runs, tmp):.3f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
