"""Study figures (SCALING.md §8, plots 9–12, 14 and the plan): pure functions → matplotlib Figure.

Training curves, downstream metrics, profiles, rollout and exponent drift, and node-hours used vs planned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis.plots import N_LABEL

if TYPE_CHECKING:
    from analysis.downstream import MetricFit
    from analysis.uncertainty import ProfileInterval


def training_curves(
    curves: pd.DataFrame,
    used: pd.DataFrame | None = None,
    warmup_events: float | None = None,
    cells: pd.DataFrame | None = None,
) -> Figure:
    """Plot 12: validation (else train) loss vs events seen per cell; the point used in the fit marked.

    ``curves``: cell_id, events_seen, val_loss and/or train_loss. ``used``: [cell_id,] n_events, loss.
    ``cells`` (cell_id, n_params[, n_events, seed]) puts one panel per model size, colour per D level
    and line style per seed; without it every cell shares one panel.
    """
    col = (
        "val_loss" if "val_loss" in curves.columns and curves["val_loss"].notna().any() else "train_loss"
    )
    cur = curves.dropna(subset=[col])
    meta = None
    if cells is not None and {"cell_id", "n_params"} <= set(cells.columns):
        meta = cells.drop_duplicates("cell_id").set_index("cell_id")
        cur = cur[cur["cell_id"].isin(meta.index)]
    sizes = (
        sorted(meta.loc[cur["cell_id"].unique(), "n_params"].unique()) if meta is not None else [None]
    )
    sizes = sizes or [None]
    ncol = min(3, len(sizes))
    nrow = int(np.ceil(len(sizes) / ncol))
    fig = Figure(figsize=(4.4 * ncol, 3.6 * nrow), layout="constrained")
    d_levels: list[float] = []
    seeds: list[str] = []
    if meta is not None and "n_events" in meta.columns:
        d_levels = sorted(meta["n_events"].dropna().unique())
    if meta is not None and "seed" in meta.columns:
        seeds = sorted(meta["seed"].astype(str).unique())
    for k, size in enumerate(sizes):
        ax = fig.add_subplot(nrow, ncol, k + 1)
        sub = cur if meta is None else cur[cur["cell_id"].map(meta["n_params"]) == size]
        for i, (cell, grp) in enumerate(sub.groupby("cell_id", sort=True)):
            g = grp.sort_values("events_seen")
            color, ls, label = f"C{i % 10}", "-", str(cell)[:10] if i < 12 else None
            if meta is not None:
                d = meta.loc[cell].get("n_events", np.nan)
                color = f"C{d_levels.index(d) % 10}" if d in d_levels else color
                sd = str(meta.loc[cell].get("seed", ""))
                ls = ("-", "--", ":", "-.")[seeds.index(sd) % 4] if sd in seeds else "-"
                label = f"D = {d:.2g}, seed {sd}"
            ax.plot(g["events_seen"], g[col], lw=0.9, color=color, ls=ls, label=label)
        if used is not None and len(used):
            u = used
            if size is not None and "cell_id" in used.columns:
                u = used[used["cell_id"].isin(sub["cell_id"].unique())]
            ax.scatter(u["n_events"], u["loss"], marker="o", facecolor="none", edgecolor="k", s=40,
                       zorder=5, label="point used in the fit")  # fmt: skip
        if warmup_events:
            ax.axvspan(cur["events_seen"].min(), warmup_events, color="0.85", alpha=0.6, lw=0,
                       label="warmup")  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("events seen")
        ax.set_ylabel(col.replace("_", " "))
        ax.set_title("all cells" if size is None else f"N = {size:.3g}", fontsize=9)
        ax.legend(fontsize=5.5, ncol=1 if size is not None else 2)
    fig.suptitle("Training curves per cell")
    return fig


BASELINE_STYLE = {  # variant: (colour, label); sized baselines are plotted vs N, the others as lines
    "adapter_only": ("C1", "adapter only (random frozen backbone)"),
    "random_embedding": ("C2", "random embedding"),
    "hough": ("C3", "Hough (classical)"),
}


def _summ(df: pd.DataFrame) -> pd.DataFrame:
    return df.groupby("n_params")["value"].agg(mean="mean", sd="std").reset_index()


def _baselines(ax: Axes, rows: pd.DataFrame) -> None:
    """adapter_only vs N beside the pretrained points; size-free baselines as horizontal lines ± sd."""
    if "variant" not in rows.columns:
        return
    for variant, (col, label) in BASELINE_STYLE.items():
        b = rows[rows["variant"] == variant]
        if b.empty:
            continue
        if b["n_params"].notna().any():
            s = _summ(b.dropna(subset=["n_params"]))
            ax.errorbar(s["n_params"], s["mean"], yerr=s["sd"].fillna(0.0), fmt="s--", ms=4,
                        capsize=2, color=col, lw=0.8, label=f"{label} ± seed sd")  # fmt: skip
        else:
            m, sd = float(b["value"].mean()), float(b["value"].std()) if len(b) > 1 else 0.0
            ax.axhline(m, color=col, ls=":", lw=1.2, label=f"{label} = {m:.3g}")
            if sd > 0:
                ax.axhspan(m - sd, m + sd, color=col, alpha=0.1, lw=0)


def downstream(fits: Sequence[MetricFit], evals: pd.DataFrame | None = None) -> Figure:
    """Plot 14: each task metric vs N (pretrained ``fm`` backbone at its largest D, mean ± seed sd) with
    the fitted law or a saturation flag, other D levels faint, ``adapter_only`` vs N and the size-free
    baselines (Hough, random embedding) as horizontal lines. ``evals``: ``prepare_evals`` output.
    """
    n = max(1, len(fits))
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(4.4 * cols, 3.6 * rows), layout="constrained")
    for i, mf in enumerate(fits):
        ax = fig.add_subplot(rows, cols, i + 1)
        s = mf.summary
        sel = pd.DataFrame()
        if evals is not None:
            sel = evals[(evals["task"] == mf.task) & (evals["metric"] == mf.metric)]
            fm = sel[sel["variant"] == "fm"] if "variant" in sel.columns else sel
            if "n_events" in fm.columns and fm["n_events"].nunique() > 1:
                top = fm["n_events"] == fm.groupby("n_params")["n_events"].transform("max")
                for j, (d, g) in enumerate(fm[~top].groupby("n_events")):
                    o = _summ(g)
                    ax.errorbar(o["n_params"], o["mean"], yerr=o["sd"].fillna(0.0), fmt="o", ms=3,
                                capsize=1.5, color=str(0.45 + 0.15 * (j % 3)), alpha=0.8,
                                label=f"FM, D = {d:.2g}")  # fmt: skip
        ax.errorbar(s["n_params"], s["mean"], yerr=s["sd"].fillna(0.0), fmt="o-", ms=5, capsize=2.5,
                    color="C0", lw=1, label="FM (largest D) ± seed sd")  # fmt: skip
        _baselines(ax, sel)
        if mf.fit is not None and not mf.saturated:
            grid = np.geomspace(s["n_params"].min() / 1.5, s["n_params"].max() * 3, 80)
            ax.plot(grid, mf.predict(grid), lw=1, color="C0", ls="--",
                    label=f"floored law, α = {mf.fit.params['alpha']:.3g}")  # fmt: skip
        if mf.saturated:
            ax.text(0.03, 0.05, "saturated: last gain within seed noise", transform=ax.transAxes,
                    fontsize=7, color="C3")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel(N_LABEL, fontsize=7)
        ax.set_title(f"{mf.task}: {mf.metric}", fontsize=9)
        ax.legend(fontsize=5.5)
    if not fits:
        fig.add_subplot().text(0.5, 0.5, "no downstream metrics yet", ha="center")
    budget = ""
    if evals is not None and "n_labelled" in evals.columns and evals["n_labelled"].notna().any():
        budget = f", largest labelled set ({int(evals['n_labelled'].max())} events)"
    fig.suptitle(f"Downstream metrics vs N (adapters on the frozen backbone{budget})")
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
