"""Input pipeline throughput: events/s delivered by the training loader (read from the memory-mapped
flat layout, serialize with k-NNN targets, collate) with 1 and 2 worker processes, k = 8 and 30, and
the projection per GPU for a Perlmutter node against the GPU kernel rates of RESULTS §4.

Events: particle-gun events with ≈ 840 hits (TPCpp-10M ≈ 834–856). The main process only consumes
batches (as a GPU-bound training step would); wall-clock rates after one warm-up step. Also printed:
the in-process rate per core (process CPU time, 0 workers) and, per worker count, events per
worker-CPU-second (``cpuN``, load-independent; equal values mean the workers do not slow each other
down; lower than in-process by the hand-over of batches through shared memory), and ``main``, the
cores the consuming process spent receiving batches with the most workers (it competes with the
workers for the cores; a GPU-bound training process pays it too). The projection is
``cpuN × (cores per GPU − 1)`` (one core stays with the training process) and, beside it, the same
times the wall-clock scaling efficiency measured here (meaningless when other work loads the machine:
compare the load average with the CPU count printed in the header).

Usage: ``python benchmarks/bench_input.py [--events 192] [--steps 6] [--workers 1 2] [--k 8 30]``
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from fm4npp.data.fastsim import SimConfig
from fm4npp.data.flat import FlatEvents, write_flat
from fm4npp.data.generate import simulate_events
from fm4npp.data.gun import GunConfig
from fm4npp.data.serialize import fit_edges
from fm4npp.data.torch_dataset import MicroBatchDataset, StepSampler, step_loader

GPU_RATE = {"m1": 3745, "m2": 2322, "m3": 1484}  # RESULTS §4: H100, fused mamba_ssm, bf16, events/s
CORES_PER_GPU = 16  # Perlmutter: 64 cores / 4 A100
BATCH, MICRO = 64, 16


def make_flat(directory: Path, n: int) -> tuple[FlatEvents, np.ndarray, object]:
    events = simulate_events(n, 1, gun=GunConfig(multiplicity=(10, 16)), sim=SimConfig())
    cols = [np.concatenate([e.hits[c] for e in events]) for c in ("energy", "x", "y", "z")]
    ids = np.array([e.event_id for e in events], np.int64)
    sizes = np.array([e.n_hits for e in events], np.int64)
    write_flat(directory, [(ids, sizes, np.stack(cols, 1).astype(np.float32))], n, int(sizes.sum()))
    return FlatEvents(directory), ids, fit_edges(events)


def loader_rate(
    flat: FlatEvents, ids: np.ndarray, edges: object, k: int, workers: int, steps: int
) -> tuple[float, float, float]:
    """(wall-clock events/s after one warm-up step; events per worker-CPU-second over all items;
    cores used by this, the consuming, process in the timed window).

    The sampler is cut to exactly (steps + 1) steps, so the workers' CPU time (collected with
    RUSAGE_CHILDREN once they are joined) covers exactly the delivered events: the second figure does
    not depend on how many cores other processes leave free, and stays flat if workers do not slow
    each other down."""
    sampler = StepSampler(flat, ids, seed=0, position=0, batch_events=BATCH, micro_batch_events=MICRO)
    per_step = BATCH // MICRO
    finite = itertools.islice(iter(sampler), (steps + 1) * per_step)
    ds = MicroBatchDataset(flat, edges, order="EPR", mode="fixed", k=k)  # type: ignore[arg-type]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    it = iter(step_loader(ds, finite, workers))  # type: ignore[arg-type]
    for _ in range(per_step):  # warm-up: worker start, kernel compile / cache load
        next(it)
    t, main = time.perf_counter(), time.process_time()
    for _ in range(steps * per_step):
        next(it)
    wall = time.perf_counter() - t
    rate, main = steps * BATCH / wall, (time.process_time() - main) / wall
    for _ in it:  # (nothing left: the sampler is finite)
        pass
    it._shutdown_workers()  # type: ignore[attr-defined]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return rate, (steps + 1) * BATCH / cpu if cpu > 0 else float("nan"), main


def core_rate(flat: FlatEvents, ids: np.ndarray, edges: object, k: int, n: int) -> float:
    ds = MicroBatchDataset(flat, edges, order="EPR", mode="fixed", k=k)  # type: ignore[arg-type]
    ds[ids[:MICRO]]
    best = np.inf
    for _ in range(3):
        t = time.process_time()
        for s in range(0, n, MICRO):
            ds[ids[s : s + MICRO]]
        best = min(best, time.process_time() - t)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=192)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--k", type=int, nargs="+", default=[8, 30])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        flat, ids, edges = make_flat(Path(tmp) / "flat", args.events)
        hits = float(np.mean(np.diff(np.asarray(flat.offsets))))
        print(f"{platform.node()} {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {len(ids)} gun "
              f"events, {hits:.0f} hits/event; batch {BATCH}, micro-batch {MICRO}")  # fmt: skip
        print(f"{'k':>3} {'per core':>9} " + " ".join(f"{f'{w} wkr':>8}" for w in args.workers)
              + f" {'scaling':>8} " + " ".join(f"{f'cpu{w}':>6}" for w in args.workers)
              + f" {'main':>5} {'proj/GPU':>9} {'×eff':>7}  bound vs m1/m2/m3")  # fmt: skip
        for k in args.k:
            pc = core_rate(flat, ids, edges, k, min(len(ids), 96))
            got = [loader_rate(flat, ids, edges, k, w, args.steps) for w in args.workers]
            rates, cpu = [g[0] for g in got], [g[1] for g in got]
            scale = rates[-1] / rates[0] if len(rates) > 1 else 1.0
            eff = min(1.0, scale / (args.workers[-1] / args.workers[0])) if len(rates) > 1 else 1.0
            proj = cpu[-1] * (CORES_PER_GPU - 1)  # worker CPU rate (read + serialize + collate + IPC)
            bound = "/".join("input" if proj < g else "gpu" for g in GPU_RATE.values())
            print(f"{k:>3} {pc:>9.0f} " + " ".join(f"{r:>8.0f}" for r in rates)
                  + f" {scale:>7.2f}× " + " ".join(f"{c:>6.0f}" for c in cpu)
                  + f" {got[-1][2]:>5.2f} {proj:>9.0f} {proj * eff:>7.0f}  {bound}")  # fmt: skip


if __name__ == "__main__":
    main()
