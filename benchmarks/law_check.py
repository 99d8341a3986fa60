"""The issue-12 Done-when checks of a study's joint law: E, α, β with 95 % profile intervals, bounds,
and the largest size held out (signed error, inside the 95 % prediction band).

    PYTHONPATH=. python benchmarks/law_check.py results/quickstart [--loss final]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from analysis.fit import fit_law
from analysis.inputs import from_cells
from analysis.uncertainty import profile_interval
from analysis.validation import hold_out_largest
from fm4npp.store import catalog


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", type=Path)
    ap.add_argument("--loss", choices=("final", "smoothed"), default="final")
    args = ap.parse_args()
    data = from_cells(catalog.finished_cells(args.study), args.loss, "events", str(args.study))
    fit = fit_law(data, "chinchilla", "vp")
    print(f"{fit.n_points} points; warnings: {', '.join(fit.warning_codes) or 'none'}")
    for name in ("E", "alpha", "beta"):
        p = profile_interval(fit, name)
        lo = "open" if p.open_lo else f"{p.lo:.4g}"
        hi = "open" if p.open_hi else f"{p.hi:.4g}"
        print(f"  {name:>5} = {fit.params[name]:.4g}   profile 95 % [{lo}, {hi}]")
    print(f"      A = {fit.params['A']:.4g}, B = {fit.params['B']:.4g}")
    held = hold_out_largest(data, "N")
    inside = (held["L"] >= held["pred_lo"]) & (held["L"] <= held["pred_hi"])
    print(f"held out N = {held.attrs['held']:.0f} (fit on N ≤ {held.attrs['train_max']:.0f}; "
          f"reduced-fit warnings: {', '.join(held.attrs['warnings']) or 'none'})")  # fmt: skip
    for (_, r), ok in zip(held.iterrows(), inside, strict=True):
        print(f"  D = {r['D']:.0f}: L = {r['L']:.5f}, predicted {r['pred']:.5f} "
              f"[{r['pred_lo']:.5f}, {r['pred_hi']:.5f}], signed error {100 * r['signed_rel_err']:+.1f} %"
              f"{'' if ok else '  OUTSIDE the band'}")  # fmt: skip
    mase = float(np.mean(np.abs(held["signed_rel_err"])))
    print(f"  mean |signed error| {100 * mase:.1f} %, {int(inside.sum())}/{len(held)} inside the 95 % band")


if __name__ == "__main__":
    main()
