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
With --ci (on by default), the GitHub stand-in (ampx.sandbox) and a GitHub App are configured,
the tasks use the demo repository, and after the first Jobs every task is given a worker report
"pushed" for one commit whose CI run is held queued: the GitHub requests per minute (and per
task-minute) the operator makes while they all wait are counted over --steady seconds, then the
run is let go and the CI detection delay (run completed -> task left the CI stage) is printed,
median and p90. No kubelet runs: the Jobs stay pending, the reports stand in for the workers.
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


def task_body(i: int, repo: str = "") -> dict:
    name = f"01jscale{i:018d}"
    return {"apiVersion": "ampx.dev/v1alpha1", "kind": "AmpTask",
            "metadata": {"name": name, "namespace": "default",
                         "labels": {"ampx.dev/owner": f"user{i % 7}"}},
            "spec": {"repo": repo or f"acme/repo{i % 10}", "prompt": f"Task {i}: make the tests pass",
                     "branch": f"amp/scale-{name}"}}


class GitHub:
    """The GitHub stand-in with an App installed on the demo repository, CI runs held queued."""

    def __init__(self, root: Path) -> None:
        from ampx.sandbox.world import DEMO_REPO, start_world

        self.repo = DEMO_REPO
        self.world = start_world(root / "world")
        em = self.world.emulator
        app = em.create_app()
        em.install_app(app.app_id, DEMO_REPO)
        keyfile = root / "app.pem"
        keyfile.write_text(app.private_key_pem)
        self.env = {"AMPX_GITHUB_API_URL": self.world.env["AMPX_GITHUB_API_URL"],
                    "AMPX_GITHUB_URL": self.world.env["AMPX_GITHUB_URL"],
                    "AMPX_GITHUB_APP_ID": str(app.app_id),
                    "AMPX_GITHUB_APP_PRIVATE_KEY_FILE": str(keyfile)}

    def held_commit(self) -> str:
        """A commit with one CI run, queued until `let_go`."""
        em = self.world.emulator
        em.ci.pause()
        clone = Path(tempfile.mkdtemp(prefix="ampx-scale-clone-"))
        git = ["git", "-C", str(clone), "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
        subprocess.run(["git", "clone", "-q", str(em.git_path(self.repo)), str(clone)], check=True)
        calc = next(p for p in clone.glob("*.py") if not p.name.startswith("test"))
        calc.write_text(calc.read_text() + "\n# scale benchmark\n")
        subprocess.run(git + ["commit", "-qam", "bench"], check=True)
        subprocess.run(git + ["push", "-q", "origin", "HEAD:refs/heads/amp/bench-ci"], check=True)
        sha = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        shutil.rmtree(clone, ignore_errors=True)
        runs = em.notify_push(self.repo)
        assert runs, "the demo repository's workflow did not run on push"
        return sha

    def requests(self) -> int:
        return self.world.emulator.stats.total_requests

    def let_go(self) -> float:
        em = self.world.emulator
        em.ci.resume()
        em.ci.wait_idle(timeout=300)
        return time.monotonic()

    def stop(self) -> None:
        self.world.stop()


def report_pushed(server: KubeServer, name: str, sha: str) -> None:
    """What a worker writes when it pushed (the Jobs never run here)."""
    server.call(server.emulator.patch_object, AMPTASKS, "default", name,
                {"status": {"reports": {"1": {"outcome": "pushed", "commit": sha,
                                              "finishedAt": "2026-01-01T00:00:00Z"}}}},
                subresource="status")


def stage_of(server: KubeServer) -> dict[str, str]:
    return {t["metadata"]["name"]: (t.get("status") or {}).get("stage")
            for t in server.objects(AMPTASKS)}


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


def measure(n: int, steady: float, ls_runs: int, root: Path, ci: bool) -> dict:
    work = Path(tempfile.mkdtemp(prefix="ampx-scale-"))
    gh = GitHub(work) if ci else None
    out: dict = {}
    try:
        with KubeServer(crd_path=DEFAULT_CRD, workdir=work / "kube") as server:
            env = {"PYTHONPATH": str(root), "AMPX_WORKER_IMAGE": "ampx-worker:bench",
                   "GITHUB_TOKEN": "", "AMPX_GITHUB_APP_ID": "",
                   "AMPX_CI_POLL_SECONDS": "5", "AMPX_CI_POLL_MAX_SECONDS": "60"}
            if gh is not None:
                env.update(gh.env)
            op = server.spawn([sys.executable, "-m", "ampx", "operator", "-n", "default"], env=env,
                              cwd=str(root))  # `-m` puts the working directory first
            server.wait_for(lambda: server.call(server.emulator.watch_count, AMPTASKS) > 0,
                            timeout=60, message="operator watch")
            t0 = time.monotonic()
            for i in range(n):
                server.call(server.emulator.create_object, AMPTASKS,
                            task_body(i, gh.repo if gh else ""), "default")
            server.wait_for(lambda: len(server.objects(JOBS)) >= n, timeout=1800, interval=0.2,
                            message="every first Job")
            first_jobs = time.monotonic() - t0
            time.sleep(10)  # let the status writes of the starts settle
            r0, c0, w0 = requests(server), cpu_seconds(op.proc.pid), time.monotonic()
            time.sleep(steady)
            r1, c1, w1 = requests(server), cpu_seconds(op.proc.pid), time.monotonic()
            info_lines = sum(1 for line in op.output.splitlines() if " INFO " in line)
            if gh is not None:
                out.update(ci_figures(server, gh, n, steady))
            op.stop()
            if os.environ.get("AMPX_BENCH_LOG"):  # the operator's output, for a closer look
                Path(os.environ["AMPX_BENCH_LOG"]).write_text(op.output)
            lsenv = server.env(PYTHONPATH=str(root), AMPX_BACKEND="kube", AMPX_OWNER="user0")
            kubectl = shutil.which("kubectl")
            ls = kc = None
            if ls_runs:
                ls = median_run([sys.executable, "-m", "ampx", "ls", "--all"], lsenv, ls_runs, root)
                if kubectl:
                    kc = median_run([kubectl, "get", "amptasks", "-A"], lsenv, ls_runs, root)
        out.update({"n": n, "first_jobs_s": first_jobs, "req_per_s": (r1 - r0) / (w1 - w0),
                    "cpu_pct": 100 * (c1 - c0) / (w1 - w0), "info_lines": info_lines,
                    "ls_s": ls, "kubectl_s": kc})
        return out
    finally:
        if gh is not None:
            gh.stop()
        shutil.rmtree(work, ignore_errors=True)


def ci_figures(server: KubeServer, gh: GitHub, n: int, steady: float) -> dict:
    """Every task waits on one queued CI run: GitHub requests while waiting, then how long
    after the run completes each task notices."""
    sha = gh.held_commit()
    for i in range(n):
        report_pushed(server, task_body(i)["metadata"]["name"], sha)
    server.wait_for(lambda: sum(1 for s in stage_of(server).values() if s == "ci") >= n,
                    timeout=1800, interval=0.5, message="every task waiting on CI")
    time.sleep(5)
    g0, k0, w0 = gh.requests(), requests(server), time.monotonic()
    time.sleep(steady)
    g1, k1, w1 = gh.requests(), requests(server), time.monotonic()
    minutes = (w1 - w0) / 60
    done_at = gh.let_go()
    noticed: dict[str, float] = {}
    deadline = time.monotonic() + 600
    while len(noticed) < n and time.monotonic() < deadline:
        now = time.monotonic()
        for name, stage in stage_of(server).items():
            if stage != "ci" and name not in noticed:
                noticed[name] = now - done_at
        time.sleep(0.1)
    delays = sorted(noticed.values())
    return {"ci_wait_req_per_s": (k1 - k0) / (w1 - w0), "gh_per_min": (g1 - g0) / minutes, "gh_per_task_min": (g1 - g0) / minutes / n,
            "detect_median_s": statistics.median(delays) if delays else None,
            "detect_p90_s": delays[int(0.9 * (len(delays) - 1))] if delays else None,
            "noticed": len(noticed)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default="100,1000", help="comma-separated task counts")
    ap.add_argument("--steady", type=float, default=30.0, help="seconds of steady state measured")
    ap.add_argument("--ls-runs", type=int, default=5)
    ap.add_argument("--root", type=Path, default=HERE, help="the ampx tree the operator runs from")
    ap.add_argument("--no-ci", dest="ci", action="store_false",
                    help="no GitHub stand-in (no CI figures)")
    args = ap.parse_args()
    print(f"operator from {args.root}")
    print(f"{'N':>6} {'first Jobs':>11} {'API req/s':>10} {'CPU %':>7} {'INFO lines':>11} "
          f"{'ls --all':>9} {'kubectl':>8} {'GH req/min':>11} {'GH/task-min':>12} "
          f"{'CI noticed median/p90':>22} {'API req/s in CI wait':>21}")
    for n in (int(x) for x in args.tasks.split(",")):
        m = measure(n, args.steady, args.ls_runs, args.root.resolve(), args.ci)
        f = lambda key, fmt: (fmt % m[key]) if m.get(key) is not None else "-"  # noqa: E731
        detect = f"{f('detect_median_s', '%.1fs')}/{f('detect_p90_s', '%.1fs')}"
        print(f"{m['n']:>6} {m['first_jobs_s']:>10.1f}s {m['req_per_s']:>10.1f} "
              f"{m['cpu_pct']:>6.1f}% {m['info_lines']:>11} {f('ls_s', '%.2fs'):>9} "
              f"{f('kubectl_s', '%.2fs'):>8} {f('gh_per_min', '%.0f'):>11} "
              f"{f('gh_per_task_min', '%.2f'):>12} {detect:>22} "
              f"{f('ci_wait_req_per_s', '%.1f'):>21}", flush=True)


if __name__ == "__main__":
    main()
