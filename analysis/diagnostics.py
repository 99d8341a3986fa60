"""Design and fit warnings (SCALING.md §2.5, §4.3): structured codes, returned and never raised.

Codes: too_few_levels_N/D/C, collinear_design, single_seed, <param>_at_bound, not_converged,
multimodal_objective, weakly_identified, ill_conditioned, order_dependent, lack_of_fit,
larger_model_worse, more_data_worse, slice_not_saturated, extrapolation_far, not_in_scaling_regime,
estimator_disagreement (fit.py), frontier_disagreement and wald_unreliable (uncertainty/report).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import NDArray

if TYPE_CHECKING:
    from analysis.inputs import FitData
    from analysis.laws import Form
    from analysis.objective import Objective

Array = NDArray[np.float64]

COLLINEAR_CORR = 0.95  # §4.3
ILL_CONDITIONED = 1e8  # §2.5, on the Jacobi-scaled information matrix
BASIN_SHARE_MIN = (
    0.05  # §2.5: below this share of starts reaching the optimum, the objective is multimodal
)
SPREAD_MAX = 0.01  # exponent spread among starts within 1e-6 of the best: a flat ridge
SPEARMAN_P = 0.01  # §4.3 lack_of_fit trend test
ORDER_TOL = 1e-8  # §2.5 reversed-points refit
# a larger N or D whose cell-mean loss is higher by more than this in log L (≈ 10 %), or by more than
# three standard errors of the difference with replicates: no law decreasing in N and D has such a
# point (the quickstart's q3 at 100 optimiser steps: +25 % over q2b, RESULTS §12.3)
MONOTONE_TOL = 0.1


@dataclass(frozen=True)
class FitWarning:
    """A structured warning: ``code`` is stable (tests and reports key on it), ``detail`` is prose."""

    code: str
    detail: str


def seed_noise(data: FitData) -> float:
    """Pooled within-cell standard deviation of log L (NaN without replicates)."""
    ids = data.cell_ids()
    logl = np.log(data.L)
    ss, dof = 0.0, 0
    for c in np.unique(ids):
        v = logl[ids == c]
        if len(v) > 1:
            ss += float(((v - v.mean()) ** 2).sum())
            dof += len(v) - 1
    return float(np.sqrt(ss / dof)) if dof else float("nan")


def design_warnings(data: FitData, form: Form) -> list[FitWarning]:
    """too_few_levels_*, collinear_design (joint forms), single_seed."""
    out = []
    for ax in form.axes:
        n_lv = len(np.unique(data.axis(ax)))
        if n_lv < form.min_levels:
            out.append(
                FitWarning(
                    f"too_few_levels_{ax}", f"{n_lv} distinct {ax} values (need {form.min_levels})"
                )
            )
    if form.k == 2:
        ln, ld = np.log(data.N), np.log(data.D)
        ratios = np.unique(np.round(ld - ln, 6))
        corr = float(np.corrcoef(ln, ld)[0, 1]) if np.ptp(ln) > 0 and np.ptp(ld) > 0 else 1.0
        if len(ratios) == 1 or abs(corr) > COLLINEAR_CORR:
            out.append(
                FitWarning(
                    "collinear_design", f"corr(log N, log D) = {corr:.3f}, {len(ratios)} D/N ratio(s)"
                )
            )
    if np.bincount(data.cell_ids()).max() < 2:
        out.append(FitWarning("single_seed", "no replicate runs: run-to-run variance is unknown"))
    return out


def non_monotone(data: FitData) -> list[FitWarning]:
    """larger_model_worse / more_data_worse: cell means (over seeds) that rise from one N (D) level to the
    next at the same D (N) beyond noise. Every joint law here falls in both; such a cell is an
    optimisation result (LR, warm-up or steps short for that size), not a point on the law, and the
    fit's exponents then describe the recipe as much as the model."""
    cells = pd.DataFrame({"N": data.N, "D": data.D, "logL": np.log(data.L)})
    means = cells.groupby(["N", "D"])["logL"].agg(["mean", "count"]).reset_index()
    noise = seed_noise(data)
    out = []
    for code, axis, other in (("larger_model_worse", "N", "D"), ("more_data_worse", "D", "N")):
        bad = []  # (rise in log L, level of the other axis, lower level, higher level, their means)
        for at, g in means.groupby(other):
            g = g.sort_values(axis)
            m, k, x = g["mean"].to_numpy(), g["count"].to_numpy(), g[axis].to_numpy()
            tol = np.full(len(m) - 1, MONOTONE_TOL)
            if np.isfinite(noise) and noise > 0:
                tol = np.maximum(tol, 3 * noise * np.sqrt(1 / k[:-1] + 1 / k[1:]))
            bad += [(r, at, x[i], x[i + 1], m[i], m[i + 1]) for i, r in enumerate(np.diff(m)) if r > tol[i]]
        if bad:
            rise, at, lo, hi, m_lo, m_hi = max(bad)
            out.append(FitWarning(code, (
                f"{len(bad)} step(s) up; worst at {other} = {at:.3g}: {axis} = {hi:.3g} has loss "
                f"{np.exp(m_hi):.3g} against {np.exp(m_lo):.3g} at {axis} = {lo:.3g} "
                f"(+{np.expm1(rise):.0%}); an under-trained cell, not a point on the law")))  # fmt: skip
    return out


