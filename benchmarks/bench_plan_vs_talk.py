"""Our node-hour estimate for the talk's grid beside the talk's own table ([T1], SPEC §6.4).

Prints both tables cell by cell with the ratio talk / ours, and the single scale factor (MFU × epochs)
that would make our total equal theirs.

    python benchmarks/bench_plan_vs_talk.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fm4npp.sweep.plan import make_plan
from fm4npp.sweep.spec import load_sweep

REPO = Path(__file__).resolve().parents[1]
ROWS = ["10M", "4.72M", "2M", "1.18M", "0.5M", "0.23M", "0.1M"]
MODELS = [f"t{i}" for i in range(1, 10)]
# [T1] "Node hours required for full training" (SPEC §6.4); rows = event counts, columns = m1–m9.
TALK = np.array(
    [
        [88, 168, 272, 399, 641, 1034, 2190, 3304, 5972],
        [88, 168, 204, 399, 550, 931, 1844, 2795, 5000],
        [88, 112, 204, 319, 458, 724, 1498, 2287, 4027],
        [44, 112, 136, 239, 366, 517, 1152, 1652, 3055],
        [44, 112, 136, 239, 275, 517, 922, 1397, 2500],
        [44, 56, 136, 159, 275, 413, 806, 1143, 2083],
        [44, 56, 68, 159, 183, 310, 576, 889, 1527],
    ],
    dtype=float,
)


def main() -> None:
    plan = make_plan(load_sweep(REPO / "sweeps" / "fm4npp-talk-2025.yaml"))
    ours = np.zeros_like(TALK)
    for c in plan.cells:
        ours[ROWS.index(c.dataset), MODELS.index(c.model)] = c.cost.node_hours
    print(
        f"cluster {plan.cluster.name}/{plan.qos}, cost source: {plan.cells[0].cost.cost_source}, "
        f"epochs {plan.spec.train.epochs:g}, {plan.spec.data.hits_per_event:g} hits/event"
    )
    header = "events  " + "".join(f"{m:>22}" for m in MODELS)
    print("\nnode-hours: talk / ours (ratio)")
    print(header)
    for i, row in enumerate(ROWS):
        cells = "".join(
            f"{TALK[i, j]:>7.0f} /{ours[i, j]:>6.1f} ({TALK[i, j] / ours[i, j]:>5.0f})" for j in range(9)
        )
        print(f"{row:>6}  {cells}")
    ratio = TALK / ours
    print(
        f"\ntotal: talk {TALK.sum():,.0f} (stated 58,134) vs ours {ours.sum():,.1f} node-hours; "
        f"ratio {TALK.sum() / ours.sum():.0f}×"
    )
    print(
        f"ratio range {ratio.min():.0f}–{ratio.max():.0f}×, geometric mean {np.exp(np.log(ratio).mean()):.0f}×"
    )
    # Talk rows scale ~D^0.2 while compute scales ∝ D: a fixed-steps budget, not one pass over D.
    slope_talk = np.polyfit(np.log([10, 4.72, 2, 1.18, 0.5, 0.23, 0.1]), np.log(TALK.mean(axis=1)), 1)[0]
    slope_ours = np.polyfit(np.log([10, 4.72, 2, 1.18, 0.5, 0.23, 0.1]), np.log(ours.mean(axis=1)), 1)[0]
    print(f"log-log slope of node-hours vs events: talk {slope_talk:.2f}, ours {slope_ours:.2f}")
    slope_m_talk = np.polyfit(
        np.log([c.cost.n_params for c in plan.cells if c.dataset == "10M"]), np.log(TALK[0]), 1
    )[0]
    slope_m_ours = np.polyfit(
        np.log([c.cost.n_params for c in plan.cells if c.dataset == "10M"]), np.log(ours[0]), 1
    )[0]
    print(
        f"log-log slope of node-hours vs N at 10M events: talk {slope_m_talk:.2f}, ours {slope_m_ours:.2f}"
    )


if __name__ == "__main__":
    main()


def paper_check() -> None:
    """Our GPU-hours for the paper's m1–m6 at 12.8M events seen (d9 × 1.28 epochs) beside the
    paper's reported GPU-hours (SPEC §6.1), on A100 TF32 at the profile's MFU."""
    plan = make_plan(load_sweep(REPO / "sweeps" / "fm4npp-paper.yaml"))
    reported = {"m1": 10, "m2": 12, "m3": 80, "m4": 256, "m5": 1200, "m6": 4608}
    print(
        "\npaper ladder at 12.8M events (d9, 1.28 epochs), fp32/TF32 A100 (H100 for m1–m2 in the paper)"
    )
    print(f"{'rung':<5}{'GPUs':>6}{'ours GPU-h':>12}{'paper GPU-h':>13}{'ratio':>8}{'implied MFU':>13}")
    mfu = plan.cluster.mfu
    for c in plan.cells:
        if c.dataset != "d9":
            continue
        ratio = reported[c.model] / c.cost.gpu_hours
        print(
            f"{c.model:<5}{c.cost.gpus:>6}{c.cost.gpu_hours:>12.1f}{reported[c.model]:>13}{ratio:>8.1f}"
            f"{mfu / ratio:>13.2%}"
        )


if __name__ == "__main__":
    paper_check()
