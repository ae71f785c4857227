"""The concurrency queue at scale: the cost of planning, and status writes per start.

    python benchmarks/queue_plan.py [--waiting 1000 10000] [--owners 10] [--limit 20]

For N due attempts spread over --owners owners (one owner holds half of them) and --limit
slots all taken, prints: the median time of one `plan()` (what the SlotBook recomputes after a
change), and how many waiting tasks' shown places change when one slot frees and the next task
starts (each is one status write), beside N (what exact places for everyone would cost).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ampx.core.queueing import Due, Held, Limits, plan, shown_place  # noqa: E402


def line(n: int, owners: int) -> list[Due]:
    out = []
    for i in range(n):
        owner = "big" if i % 2 == 0 else f"o{i % owners}"
        out.append(Due(f"t{i:06d}", "team", f"acme/r{i % 7}", owner,
                       f"2026-12-02T{10 + i // 3600 % 10:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--waiting", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--owners", type=int, default=10)
    ap.add_argument("--limit", type=int, default=20)
    args = ap.parse_args()
    limits = Limits(per_namespace=args.limit)
    held = [Held("team", "acme/r0", "big")] * args.limit
    print(f"{'waiting':>8} {'plan() ms':>10} {'writes/start':>13} {'exact would':>12}")
    for n in args.waiting:
        due = line(n, args.owners)
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            before = plan(limits, held, due)
            times.append((time.perf_counter() - t0) * 1000)
        # one slot frees: the first in line starts, the others move up
        first = min(before.place, key=before.place.get)
        after = plan(limits, held, [d for d in due if d.key != first])
        writes = sum(shown_place(after.place[k]) != shown_place(p)
                     for k, p in before.place.items() if k != first)
        exact = sum(after.place[k] != p for k, p in before.place.items() if k != first)
        print(f"{n:>8} {statistics.median(times):>10.1f} {writes:>13} {exact:>12}")


if __name__ == "__main__":
    main()
