"""Uncertainty (SCALING.md §3): profile-likelihood intervals and the delta method (bootstraps: bootstrap.py).

All three share one noise model: the Huber M-estimator sandwich, Var(θ̂) ≈ τ²·(JᵀJ)⁻¹ with
τ² = E ψ² / (E ψ')² (Huber 1964), J = ∂ log L̂ / ∂θ. The profile statistic is the robust likelihood-ratio
statistic 2·(S_p(θ_j) − Ŝ)·E ψ'/E ψ², which is asymptotically χ²₁ under any symmetric noise (Heritier &
Ronchetti 1994). At δ = 1e-3 it equals the normalised-Huber (≈ Laplace) profile likelihood of Epoch's
``huber_logpdf`` up to that calibration factor, which makes it valid for Gaussian seed noise too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import brentq
from scipy.stats import chi2, norm

from analysis.blas import single_blas_thread
from analysis.bootstrap import BootstrapResult, bootstrap, resample_indices
from analysis.derived import quantity
from analysis.fit import FitResult, polish
from analysis.objective import robust_scale_factors

__all__ = [
    "BootstrapResult", "ProfileInterval", "bootstrap", "compare_to", "covariance", "delta_interval",
    "log_prediction_band", "profile_interval", "resample_indices", "residual_variance",
]  # fmt: skip
Array = NDArray[np.float64]
LOG_SCALE = ("E", "A", "B", "K", "G", "N_opt", "D_opt", "ratio", "L_star")  # positive: intervals via log


def _scale_factors(fit: FitResult) -> tuple[float, float]:
    r = fit.residuals()
    if fit.problem.loss == "mse":
        return 1.0, float(np.mean(r * r))
    return robust_scale_factors(r, fit.problem.delta)


def covariance(fit: FitResult) -> Array:
    """Sandwich covariance of internal θ (p, p): τ²·(JᵀJ)⁻¹ (pseudo-inverse when singular)."""
    e_dpsi, e_psi2 = _scale_factors(fit)
    j = fit.problem.jacobian(fit.theta)
    return np.asarray((e_psi2 / e_dpsi**2) * np.linalg.pinv(j.T @ j), dtype=float)


def _jac(fn: Callable[[Array], Array], theta: Array) -> Array:
    """Central-difference Jacobian of a derived quantity (m,) w.r.t. θ (p,) → (m, p)."""
    cols = []
    for i in range(len(theta)):
        h = 1e-6 * max(1.0, abs(theta[i]))
        tp, tm = theta.copy(), theta.copy()
        tp[i] += h
        tm[i] -= h
        cols.append((np.atleast_1d(fn(tp)) - np.atleast_1d(fn(tm))) / (2 * h))
    return np.stack(cols, axis=-1)


def delta_interval(
    fit: FitResult, name: str, level: float = 0.95, C: float | Array | None = None, k: float = 6.0
) -> tuple[Array, Array, Array]:
    """(estimate, lo, hi) of a parameter or derived quantity by the delta method (§3.3).

    Positive quantities are propagated on the log scale, so the interval stays positive.
    """
    log = name in LOG_SCALE

    def fn(th: Array) -> Array:
        v = np.atleast_1d(quantity(fit.law, th, name, C, k))
        return np.log(v) if log else v

    est = fn(fit.theta)
    jac = _jac(fn, fit.theta)
    se = np.sqrt(np.maximum(np.einsum("mp,pq,mq->m", jac, covariance(fit), jac), 0.0))
    z = norm.ppf(0.5 + level / 2)
    lo, hi = est - z * se, est + z * se
    if not log:
        return est, lo, hi
    with np.errstate(over="ignore"):  # an interval unbounded above on the log scale is (…, inf)
        return np.exp(est), np.exp(lo), np.exp(hi)


def log_prediction_band(
    fit: FitResult, axes: Mapping[str, Array], level: float = 0.95, prediction: bool = False
) -> tuple[Array, Array]:
    """Delta-method band for L̂ at ``axes`` ({"N": …, "D": …}); ``prediction=True`` adds the variance of
    one run about the law: the pooled seed variance with replicates, else :func:`residual_variance`.

    Confidence band (mean law) by default; the prediction band is for a new run (§3.4).
    """
    from analysis.diagnostics import seed_noise
    from analysis.laws import predict_log

    arrs = np.broadcast_arrays(*(np.asarray(axes[a], dtype=float) for a in fit.law.axes))
    lx = np.column_stack([np.log(a).ravel() for a in arrs])
    est = predict_log(fit.theta, lx)
    jac = _jac(lambda th: predict_log(th, lx), fit.theta)
    var = np.einsum("mp,pq,mq->m", jac, covariance(fit), jac)
    if prediction:
        s = seed_noise(fit.data)
        var = var + (s * s if np.isfinite(s) else residual_variance(fit))
    z = norm.ppf(0.5 + level / 2) * np.sqrt(np.maximum(var, 0.0))
    shape = arrs[0].shape
    with np.errstate(over="ignore"):  # an unbounded band on the log scale reaches inf
        return np.exp(est - z).reshape(shape), np.exp(est + z).reshape(shape)


def residual_variance(fit: FitResult) -> float:
    """Variance of one new run's log L about the law when the study has no seed replicates: the
    residual mean square Σr² / (n − p) of the fit (p fitted parameters). A median-based scale
    collapses here: a 5-parameter law through 12 points fits several of them almost exactly (the
    quickstart: MAD scale 0.014 against an rms residual of 0.062), and its band then claims a
    precision the fit's own residuals contradict."""
    r = np.asarray(fit.residuals(), dtype=float)
    dof = len(r) - len(fit.theta)
    return float((r * r).sum() / dof) if dof > 0 else float("inf")


