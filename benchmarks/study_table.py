"""Per-cell table of a local study: LR, batch, steps, final validation loss, wall time (issue 12).

Reads ``<study>/runs/*/summary.json`` and ``config.yaml`` (finished cells only). With ``--lr`` the
table is the LR sweep's: loss per rung × peak LR, the best LR per rung marked, and the power law
LR*(N) through the per-rung optima (vertex of a parabola in log LR when the best is interior).

    PYTHONPATH=. python benchmarks/study_table.py results/lr-sweep-cpu --lr
    PYTHONPATH=. python benchmarks/study_table.py results/quickstart
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fm4npp.train.pretrain import read_run_config


@dataclass(frozen=True)
class Cell:
    model: str
    n: int
    events: int
    seed: int
    lr: float
    batch: int
    steps: int
    loss: float
    wall_s: float


def cells(study: Path) -> list[Cell]:
    rows = []
    for s in sorted(study.glob("runs/*/summary.json")):
        summ = json.loads(s.read_text())
        if summ.get("status") != "done":
            continue
        cfg = read_run_config(s.parent / "config.yaml")
        t = cfg.train
        rows.append(Cell(cfg.model, summ["n_params"], cfg.n_events, cfg.seed, t.lr, t.batch_events,
                         summ["steps"], summ["final_val_loss"], summ["wall_time_s"]))  # fmt: skip
    return sorted(rows, key=lambda r: (r.n, r.events, r.seed, r.lr))


def lr_table(rows: list[Cell]) -> None:
    print("| rung | N | LR | final val loss | steps | cell s |\n|---|---|---|---|---|---|")
    best: list[tuple[float, float]] = []
    for model in dict.fromkeys(r.model for r in rows):
        mine = [r for r in rows if r.model == model]
        i = int(np.argmin([r.loss for r in mine]))
        for j, r in enumerate(mine):
            mark = " **best**" if j == i else ""
            print(f"| {model} | {r.n} | {r.lr:.3g} | {r.loss:.5f}{mark} | {r.steps} | {r.wall_s:.0f} |")
        lr_best = mine[i].lr
        if 0 < i < len(mine) - 1:  # parabola through the three points around the best, in log LR
            x = np.log([mine[k].lr for k in (i - 1, i, i + 1)])
            y = np.log([mine[k].loss for k in (i - 1, i, i + 1)])
            a, b, _ = np.polyfit(x, y, 2)
            if a > 0:
                lr_best = float(np.exp(np.clip(-b / (2 * a), x[0], x[2])))
        best.append((float(mine[0].n), lr_best))
        print(f"| {model} | | best (parabola vertex in log LR): {lr_best:.3g} | | | |")
    if len(best) >= 2:
        n, lr = np.log(np.array(best)).T
        slope, icpt = np.polyfit(n, lr, 1)
        print(f"\nLR*(N) = {np.exp(icpt + slope * np.log(15_800)):.3g} · (N / 15,800)^({slope:.3f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", type=Path)
    ap.add_argument("--lr", action="store_true", help="LR-sweep table: loss per rung × LR")
    args = ap.parse_args()
    rows = cells(args.study)
    if args.lr:
        lr_table(rows)
        return
    print("| rung | N | events | seed | LR | batch | steps | final val loss | cell s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.model} | {r.n} | {r.events} | {r.seed} | {r.lr:.3g} | {r.batch} | {r.steps} | "
              f"{r.loss:.5f} | {r.wall_s:.0f} |")  # fmt: skip
    print(f"total cell time {sum(r.wall_s for r in rows):.0f} s over {len(rows)} cells")


if __name__ == "__main__":
    main()
