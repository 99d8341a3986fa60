"""Design figures (SCALING.md §8, plots 3 and 13): the design and loss map, and the noise plot.

Pure functions → matplotlib ``Figure``; no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from analysis.diagnostics import seed_noise
from analysis.laws import allocation
from analysis.plots import N_LABEL

if TYPE_CHECKING:
    from analysis.fit import FitResult
    from analysis.inputs import FitData

FINISHED = ("finished", "done", "completed")
FAILED = ("failed", "diverged", "error", "timeout", "cancelled")
EVAL_WINDOW = 5  # §7: the last 5 evaluations measure checkpoint-to-checkpoint noise


def _status_groups(cells: pd.DataFrame, d_col: str) -> dict[str, pd.DataFrame]:
    st = cells["status"].astype(str).str.lower() if "status" in cells.columns else None
    if st is None:
        return {"completed": cells}
    return {
        "completed": cells[st.isin(FINISHED)],
        "failed": cells[st.isin(FAILED)],
        "planned / running": cells[~st.isin(FINISHED + FAILED)],
    }


def design_map(fit: FitResult, cells: pd.DataFrame, d_unit: str = "events", k: float = 6.0) -> Figure:
    """Plot 3: cells in (log N, log D) coloured by mean loss, iso-loss contours of the fit, iso-FLOP lines
    and the compute-optimal ridge; completed (filled), failed (red ×) and planned (open) cells.

    ``cells``: the catalog's cells (n_params, n_<d_unit>, status, final_val_loss); ``fit`` the joint law.
    """
    d_col = f"n_{d_unit}"
    fig = Figure(figsize=(6.6, 5.0))
    ax = fig.add_subplot()
    data = fit.data
    n_all = np.concatenate([data.N, pd.to_numeric(cells["n_params"], errors="coerce").to_numpy(float)])
    d_all = np.concatenate([data.D, pd.to_numeric(cells[d_col], errors="coerce").to_numpy(float)])
    ok = np.isfinite(n_all) & np.isfinite(d_all) & (n_all > 0) & (d_all > 0)
    n_lo, n_hi = n_all[ok].min() / 2, n_all[ok].max() * 3
    d_lo, d_hi = d_all[ok].min() / 2, d_all[ok].max() * 3
    gn, gd = np.meshgrid(np.geomspace(n_lo, n_hi, 120), np.geomspace(d_lo, d_hi, 120))
    surf = fit.predict(N=gn, D=gd)
    lv = np.quantile(surf, np.linspace(0.05, 0.95, 8))
    cs = ax.contour(gn, gd, surf, levels=np.unique(lv), colors="0.4", linewidths=0.7)
    ax.clabel(cs, fontsize=6, fmt="%.3g")
    c_lo, c_hi = k * n_lo * d_lo, k * n_hi * d_hi
    for c in 10.0 ** np.arange(np.ceil(np.log10(c_lo)), np.floor(np.log10(c_hi)) + 1):
        ax.plot(gn[0], c / (k * gn[0]), color="C7", ls=":", lw=0.6)
    alloc = allocation(fit.params, np.geomspace(c_lo, c_hi, 100), k)
    ax.plot(
        alloc.N_opt, alloc.D_opt, color="C3", lw=1.4, label=f"compute-optimal ridge (a = {alloc.a:.3g})"
    )
    ax.plot([], [], color="C7", ls=":", lw=0.6, label=f"iso-FLOP lines (C = {k:g}·N·D, decades)")
    mean = pd.DataFrame({"N": data.N, "D": data.D, "L": data.L}).groupby(["N", "D"])["L"].mean()
    sc = ax.scatter(mean.index.get_level_values("N"), mean.index.get_level_values("D"), c=mean.to_numpy(),
                    cmap="viridis_r", s=70, edgecolor="k", zorder=5, label="completed (mean loss)")  # fmt: skip
    fig.colorbar(sc, ax=ax, label="validation loss L (mean over seeds)")
    groups = _status_groups(cells, d_col)
    if len(groups.get("failed", [])):
        g = groups["failed"]
        ax.scatter(g["n_params"], g[d_col], marker="x", color="C3", s=60, zorder=6, label="failed")
    if len(groups.get("planned / running", [])):
        g = groups["planned / running"]
        ax.scatter(g["n_params"], g[d_col], marker="s", facecolor="none", edgecolor="0.3", s=60,
                   zorder=4, label="planned / running")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(n_lo, n_hi)
    ax.set_ylim(d_lo, d_hi)
    ax.set_xlabel(N_LABEL)
    ax.set_ylabel(f"D ({d_unit} seen)")
    ax.set_title("Design and loss map: iso-loss contours of the joint fit", fontsize=10)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(0.0, -0.13), ncol=3)
    return fig


def seed_spread_table(data: FitData) -> pd.DataFrame:
    """Per cell with ≥ 2 seeds: N, D, number of seeds and the sd of log L across them."""
    df = pd.DataFrame({"cell": data.cell, "N": data.N, "D": data.D, "logL": np.log(data.L)})
    g = df.groupby("cell").agg(N=("N", "first"), D=("D", "first"), seeds=("logL", "size"),
                               sd_log_L=("logL", "std"))  # fmt: skip
    return g[g["seeds"] > 1].reset_index()


def eval_noise(curves: pd.DataFrame, window: int = EVAL_WINDOW) -> pd.Series:
    """Per cell: checkpoint-to-checkpoint noise of log val loss over the last ``window`` evaluations.

    Second differences remove a locally linear trend; for white noise of sd s they have sd s·√6.
    """
    col = "val_loss" if "val_loss" in curves.columns else "train_loss"
    out = {}
    for cell, g in curves.dropna(subset=[col]).groupby("cell_id"):
        y = np.log(g.sort_values("events_seen")[col].to_numpy(float)[-window:])
        if len(y) >= 4:
            out[cell] = float(np.std(np.diff(y, 2), ddof=1) / np.sqrt(6))
    return pd.Series(out, dtype=float)


def seed_spread(data: FitData, curves: pd.DataFrame | None = None, delta: float | None = None) -> Figure:
    """Plot 13: seed spread (sd of log L across seeds of a cell) vs N, coloured by D, with the pooled
    seed noise, the Huber δ and (given ``curves`` with ``cell_id`` matching ``data.cell``'s runs) the
    evaluation noise of the last checkpoints.
    """
    fig = Figure(figsize=(6.0, 4.4))
    ax = fig.add_subplot()
    t = seed_spread_table(data)
    if len(t):
        sc = ax.scatter(t["N"], t["sd_log_L"], c=np.log10(t["D"]), cmap="plasma", s=30,
                        label="seed sd of log L per cell")  # fmt: skip
        fig.colorbar(sc, ax=ax, label="log10 D")
    pooled = seed_noise(data)
    if np.isfinite(pooled):
        ax.axhline(pooled, color="k", lw=1, label=f"pooled seed noise = {pooled:.3g}")
    if delta is not None:
        ax.axhline(delta, color="C3", ls="--", lw=0.8, label=f"Huber δ = {delta:g}")
    if curves is not None and len(curves) and "cell_id" in curves.columns:
        noise = eval_noise(curves)
        if len(noise):
            ax.axhline(float(noise.median()), color="C2", ls=":", lw=1,
                       label=f"eval noise, last {EVAL_WINDOW} checkpoints (median) = {noise.median():.3g}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(N_LABEL)
    ax.set_ylabel("sd of log L (≈ relative spread)")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_title("Noise: seed spread vs N")
    ax.legend(fontsize=6)
    return fig
