"""Benchmark the scaling-law fitter on Epoch's Chinchilla data (SCALING.md §2.3, §2.4, §3, §9).

Prints one table: the Epoch re-fit by each method (time, parameters, objective), the plain 4500-start
per-start L-BFGS-B loop against our fast paths (same optimum? speed ratio), 1000 cluster-bootstrap
resamples (time, intervals vs Epoch's), and the coverage of 95% intervals over simulated replicas.

    .venv/bin/python benchmarks/bench_fit.py [--skip-full] [--coverage-reps 100] [--boot 1000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from analysis.fit import chinchilla_grid, fit_law, polish
from analysis.laws import EPOCH_REFIT, EPOCH_REFIT_CI95, allocation
from analysis.simulate import DATA_LADDER, LADDER_N, SURFACES, Design, coverage
from analysis.uncertainty import bootstrap

CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "chinchilla_svg_extracted_data.csv"
EPOCH_CI = EPOCH_REFIT_CI95  # SCALING §9.1


def epoch_points() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    df = pd.read_csv(CSV).sort_values("loss", kind="stable").iloc[:-5]
    n = df["Model Size"].to_numpy(float)
    return n, df["Training FLOP"].to_numpy(float) / (6 * n), df["loss"].to_numpy(float)


def timed(fn, *a, **k):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    out = fn(*a, **k)
    return out, time.perf_counter() - t


def plain_loop(fit) -> tuple[np.ndarray, float]:  # type: ignore[no-untyped-def]
    """Every one of the 4500 starts polished by its own scipy L-BFGS-B call (Epoch/Hoffmann style)."""
    bounds = list(fit.bounds)
    lo, hi = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])
    best_x, best_f = None, np.inf
    with threadpool_limits(1):
        for s in np.clip(chinchilla_grid(fit.law), lo, hi):
            r = polish(fit.problem, s, bounds)
            if r.fun < best_f:
                best_x, best_f = r.x, float(r.fun)
    assert best_x is not None
    return best_x, best_f


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--skip-full", action="store_true", help="skip the ~1-2 minute plain 4500-start loop"
    )
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--coverage-reps", type=int, default=100)
    args = ap.parse_args()
    data = epoch_points()
    rows: list[tuple[str, str]] = []

    fits = {}
    for m in ("vp", "grid", "both"):
        fit_law(data, method=m)  # warm-up (imports, caches)
        fits[m], dt = timed(fit_law, data, method=m, check_order=False)
        p = fits[m].params
        rows.append((f"fit {m:4s} time [s]", f"{dt:.3f}"))
        rows.append(
            (
                f"fit {m:4s} params",
                ", ".join(f"{k}={v:.5g}" for k, v in p.items()) + f"; f={fits[m].objective:.12g}",
            )
        )
    vp = fits["vp"]
    rows.append(("Epoch published", ", ".join(f"{k}={v:.5g}" for k, v in EPOCH_REFIT.items())))
    alloc = allocation(vp.params, 5.9e23)
    rows.append(("a, D/N at 5.9e23 FLOPs", f"{alloc.a:.4f}, {float(alloc.ratio):.2f}"))
    rows.append(("grid basin share (50 polished)", f"{fits['grid'].diagnostics['basin_share']:.2f}"))

    if not args.skip_full:
        (x_full, f_full), dt_full = timed(plain_loop, vp)
        _, dt_vp = timed(fit_law, data, method="vp", check_order=False)
        _, dt_grid = timed(fit_law, data, method="grid", check_order=False)
        rel_f = abs(vp.objective - f_full) / f_full
        rel_x = float(np.max(np.abs(vp.theta - x_full) / np.abs(x_full)))
        rows.append(("plain 4500-start loop [s]", f"{dt_full:.1f}"))
        rows.append(("VP vs plain: rel. objective gap, max rel. theta gap", f"{rel_f:.1e}, {rel_x:.1e}"))
        rows.append(
            ("speed-up VP / screened grid", f"{dt_full / dt_vp:.0f}x / {dt_full / dt_grid:.0f}x")
        )

    boot, dt_boot = timed(bootstrap, vp, args.boot, 0)
    rows.append(
        (
            f"bootstrap {args.boot} resamples [s]",
            f"{dt_boot:.1f} (failed {boot.failed_fraction:.1%}, at bound {boot.bound_fraction:.1%})",
        )
    )
    for name, (lo, hi) in EPOCH_CI.items():
        blo, bhi = (float(v) for v in boot.ci(name))
        err = max(abs(blo - lo), abs(bhi - hi)) / (hi - lo)
        rows.append(
            (
                f"  95% CI {name} (Epoch {lo}, {hi})",
                f"({blo:.4g}, {bhi:.4g}); max endpoint error {err:.0%} of width",
            )
        )

    designs = {
        "m1-m6 x 5 D x 3 seeds (30 cells)": Design(),
        "3 sizes x 3 D x 2 seeds (9 cells)": Design(N=LADDER_N[1:4], D=DATA_LADDER[::3], seeds=2),
    }
    methods = ("delta", "profile", "bootstrap_cell", "bootstrap_cell_seed", "bootstrap_wild")
    for label, design in designs.items() if args.coverage_reps else ():
        cov, dt_cov = timed(
            coverage, SURFACES["fm4npp"], design, args.coverage_reps, 0.01, methods, n_boot=200
        )
        rows.append(
            (
                f"coverage, {args.coverage_reps} replicas, {label}, sigma=1%, 1 outlier/50 [s]",
                f"{dt_cov:.0f}",
            )
        )
        for r in cov.itertuples():
            rows.append(
                (f"  {r.method:19s} {r.quantity:5s} coverage (median width/truth)",
                 f"{r.coverage:.2f} ({r.rel_width:.3f})")
            )  # fmt: skip

    width = max(len(a) for a, _ in rows)
    print(f"{'quantity'.ljust(width)} | value")
    print("-" * width + "-+-" + "-" * 40)
    for a, b in rows:
        print(f"{a.ljust(width)} | {b}")


if __name__ == "__main__":
    main()
