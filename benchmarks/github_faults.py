"""Benchmark: GitHub having a bad day changes no task's ending (issue 12, item 7).

N tasks (the sandbox's stories: one continued and merged, then green, red then green and CI
on a pull request only, cycled) run through the local runtime (real supervisor and worker processes, GitHub
App auth) against the GitHub stand-in answering about `--fault-rate` of its API requests with
a 503, with one secondary rate-limit window on the runs list and a 503 on the first
installation lookup and the first token request. Prints how many ended as they would have
without faults, and the faults injected by path.

Usage: python benchmarks/github_faults.py [--tasks 20] [--fault-rate 0.1]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from ampx.sandbox.scenarios import scenarios  # noqa: E402
from ampx.sandbox.world import applied, start_world  # noqa: E402

KEYS = ("green", "red-then-green", "continued-merged", "pr-only-ci")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", type=int, default=20)
    p.add_argument("--fault-rate", type=float, default=0.10)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ampx-ghfaults-") as tmp:
        world = start_world(Path(tmp) / "world", ci_concurrency=2)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        world.emulator.register_app(4242, pem, slug="ampx")
        for repo in world.repos:
            world.emulator.install_app(4242, repo)
        env = dict(world.env, AMPX_GITHUB_APP_ID="4242", AMPX_GITHUB_APP_PRIVATE_KEY=pem)
        env.pop("GITHUB_TOKEN")
        os.environ.pop("GITHUB_TOKEN", None)
        faults = world.emulator.faults
        faults.fail_next(1, 503, path=r"/installation$")
        faults.fail_next(1, 503, path=r"/access_tokens$")
        faults.secondary_rate_limit(3, retry_after=5, path=r"/actions/runs$")
        faults.fail_fraction(a.fault_rate, 503, seed=12)
        try:
            with applied(env):
                from ampx.local.backend import LocalBackend
                from ampx.local.supervisor import stop_background
                from e2e.checks import start, wait_all

                backend = LocalBackend.from_env(ensure_supervisor=True)
                by_key = {sc.key: sc for sc in scenarios()}
                # one merge (more would conflict on the same file, faults or not)
                order = [by_key["continued-merged"]] + [by_key[k] for k in KEYS if k != "continued-merged"]
                runs = []
                for i in range(a.tasks):
                    sc = order[0] if i == 0 else order[1 + (i - 1) % (len(order) - 1)]
                    runs.append(start(backend, dataclasses.replace(sc, title=f"{sc.title} {i}")))
                t0 = time.monotonic()
                try:
                    wait_all(backend, runs, timeout=60 * 20)
                finally:
                    stop_background()
                elapsed = time.monotonic() - t0
        finally:
            world.stop()
        ok = [r for r in runs if r.task.status.phase and r.task.status.phase.value == r.scenario.expect_phase
              and r.task.status.attempts == r.scenario.expect_attempts]
        print(f"{len(ok)}/{len(runs)} tasks ended as without faults ({elapsed:.0f} s); "
              f"{faults.injected} requests answered with a fault")
        for r in runs:
            if r not in ok:
                print(f"  {r.scenario.key}: {r.task.status.phase} after {r.task.status.attempts}: "
                      f"{r.task.status.summary}")
        by = Counter(h.split(" ")[0] + " " + "/".join(h.split(" ")[1].split("/")[-2:]) for h in faults.hit)
        for what, n in by.most_common(8):
            print(f"  {n:4d}  {what}")
        return 0 if len(ok) == len(runs) else 1


if __name__ == "__main__":
    sys.exit(main())
