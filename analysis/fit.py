"""``fit_law``: one public fit function with a method switch (SCALING.md §2, after vpnls's small API).

Methods: ``"vp"`` (variable projection on a 0.01 exponent grid, then a log-Huber L-BFGS-B polish, §2.4),
``"grid"`` (the Chinchilla 4500-start grid, §2.3: ``init="screen"`` evaluates every start in one
vectorised pass and polishes the best 50; ``init="full"`` polishes every start), ``"both"`` (both, with
``estimator_disagreement`` when they differ) and ``"start"`` (polish only the given ``x0``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from itertools import product
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import OptimizeResult, minimize

from analysis import diagnostics
from analysis.blas import single_blas_thread
from analysis.diagnostics import FitWarning
from analysis.inputs import FitData, as_fit_data
from analysis.laws import FORMS, Form, default_bounds, params_to_theta, predict_log, theta_to_params
from analysis.objective import DEFAULT_DELTA, LOSSES, Objective
from analysis.vp import vp_grid
from fm4npp.errors import FitError, allowed_list, did_you_mean

Array = NDArray[np.float64]

# §2.2 / OLMo-ladder fitting_functions.py: explicit tolerances so no rescaling changes where a fit stops.
SCIPY_OPTIONS = {"ftol": 0.0, "gtol": 1e-10, "maxiter": 10_000, "maxfun": 50_000}
METHODS = ("vp", "grid", "both", "start")
# §2.3: Hoffmann's grid as replicated by epoch-research/analyzing-chinchilla (5·5·5·6·6 = 4500 starts).
GRID_EXP = np.arange(0.0, 2.01, 0.5)
GRID_E = np.arange(-1.0, 1.01, 0.5)
GRID_COEF = np.arange(0.0, 25.01, 5.0)
N_POLISH = 50  # §2.3 screen mode
BASIN_TOL = 1e-9  # §2.5: relative objective gap counted as "same optimum"
BOUND_TOL = 1e-6


class FitStatus(str, Enum):
    """Optimiser outcome at the best start (vpnls ``types.py``)."""

    CONVERGED = "converged"
    MAX_ITER = "max_iter"
    ABNORMAL = "abnormal"
    BOUND_HIT = "bound_hit"


@dataclass(frozen=True, eq=False)
class FitResult:
    """A fitted law. ``params`` are public and unrounded; ``theta`` is the internal vector (laws.py)."""

    form: str
    params: dict[str, float]
    theta: Array
    objective: float
    status: FitStatus
    message: str
    warnings: tuple[FitWarning, ...]
    n_points: int
    settings: dict[str, Any]
    data: FitData
    problem: Objective
    bounds: tuple[tuple[float, float], ...]
    diagnostics: dict[str, float] = field(default_factory=dict)

    @property
    def law(self) -> Form:
        return FORMS[self.form]

    @property
    def warning_codes(self) -> list[str]:
        return [w.code for w in self.warnings]

    def predict(self, **axes: Any) -> Array:
        """L̂ at ``N=…, D=…`` (Chinchilla), ``N=…`` (kaplan_n), ``D=…`` or ``C=…`` (broadcasting)."""
        arrs = np.broadcast_arrays(*(np.asarray(axes[a], dtype=float) for a in self.law.axes))
        lx = np.column_stack([np.log(a).ravel() for a in arrs])
        return np.exp(predict_log(self.theta, lx)).reshape(arrs[0].shape)

    def residuals(self) -> Array:
        """Log residuals log L̂ − log L at the fitted points (n,)."""
        return self.problem.residuals(self.theta)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (the artifact stored in the catalog's ``fits`` table)."""
        return {
            "form": self.form,
            "params": dict(self.params),
            "theta": dict(zip(self.law.theta_names, map(float, self.theta), strict=True)),
            "objective": self.objective,
            "status": self.status.value,
            "message": self.message,
            "warnings": [{"code": w.code, "detail": w.detail} for w in self.warnings],
            "n_points": self.n_points,
            "diagnostics": dict(self.diagnostics),
            "settings": dict(self.settings),
        }


def chinchilla_grid(form: Form) -> Array:
    """Hoffmann's starts in θ order: coefficients × e × exponents (4500 for K = 2, 150 for K = 1)."""
    axes = [GRID_COEF] * form.k + [GRID_E] + [GRID_EXP] * form.k
    return np.array(list(product(*axes)), dtype=float)


def polish(problem: Objective, x0: Array, bounds: list[tuple[float, float]]) -> OptimizeResult:
    """One L-BFGS-B run with the analytic gradient and explicit tolerances."""
    x = np.clip(np.asarray(x0, dtype=float), [b[0] for b in bounds], [b[1] for b in bounds])
    return minimize(problem, x, jac=True, method="L-BFGS-B", bounds=bounds, options=SCIPY_OPTIONS)