def fit_warnings(
    form: Form, theta: Array, bounds: list[tuple[float, float]], diag: dict[str, float], status: object
) -> list[FitWarning]:
    """<param>_at_bound, not_converged, multimodal_objective, weakly_identified, order_dependent."""
    out = []
    public = [f"{c}" for c in form.coef_names] + ["E"] + list(form.exp_names)
    for name, x, (lo, hi) in zip(public, theta, bounds, strict=True):
        if x <= lo + 1e-6 or x >= hi - 1e-6:
            side = "lower" if x <= lo + 1e-6 else "upper"
            out.append(
                FitWarning(
                    f"{name}_at_bound",
                    f"{name} at its {side} bound ({lo if side == 'lower' else hi:.4g})",
                )
            )
    if getattr(status, "value", "") in ("max_iter", "abnormal"):
        out.append(FitWarning("not_converged", f"optimiser status {getattr(status, 'value', status)}"))
    if diag.get("n_polished", 0) >= 20 and diag.get("basin_share", 1.0) < BASIN_SHARE_MIN:
        out.append(FitWarning("multimodal_objective", f"basin share {diag['basin_share']:.3f}"))
    if diag.get("near_best_spread", 0.0) > SPREAD_MAX:
        out.append(
            FitWarning(
                "weakly_identified", f"exponent spread {diag['near_best_spread']:.3g} near the optimum"
            )
        )
    if diag.get("reversed_gap", 0.0) > ORDER_TOL:
        out.append(
            FitWarning("order_dependent", f"reversed-order refit differs by {diag['reversed_gap']:.2e}")
        )
    return out


def conditioning(problem: Objective, theta: Array, diag: dict[str, float]) -> list[FitWarning]:
    """Condition number of the (Jacobi-scaled) Gauss-Newton information JᵀJ at the optimum.

    The Hessian of the smoothed Huber objective is E ψ'·JᵀJ (a scalar times JᵀJ), so its condition is
    that of JᵀJ; L-BFGS's low-rank ``hess_inv`` is never used. Scaling removes the units of θ.
    """
    j = problem.jacobian(theta)
    info = j.T @ j
    d = np.sqrt(np.maximum(np.diag(info), 1e-300))
    ev = np.linalg.eigvalsh(info / np.outer(d, d))
    cond = float(ev[-1] / max(ev[0], 1e-300))
    diag["condition"] = cond
    if cond > ILL_CONDITIONED:
        return [FitWarning("ill_conditioned", f"scaled information condition number {cond:.2e}")]
    return []


def lack_of_fit(data: FitData, resid: Array, diag: dict[str, float]) -> list[FitWarning]:
    """Monotone residual trend vs log N, log D, log C (Spearman p < 0.01), or MAD > 3× seed noise."""
    from scipy.stats import spearmanr

    mad = float(1.4826 * np.median(np.abs(resid - np.median(resid))))
    noise = seed_noise(data)
    diag["residual_mad"], diag["seed_noise"] = mad, noise
    out: list[FitWarning] = []
    if mad < 1e-9 or len(resid) < 8:  # noise-free or tiny: a rank test on round-off says nothing
        return out
    axes = {"N": data.N, "D": data.D} | ({"C": data.C} if data.C is not None else {})
    for name, x in axes.items():
        if np.ptp(x) == 0:
            continue
        rho, p = spearmanr(np.log(x), resid)
        if p < SPEARMAN_P:
            out.append(
                FitWarning(
                    "lack_of_fit", f"residual trend vs log {name}: Spearman {rho:.2f}, p = {p:.1e}"
                )
            )
    if np.isfinite(noise) and noise > 0 and mad > 3 * noise:
        out.append(FitWarning("lack_of_fit", f"residual MAD {mad:.3g} > 3x seed noise {noise:.3g}"))
    return out


def slice_saturation(data: FitData, this: str, other: str, levels: Array) -> list[FitWarning]:
    """Warn if the chosen slice (``levels[0]`` of ``other``) still moves against the next level down."""
    if len(levels) < 2:
        return []
    x_this, x_other, logl = data.axis(this), data.axis(other), np.log(data.L)
    top = np.isclose(x_other, levels[0], rtol=1e-9)
    nxt = np.isclose(x_other, levels[1], rtol=1e-9)
    shared = np.intersect1d(x_this[top], x_this[nxt])
    if len(shared) == 0:
        return []
    gap = np.mean([logl[top & (x_this == s)].mean() - logl[nxt & (x_this == s)].mean() for s in shared])
    noise = seed_noise(data)
    tol = 3 * noise if np.isfinite(noise) and noise > 0 else 0.01  # 1% without replicates
    if abs(gap) > tol:
        return [
            FitWarning(
                "slice_not_saturated", f"log L moves by {gap:.3g} between the two largest {other} levels"
            )
        ]
    return []


def extrapolation_far(max_fitted: float, target: float, axis: str) -> list[FitWarning]:
    """More than one decade beyond the largest fitted N or C (§4.3)."""
    dist = float(np.log10(target / max_fitted))
    if dist > 1.0:
        return [FitWarning("extrapolation_far", f"target {axis} is {dist:.2f} decades beyond the data")]
    return []
