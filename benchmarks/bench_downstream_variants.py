"""Adapter variants side by side (issue 11): FM (pretrained frozen backbone) vs adapter-only (random
embedding, FM4NPP's baseline) vs random-init frozen backbone vs Hough, at several label counts, with
the edge probe, wall time per variant, seed spread, event-bootstrap intervals and the paired bootstrap
FM − random embedding on the same test events.

Needs a study directory with fast-sim shards and pretrained cells (``runs/cell<model>/checkpoints``),
e.g. from ``fm4npp-sweep data generate`` + ``train``; the run config is rebuilt from the arguments.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_downstream_variants.py --study /tmp/study \\
        --models q3 --labelled 50 200 --seeds 0 1 2 --tasks tracking --epochs 20 --patience 4
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analysis.downstream_stats import paired_table, seed_summary
from fm4npp.config.schema import DataConfig, EvalConfig, RunConfig, TrainConfig
from fm4npp.model import ladder
from fm4npp.model.embedding import NerfEmbedding
from fm4npp.store.rundir import EVENT_COLUMNS
from fm4npp.train.downstream import (
    add_probe,
    build_backbone,
    feature_sets,
    hough_tables,
    load_labelled,
    run_adapter_tables,
)
from fm4npp.train.features import backbone_feature_fn, embedding_feature_fn, load_weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", required=True)
    ap.add_argument("--models", nargs="+", default=["q3"])
    ap.add_argument("--labelled", type=int, nargs="+", default=[50, 200])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--tasks", nargs="+", default=["tracking"])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--patience", type=int, default=4)
    ap.add_argument("--min-epochs", type=int, default=0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--budget", choices=["epochs", "steps"], default="steps",
                    help="steps: every label count trains the optimiser steps of the largest")
    ap.add_argument("--head-width", type=int, default=64)
    ap.add_argument("--n-queries", type=int, default=48)
    ap.add_argument("--batch-events", type=int, default=4)
    ap.add_argument("--val-events", type=int, default=200, help="of the study's validation split")
    ap.add_argument("--test-events", type=int, default=200, help="of the study's test split")
    ap.add_argument("--variants", nargs="+", default=["fm", "random_embedding", "adapter_only", "hough"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-probe", action="store_true", help="skip the edge probe")
    ap.add_argument("--out", default=None, help="write the tables here (default <study>/bench_variants)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    root = Path(args.study)
    out = Path(args.out or root / "bench_variants")
    out.mkdir(parents=True, exist_ok=True)
    ev = EvalConfig(tasks=tuple(args.tasks), labelled_events=tuple(args.labelled), seeds=tuple(args.seeds),
                    epochs=args.epochs, patience=args.patience, min_epochs=args.min_epochs, lr=args.lr,
                    n_queries=args.n_queries, head_width=args.head_width, batch_events=args.batch_events,
                    budget=args.budget, probe=not args.no_probe)  # fmt: skip
    cfg = RunConfig(study="bench", cell_id="bench", model=args.models[-1], dataset="qd3", n_events=1600, seed=0,
                    data_dir=str(root / "data"), data=DataConfig(val_events=200, test_events=200),
                    train=TrainConfig(k_neighbours=8, threads=args.threads), eval=ev)  # fmt: skip
    data = load_labelled(cfg)
    data = replace(data, val=tuple(x[: args.val_events] for x in data.val),  # type: ignore[arg-type]
                   test=tuple(x[: args.test_events] for x in data.test))  # type: ignore[arg-type]  # fmt: skip
    device = torch.device("cpu")
    metrics, events, walls = [], [], []

    def run(variant: str, cell: str, fn) -> None:  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        sets = feature_sets(data, fn, device)
        t_feat = time.perf_counter() - t0
        tables = run_adapter_tables(cfg, sets, data.subsets, cell, variant, device)
        t_fit = time.perf_counter() - t0 - t_feat
        add_probe(tables, cfg, sets, data.subsets, cell, variant)
        t_probe = time.perf_counter() - t0 - t_feat - t_fit
        metrics.append(pd.DataFrame(tables.metrics))
        events.append(pd.DataFrame(tables.events))
        pd.DataFrame(tables.curves).to_parquet(out / f"curves-{cell}.parquet")
        pd.DataFrame(tables.metrics).to_parquet(out / f"metrics-{cell}.parquet")
        pd.DataFrame(tables.events).to_parquet(out / f"events-{cell}.parquet")
        walls.append({"variant": variant, "cell_id": cell, "features_s": t_feat, "adapters_s": t_fit,
                      "probe_s": t_probe})  # fmt: skip
        print(f"{cell}: features {t_feat:.1f} s, adapters {t_fit:.1f} s, probe {t_probe:.1f} s", flush=True)

    for m in args.models:
        if "fm" in args.variants:
            model = build_backbone(cfg, m, 0)
            ckpt = root / "runs" / f"cell{m}" / "checkpoints"
            load_weights(ckpt / "best.pt" if (ckpt / "best.pt").is_file() else ckpt / "last.pt", model)
            run("fm", f"fm-{m}", backbone_feature_fn(model))
    if "random_embedding" in args.variants:
        d = max(ladder.get_rung(m).d_model for m in args.models)
        run("random_embedding", "baseline-random_embedding", embedding_feature_fn(NerfEmbedding(d, seed=0)))
    for m in args.models:
        if "adapter_only" in args.variants:
            run("adapter_only", f"baseline-adapter_only-{m}", backbone_feature_fn(build_backbone(cfg, m, 0)))
    if "hough" in args.variants:
        t0 = time.perf_counter()
        hough = hough_tables(data.test[0], ev.min_hits)
        metrics.append(pd.DataFrame(hough.metrics))
        events.append(pd.DataFrame(hough.events))
        metrics[-1].to_parquet(out / "metrics-baseline-hough.parquet")
        walls.append({"variant": "hough", "cell_id": "baseline-hough", "features_s": 0.0,
                      "adapters_s": time.perf_counter() - t0, "probe_s": 0.0})  # fmt: skip
    mdf = pd.concat(metrics)
    edf = pd.concat(events) if events else pd.DataFrame(columns=list(EVENT_COLUMNS))
    mdf.to_parquet(out / "metrics.parquet")
    edf.to_parquet(out / "events.parquet")
    pd.DataFrame(walls).to_csv(out / "walls.csv", index=False)
    s = seed_summary(mdf)
    show = s[s["metric"].isin(["ari", "efficiency", "purity", "accuracy", "steps", "best_epoch", "threshold"])]
    pd.set_option("display.width", 200)
    print(show.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(pd.DataFrame(walls).to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    big = args.models[-1]
    if {"fm", "random_embedding"} <= set(args.variants):
        for b in (("random_embedding", "baseline-random_embedding"), ("adapter_only", f"baseline-adapter_only-{big}")):
            if b[0] in args.variants:
                p = paired_table(edf, ("fm", f"fm-{big}"), b)
                print(p.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("n test events", int(np.unique(edf["event_id"]).size) if len(edf) else 0)


if __name__ == "__main__":
    main()
