"""Run every CPU benchmark in turn and print their tables (``make bench``).

The GPU benchmark (``gpu_bench.py``) runs only on a CUDA machine and is skipped here. Each script can
also run alone; ``--only NAME`` picks some. Figures go into benchmarks/RESULTS.md with the machine.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = {
    "plan": ["bench_plan_vs_talk.py"],
    "data": ["bench_data.py", "--events", "2000"],
    "knn": ["bench_knn.py"],
    "mamba": ["bench_mamba.py"],
    "train": ["bench_train.py"],
    "hough": ["bench_hough.py"],
    "adapters": ["bench_adapters.py", "--head-width", "64", "--threads", "2"],
    "fit": ["bench_fit.py"],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", nargs="+", choices=sorted(SCRIPTS), default=sorted(SCRIPTS))
    args = ap.parse_args()
    print(
        f"machine: {platform.node()} {platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    failed = []
    for name in args.only:
        script, *rest = SCRIPTS[name]
        print(f"\n=== {name}: {script} {' '.join(rest)}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.call([sys.executable, str(HERE / script), *rest])
        print(f"=== {name}: exit {code} in {time.perf_counter() - t0:.0f} s", flush=True)
        if code:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
