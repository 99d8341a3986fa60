"""WSD cooldown branches vs independent cosine runs: final validation loss side by side (CPU).

For every rung × seed: one cosine run per tier (``fm4npp.train.pretrain``), and one WSD trunk with a
cooldown branch per tier (``fm4npp.train.wsd.pretrain_wsd_group``), on the same nested tiers of one
particle-gun dataset, same peak LR, floor, warm-up fraction and batch. The table gives the final
validation loss (fixed split) of both, their difference, and the seed spread of the cosine runs
(|seed a − seed b|) that the difference is judged against; then the optimiser steps and the measured
wall time of both (timings on a shared machine are noisy).

    PYTHONPATH=$PWD nice -n 10 .venv/bin/python benchmarks/bench_wsd.py \\
        [--rungs q1,q2] [--tiers 200,400,800] [--seeds 0,1] [--out /tmp/bench_wsd]
"""

from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import replace
from pathlib import Path
from statistics import mean


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rungs", default="q1,q2")
    ap.add_argument("--tiers", default="200,400,800", help="nested tier sizes (events)")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=8e-3)
    ap.add_argument("--cooldown", type=float, default=0.2, help="train.cooldown_fraction")
    ap.add_argument("--shape", default="1-sqrt", choices=["1-sqrt", "linear"])
    ap.add_argument("--val-events", type=int, default=100)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_wsd"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="reuse --out: its data and finished runs")
    args = ap.parse_args()

    from fm4npp.config.schema import DataConfig, RunConfig, TrainConfig
    from fm4npp.data.generate import generate_dataset
    from fm4npp.data.gun import GunConfig
    from fm4npp.data.prepare import prepare_dataset
    from fm4npp.train import pretrain
    from fm4npp.train.wsd import pretrain_wsd_group

    rungs, seeds = args.rungs.split(","), [int(s) for s in args.seeds.split(",")]
    tiers = tuple(int(n) for n in args.tiers.split(","))
    if args.out.exists() and not args.keep:
        shutil.rmtree(args.out)
    data_dir = args.out / "data"
    args.out.mkdir(parents=True, exist_ok=True)
    data = DataConfig(source="gun", val_events=args.val_events, test_events=10, hits_per_event=300.0)
    t0 = time.perf_counter()
    if not data_dir.exists():
        n_all = tiers[-1] + args.val_events + 10
        generate_dataset(data_dir, n_all, seed=11, gun=GunConfig(), progress=False)
        prepare_dataset(data_dir, data, max_train_events=tiers[-1])
    print(f"data: {tiers[-1] + args.val_events + 10} gun events in {time.perf_counter() - t0:.0f} s")

    train = TrainConfig(
        epochs=1.0, batch_events=args.batch, micro_batch_events=args.batch, lr=args.lr,
        lr_min=args.lr / 10, warmup_fraction=0.05, dropout=0.0, k_neighbours=8,
        val_every_steps=10**9, checkpoint_every_steps=10**9, log_every_steps=10, threads=args.threads,
        cooldown_fraction=args.cooldown, decay_shape=args.shape,
    )  # fmt: skip

    def cfg(rung: str, n: int, seed: int, schedule: str) -> RunConfig:
        tc = replace(train, schedule=schedule, wsd_tiers=tiers if schedule == "wsd" else ())
        return RunConfig(
            study="bench-wsd", cell_id=f"{schedule}-{rung}-{n}-s{seed}", model=rung, dataset=f"b{n}",
            n_events=n, seed=seed, data_dir=str(data_dir), data=data, train=tc,
        )  # fmt: skip

    loss: dict[tuple[str, str, int, int], float] = {}
    steps = {"cosine": 0, "wsd": 0}
    wall = {"cosine": 0.0, "wsd": 0.0}  # training time from the summaries (a rerun with --keep agrees)
    for rung in rungs:
        for seed in seeds:
            for n in tiers:
                c = cfg(rung, n, seed, "cosine")
                s = pretrain(c, args.out / "cosine" / "runs" / c.cell_id, device="cpu")
                loss["cosine", rung, n, seed] = s["final_val_loss"]
                steps["cosine"] += s["steps"]
                wall["cosine"] += s["wall_time_s"]
            cells = [
                (c, args.out / "wsd" / "runs" / c.cell_id)
                for c in (cfg(rung, n, seed, "wsd") for n in tiers)
            ]
            for (c, _), s in zip(cells, pretrain_wsd_group(cells, device="cpu"), strict=True):
                loss["wsd", rung, c.n_events, seed] = s["final_val_loss"]
                steps["wsd"] += s["cooldown_steps"] + (
                    s["cooldown_start"] if c.n_events == tiers[-1] else 0
                )
                wall["wsd"] += s["wall_time_s"] - _trunk_wall_at(
                    args.out / "wsd" / "trunks" / s["trunk"], s
                )
                if c.n_events == tiers[-1]:  # the trunk up to the last branch point, once
                    wall["wsd"] += _trunk_wall_at(args.out / "wsd" / "trunks" / s["trunk"], s)
            print(f"{rung} seed {seed}: done", flush=True)

    print(f"\nfinal validation loss (k = {train.k_neighbours}, batch {args.batch}, lr {args.lr:g}, "
          f"cooldown {args.cooldown:g} {args.shape}); seed spread = max − min over seeds")  # fmt: skip
    head = " ".join(f"{'cos s' + str(s):>8} {'wsd s' + str(s):>8}" for s in seeds)
    print(
        f"| {'model':5} | {'D':>5} | {head} | cos mean | wsd mean | Δ mean |   Δ % | spread cos | spread wsd |"
    )
    for rung in rungs:
        for n in tiers:
            cos = [loss["cosine", rung, n, s] for s in seeds]
            wsd = [loss["wsd", rung, n, s] for s in seeds]
            row = " ".join(f"{a:8.5f} {b:8.5f}" for a, b in zip(cos, wsd, strict=True))
            d = mean(wsd) - mean(cos)
            print(
                f"| {rung:5} | {n:5d} | {row} | {mean(cos):8.5f} | {mean(wsd):8.5f} | {d:+.4f} | "
                f"{100 * d / mean(cos):+5.1f} | {max(cos) - min(cos):10.5f} | {max(wsd) - min(wsd):10.5f} |"
            )
    print(
        f"\noptimiser steps: cosine {steps['cosine']}, WSD {steps['wsd']} "
        f"({steps['wsd'] / steps['cosine']:.0%}); training time: cosine {wall['cosine']:.0f} s, "
        f"WSD {wall['wsd']:.0f} s ({wall['wsd'] / wall['cosine']:.0%}; shared machine, noisy)"
    )


def _trunk_wall_at(trunk_dir: Path, branch: dict[str, object]) -> float:
    """Training time of the trunk up to the branch's cooldown start (in its branch checkpoint)."""
    import torch

    from fm4npp.data.nested import branch_checkpoint_name

    path = trunk_dir / "checkpoints" / branch_checkpoint_name(int(branch["cooldown_start"]))  # type: ignore[call-overload]
    return float(torch.load(path, map_location="cpu", weights_only=True)["train_state"]["wall_time_s"])


if __name__ == "__main__":
    main()
