"""Scaling-law forms as pure functions (SCALING.md §1) and compute-optimal allocation (§1.4).

Every form is ``L = E + Σ_k A_k · X_k^(−α_k)`` over K data axes (K = 2 for Chinchilla, 1 for the
floored single-axis laws). Internally a form is evaluated in log space as

    log L̂ = LSE(log A_1 − α_1·log X_1, …, log A_K − α_K·log X_K, log E)

which is stable in float64 across many decades (§1.2). The internal parameter vector ``theta`` is laid
out as ``[log A_1 … log A_K, log E, α_1 … α_K]``; for Chinchilla that is Epoch's ``[a, b, e, α, β]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]

# SCALING.md §2.2: exponents in [0.01, 2.5], log-coefficients in [-5, 30], E ≤ min L.
EXP_BOUNDS = (0.01, 2.5)
COEF_BOUNDS = (-5.0, 30.0)
# The floor may go to ~0; 30 e-folds below the smallest loss is "no detectable floor" (E_at_bound).
E_LOWER_SPAN = 30.0


@dataclass(frozen=True)
class Form:
    """One law. ``axes`` names the data columns (N, D or C) the power terms act on."""

    name: str
    axes: tuple[str, ...]
    coef_names: tuple[str, ...]
    exp_names: tuple[str, ...]
    min_levels: int = 3  # §4.3: fewer distinct values per axis than this raises too_few_levels_*

    @property
    def k(self) -> int:
        return len(self.axes)

    @property
    def param_names(self) -> tuple[str, ...]:
        """Public names, e.g. ``("E", "A", "B", "alpha", "beta")``."""
        return ("E", *self.coef_names, *self.exp_names)

    @property
    def theta_names(self) -> tuple[str, ...]:
        """Internal names in ``theta`` order, e.g. ``("log_A", "log_B", "log_E", "alpha", "beta")``."""
        return (*(f"log_{c}" for c in self.coef_names), "log_E", *self.exp_names)

    @property
    def n_params(self) -> int:
        return 2 * self.k + 1


FORMS: dict[str, Form] = {
    "chinchilla": Form("chinchilla", ("N", "D"), ("A", "B"), ("alpha", "beta")),
    "kaplan_n": Form("kaplan_n", ("N",), ("A",), ("alpha",)),
    "kaplan_d": Form("kaplan_d", ("D",), ("B",), ("beta",)),
    "frontier": Form("frontier", ("C",), ("K",), ("gamma",)),
}


def predict_log(theta: ArrayLike, log_x: ArrayLike) -> Array:
    """log L̂ for ``theta`` (p,) or (M, p) at ``log_x`` (n, K); returns (n,) or (M, n)."""
    th = np.asarray(theta, dtype=float)
    lx = np.asarray(log_x, dtype=float)
    k = lx.shape[1]
    coefs, e, exps = th[..., :k], th[..., k], th[..., k + 1 :]
    terms = coefs[..., None, :] - exps[..., None, :] * lx  # (..., n, K)
    terms = np.concatenate([terms, np.broadcast_to(e[..., None, None], (*terms.shape[:-1], 1))], -1)
    m = terms.max(axis=-1)
    return m + np.log(np.exp(terms - m[..., None]).sum(axis=-1))


def theta_to_params(form: Form, theta: ArrayLike) -> dict[str, float]:
    """Internal vector → public ``{"E", "A", …, "alpha", …}`` (unrounded floats)."""
    th = np.asarray(theta, dtype=float)
    out = {"E": float(np.exp(th[form.k]))}
    for i, c in enumerate(form.coef_names):
        out[c] = float(np.exp(th[i]))
    for i, x in enumerate(form.exp_names):
        out[x] = float(th[form.k + 1 + i])
    return out


def params_to_theta(form: Form, params: Mapping[str, float]) -> Array:
    """Public parameters → internal vector (``E = 0`` maps to ``-inf``)."""
    with np.errstate(divide="ignore"):
        coefs = [np.log(params[c]) for c in form.coef_names]
        e = np.log(params["E"])
    return np.array([*coefs, e, *(params[x] for x in form.exp_names)], dtype=float)


def default_bounds(form: Form, min_loss: float) -> list[tuple[float, float]]:
    """L-BFGS-B bounds (§2.2); the floor's upper bound is log(min observed loss)."""
    hi_e = float(np.log(min_loss))
    return [COEF_BOUNDS] * form.k + [(hi_e - E_LOWER_SPAN, hi_e)] + [EXP_BOUNDS] * form.k


def predict(form: Form, params: Mapping[str, float], **axes: ArrayLike) -> Array:
    """L̂ at the given axes, e.g. ``predict(FORMS["chinchilla"], p, N=n, D=d)`` (broadcasting)."""
    arrs = np.broadcast_arrays(*(np.asarray(axes[a], dtype=float) for a in form.axes))
    total = np.full(arrs[0].shape, params["E"], dtype=float)
    for x, c, ex in zip(arrs, form.coef_names, form.exp_names, strict=True):
        total = total + params[c] * x ** (-params[ex])
    return total


# ----------------------------------------------------------------------------------------------------
# Compute-optimal allocation (§1.4), vectorised over C like chinchilla's allocation call.


