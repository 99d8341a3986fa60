"""FM + adapter against adapter-only on a tiny study (the downstream issue's target, SPEC §10.1).

Generates fast-simulated p+p events, pretrains each tiny backbone for a few epochs, then trains the
adapters of every task with several adapter seeds on (a) the pretrained frozen backbone and (b) a
randomly initialised frozen backbone of the same size, and prints mean ± std over seeds of the test
metrics. Minutes on 2 CPU cores for q1 with the defaults; pass ``--threads`` to use more.

    .venv/bin/python benchmarks/bench_adapters_quality.py [--models q1 q2] [--seeds 0 1 2]
        [--events 900] [--labelled 300] [--pretrain-epochs 3] [--epochs 5] [--head-width 64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fm4npp.config.schema import DataConfig, EvalConfig, RunConfig, TrainConfig
from fm4npp.data.generate import generate_dataset
from fm4npp.data.prepare import prepare_dataset
from fm4npp.train import pretrain
from fm4npp.train.downstream import build_backbone, feature_sets, load_labelled, run_adapters
from fm4npp.train.features import backbone_feature_fn, load_weights

SHOW = {"tracking": ("ari", "efficiency", "purity"), "pid": ("accuracy", "recall"),
        "noise": ("accuracy", "recall")}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["q1"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--events", type=int, default=900)
    ap.add_argument("--val-events", type=int, default=100)
    ap.add_argument("--test-events", type=int, default=100)
    ap.add_argument("--labelled", type=int, default=300)
    ap.add_argument("--pretrain-epochs", type=float, default=3.0)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--head-width", type=int, default=64)
    ap.add_argument("--n-queries", type=int, default=48)
    ap.add_argument("--batch-events", type=int, default=16, help="adapter batch (events)")
    ap.add_argument("--tasks", nargs="+", default=["tracking", "pid", "noise"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", default=None, help="keep data and runs here (default: a temp dir)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="fm4npp-quality-"))
    root.mkdir(parents=True, exist_ok=True)
    data_dir = root / "data"
    data = DataConfig(val_events=args.val_events, test_events=args.test_events, hits_per_event=840.0)
    train = TrainConfig(epochs=args.pretrain_epochs, batch_events=16, micro_batch_events=16, lr=3e-3,
                        lr_min=3e-4, warmup_fraction=0.1, dropout=0.0, k_neighbours=8, val_every_steps=20,
                        checkpoint_every_steps=50, log_every_steps=10, threads=args.threads,
                        allow_slow_fallback=True)  # fmt: skip
    ev = EvalConfig(tasks=tuple(args.tasks), labelled_events=(args.labelled,), seeds=tuple(args.seeds),
                    epochs=args.epochs, n_queries=args.n_queries, batch_events=args.batch_events)  # fmt: skip
    t0 = time.perf_counter()
    if not data_dir.exists():
        generate_dataset(data_dir, args.events, seed=1, progress=False)
    n_train = len(prepare_dataset(data_dir, data, max_train_events=args.labelled).splits.train)
    print(f"data: {args.events} events in {time.perf_counter() - t0:.0f} s ({root})")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    labelled = None
    print("| model | variant | task | metric | mean | std | seeds |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        cfg = RunConfig(study="quality", cell_id=f"cell-{name}", model=name, dataset="x", n_events=n_train,
                        seed=0, data_dir=str(data_dir), data=data, train=train, eval=ev)  # fmt: skip
        run_dir = root / "runs" / cfg.cell_id
        t = time.perf_counter()
        summary = pretrain(cfg, run_dir)
        pre_s = time.perf_counter() - t
        labelled = labelled or load_labelled(cfg)
        fm = build_backbone(cfg, name, 0)
        load_weights(run_dir / "checkpoints" / "best.pt", fm)
        variants = {"fm": fm, "adapter_only": build_backbone(cfg, name, 0)}
        for variant, model in variants.items():
            t = time.perf_counter()
            sets = feature_sets(labelled, backbone_feature_fn(model.to(device)), device)
            rows = run_adapters(
                cfg, sets, labelled.subsets, cfg.cell_id, variant, device, args.head_width
            )
            fit_s = time.perf_counter() - t
            for task, metrics in SHOW.items():
                for metric in metrics:
                    vals = [v for tk, m, v in zip(rows["task"], rows["metric"], rows["value"], strict=True)
                            if tk == task and m == metric]  # fmt: skip
                    if vals:
                        print(f"| {name} | {variant} | {task} | {metric} | {np.mean(vals):.4f} | "
                              f"{np.std(vals, ddof=1) if len(vals) > 1 else float('nan'):.4f} | {len(vals)} |")  # fmt: skip
            print(f"<!-- {name} {variant}: adapters {fit_s:.0f} s; pretrain {pre_s:.0f} s, "
                  f"best val loss {summary.get('best_val_loss')} -->")  # fmt: skip


if __name__ == "__main__":
    main()
