"""Benchmark: does the CI excerpt hold the lines a person needs, at what size and cost?

On the job logs of tests/ci_log_corpus.py (written in the real formats of pytest, go test,
cargo, jest, tsc, eslint, npm, mypy, dotnet, PHPUnit, Gradle, the runner's verdicts; with the
crowding, named-step and matrix cases), it prints per case how many of the required lines the
excerpt holds, whether a forbidden line took their place, and the excerpt's size; then the
time per MB (CPU) and the builder's peak memory (not counting the log text it is given) on
large go test -v logs whose failure is printed first.

Usage: python benchmarks/excerpt_recall.py [--code DIR] [--sizes 1,20,100]

``--code DIR`` imports ``ampx`` from another checkout (e.g. the main one, to compare with the
code before a change). Code without the streaming reader gets what its GitHub client kept of
a log: the last 8 MiB.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--code", default=str(HERE.parent), help="checkout to import ampx from")
    ap.add_argument("--sizes", default="1,20,100", help="large-log sizes in MB")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE.parent / "tests"))
    sys.path.insert(0, args.code)
    import ampx.github.excerpt as ex
    import ci_log_corpus as corpus

    streaming = "steps" in {f.name for f in dataclasses.fields(ex.JobLog)}
    print(f"code: {Path(ex.__file__).resolve().parents[2]} ({'streaming reader' if streaming else 'last 8 MiB'})")

    def job_logs(case):
        out = []
        for j in case.jobs:
            text = j.log
            if not streaming:
                raw = text.encode("utf-8")
                text = raw[-(8 << 20):].decode("utf-8", errors="replace")
                out.append(ex.JobLog(j.name, text, j.failed_step))
            else:
                out.append(ex.JobLog(j.name, text, j.failed_step, steps=ex.steps_from_api({"steps": j.steps})))
        return out

    def run(case, logs=None):
        logs = logs if logs is not None else job_logs(case)  # (what the old client kept: not timed)
        t = time.process_time()
        text = ex.build_excerpt(logs, case.passed)
        return text, time.process_time() - t

    total_req = total_hit = cases_ok = 0
    print(f"{'case':28} {'recall':>7} {'forbidden':>9} {'chars':>6} {'ms':>7}")
    for case in corpus.all_cases():
        text, secs = run(case)
        hit = sum(1 for r in case.required if r in text)
        bad = sum(1 for f in case.forbidden if f in text)
        total_req += len(case.required)
        total_hit += hit
        cases_ok += hit == len(case.required) and not bad
        missing = [r for r in case.required if r not in text]
        print(f"{case.name:28} {hit:>3}/{len(case.required):<3} {bad:>9} {len(text):>6} {secs * 1000:>7.1f}"
              + (f"   missing: {missing[0][:60]!r}" if missing else ""))
    print(f"cases with every required line and no forbidden one: {cases_ok}/{len(corpus.all_cases())}; "
          f"required lines found: {total_hit}/{total_req}")

    print(f"\n{'large go -v log':16} {'MB':>6} {'recall':>7} {'s':>7} {'s/MB':>7} {'peak MB':>8}")
    for size in [float(s) for s in args.sizes.split(",") if s]:
        case = corpus.case_go_large(size)
        mb = len(case.jobs[0].log.encode("utf-8")) / (1 << 20)
        logs = job_logs(case)
        text, secs = run(case, logs)
        hit = sum(1 for r in case.required if r in text)
        tracemalloc.start()
        run(case, logs)
        peak = tracemalloc.get_traced_memory()[1] / (1 << 20)
        tracemalloc.stop()
        print(f"{'':16} {mb:>6.1f} {hit:>3}/{len(case.required):<3} {secs:>7.2f} {secs / mb:>7.3f} {peak:>8.1f}")
        del case, text


if __name__ == "__main__":
    main()
