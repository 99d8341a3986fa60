"""TPCpp-10M conversion rate and peak memory, for the extrapolation to the 10M-event archive.

Writes a synthetic archive in the published layout (``--files`` unlabelled files of ``--events`` events
with ≈ 840 random points each, plus small labelled splits), converts it with
``fm4npp-sweep data convert-tpcpp`` in a subprocess (whose report gives events/s and peak memory), and
extrapolates to 100 files × 100k events (SPEC §2.5). Peak memory is bounded by one input file plus one
output shard (5,000 events), so it is extrapolated linearly in the file size from two file sizes that
both fill whole shards (≥ 5,000 events). Timing is wall-clock on this machine (state its load).

Usage: ``python benchmarks/bench_convert.py [--files 3] [--events 10000]``
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

PAPER_FILES, PAPER_EVENTS_PER_FILE = 100, 100_000


def write_archive(root: Path, files: int, events: int, rng: np.random.Generator) -> None:
    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        size = rng.integers(600, 1100, n)
        m = int(size.sum())
        r, phi = rng.uniform(31, 76, m), rng.uniform(-np.pi, np.pi, m)
        data = np.c_[rng.gamma(1, 253, m), r * np.cos(phi), r * np.sin(phi), rng.uniform(-100, 100, m)]
        return data.astype(np.float32), size

    root.mkdir(parents=True)
    for i in range(files):
        data, size = split(events)
        np.savez_compressed(root / f"tpcpp_{i:03d}.npz", data=data, size=size)
    for name in ("train", "validation", "test"):
        d = root / "labeled" / name
        d.mkdir(parents=True)
        data, size = split(200)
        np.savez_compressed(d / "spacepoints.npz", data=data, size=size)
        for key in ("track_ids", "pid_labels", "noise_tags"):
            np.savez_compressed(d / f"{key}.npz", data=rng.integers(0, 5, len(data)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2)
    parser.add_argument("--events", type=int, default=10_000, help="events per file (≥ 10,000)")
    args = parser.parse_args()
    runs = []
    for events in (args.events // 2, args.events):  # two file sizes: memory = intercept + slope × size
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "TPCpp-10M"
            write_archive(root, args.files, events, np.random.default_rng(0))
            cmd = ["data", "convert-tpcpp", str(root), "--out", tmp + "/o"]
            out = subprocess.run(
                [sys.executable, "-m", "fm4npp", *cmd],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
        line = next(x for x in out.splitlines() if x.startswith("pretrain"))
        peak = float(re.search(r"peak memory (\d+) MB", out).group(1))  # type: ignore[union-attr]
        runs.append((events, float(line.split()[-2]), peak))
        rate_text = line.split(",")[-1].strip()
        print(f"{args.files} files × {events} events: {rate_text}, peak memory {peak:.0f} MB")
    (e1, _, p1), (e2, rate, p2) = runs
    slope = (p2 - p1) / (e2 - e1)
    print(f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    hours = PAPER_FILES * PAPER_EVENTS_PER_FILE / rate / 3600
    peak = p2 + slope * (PAPER_EVENTS_PER_FILE - e2)
    print(f"extrapolated 10M events ({PAPER_FILES} files × {PAPER_EVENTS_PER_FILE}): {hours:.1f} h at "
          f"{rate:.0f} events/s (one process); peak memory ≈ {peak:.0f} MB "
          f"({p1:.0f}/{p2:.0f} MB at {e1}/{e2} events per file, {slope * 1e3:.2f} MB per 1k events)")

if __name__ == "__main__":
    main()
