"""Event-generation speed (events/s): PYTHIA alone (every inelastic event, and per event accepted by the
MBD trigger, the default), secondaries, simulation alone, gun, end to end, workers 1 and 2.

In-process stages are timed in process CPU time (events/s per core, robust on a shared machine);
``generate_dataset`` runs are wall-clock, including PYTHIA initialisation, worker start and Parquet.

Usage: .venv/bin/python benchmarks/bench_data.py [--events 2000] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from fm4npp.data import generate as gen
from fm4npp.data.fastsim import SimConfig, simulate_particles
from fm4npp.data.gun import GunConfig, gun_particles
from fm4npp.data.pythia import block_seed


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:8.0f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--workers", default="1,2", help="generate_dataset runs, e.g. 1,2 or 1")
    args = parser.parse_args()
    n = args.events
    sim = SimConfig()
    blocks = gen._blocks(n)
    rows: list[tuple[str, str, str]] = []

    t = time.process_time()
    driver = gen._driver(0, "default")
    init_s = time.process_time() - t
    t = time.process_time()
    for b, k in blocks:
        driver.generate(k, block_seed(0, b), np.random.default_rng(b), b * gen.BLOCK_EVENTS, "none")
    rows.append(("PYTHIA 8 alone (+ extraction), no trigger, CPU", _rate(n, time.process_time() - t), "1"))
    tables = []
    trials = 0
    t = time.process_time()
    for b, k in blocks:
        rng = np.random.default_rng(b)
        tables.append(driver.generate(k, block_seed(0, b), rng, b * gen.BLOCK_EVENTS, sim.trigger))
        trials += driver.trials
    rows.append((f"PYTHIA 8 alone, trigger {sim.trigger} (per accepted), CPU",
                 _rate(n, time.process_time() - t), "1"))  # fmt: skip

    t = time.process_time()
    full = []
    for (b, k), table in zip(blocks, tables, strict=True):
        rng = np.random.default_rng(b)
        full.append(gen.event_particles(table, k, b * gen.BLOCK_EVENTS, sim, rng))
    rows.append(("noise + secondaries (conversions, decays), CPU", _rate(n, time.process_time() - t), "1"))
    t = time.process_time()
    n_hits = 0
    for i, table in enumerate(full):
        hits, _ = simulate_particles(table, sim, np.random.default_rng(i))
        n_hits += len(hits["x"])
    rows.append(("fast simulation alone (calibrated), CPU", _rate(n, time.process_time() - t), "1"))

    gun = GunConfig()
    t = time.process_time()
    for b, k in blocks:
        rng = np.random.default_rng(b)
        simulate_particles(gun_particles(k, gun, rng), sim, rng)
    rows.append(("particle gun + simulation (5–15 tracks), CPU", _rate(n, time.process_time() - t), "1"))

    t = time.process_time()
    for b, k in blocks:
        gen.simulate_block(0, b, k, sim)
    rows.append(("end to end in memory (PYTHIA + sim), CPU", _rate(n, time.process_time() - t), "1"))

    with tempfile.TemporaryDirectory() as tmp:
        for workers in (int(w) for w in args.workers.split(",")):
            t = time.perf_counter()
            gen.generate_dataset(Path(tmp) / f"w{workers}", n, 0, workers=workers, progress=False)
            rows.append(
                (f"generate_dataset → Parquet, wall ({'spawn+' if workers > 1 else ''}init)",
                 _rate(n, time.perf_counter() - t), str(workers))
            )  # fmt: skip

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; events {n}")
    print(f"PYTHIA init {init_s:.2f} s; {n_hits / n:.0f} points/event; trigger {sim.trigger} accepts "
          f"{n / trials:.1%} of inelastic events")  # fmt: skip
    print(f"| {'stage':47s} | events/s | workers |")
    print(f"|{'-' * 49}|----------|---------|")
    for name, rate, w in rows:
        print(f"| {name:47s} | {rate} | {w:>7s} |")


if __name__ == "__main__":
    main()
