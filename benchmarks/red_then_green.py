"""Benchmark: how fast ampx reacts to CI, and what it costs against doing it by hand.

A red-then-green task runs through the local runtime (real supervisor and worker processes)
against the GitHub stand-in, repeated N times. It prints:

- reaction delay: from the CI stand-in finishing a run (its completion timestamp) to the
  orchestrator's next request caused by it: the clone of the next attempt after a red run, the
  pull request after a green one (median and p95);
- total wall time against the by-hand baseline = agent time + CI time (the agent's own run
  time from the worker log, CI time from the runs' start/end), and the overhead.

Usage: python benchmarks/red_then_green.py [--runs 5] [--agent-seconds 20] [--ci-seconds 20]
       [--poll 5] [--runtime local|kube]

`--runtime kube` runs the same task through the real kopf operator against the Kubernetes API
emulator of the test harness (tests/kubeharness), with its kubelet stand-in starting `ampx
worker` for each Job and GitHub App auth (needs the `test` extra).
The agent and CI durations are stand-ins for real ones (a real agent turn and CI run take
minutes); the overhead in seconds is what ampx adds, independent of them.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from ampx.cli.backend import owner_name
from ampx.core.ids import default_branch, new_task_id
from ampx.core.models import AmpTaskSpec, Phase, Policy
from ampx.sandbox.scenarios import calc_with, unit_test_file, write
from ampx.sandbox.world import WORKFLOW, applied, seed_project, start_world

BENCH_REPO = "bench/calculator"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def one_run(root: Path, agent_s: float, ci_s: float, poll: int, runtime: str = "local") -> dict:
    world = start_world(root, extra_env={"AMPX_CI_POLL_SECONDS": str(poll),
                                         "AMPX_CI_POLL_MAX_SECONDS": str(max(poll, 60))})
    seed = seed_project(root / "bench-seed")
    workflow = WORKFLOW.replace("        run: python3", f"        run: sleep {ci_s} && python3")
    (seed / ".github" / "workflows" / "tests.yml").write_text(workflow)
    world.emulator.create_repo(BENCH_REPO, seed)

    reactions: list[tuple[str, float]] = []  # (what, monotonic time the request arrived)
    lock = threading.Lock()

    def observe(method, path, status, headers, body):
        what = None
        if method == "POST" and path.endswith("/pulls"):
            what = "pr"
        elif "git-upload-pack" in path and method == "POST":
            what = "clone"
        if what:
            with lock:
                reactions.append((what, time.monotonic()))

    world.emulator.response_observers.append(observe)
    with applied(world.env):
        try:
            if runtime == "kube":
                return measure_kube(world, reactions, agent_s, root, poll)
            return measure(world, reactions, agent_s)
        finally:
            world.stop()


def measure(world, reactions, agent_s: float) -> dict:
    """The task on the local runtime (supervisor and worker processes)."""
    from ampx.local import paths
    from ampx.local.backend import LocalBackend
    from ampx.local.supervisor import stop_background

    try:
        backend = LocalBackend.from_env(ensure_supervisor=True)

        def worker_logs(tid):
            return [log.read_text() for log in paths.runs_dir().glob(f"{tid}-a*.log")]

        return run_task(world, reactions, agent_s, backend, worker_logs)
    finally:
        stop_background()


def measure_kube(world, reactions, agent_s: float, root: Path, poll: int) -> dict:
    """The task on the Kubernetes runtime: the real kopf operator against the test harness's
    API emulator, the kubelet stand-in running `ampx worker` per Job, GitHub App auth."""
    import os

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from kube.cluster import Cluster
    from kubeharness.kubelet import FakeKubelet
    from kubeharness.server import DEFAULT_CRD, KubeServer

    from ampx.cli.backend import KubeBackend

    root.chmod(0o755)  # the pods run as their own user (10001) when this runs as root
    with KubeServer(crd_path=DEFAULT_CRD, workdir=root / "kube") as server:
        os.environ.update(KUBECONFIG=str(server.kubeconfig), AMPX_BACKEND="kube")
        for name in ("GITHUB_TOKEN", "AMP_API_KEY"):  # the App and the Secrets, as in a cluster
            os.environ.pop(name, None)
        with FakeKubelet(server, extra_env={}, workdir=root / "pods", grace_period=2.0) as kubelet:
            procs = []

            def spawn(argv, **kw):
                procs.append(server.spawn(argv, **kw))
                return procs[-1]

            cluster = Cluster(world, server, kubelet, spawn, root)
            world.emulator.install_app(int(cluster.op_env["AMPX_GITHUB_APP_ID"]), BENCH_REPO)
            cluster.op_env.update(AMPX_CI_POLL_SECONDS=str(poll),
                                  AMPX_CI_POLL_MAX_SECONDS=str(max(poll, 60)))
            cluster.start_operator()
            try:
                def worker_logs(tid):
                    logs = server.call(lambda: dict(server.emulator.pod_logs))
                    return [bytes(v).decode("utf-8", "replace") for k, v in logs.items()
                            if tid in str(k)]

                return run_task(world, reactions, agent_s, KubeBackend(), worker_logs)
            finally:
                for proc in procs:
                    proc.stop()


def run_task(world, reactions, agent_s: float, backend, worker_logs) -> dict:
    """Create the red-then-green task, wait for its PR, and take the figures."""
    tid = new_task_id()
    prompt = (f"Add divide.\n@fake sleep {agent_s}\n"
              + write("calc.py", calc_with("def divide(a, b):\n    return a * b")) + "\n"
              + write("test_divide.py", unit_test_file("divide", "divide(6, 3)", "2")) + "\n"
              + f'@fake when "AssertionError: 18 != 2" sleep {agent_s}\n'
              + '@fake when "AssertionError: 18 != 2" write calc.py '
              + calc_with("def divide(a, b):\n    return a / b").replace("\n", "\\n"))
    spec = AmpTaskSpec(repo=BENCH_REPO, prompt=prompt, title="Add divide",
                       policy=Policy(flaky_retry=False))
    spec = spec.model_copy(update={"branch": default_branch("Add divide", tid)})
    t0 = time.monotonic()
    backend.create(tid, spec, owner_name())
    while True:
        task = backend.get(tid)
        if task.status.phase and not task.status.phase.active:
            break
        if time.monotonic() - t0 > 600:
            raise RuntimeError(f"task stuck: {task.status.summary}")
        time.sleep(0.05)
    total = time.monotonic() - t0
    assert task.status.phase == Phase.SUCCESS and task.status.attempts == 2, task.status.summary

    runs = sorted((r for r in world.emulator.ci.runs(BENCH_REPO)), key=lambda r: r.id)
    delays = []
    for run in runs:
        after = sorted(t for what, t in reactions if t >= run.completed_monotonic
                       and what == ("pr" if run.conclusion == "success" else "clone"))
        if after:
            delays.append(after[0] - run.completed_monotonic)
    ci_time = sum((r.completed_at - r.run_started_at).total_seconds() for r in runs)
    agent_time = 0.0
    for text in worker_logs(tid):
        agent_time += sum(float(x) for x in re.findall(r"\[agent\] exit \d+ after ([\d.]+)s", text))
    return {"total": total, "delays": delays, "ci": ci_time, "agent": agent_time}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--agent-seconds", type=float, default=20.0)
    ap.add_argument("--ci-seconds", type=float, default=20.0)
    ap.add_argument("--poll", type=int, default=5, help="AMPX_CI_POLL_SECONDS (default 5)")
    ap.add_argument("--runtime", choices=["local", "kube"], default="local")
    args = ap.parse_args()
    results = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="ampx-bench-") as tmp:
            r = one_run(Path(tmp), args.agent_seconds, args.ci_seconds, args.poll, args.runtime)
        results.append(r)
        base = r["agent"] + r["ci"]
        print(f"run {i + 1}: total {r['total']:.1f}s, agent {r['agent']:.1f}s, CI {r['ci']:.1f}s, "
              f"overhead {r['total'] - base:.1f}s ({(r['total'] / base - 1) * 100:.1f}%), "
              f"delays {', '.join(f'{d:.2f}s' for d in r['delays'])}", flush=True)
    delays = [d for r in results for d in r["delays"]]
    overheads = [r["total"] - (r["agent"] + r["ci"]) for r in results]
    rel = [r["total"] / (r["agent"] + r["ci"]) - 1 for r in results]
    print()
    print(f"{args.runtime} runtime; poll interval {args.poll}s; agent {args.agent_seconds}s per turn; CI {args.ci_seconds}s "
          f"per run; {args.runs} runs of a red-then-green task")
    print(f"reaction delay after CI finished: median {statistics.median(delays):.2f}s, "
          f"p95 {percentile(delays, 0.95):.2f}s (n={len(delays)})")
    print(f"overhead vs agent+CI time: median {statistics.median(overheads):.1f}s "
          f"({statistics.median(rel) * 100:.1f}%), max {max(overheads):.1f}s ({max(rel) * 100:.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
