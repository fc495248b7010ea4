"""Run every benchmark, each in its own subprocess (clean timings, and a peak memory per benchmark), then print a
summary table of the ratios they report.

Each benchmark prints ``RESULT <what> | <ratio> | <target>`` lines (see ``common.summary_line``); this script streams
their full output and collects those lines. Total wall time on the 2-core CPU machine: about 4 minutes.

    .venv/bin/python benchmarks/run_all.py
    .venv/bin/python benchmarks/run_all.py --only sampler fast_decoding
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ["loss_step", "sampler", "dtm_step", "fast_decoding", "reward_limit"]


@dataclass
class Outcome:
    """What one benchmark subprocess reported."""

    name: str
    returncode: int
    seconds: float
    peak_rss_mb: float
    results: list[tuple[str, str, str]] = field(default_factory=list)


def run_benchmark(name: str) -> Outcome:
    """Run ``benchmarks/<name>.py``, echo its output, and collect its RESULT lines, wall time and peak RSS.

    The child is reaped with ``os.wait4``: its peak RSS is that of the largest process in the benchmark's own process
    tree (Linux folds in the children it reaped), unaffected by earlier benchmarks (``RUSAGE_CHILDREN`` of this
    process would give the maximum over every benchmark so far).
    """
    print(f"\n=== {name} ===", flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / f"{name}.py")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    results = []
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line, end="", flush=True)
        if line.startswith("RESULT "):
            what, ratio, target = (part.strip() for part in line[len("RESULT ") :].split("|"))
            results.append((what, ratio, target))
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    return Outcome(name, proc.returncode, seconds, usage.ru_maxrss / 1024, results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=BENCHMARKS)
    args = parser.parse_args()

    start = time.perf_counter()
    outcomes = [run_benchmark(name) for name in args.only]
    total = time.perf_counter() - start

    print("\n| benchmark | measured | ratio | target | wall s | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for out in outcomes:
        rows = (
            out.results if out.returncode == 0 else [*out.results, (f"FAILED (exit code {out.returncode})", "-", "-")]
        )
        for what, ratio, target in rows:
            print(f"| {out.name} | {what} | {ratio} | {target} | {out.seconds:.0f} | {out.peak_rss_mb:.0f} |")
    print(f"\ntotal wall time {total:.0f} s")
    failed = [out.name for out in outcomes if out.returncode != 0]
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
