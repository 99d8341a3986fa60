"""Speed of the downstream adapters on CPU: seconds per training epoch per task (SPEC §8).

Fast-simulated p+p events (PYTHIA 8 + fast sim, or the particle gun with ``--gun``), features of a
randomly initialised frozen backbone (speed does not depend on pretraining), one epoch of each
adapter over ``--events`` labelled events plus one validation pass, for each head width and thread
count asked for. Also prints the one-off feature-extraction time.

    .venv/bin/python benchmarks/bench_adapters.py [--events 300] [--model q1] [--head-width 64 256]
        [--n-queries 48] [--threads 1 2] [--gun]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from fm4npp.data.generate import simulate_events
from fm4npp.data.gun import GunConfig
from fm4npp.data.schema import MAX_HITS_DEFAULT
from fm4npp.data.serialize import fit_edges, serialize_event
from fm4npp.model.backbone import FM4NPPModel
from fm4npp.model.ladder import get_rung
from fm4npp.train.adapter_fit import FitSettings, fit_adapter
from fm4npp.train.features import backbone_feature_fn, build_event_set


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=300, help="labelled training events")
    ap.add_argument("--val-events", type=int, default=100)
    ap.add_argument("--model", default="q1")
    ap.add_argument("--head-width", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--n-queries", type=int, default=48)
    ap.add_argument("--batch-events", type=int, default=16)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--tasks", nargs="+", default=["tracking", "pid", "noise"])
    ap.add_argument("--gun", action="store_true", help="particle-gun events instead of PYTHIA")
    args = ap.parse_args()

    t = time.perf_counter()
    gun = GunConfig() if args.gun else None
    n_sim = round(1.05 * (args.events + args.val_events))  # a few events exceed the 3,200-hit filter
    events = [e for e in simulate_events(n_sim, seed=11, gun=gun) if 0 < e.n_hits <= MAX_HITS_DEFAULT]
    events = events[: args.events + args.val_events]
    edges = fit_edges(events)
    ser = [serialize_event(e, edges, k=1) for e in events]
    hits = np.array([len(s.feats) for s in ser])
    tracks = [len(np.unique(s.track_id[s.track_id > 0])) for s in ser]
    print(f"{len(events)} events ({'gun' if args.gun else 'pythia+fastsim'}): hits/event mean "
          f"{hits.mean():.0f} max {hits.max()}, track ids/event mean {np.mean(tracks):.1f} max "
          f"{max(tracks)}; simulate+serialize {time.perf_counter() - t:.1f} s")  # fmt: skip

    torch.manual_seed(0)
    model = FM4NPPModel(get_rung(args.model), k=30, dropout=0.0)
    n_train = args.events
    print()
    print(f"| model | threads | head width | task | params | s/epoch ({n_train} ev) | tokens/s |")
    print("|---|---|---|---|---|---|---|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        t = time.perf_counter()
        fn = backbone_feature_fn(model)
        train = build_event_set(events[:n_train], ser[:n_train], fn)
        val = build_event_set(events[n_train:], ser[n_train:], fn)
        feat_s = time.perf_counter() - t
        print(f"| {args.model} | {threads} | — | features (frozen forward) | — | "
              f"{feat_s:.2f} (all {len(events)} ev) | {hits.sum() / feat_s:,.0f} |")  # fmt: skip
        for width in args.head_width:
            for task in args.tasks:
                s = FitSettings(task=task, epochs=1, batch_events=args.batch_events, lr=1e-3, seed=0,
                                n_queries=args.n_queries, head_width=width)  # fmt: skip
                _, log = fit_adapter(train, val, s)
                tok = int(train.n_hits.sum())
                print(f"| {args.model} | {threads} | {width} | {task} | {log.n_trainable:,} | "
                      f"{log.s_per_epoch:.2f} | {tok / log.s_per_epoch:,.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
