"""The operator at scale, on the project's Kubernetes API emulator with the real operator.

    python benchmarks/scale.py [--tasks 100,1000] [--steady 30] [--ls-runs 5] [--root PATH]

For each N: start the emulator (tests/kubeharness) and `ampx operator` (as a subprocess, from
this tree or the tree given by --root, e.g. an older checkout to compare), create N AmpTasks at
once, and print
- the time until every first Job exists;
- with nothing happening afterwards (the Jobs stay pending: no kubelet), the API requests per
  second the operator sends (the emulator counts every request it serves) and its CPU use
  (utime+stime from /proc, in % of one core) over --steady seconds;
- the median wall time of `ampx --backend kube ls --all` (a fresh process) beside
  `kubectl get amptasks -A` over the same N tasks (--ls-runs each, alternating).
GitHub is not configured (tasks never reach CI here): GitHub cost per repository is measured by
the GitHub layer's own benchmark.
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
sys.path.insert(0, str(HERE / "tests"))
sys.path.insert(0, str(HERE))

from kubeharness.server import DEFAULT_CRD, KubeServer  # noqa: E402

AMPTASKS = "ampx.dev/v1alpha1/amptasks"
JOBS = "batch/v1/jobs"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def task_body(i: int) -> dict:
    name = f"01jscale{i:018d}"
    return {"apiVersion": "ampx.dev/v1alpha1", "kind": "AmpTask",
            "metadata": {"name": name, "namespace": "default",
                         "labels": {"ampx.dev/owner": f"user{i % 7}"}},
            "spec": {"repo": f"acme/repo{i % 10}", "prompt": f"Task {i}: make the tests pass",
                     "branch": f"amp/scale-{name}"}}


def requests(server: KubeServer) -> int:
    return server.call(lambda: len(server.emulator._requests))


def median_run(argv: list[str], env: dict, runs: int, cwd: Path) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=cwd)
        times.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"{argv[:4]} failed: {r.stderr.strip()[:300]}")
    return statistics.median(times)


def measure(n: int, steady: float, ls_runs: int, root: Path) -> dict:
    work = Path(tempfile.mkdtemp(prefix="ampx-scale-"))
    try:
        with KubeServer(crd_path=DEFAULT_CRD, workdir=work) as server:
            env = {"PYTHONPATH": str(root), "AMPX_WORKER_IMAGE": "ampx-worker:bench",
                   "GITHUB_TOKEN": "", "AMPX_GITHUB_APP_ID": ""}
            op = server.spawn([sys.executable, "-m", "ampx", "operator", "-n", "default"], env=env,
                              cwd=str(root))  # `-m` puts the working directory first
            server.wait_for(lambda: server.call(server.emulator.watch_count, AMPTASKS) > 0,
                            timeout=60, message="operator watch")
            t0 = time.monotonic()
            for i in range(n):
                server.call(server.emulator.create_object, AMPTASKS, task_body(i), "default")
            server.wait_for(lambda: len(server.objects(JOBS)) >= n, timeout=1800, interval=0.2,
                            message="every first Job")
            first_jobs = time.monotonic() - t0
            time.sleep(10)  # let the status writes of the starts settle
            r0, c0, w0 = requests(server), cpu_seconds(op.proc.pid), time.monotonic()
            time.sleep(steady)
            r1, c1, w1 = requests(server), cpu_seconds(op.proc.pid), time.monotonic()
            info_lines = sum(1 for line in op.output.splitlines() if " INFO " in line)
            op.stop()
            lsenv = server.env(PYTHONPATH=str(root), AMPX_BACKEND="kube", AMPX_OWNER="user0")
            kubectl = shutil.which("kubectl")
            ls = kc = None
            if ls_runs:
                ls = median_run([sys.executable, "-m", "ampx", "ls", "--all"], lsenv, ls_runs, root)
                if kubectl:
                    kc = median_run([kubectl, "get", "amptasks", "-A"], lsenv, ls_runs, root)
        return {"n": n, "first_jobs_s": first_jobs, "req_per_s": (r1 - r0) / (w1 - w0),
                "cpu_pct": 100 * (c1 - c0) / (w1 - w0), "info_lines": info_lines,
                "ls_s": ls, "kubectl_s": kc}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default="100,1000", help="comma-separated task counts")
    ap.add_argument("--steady", type=float, default=30.0, help="seconds of steady state measured")
    ap.add_argument("--ls-runs", type=int, default=5)
    ap.add_argument("--root", type=Path, default=HERE, help="the ampx tree the operator runs from")
    args = ap.parse_args()
    print(f"operator from {args.root}")
    print(f"{'N':>6} {'first Jobs':>11} {'API req/s':>10} {'CPU %':>7} {'INFO lines':>11} "
          f"{'ls --all':>9} {'kubectl':>8}")
    for n in (int(x) for x in args.tasks.split(",")):
        m = measure(n, args.steady, args.ls_runs, args.root.resolve())
        ls = f"{m['ls_s']:.2f}s" if m["ls_s"] is not None else "-"
        kc = f"{m['kubectl_s']:.2f}s" if m["kubectl_s"] is not None else "-"
        print(f"{m['n']:>6} {m['first_jobs_s']:>10.1f}s {m['req_per_s']:>10.1f} "
              f"{m['cpu_pct']:>6.1f}% {m['info_lines']:>11} {ls:>9} {kc:>8}", flush=True)


if __name__ == "__main__":
    main()
