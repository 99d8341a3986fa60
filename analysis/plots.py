"""Fit figures (SCALING.md §8, plots 1, 2, 4–8): pure functions, data + FitResult → matplotlib Figure.

No pyplot, no global state and no I/O: figures are built on ``matplotlib.figure.Figure`` (rendered by Agg
when ``report.py`` saves them). Axes are log-log unless noted; bands name their method and level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

from analysis.laws import CHINCHILLA_A_APPROACHES, EPOCH_A, KAPLAN_NOPT_EXPONENT, allocation, predict_log

if TYPE_CHECKING:
    from collections.abc import Mapping

    from analysis.families import FamilyFit
    from analysis.fit import FitResult
    from analysis.inputs import FitData
    from analysis.uncertainty import BootstrapResult

Array = NDArray[np.float64]
N_LABEL = "N (non-embedding backbone parameters)"
MAX_LINES = 6  # more levels than this are binned in log space so a plot stays readable


def _levels(x: Array) -> tuple[Array, Array]:
    """(level value per point, distinct levels): exact levels, or ≤ MAX_LINES log bins (geometric centres)."""
    uniq = np.unique(x)
    if len(uniq) <= MAX_LINES:
        return x, uniq
    edges = np.linspace(np.log(x.min()), np.log(x.max()) + 1e-12, MAX_LINES + 1)
    idx = np.clip(np.digitize(np.log(x), edges) - 1, 0, MAX_LINES - 1)
    centres = np.array(
        [np.exp(np.log(x[idx == i]).mean()) if np.any(idx == i) else np.nan for i in range(MAX_LINES)]
    )
    return centres[idx], centres[np.isfinite(centres)]


def _band(fit: FitResult, boot: BootstrapResult | None, **axes: Array) -> tuple[Array, Array, str]:
    """95% confidence band of the mean law: bootstrap percentiles if given, else the delta method."""
    lx = np.column_stack([np.log(np.asarray(axes[a], float)) for a in fit.law.axes])
    if boot is not None and boot.ok.sum() >= 20:
        lo, hi = boot.band(lambda th: np.exp(predict_log(th, lx)))
        return lo, hi, f"95% CI ({boot.label})"
    from analysis.uncertainty import log_prediction_band

    lo, hi = log_prediction_band(fit, axes)
    return lo, hi, "95% CI (delta method)"


def _loss_vs(
    fit: FitResult, data: FitData, along: str, per: str, boot: BootstrapResult | None
) -> Figure:
    fig = Figure(figsize=(6.4, 4.6))
    ax = fig.add_subplot()
    lvl, levels = _levels(data.axis(per))
    colors = [f"C{i}" for i in range(len(levels))]
    x = data.axis(along)
    grid = np.geomspace(x.min() / 1.5, x.max() * 1.5, 100)
    for i, (level, col) in enumerate(zip(levels, colors, strict=True)):
        m = np.isclose(lvl, level)
        ax.scatter(x[m], data.L[m], s=14, color=col, label=f"{per} = {level:.3g}")
        axes = {along: grid, per: np.full_like(grid, level)}
        ax.plot(grid, fit.predict(**axes), color=col, lw=1.2)
        lo, hi, label = _band(fit, boot, **axes)
        ax.fill_between(grid, lo, hi, color=col, alpha=0.15, lw=0, label=label if i == 0 else None)
    ax.axhline(fit.params["E"], color="k", ls=":", lw=1, label=f"floor E = {fit.params['E']:.4g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(N_LABEL if along == "N" else f"D ({data.d_unit} seen)")
    ax.set_ylabel("validation loss L")
    ax.set_title(f"Loss vs {along}, one line per {per} ({fit.form} fit)")
    ax.legend(fontsize=7, ncol=2)
    return fig


def loss_vs_n(fit: FitResult, boot: BootstrapResult | None = None) -> Figure:
    """Plot 1: loss vs N, one line per D level, joint-law curves, 95% band and the E floor."""
    return _loss_vs(fit, fit.data, "N", "D", boot)


def loss_vs_d(fit: FitResult, boot: BootstrapResult | None = None) -> Figure:
    """Plot 2: loss vs D, one line per size."""
    return _loss_vs(fit, fit.data, "D", "N", boot)


def families_vs_n(families: Mapping[str, FamilyFit]) -> Figure:
    """Loss vs N at each family's largest D: the runs coloured by family, each family's law and its
    95% band (bootstrap when the family has one, else the delta method), α with its delta interval."""
    from analysis.uncertainty import delta_interval

    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.add_subplot()
    fitted = [(name, f.fit, f.boot) for name, f in families.items() if f.fit is not None]
    n_all = np.concatenate([fit.data.N for _, fit, _ in fitted]) if fitted else np.ones(1)
    grid = np.geomspace(n_all.min() / 1.5, n_all.max() * 1.5, 100)
    for i, (name, fit, boot) in enumerate(fitted):
        col, d_top = f"C{i}", float(np.max(fit.data.D))
        m = np.isclose(fit.data.D, d_top)
        ax.scatter(fit.data.N[m], fit.data.L[m], s=18, color=col, marker="os^D"[i % 4], zorder=3,
                   label=f"{name} runs (D = {d_top:.3g})")  # fmt: skip
        d_grid = np.full_like(grid, d_top)
        _, a_lo, a_hi = (float(np.squeeze(v)) for v in delta_interval(fit, "alpha"))
        ax.plot(grid, fit.predict(N=grid, D=d_grid), color=col, lw=1.3,
                label=f"{name} law: α = {fit.params['alpha']:.3g} (95% delta {a_lo:.3g}–{a_hi:.3g})")  # fmt: skip
        lo, hi, band = _band(fit, boot, N=grid, D=d_grid)
        ax.fill_between(grid, lo, hi, color=col, alpha=0.15, lw=0, label=f"{name} {band}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(N_LABEL)
    ax.set_ylabel("validation loss L")
    ax.set_title("Loss vs N at the largest D: one Chinchilla law per model family")
    ax.legend(fontsize=7)
    return fig


def residuals(fit: FitResult) -> Figure:
    """Plot 8: log residuals vs log N, log D and log C, coloured by seed."""
    d = fit.data
    r = fit.residuals()
    axes_x = {"N": d.N, "D": d.D} | ({"C": d.C} if d.C is not None else {})
    fig = Figure(figsize=(4.0 * len(axes_x), 3.6))
    seeds = np.zeros(len(r)) if d.seed is None else np.unique(d.seed.astype(str), return_inverse=True)[1]
    for i, (name, x) in enumerate(axes_x.items()):
        ax = fig.add_subplot(1, len(axes_x), i + 1)
        sc = ax.scatter(x, r, c=seeds, cmap="viridis", s=12)
        ax.axhline(0, color="k", lw=0.8)
        ax.axhspan(-fit.problem.delta, fit.problem.delta, color="0.8", alpha=0.5, lw=0, label="Huber δ")
        ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("log L̂ − log L" if i == 0 else "")
        if i == 0:
            ax.legend(fontsize=7)
    if d.seed is not None:
        fig.colorbar(sc, ax=fig.axes, label="seed")
    fig.suptitle("Residuals (structure here means the form is wrong)")
    return fig


def parity(fit: FitResult, held_out: tuple[Array, Array] | None = None) -> Figure:
    """Plot 7: predicted vs observed; ``held_out`` = (observed, predicted) in another colour."""
    fig = Figure(figsize=(4.8, 4.6))
    ax = fig.add_subplot()
    obs, pred = fit.data.L, np.exp(predict_log(fit.theta, fit.problem.log_x))
    ax.scatter(obs, pred, s=12, label="fitted points")
    lims = [min(obs.min(), pred.min()), max(obs.max(), pred.max())]
    if held_out is not None:
        ax.scatter(*held_out, s=18, color="C3", marker="s", label="held out")
        lims = [min(lims[0], *held_out[0], *held_out[1]), max(lims[1], *held_out[0], *held_out[1])]
    ax.plot(lims, lims, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("observed loss")
    ax.set_ylabel("predicted loss")
    ax.set_title("Predicted vs observed")
    ax.legend(fontsize=7)
    return fig


def frontier(direct: FitResult, joint: FitResult | None = None, k: float = 6.0) -> Figure:
    """Plot 6: lower-envelope (C, L) points, the direct L*(C) fit with its floor, the implied frontier."""
    fig = Figure(figsize=(6.0, 4.4))
    ax = fig.add_subplot()
    c_env = direct.data.axis("C")
    ax.scatter(c_env, direct.data.L, s=16, color="C0", label="lower envelope")
    grid = np.geomspace(c_env.min() / 2, c_env.max() * 10, 100)
    ax.plot(
        grid, direct.predict(C=grid), color="C0", label=f"direct fit, γ = {direct.params['gamma']:.3g}"
    )
    ax.axhline(direct.params["E"], color="C0", ls=":", lw=1)
    if joint is not None:
        from analysis.laws import implied_frontier

        f = implied_frontier(joint.params, k)
        ax.plot(grid, f["E"] + f["K"] * (grid / k) ** -f["gamma"], color="C1", ls="--",
                label=f"implied by joint law, γ = {f['gamma']:.3g} (k = {k:g})")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("C (training FLOPs)")
    ax.set_ylabel("validation loss L")
    ax.set_title("Compute frontier L*(C)")
    ax.legend(fontsize=7)
    return fig


def isoflop(fit: FitResult, k: float = 6.0, n_budgets: int = MAX_LINES) -> Figure:
    """Plot 4: L vs N per FLOP budget, cubic fit in log N with its minimum, Approach-3 curve overlaid."""
    d = fit.data
    c = d.C if d.C is not None else k * d.N * d.D
    lvl, budgets = _levels(c)
    fig = Figure(figsize=(6.4, 4.6))
    ax = fig.add_subplot()
    for i, cb in enumerate(budgets[:n_budgets]):
        m = np.isclose(lvl, cb)
        col = f"C{i}"
        ax.scatter(d.N[m], d.L[m], s=14, color=col, label=f"C ≈ {cb:.2g}")
        grid = np.geomspace(d.N[m].min() / 3, d.N[m].max() * 3, 80)
        ax.plot(grid, fit.predict(N=grid, D=cb / (k * grid)), color=col, lw=1, ls="--")
        if m.sum() >= 5 and len(np.unique(d.N[m])) >= 4:
            coef = np.polyfit(np.log(d.N[m]), np.log(d.L[m]), 3)
            xs = np.linspace(np.log(d.N[m].min()), np.log(d.N[m].max()), 200)
            ys = np.polyval(coef, xs)
            ax.plot(np.exp(xs), np.exp(ys), color=col, lw=1.4)
            j = int(np.argmin(ys))
            ax.scatter(
                np.exp(xs[j]), np.exp(ys[j]), marker="*", s=80, color=col, edgecolor="k", zorder=5
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(N_LABEL)
    ax.set_ylabel("validation loss L")
    ax.set_title("IsoFLOP profiles: cubic fit (solid, ★ minimum), Approach 3 (dashed)")
    ax.legend(fontsize=7)
    return fig


def allocation_vs_compute(
    fit: FitResult, boot: BootstrapResult | None = None, target_c: float | None = None, k: float = 6.0
) -> Figure:
    """Plot 5: N_opt(C), D_opt(C) and D/N(C) with bootstrap bands and reference exponents."""
    c_obs = fit.data.C if fit.data.C is not None else k * fit.data.N * fit.data.D
    hi_c = max(c_obs.max() * 100, target_c or 0.0)
    grid = np.geomspace(c_obs.min(), hi_c, 60)
    alloc = allocation(fit.params, grid, k)
    fig = Figure(figsize=(11.0, 3.8))
    for i, (name, y, label) in enumerate(
        [("N_opt", alloc.N_opt, "N_opt"), ("D_opt", alloc.D_opt, "D_opt"), ("ratio", alloc.ratio, "D/N")]
    ):
        ax = fig.add_subplot(1, 3, i + 1)
        ax.plot(grid, y, color="C0", label=f"Approach 3 ({fit.form})")
        if boot is not None and boot.ok.sum() >= 20:
            lo, hi = boot.ci(name, C=grid, k=k)
            ax.fill_between(grid, lo, hi, color="C0", alpha=0.2, lw=0, label=f"95% CI ({boot.label})")
        if name == "N_opt":
            mid = len(grid) // 2
            refs = {
                f"Kaplan a = {KAPLAN_NOPT_EXPONENT}": KAPLAN_NOPT_EXPONENT,
                f"Epoch a = {EPOCH_A}": EPOCH_A,
            }
            refs |= {f"Chinchilla A{j} a = {a}": a for j, a in CHINCHILLA_A_APPROACHES.items()}
            for j, (lab, a) in enumerate(refs.items()):
                ax.plot(
                    grid, y[mid] * (grid / grid[mid]) ** a, lw=0.7, ls=":", color=f"C{j + 1}", label=lab
                )
        if target_c is not None:
            ax.axvline(target_c, color="k", ls="--", lw=0.8, label="target budget")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("C (training FLOPs)")
        ax.set_ylabel(label)
        ax.legend(fontsize=6)
    fig.suptitle(
        f"Compute-optimal allocation (closed form, C = {k:g}·N·D): a = {alloc.a:.4g}, b = {alloc.b:.4g}"
    )
    return fig
