"""CPU pretraining throughput per quickstart rung (q1–q4): events/s, tokens/s, peak RSS.

One optimiser step = forward + masked MSE + backward + grad clip + AdamW on a batch of events, as
``fm4npp.train.pretrain`` does it (collate → model → masked_error_sum → clip → step). Events are
fast-simulation p+p events (PYTHIA 8 + TPC fast sim) kept in a realistic size window (default
700–900 hits ≈ TPCpp-10M's 834–856 mean), serialized once (fixed mode, EPR, k = 30). Each rung runs in
its own subprocess so that peak RSS is that rung's alone. Throughput uses the median step time;
``best tok/s`` uses the fastest step, the one least disturbed by other processes. On a shared machine
use 1 thread: 2 OpenMP threads competing for a busy core slowed steps by up to 70× in our runs.

    .venv/bin/python benchmarks/bench_train.py [--rungs q1,q2,q3,q4] [--batch 8] [--steps 6] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_events(n: int, lo: int, hi: int, seed: int) -> list[object]:
    """``n`` serialized fast-sim events with ``lo``–``hi`` hits (edges fitted on the same pool)."""
    from fm4npp.data.generate import simulate_events
    from fm4npp.data.serialize import fit_edges, serialize_event

    pool = [e for e in simulate_events(max(400, 12 * n), seed) if lo <= e.n_hits <= hi]
    if len(pool) < n:
        raise SystemExit(f"only {len(pool)} events with {lo}–{hi} hits; widen --hits")
    edges = fit_edges(pool)
    return [serialize_event(e, edges, order="EPR", mode="fixed", k=30) for e in pool[:n]]


def run_one(rung_name: str, data: Path, batch: int, steps: int, threads: int) -> dict[str, float]:
    """Time ``steps`` optimiser steps (after one warm-up step) of one rung; print a JSON line."""
    import torch

    from fm4npp.config.schema import TrainConfig
    from fm4npp.data.torch_dataset import collate
    from fm4npp.model.backbone import FM4NPPModel
    from fm4npp.model.ladder import get_rung
    from fm4npp.train.objective import masked_error_sum
    from fm4npp.train.optim import build_optimizer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    events = pickle.loads(data.read_bytes())
    model = FM4NPPModel(get_rung(rung_name), k=30, dropout=0.1, embed_seed=0)
    optimizer, scheduler = build_optimizer(model, TrainConfig(), total_steps=1000)
    batches = [collate(events[i : i + batch]) for i in range(0, len(events) - batch + 1, batch)]

    def step(b: object) -> None:
        pred = model(b.feats)  # type: ignore[attr-defined]
        targets, mask = b.neighbour_targets()  # type: ignore[attr-defined]
        err = masked_error_sum(pred, targets, mask)
        (err / mask.sum()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    step(batches[0])  # warm-up (allocator, first-call overheads)
    times, tokens, padded = [], 0, 0
    for i in range(steps):
        b = batches[(i + 1) % len(batches)]
        t0 = time.perf_counter()
        step(b)
        times.append(time.perf_counter() - t0)
        tokens += b.n_hits
        padded += b.n_hits_padded
    # median step time: robust to other processes on a shared machine
    med = float(np.median(times))
    return {
        "events_per_s": batch / med,
        "tokens_per_s": tokens / steps / med,
        "padded_tokens_per_s": padded / steps / med,
        "s_per_step": med,
        "best_tokens_per_s": tokens / steps / min(times),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "backend": model.backend,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rungs", default="q1,q2,q3,q4")
    p.add_argument("--batch", type=int, default=8, help="events per optimiser step")
    p.add_argument("--steps", type=int, default=6, help="timed steps per rung (after 1 warm-up)")
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: robust on a shared machine)"
    )
    p.add_argument("--hits", default="700-900", help="hit-count window of the events")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.data, args.batch, args.steps, args.threads)))
        return

    lo, hi = (int(v) for v in args.hits.split("-"))
    n = args.batch * min(args.steps + 1, 4)
    t0 = time.perf_counter()
    events = make_events(n, lo, hi, args.seed)
    mean_hits = float(np.mean([len(e.feats) for e in events]))  # type: ignore[attr-defined]
    print(
        f"# {n} events, mean {mean_hits:.0f} hits (prepared in {time.perf_counter() - t0:.1f} s); "
        f"batch {args.batch} events, {args.steps} timed steps, {args.threads} threads, fp32 CPU"
    )
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "events.pkl"
        data.write_bytes(pickle.dumps(events))
        header = (
            "rung ",
            "   d",
            " L",
            " events/s",
            " tokens/s",
            "best tok/s",
            " s/step",
            "peak RSS MB",
        )
        print(" ".join(header))
        from fm4npp.model.ladder import get_rung

        for name in args.rungs.split(","):
            cmd = [sys.executable, __file__, "--one", name, "--data", str(data), "--batch",
                   str(args.batch), "--steps", str(args.steps), "--threads", str(args.threads)]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            rung = get_rung(name)
            print(f"{name:5} {rung.d_model:>4} {rung.n_layers:>2} {r['events_per_s']:>9.2f} "
                  f"{r['tokens_per_s']:>9.0f} {r['best_tokens_per_s']:>10.0f} {r['s_per_step']:>7.2f} "
                  f"{r['peak_rss_mb']:>11.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