# ----------------------------------------------------------------------------------------------------
# Profile likelihood (§3.2)


@dataclass(frozen=True)
class ProfileInterval:
    """Profile interval of one parameter. ``lo``/``hi`` are NaN on an open side (it never closed)."""

    name: str
    estimate: float
    lo: float
    hi: float
    open_lo: bool
    open_hi: bool
    points: tuple[tuple[float, float], ...]  # (value, statistic) pairs evaluated, for plot 9

    @property
    def closed(self) -> bool:
        return not (self.open_lo or self.open_hi)


def lr_calibration(fit: FitResult) -> float:
    """E ψ' / E ψ²: multiplies 2·ΔS into a χ² statistic."""
    e_dpsi, e_psi2 = _scale_factors(fit)
    return e_dpsi / max(e_psi2, 1e-300)


@single_blas_thread
def profile_interval(
    fit: FitResult, name: str, level: float = 0.95, max_steps: int = 40
) -> ProfileInterval:
    """Profile-likelihood interval for a parameter of the form (E, A, B, alpha, beta, …)."""
    law = fit.law
    idx_name = name if name in law.exp_names else f"log_{name}"
    j = law.theta_names.index(idx_name)
    thresh = float(chi2.ppf(level, 1))
    calib = lr_calibration(fit)
    bounds = list(fit.bounds)
    warm: dict[float, Array] = {float(fit.theta[j]): fit.theta.copy()}

    def stat(v: float) -> float:
        x0 = warm[min(warm, key=lambda u: abs(u - v))].copy()
        x0[j] = v
        bnds = bounds.copy()
        bnds[j] = (v, v)
        res = polish(fit.problem, x0, bnds)
        warm[v] = res.x
        return 2.0 * (float(res.fun) - fit.objective) * calib

    se = float(np.sqrt(max(covariance(fit)[j, j], 0.0)))
    step0 = max(se, 1e-4 * abs(fit.theta[j]), 1e-6)
    ends: list[float] = []
    opens: list[bool] = []
    for sign in (-1.0, 1.0):
        lim = bounds[j][0] if sign < 0 else bounds[j][1]
        prev, v, step, closed = float(fit.theta[j]), float(fit.theta[j]), step0, False
        for _ in range(max_steps):
            v = float(np.clip(prev + sign * step, *bounds[j]))
            if stat(v) > thresh:
                closed = True
                break
            if v == lim:
                break
            prev, step = v, step * 1.6
        if closed:
            a, b = sorted((prev, v))
            fa, fb = stat(a) - thresh, stat(b) - thresh
            if fa * fb < 0:
                ends.append(float(brentq(lambda u: stat(u) - thresh, a, b, xtol=1e-6 * max(1.0, abs(v)))))
            else:  # the warm-started profile is not monotone here: keep the outer point (conservative)
                ends.append(v)
        else:
            ends.append(float("nan"))
        opens.append(not closed)
    pts = tuple(
        sorted((u, 2.0 * (fit.problem.value(x) - fit.objective) * calib) for u, x in warm.items())
    )
    tr = np.exp if idx_name.startswith("log_") else (lambda u: u)
    return ProfileInterval(
        name, float(tr(fit.theta[j])), float(tr(ends[0])), float(tr(ends[1])), opens[0], opens[1], pts
    )


def compare_to(fit: FitResult, params: dict[str, float]) -> tuple[float, float]:
    """Robust LR test of ``params`` against the fit (Epoch's test, df = number of parameters)."""
    from analysis.laws import params_to_theta

    th = params_to_theta(fit.law, params)
    s = 2.0 * (fit.problem.value(th) - fit.objective) * lr_calibration(fit)
    return float(s), float(chi2.sf(s, len(th)))