def select_points(data: FitData, form: Form) -> tuple[FitData, list[FitWarning]]:
    """The rows a form is fitted on (§1.1, §1.3): all (Chinchilla), a saturated slice, or the envelope."""
    if form.name == "chinchilla":
        return data, []
    if form.name == "frontier":
        c = data.axis("C")
        order = np.argsort(c, kind="stable")
        run_min = np.minimum.accumulate(data.L[order])
        keep = order[data.L[order] <= run_min]  # a point is on the envelope if no cheaper run beat it
        return data.subset(np.sort(keep)), []
    this, other = ("N", "D") if form.name == "kaplan_n" else ("D", "N")
    x_this, x_other = data.axis(this), data.axis(other)
    levels = np.unique(x_other)[::-1]
    for i, lvl in enumerate(levels):
        mask = np.isclose(x_other, lvl, rtol=1e-9)
        if len(np.unique(x_this[mask])) >= form.min_levels:
            warns = diagnostics.slice_saturation(data, this, other, levels[i:])
            return data.subset(mask), warns
    msg = f"no {other} level has {form.min_levels} distinct {this} values; fitted on all points"
    return data, [FitWarning("slice_not_saturated", msg)]


def _starts(method: str, problem: Objective, form: Form, bounds: list[tuple[float, float]],
            init: str, n_polish: int, x0: Array | None) -> tuple[Array, int]:  # fmt: skip
    """Starting points to polish, and how many candidates were screened."""
    starts: list[Array] = []
    screened = 0
    if method in ("vp", "both"):
        loss = np.exp(problem.log_l)
        thetas, sse = vp_grid(problem.log_x, loss, bounds[form.k])
        top = np.argsort(sse)[:256]  # the LS basin …
        coarse = np.arange(
            0, len(sse), max(1, len(sse) // 2500)
        )  # … and a coarse sweep of the whole grid
        cand = np.unique(np.concatenate([top, coarse]))
        f = problem.batch(thetas[cand])
        picks = [int(np.argmin(sse))] + [int(cand[i]) for i in np.argsort(f)[:4]]
        starts += [thetas[i] for i in dict.fromkeys(picks)]
        screened += len(sse)
    if method in ("grid", "both"):
        grid = np.clip(chinchilla_grid(form), [b[0] for b in bounds], [b[1] for b in bounds])
        screened += len(grid)
        if init == "full":
            starts += list(grid)
        else:
            f = problem.batch(grid)
            starts += list(grid[np.argsort(f, kind="stable")[:n_polish]])
    if x0 is not None:
        starts.append(np.asarray(x0, dtype=float))
    return np.array(starts), screened


def _status(res: OptimizeResult, bounds: list[tuple[float, float]]) -> tuple[FitStatus, str, float]:
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    g = np.asarray(res.jac, dtype=float)
    pg = np.where((res.x <= lo + BOUND_TOL) & (g > 0) | (res.x >= hi - BOUND_TOL) & (g < 0), 0.0, g)
    pg_norm = float(np.max(np.abs(pg)))
    msg = str(res.message)
    if np.any(res.x <= lo + BOUND_TOL) or np.any(res.x >= hi - BOUND_TOL):
        return FitStatus.BOUND_HIT, msg, pg_norm
    if res.status == 0:
        return FitStatus.CONVERGED, msg, pg_norm
    if res.status == 1:
        return FitStatus.MAX_ITER, msg, pg_norm
    # ftol = 0 ends most runs in a line-search stop at machine precision: converged if the gradient is tiny.
    if pg_norm <= 1e-6 * max(1.0, abs(float(res.fun))):
        return FitStatus.CONVERGED, f"{msg} (projected gradient {pg_norm:.1e})", pg_norm
    return FitStatus.ABNORMAL, msg, pg_norm


@single_blas_thread
def fit_law(
    data: Any,
    form: str = "chinchilla",
    method: str = "vp",
    *,
    delta: float = DEFAULT_DELTA,
    loss: str = "huber",
    weights: Array | None = None,
    init: str = "screen",
    n_polish: int = N_POLISH,
    x0: Mapping[str, float] | Array | None = None,
    bounds: list[tuple[float, float]] | None = None,
    check_order: bool = True,
) -> FitResult:
    """Fit ``form`` to ``data`` (DataFrame, FitData or (N, D, L) arrays); see the module docstring.

    ``x0`` (public dict or internal θ) adds a start; ``weights`` (n,) turns the objective into a
    weighted one (e.g. inverse seed variance). Returns a :class:`FitResult`; raises :class:`FitError`
    only when a fit cannot be attempted (unknown form, missing column, fewer points than parameters).
    """
    if form not in FORMS:
        raise FitError(
            f"unknown form '{form}'{did_you_mean(form, FORMS)}; allowed: {allowed_list(FORMS)}"
        )
    if method not in METHODS:
        raise FitError(f"unknown method '{method}'; allowed: {allowed_list(METHODS)}")
    if loss not in LOSSES:
        raise FitError(f"unknown loss '{loss}'; allowed: {allowed_list(LOSSES)}")
    if init not in ("screen", "full"):
        raise FitError(f"unknown init '{init}'; allowed: full, screen")
    law = FORMS[form]
    full = as_fit_data(data)
    used, warns = select_points(full, law)
    if len(used) < law.n_params:
        raise FitError(
            f"{full.source}: {len(used)} points for form {form}, which has {law.n_params} parameters"
        )
    log_x = np.column_stack([np.log(used.axis(a)) for a in law.axes])
    w = None if weights is None else np.asarray(weights, dtype=float)
    if w is not None and len(w) != len(full):
        raise FitError(f"{full.source}: {len(w)} weights for {len(full)} points")
    if w is not None and len(used) != len(full):
        raise FitError(f"{full.source}: weights are only supported for the chinchilla form")
    problem = Objective(log_x, np.log(used.L), delta, loss, w)
    bnds = bounds or default_bounds(law, float(used.L.min()))
    if isinstance(x0, Mapping):
        x0 = params_to_theta(law, x0)
    if method == "start" and x0 is None:
        raise FitError("method 'start' needs x0")

    runs: dict[str, list[OptimizeResult]] = {}
    n_screened = 0
    for m in ("vp", "grid") if method == "both" else (method,):
        starts, screened = _starts(m, problem, law, bnds, init, n_polish, x0)
        n_screened += screened
        runs[m] = [polish(problem, s, bnds) for s in starts]
    results = [r for rs in runs.values() for r in rs]
    best = min(results, key=lambda r: float(r.fun))
    fbest = float(best.fun)
    if method == "both":
        fv, fg = (min(float(r.fun) for r in runs[m]) for m in ("vp", "grid"))
        if abs(fv - fg) > BASIN_TOL * max(abs(fbest), 0.5 * len(used) * 1e-16 / BASIN_TOL):
            warns.append(
                FitWarning("estimator_disagreement", f"VP objective {fv:.12g} vs grid {fg:.12g}")
            )

    status, message, pg_norm = _status(best, bnds)
    funs = np.array([float(r.fun) for r in results])
    # Relative gap, floored at log residuals of ~1e-8 so that noise-free fits (f ≈ 0) are not "multimodal".
    rel_gap = (funs - fbest) / max(abs(fbest), 0.5 * len(used) * 1e-16 / BASIN_TOL)
    diag: dict[str, float] = {
        "projected_gradient": pg_norm,
        "n_polished": float(len(results)),
        "n_screened": float(n_screened),
        "basin_share": float(np.mean(rel_gap <= BASIN_TOL)),
        "iterations": float(best.nit),
    }
    near = np.array([r.x for r, g in zip(results, rel_gap, strict=True) if g <= 1e-6])
    diag["near_best_spread"] = (
        float(np.max(np.ptp(near[:, law.k + 1 :], axis=0))) if len(near) > 1 else 0.0
    )
    if check_order:
        rev = polish(problem.take(np.arange(len(used))[::-1]), best.x, bnds)
        diag["reversed_gap"] = abs(float(rev.fun) - fbest) / max(abs(fbest), 1e-300)
    warns += diagnostics.fit_warnings(law, best.x, bnds, diag, status)
    warns += diagnostics.design_warnings(used, law)
    if law.k == 2:
        warns += diagnostics.non_monotone(used)
    warns += diagnostics.conditioning(problem, best.x, diag)
    warns += diagnostics.lack_of_fit(used, problem.residuals(best.x), diag)
    warns += [FitWarning("not_in_scaling_regime", f"{c}: {why}") for c, why in full.exclusions]

    settings = {
        "form": form,
        "method": method,
        "init": init if method in ("grid", "both") else "vp-grid 0.01",
        "objective": f"{loss} on log L, delta={delta:g}, reduction=sum",
        "optimizer": "L-BFGS-B, analytic gradient, "
        + ", ".join(f"{k}={v}" for k, v in SCIPY_OPTIONS.items()),
        "bounds": {n: list(b) for n, b in zip(law.theta_names, bnds, strict=True)},
        "n_starts_polished": len(results),
        "d_unit": full.d_unit,
        "source": full.source,
        "n_excluded": len(full.exclusions),
    }
    return FitResult(
        form, theta_to_params(law, best.x), np.asarray(best.x, float), fbest, status, message,
        tuple(warns), len(used), settings, used, problem, tuple(bnds), diag,
    )  # fmt: skip
