"""Study figures (SCALING.md §8, plots 9–12, 14 and the plan): pure functions → matplotlib Figure.

Training curves, downstream metrics, profiles, rollout and exponent drift, and node-hours used vs planned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.plots import N_LABEL

if TYPE_CHECKING:
    from analysis.downstream import MetricFit
    from analysis.uncertainty import ProfileInterval


def training_curves(
    curves: pd.DataFrame, used: pd.DataFrame | None = None, warmup_events: float | None = None
) -> Figure:
    """Plot 12: validation (else train) loss vs events seen, one line per cell; the fitted point marked.

    ``curves``: cell_id, events_seen, val_loss and/or train_loss. ``used``: cell_id, n_events, loss.
    """
    fig = Figure(figsize=(6.4, 4.6))
    ax = fig.add_subplot()
    col = (
        "val_loss" if "val_loss" in curves.columns and curves["val_loss"].notna().any() else "train_loss"
    )
    for i, (cell, grp) in enumerate(curves.dropna(subset=[col]).groupby("cell_id", sort=True)):
        g = grp.sort_values("events_seen")
        ax.plot(
            g["events_seen"],
            g[col],
            lw=0.9,
            color=f"C{i % 10}",
            label=str(cell)[:10] if i < 12 else None,
        )
    if used is not None and len(used):
        ax.scatter(used["n_events"], used["loss"], marker="o", facecolor="none", edgecolor="k", s=40, zorder=5,
                   label="point used in the fit")  # fmt: skip
    if warmup_events:
        ax.axvspan(
            curves["events_seen"].min(), warmup_events, color="0.85", alpha=0.6, lw=0, label="warmup"
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("events seen")
    ax.set_ylabel(col.replace("_", " "))
    ax.set_title("Training curves per cell")
    ax.legend(fontsize=6, ncol=2)
    return fig


def downstream(fits: Sequence[MetricFit]) -> Figure:
    """Plot 14: each task metric vs N with seed error bars and the fitted law or a saturation flag."""
    n = max(1, len(fits))
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows))
    for i, mf in enumerate(fits):
        ax = fig.add_subplot(rows, cols, i + 1)
        s = mf.summary
        ax.errorbar(
            s["n_params"],
            s["mean"],
            yerr=s["sd"].fillna(0.0),
            fmt="o",
            ms=4,
            capsize=2,
            label="mean ± seed sd",
        )
        if mf.fit is not None:
            grid = np.geomspace(s["n_params"].min() / 1.5, s["n_params"].max() * 3, 80)
            ax.plot(grid, mf.predict(grid), lw=1, label=f"floored law, α = {mf.fit.params['alpha']:.3g}")
        if mf.saturated:
            ax.text(
                0.03,
                0.05,
                "saturated: last gain within seed noise",
                transform=ax.transAxes,
                fontsize=7,
                color="C3",
            )
        ax.set_xscale("log")
        ax.set_xlabel(N_LABEL, fontsize=7)
        ax.set_title(f"{mf.task}: {mf.metric}", fontsize=9)
        ax.legend(fontsize=6)
    if not fits:
        fig.add_subplot().text(0.5, 0.5, "no downstream metrics yet", ha="center")
    fig.suptitle("Downstream metrics vs N")
    return fig


def node_hours(cells: pd.DataFrame) -> Figure:
    """Plan check: node-hours used (wall time × nodes, 1 if unknown) vs planned, per cell, totals in the title."""
    fig = Figure(figsize=(6.0, 4.4))
    ax = fig.add_subplot()
    planned = cells["node_hours_planned"].to_numpy(float)
    nodes = cells["nodes"].to_numpy(float) if "nodes" in cells.columns else 1.0
    used = cells["wall_time_s"].to_numpy(float) / 3600.0 * nodes
    ok = np.isfinite(planned) & np.isfinite(used)
    ax.scatter(planned[ok], used[ok], s=16)
    if ok.any():
        lim = [min(planned[ok].min(), used[ok].min()), max(planned[ok].max(), used[ok].max())]
        ax.plot(lim, lim, color="k", lw=0.8, label="used = planned")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    ax.set_xlabel("node-hours planned")
    ax.set_ylabel("node-hours used (wall time)")
    ax.set_title(f"Budget: {np.nansum(used):.3g} used of {np.nansum(planned):.3g} planned node-hours")
    return fig


def profiles(intervals: Sequence[ProfileInterval], threshold: float = 3.841) -> Figure:
    """Plot 9 (1-D part): profile statistic curves with the χ²₁ 95% threshold; open sides are labelled."""
    n = max(1, len(intervals))
    fig = Figure(figsize=(3.4 * n, 3.2))
    for i, p in enumerate(intervals):
        ax = fig.add_subplot(1, n, i + 1)
        pts = np.array(p.points)
        x = np.exp(pts[:, 0]) if p.name in ("E", "A", "B", "K") else pts[:, 0]
        ax.plot(x, pts[:, 1], "o-", ms=3)
        ax.axhline(threshold, color="C3", ls="--", lw=0.8)
        ax.set_title(f"{p.name}" + (" (open)" if not p.closed else ""), fontsize=9)
        ax.set_xlabel(p.name)
        if i == 0:
            ax.set_ylabel("robust LR statistic")
    fig.suptitle("Profile likelihood (95% threshold dashed)")
    return fig


def rollout_errors(points: pd.DataFrame) -> Figure:
    """Plot 10: signed relative error of held-out points vs extrapolation distance, per cutoff."""
    fig = Figure(figsize=(6.0, 4.2))
    ax = fig.add_subplot()
    for i, (k, grp) in enumerate(points.groupby("cutoff_k")):
        ax.scatter(
            grp["distance_decades"],
            100 * grp["signed_rel_err"],
            s=14,
            color=f"C{i}",
            label=f"fit on {k} smallest",
        )
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("extrapolation distance (decades beyond the fitted range)")
    ax.set_ylabel("signed error of L (%) (> 0: over-predicts)")
    ax.set_title("Rollout: hold out the largest")
    ax.legend(fontsize=7)
    return fig


def exponent_drift(drift: pd.DataFrame, axis: str = "N") -> Figure:
    """Plot 11: α, β and a vs the largest size (or D level) included in the fit."""
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot()
    x = drift[f"largest_{axis}"]
    for name in ("alpha", "beta", "a"):
        ax.plot(x, drift[name], "o-", label=name)
    ax.set_xscale("log")
    ax.set_xlabel(f"largest {axis} in the fit")
    ax.set_ylabel("exponent")
    ax.set_title("Exponent drift with the cutoff")
    ax.legend(fontsize=7)
    return fig