@dataclass(frozen=True)
class Allocation:
    """Closed-form allocation for C = k·N·D. Arrays have the shape of ``C``."""

    a: float  # N_opt ∝ C^a
    b: float  # D_opt ∝ C^b
    G: float
    C: Array
    N_opt: Array
    D_opt: Array
    ratio: Array  # D_opt / N_opt (tokens or events per parameter)
    L_star: Array


def allocation(params: Mapping[str, float], C: ArrayLike, k: float = 6.0) -> Allocation:
    """N_opt(C), D_opt(C), D/N and L*(C) of a Chinchilla fit; ``k`` = FLOPs per parameter per token."""
    al, be, A, B = params["alpha"], params["beta"], params["A"], params["B"]
    c = np.asarray(C, dtype=float)
    G = (al * A / (be * B)) ** (1.0 / (al + be))
    a, b = be / (al + be), al / (al + be)
    n_opt = G * (c / k) ** a
    d_opt = (c / k) ** b / G
    L = params["E"] + A * n_opt ** (-al) + B * d_opt ** (-be)
    return Allocation(a, b, float(G), c, n_opt, d_opt, d_opt / n_opt, L)


def implied_frontier(params: Mapping[str, float], k: float = 6.0) -> dict[str, float]:
    """L*(C) = E + K·(C/k)^(−γ) implied by a joint fit (§1.3): returns E, K, gamma."""
    al, be, A, B = params["alpha"], params["beta"], params["A"], params["B"]
    G = (al * A / (be * B)) ** (1.0 / (al + be))
    return {"E": params["E"], "K": A * G ** (-al) + B * G**be, "gamma": al * be / (al + be)}


@dataclass(frozen=True)
class CostLaw:
    """C = k·N^p·D^q, fitted by log OLS over the planned cells (§6.1)."""

    k: float
    p: float
    q: float

    def flops(self, N: ArrayLike, D: ArrayLike) -> Array:
        return self.k * np.asarray(N, float) ** self.p * np.asarray(D, float) ** self.q


def fit_cost_law(N: ArrayLike, D: ArrayLike, C: ArrayLike) -> CostLaw:
    """Least squares of log C on [1, log N, log D]; needs ≥ 3 cells not all on one line."""
    x = np.column_stack([np.ones(len(np.asarray(N))), np.log(N), np.log(D)])
    coef, *_ = np.linalg.lstsq(x, np.log(np.asarray(C, float)), rcond=None)
    return CostLaw(float(np.exp(coef[0])), float(coef[1]), float(coef[2]))


def numerical_allocation(
    params: Mapping[str, float], C: ArrayLike, cost: CostLaw, n_range: tuple[float, float] = (1e3, 1e15)
) -> tuple[Array, Array]:
    """N_opt, D_opt minimising L(N, D(N; C)) along the iso-cost curve of ``cost`` (§1.4).

    A dense log grid (4001 points) then a parabola through the best three: ~1e-4 relative in N.
    """
    c = np.atleast_1d(np.asarray(C, dtype=float))
    ln = np.linspace(np.log(n_range[0]), np.log(n_range[1]), 4001)
    step = ln[1] - ln[0]
    log_d = (np.log(c)[:, None] - np.log(cost.k) - cost.p * ln[None, :]) / cost.q
    L = (
        params["E"]
        + params["A"] * np.exp(-params["alpha"] * ln)
        + params["B"] * np.exp(-params["beta"] * log_d)
    )
    i = np.clip(L.argmin(axis=1), 1, len(ln) - 2)
    rows = np.arange(len(c))
    y0, y1, y2 = L[rows, i - 1], L[rows, i], L[rows, i + 1]
    denom = y0 - 2 * y1 + y2
    shift = np.where(denom > 0, 0.5 * (y0 - y2) / np.where(denom > 0, denom, 1.0), 0.0)
    best = ln[i] + shift * step
    d_best = (np.log(c) - np.log(cost.k) - cost.p * best) / cost.q
    return np.exp(best), np.exp(d_best)


# ----------------------------------------------------------------------------------------------------
# Reference values (SCALING.md §1.1, §1.4, §9.1, §9.3). Never round stored parameters.

HOFFMANN_UNROUNDED_THETA = {
    "log_A": 6.0073404,
    "log_B": 6.0179186,
    "log_E": 0.5267228,
    "alpha": 0.33917084,
    "beta": 0.2849083,
}
HOFFMANN_UNROUNDED = {
    "E": float(np.exp(0.5267228)),
    "A": float(np.exp(6.0073404)),
    "B": float(np.exp(6.0179186)),
    "alpha": 0.33917084,
    "beta": 0.2849083,
}
HOFFMANN_ROUNDED = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
EPOCH_REFIT = {"E": 1.817, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3659}
CHINCHILLA_A_APPROACHES = {1: 0.50, 2: 0.49, 3: 0.46}
EPOCH_A = 0.513
KAPLAN = {"alpha_N": 0.076, "N_c": 8.8e13, "alpha_D": 0.095, "D_c": 5.4e13, "alpha_C": 0.050}
KAPLAN_NOPT_EXPONENT = 0.73

#: Epoch's 95 % bootstrap intervals of the same re-fit (4,000 resamples; SCALING §9.1).
EPOCH_REFIT_CI95: dict[str, tuple[float, float]] = {
    "E": (1.769, 1.871),
    "alpha": (0.317, 0.373),
    "beta": (0.331, 0.415),
    "A": (285, 744),
    "B": (1042, 5810),
}
