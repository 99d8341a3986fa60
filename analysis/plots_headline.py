"""The first-screen figures (issue 16): loss vs N with the fit, its band, the held-out-largest prediction and
the next rungs; the primary downstream metric vs N with its baselines. Pure: data → matplotlib Figure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.laws import FORMS, predict
from analysis.plots import N_LABEL, _band, _levels

YPAD = 2.5  # the y range is the observed (and predicted) losses ×/÷ this

if TYPE_CHECKING:
    from analysis.fit import FitResult
    from analysis.uncertainty import BootstrapResult


def headline_loss(
    fit: FitResult,
    boot: BootstrapResult | None = None,
    holdout: pd.DataFrame | None = None,
    next_rungs: pd.DataFrame | None = None,
) -> Figure:
    """Loss vs N per D level with the joint law and 95% band; the fit without the largest size (dashed)
    and its 95% prediction interval at the held-out points; predicted next rungs (open diamonds)."""
    d = fit.data
    fig = Figure(figsize=(6.2, 4.0), layout="constrained")
    ax = fig.add_subplot()
    lvl, levels = _levels(d.D)
    n_hi = float(d.N.max())
    if next_rungs is not None and len(next_rungs):
        n_hi = max(n_hi, float(next_rungs["N"].max()))
    grid = np.geomspace(d.N.min() / 1.3, n_hi * 1.3, 120)
    for i, level in enumerate(levels):
        col = f"C{i}"
        m = np.isclose(lvl, level)
        ax.scatter(d.N[m], d.L[m], s=16, color=col, label=f"D = {level:.3g} {d.d_unit}", zorder=3)
        ax.plot(grid, fit.predict(N=grid, D=np.full_like(grid, level)), color=col, lw=1.2)
        if i == len(levels) - 1:
            lo, hi, label = _band(fit, boot, N=grid, D=np.full_like(grid, level))
            ax.fill_between(grid, lo, hi, color=col, alpha=0.18, lw=0, label=f"joint law, {label}")
    if holdout is not None and len(holdout) and "params" in holdout.attrs:
        d_top = float(holdout["D"].max())
        g = grid[grid <= float(holdout["N"].max()) * 1.05]
        ax.plot(g, predict(FORMS["chinchilla"], holdout.attrs["params"], N=g, D=np.full_like(g, d_top)),
                color="k", ls="--", lw=1, label="fit without the largest size")  # fmt: skip
        err = np.vstack([holdout["pred"] - holdout["pred_lo"], holdout["pred_hi"] - holdout["pred"]])
        ax.errorbar(holdout["N"] * 1.04, holdout["pred"], yerr=np.clip(err, 0, None), fmt="_", ms=10,
                    color="k", capsize=3, lw=1, label="its prediction, 95% PI")  # fmt: skip
        ax.scatter(holdout["N"], holdout["L"], s=60, facecolor="none", edgecolor="k", lw=1.2, zorder=4,
                   label="held-out observed")  # fmt: skip
    if next_rungs is not None and len(next_rungs):
        top = next_rungs[next_rungs["D (events)"] == next_rungs["D (events)"].min()]
        lo = np.array([v[0] for v in top["95% PI"]])
        hi = np.array([v[1] for v in top["95% PI"]])
        p = top["predicted L"].to_numpy(float)
        ax.errorbar(top["N"], p, yerr=np.clip(np.vstack([p - lo, hi - p]), 0, None), fmt="D", ms=6,
                    mfc="white", color="C3", capsize=3, label="next rung(s): predicted, 95% PI")  # fmt: skip
        for _, r in top.iterrows():
            ax.annotate(str(r["model"]), (r["N"], r["predicted L"]), textcoords="offset points",
                        xytext=(6, 4), fontsize=7, color="C3")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    seen = [d.L]
    if next_rungs is not None and len(next_rungs):
        seen.append(next_rungs["predicted L"].to_numpy(float))
    lo_y, hi_y = float(np.min(np.concatenate(seen))), float(np.max(np.concatenate(seen)))
    ax.set_ylim(lo_y / YPAD, hi_y * YPAD)  # a runaway band must not squash the data
    ax.set_xlabel(N_LABEL)
    ax.set_ylabel("validation loss L")
    ax.set_title("Loss vs model size: joint law L = E + A/N^α + B/D^β", fontsize=10)
    ax.legend(fontsize=6.5, loc="lower left")
    return fig


def headline_downstream(fits: list[Any], evals: pd.DataFrame, primary: dict[str, str]) -> Figure | None:
    """The primary metric of each task vs N with baselines (one panel per task); None without one."""
    from analysis.plots_study import downstream

    pick = [mf for mf in fits if primary.get(mf.task) == mf.metric]
    if not pick:
        return None
    fig = downstream(pick, evals)
    fig.set_size_inches(max(6.2, 4.4 * min(3, len(pick))), 4.0)
    what = ", ".join(f"{mf.task} {mf.metric}" for mf in pick)
    fig.suptitle(f"Downstream ({what}) vs N: FM and baselines", fontsize=10)
    return fig


def isoflop_minima(iso: Any, fit: FitResult, k: float = 6.0) -> Figure | None:
    """IsoFLOP (Approach 2) minima N*(C) with their slope a, beside the joint law's N_opt(C) (Approach 3)."""
    from analysis.laws import allocation

    b = iso.budgets
    if b is None or b.empty:
        return None
    fig = Figure(figsize=(5.6, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ok = b["bracketed"].to_numpy(bool)
    ax.scatter(b["C"][ok], b["N_star"][ok], s=22, color="C0", label="IsoFLOP minimum (bracketed)")
    ax.scatter(b["C"][~ok], b["N_star"][~ok], s=22, facecolor="none", edgecolor="C0",
               label="minimum at the edge of the sizes")  # fmt: skip
    grid = np.geomspace(float(b["C"].min()), float(b["C"].max()), 50)
    if iso.ok:
        x = np.log10(b["C"][ok].to_numpy())
        icpt = float(np.mean(np.log10(b["N_star"][ok].to_numpy())) - iso.a * np.mean(x))
        band = f" [{iso.lo:.3g}, {iso.hi:.3g}]" if iso.closed else ""
        ax.plot(grid, 10 ** (icpt + iso.a * np.log10(grid)), color="C0", label=f"Approach 2: a = {iso.a:.3g}{band}")
    alloc = allocation(fit.params, grid, k)
    ax.plot(grid, alloc.N_opt, color="C1", ls="--", label=f"joint law (Approach 3): a = {alloc.a:.3g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"C (training FLOPs, {iso.c_definition})")
    ax.set_ylabel("compute-optimal N")
    ax.set_title("N_opt(C): IsoFLOP minima vs the joint law", fontsize=10)
    ax.legend(fontsize=7)
    return fig


#: panels of the label-efficiency figure: (task, metric) in page order
LABEL_PANELS = (("tracking", "ari"), ("tracking", "efficiency"), ("pid", "accuracy"), ("noise", "accuracy"))
_STYLE = {"fm": ("o", "-"), "random_embedding": ("s", "--"), "adapter_only": ("^", ":")}


def label_efficiency(
    intervals: pd.DataFrame, n_params: dict[str, float] | None = None, floors: dict[str, float] | None = None
) -> Figure | None:  # fmt: skip
    """Each task's headline metric vs labelled events (the data-efficiency curve, SPEC §10.4), every
    learned variant with its 95% event-bootstrap interval, the label-free Hough finder as a band, and
    per task in ``floors`` the accuracy of always predicting the commonest class (dotted); from
    :func:`analysis.downstream_stats.bootstrap_table`. None without two labelled-set sizes or no rows."""
    from analysis.downstream_stats import VARIANT_LABELS

    panels = [(t, m) for t, m in LABEL_PANELS if ((intervals["task"] == t) & (intervals["metric"] == m)).any()]
    learned = intervals[intervals["variant"] != "hough"]
    if not panels or learned["n_labelled"].nunique() < 2:
        return None
    cols = 2 if len(panels) > 1 else 1
    rows_n = -(-len(panels) // cols)
    fig = Figure(figsize=(3.3 * cols, 2.7 * rows_n + 0.4), layout="constrained")
    grid = fig.subplots(rows_n, cols, squeeze=False)
    axes = list(grid.ravel()[: len(panels)])
    for spare in grid.ravel()[len(panels):]:
        spare.set_axis_off()
    for ax, (task, metric) in zip(axes, panels, strict=True):
        rows = intervals[(intervals["task"] == task) & (intervals["metric"] == metric)]
        for i, ((variant, cell), g) in enumerate(rows[rows["variant"] != "hough"].groupby(["variant", "cell_id"])):
            g = g.sort_values("n_labelled")
            marker, ls = _STYLE.get(str(variant), ("D", "-."))
            size = (n_params or {}).get(str(cell))
            label = VARIANT_LABELS.get(str(variant), str(variant)).split(" (")[0]
            label += f", N = {size:.2g}" if size else ""
            x = g["n_labelled"].to_numpy(float) * (1 + 0.03 * i)  # small offsets: intervals stay readable
            y = g["value"].to_numpy(float)
            err = np.vstack([y - g["lo"].to_numpy(float), g["hi"].to_numpy(float) - y])
            ax.errorbar(x, y, yerr=np.clip(err, 0, None), marker=marker, ls=ls, capsize=3, ms=5, label=label)
        hough = rows[rows["variant"] == "hough"]
        if len(hough):
            h = hough.iloc[0]
            ax.axhline(h["value"], color="0.3", lw=1, label="Hough (no labels)")
            ax.axhspan(h["lo"], h["hi"], color="0.3", alpha=0.12)
        if metric == "accuracy" and (floor := (floors or {}).get(task)) is not None:
            ax.axhline(floor, color="0.3", lw=1, ls=":")
            ax.text(0.5, floor, "always the commonest class", transform=ax.get_yaxis_transform(), ha="center",
                    fontsize=7, color="0.3", va="top")  # fmt: skip
        ax.set_xscale("log")
        sizes = sorted(int(n) for n in learned["n_labelled"].unique())
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
        if ax in grid[-1]:
            ax.set_xlabel("labelled training events")
        ax.set_title(f"{task}: {metric}", fontsize=10)
    for ax in grid[:, 0]:
        ax.set_ylabel("test split")
    axes[0].legend(fontsize=7)
    fig.suptitle("Downstream vs labelled events: FM and baselines", fontsize=10)
    return fig
