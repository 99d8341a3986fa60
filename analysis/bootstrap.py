"""Bootstraps of a fitted law (SCALING.md §3.1): by cell, by cell then seed, and the wild cluster bootstrap.

Schemes (``scheme=``):

- ``"cell"``: resample configurations (N × D cells) with replacement; every seed and checkpoint of a
  drawn cell comes with it. The default for designs with ≥ ``WILD_MIN_CELLS`` cells.
- ``"cell_seed"``: two levels, cells then seeds within each drawn cell. On a fixed grid this counts the
  seed variance twice (once through the cell means, once again inside), so it over-covers (100% of
  nominal-95% intervals in our simulation); kept as an option for designs whose cells are themselves a
  sample.
- ``"wild"``: the design is held fixed and each cell's log residuals are multiplied by one Webb weight
  (±√½, ±1, ±√(3/2), probability ⅙ each), after the CR2 (HC2 for clusters) leverage correction
  ũ_g = (I − H_gg)^(−½)·û_g, H = J(JᵀJ)⁻¹Jᵀ at θ̂. Intervals use t tails with G − 1 degrees of freedom:
  θ̂ ± t·sd(θ*)·κ. This is ``simple-scaling-laws``'s recipe for fewer than ~15 configurations, where
  resampling cells often leaves fewer than three levels on an axis. κ = τ(ũ)/τ(w·ũ) matches the noise
  model: weights reproduce Var(u) but not the density near 0 that sets a Huber fit's variance at our
  δ ≪ noise (τ² = Eψ²/(Eψ')², the sandwich factor of uncertainty.py). κ = 1 for MSE, ≈ 1.1–1.2 at
  δ = 1e-3; without it the wild intervals were ~15% narrow and covered 88–92% (simulation, 30 cells).
``"auto"`` picks ``"wild"`` below ``WILD_MIN_CELLS`` cells and ``"cell"`` otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray
from scipy.stats import t as student_t

from analysis.blas import single_blas_thread
from analysis.choices import SCHEMES
from analysis.derived import quantity
from analysis.fit import FitResult, polish
from analysis.objective import robust_scale_factors
from analysis.vp import vp_grid

Array = NDArray[np.float64]
WILD_MIN_CELLS = 15  # §3.1: below ~15 configurations the wild cluster bootstrap is offered
# Webb (2014) six-point weights: mean 0, variance 1, and 6 values so that 6^G distinct draws exist.
WEBB = np.array([-np.sqrt(1.5), -1.0, -np.sqrt(0.5), np.sqrt(0.5), 1.0, np.sqrt(1.5)])
LOG_SCALE = ("E", "A", "B", "K", "G", "N_opt", "D_opt", "ratio", "L_star")  # positive: t tails in log


@dataclass(frozen=True, eq=False)
class BootstrapResult:
    """``thetas`` (B, p) internal draws; ``ok`` converged draws; ``at_bound`` draws touching a bound.

    ``t_df`` is set for the wild scheme: :meth:`ci` then returns θ̂ ± t_df·sd (log scale for positive
    quantities) instead of percentiles.
    """

    fit: FitResult
    thetas: Array
    ok: NDArray[np.bool_]
    at_bound: NDArray[np.bool_]
    scheme: str = "cell"
    t_df: int | None = None
    kappa: float = 1.0  # wild scheme: noise-model correction of the draws' spread (module docstring)

    @property
    def failed_fraction(self) -> float:
        return float(1.0 - self.ok.mean())

    @property
    def bound_fraction(self) -> float:
        return float(self.at_bound.mean())

    @property
    def label(self) -> str:
        """How the intervals were made, for plot legends and tables."""
        if self.scheme == "wild":
            return f"wild cluster bootstrap (Webb, CR2, t{self.t_df})"
        return "cluster bootstrap by cell" + (" and seed" if self.scheme == "cell_seed" else "")

    def values(self, name: str, C: float | Array | None = None, k: float = 6.0) -> Array:
        """A parameter or derived quantity for every usable draw, (B_ok,) or (B_ok, len(C))."""
        return np.array([quantity(self.fit.law, th, name, C, k) for th in self.thetas[self.ok]])

    def _interval(self, v: Array, est: Array | float, log: bool, level: float) -> tuple[Array, Array]:
        if self.t_df is None:
            q = 100 * np.array([0.5 - level / 2, 0.5 + level / 2])
            lo, hi = np.percentile(v, q, axis=0)
            return lo, hi
        tq = float(student_t.ppf(0.5 + level / 2, self.t_df))
        if log:
            v, est = np.log(v), np.log(est)
        sd = np.std(v, axis=0, ddof=1) * self.kappa
        lo, hi = est - tq * sd, est + tq * sd
        if not log:
            return lo, hi
        with np.errstate(over="ignore"):  # an interval unbounded above on the log scale is (…, inf)
            return np.exp(lo), np.exp(hi)

    def ci(
        self, name: str, level: float = 0.95, C: float | Array | None = None, k: float = 6.0
    ) -> tuple[Array, Array]:
        """Interval (lo, hi): percentile, or t tails for the wild scheme."""
        est = quantity(self.fit.law, self.fit.theta, name, C, k)
        return self._interval(self.values(name, C, k), est, name in LOG_SCALE, level)

    def band(self, fn: Callable[[Array], Array], level: float = 0.95) -> tuple[Array, Array]:
        """Band of any positive θ → array function (curves in plots), same interval rule as :meth:`ci`."""
        v = np.array([fn(th) for th in self.thetas[self.ok]])
        return self._interval(v, fn(self.fit.theta), True, level)


def resample_indices(
    cells: NDArray[np.intp],
    runs: NDArray[np.intp],
    rng: np.random.Generator,
    two_level: bool = False,
) -> NDArray[np.intp]:
    """Row indices of one cluster resample: cells with replacement (all their rows move together).

    ``two_level=True`` also resamples runs within each drawn cell; rows of one run (its checkpoints)
    always move together.
    """
    uniq = np.unique(cells)
    out = []
    for c in rng.choice(uniq, size=len(uniq), replace=True):
        in_cell = np.flatnonzero(cells == c)
        if not two_level:
            out.append(in_cell)
            continue
        run_ids = np.unique(runs[in_cell])
        for r in rng.choice(run_ids, size=len(run_ids), replace=True):
            out.append(in_cell[runs[in_cell] == r])
    return np.concatenate(out)


def cr2_residuals(fit: FitResult, cells: NDArray[np.intp]) -> Array:
    """Leverage-corrected log residuals û_g ← (I − H_gg)^(−½)·û_g per cluster (Bell & McCaffrey CR2), (n,).

    Eigenvalues of I − H_gg are floored at 1e-3 so a cell with leverage ≈ 1 is not blown up.
    """
    u = -fit.residuals()  # log L − log L̂
    j = fit.problem.jacobian(fit.theta)
    info_inv = np.linalg.pinv(j.T @ j)
    out = np.empty_like(u)
    for c in np.unique(cells):
        rows = np.flatnonzero(cells == c)
        jg = j[rows]
        m = np.eye(len(rows)) - jg @ info_inv @ jg.T
        w, v = np.linalg.eigh((m + m.T) / 2)
        out[rows] = (v * np.maximum(w, 1e-3) ** -0.5) @ (v.T @ u[rows])
    return out


def _tau(u: Array, fit: FitResult) -> float:
    if fit.problem.loss == "mse":
        return float(np.sqrt(np.mean(u * u)))
    e_dpsi, e_psi2 = robust_scale_factors(u, fit.problem.delta)
    return float(np.sqrt(e_psi2) / e_dpsi)


def wild_kappa(fit: FitResult, u_tilde: Array) -> float:
    """τ(ũ)/τ(w·ũ) over the Webb distribution: how much the wild draws understate a Huber fit's spread."""
    return _tau(u_tilde, fit) / _tau(np.concatenate([w * u_tilde for w in WEBB]), fit)


def choose_scheme(scheme: str, n_cells: int) -> str:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown bootstrap scheme '{scheme}'; allowed: {', '.join(SCHEMES)}")
    if scheme == "auto":
        return "wild" if n_cells < WILD_MIN_CELLS else "cell"
    return scheme


@single_blas_thread
def bootstrap(
    fit: FitResult,
    n_boot: int = 1000,
    seed: int = 0,
    vp_restart: bool = True,
    scheme: str = "auto",
) -> BootstrapResult:
    """Bootstrap ``fit`` (§3.1, schemes in the module docstring); each draw is polished from θ̂ and,
    with ``vp_restart``, also from a coarse VP start (pairs schemes only: the wild design is fixed).
    """
    rng = np.random.default_rng(seed)
    cells = fit.data.cell_ids()
    n_cells = len(np.unique(cells))
    scheme = choose_scheme(scheme, n_cells)
    runs = np.zeros(len(cells), dtype=np.intp)
    if fit.data.seed is not None:
        runs = np.unique(fit.data.seed.astype(str), return_inverse=True)[1].astype(np.intp)
    coarse = np.round(np.arange(0.05, 2.5 + 1e-9, 0.05), 10)  # 0.05 grid: 2500 combinations
    bounds = list(fit.bounds)
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    if scheme == "wild":
        fitted = fit.problem.log_l + fit.residuals()  # log L̂ at the data
        u_tilde = cr2_residuals(fit, cells)
    thetas, ok, at_bound = [], [], []
    for _ in range(n_boot):
        if scheme == "wild":
            w = rng.choice(WEBB, size=n_cells)[cells]
            prob = replace(fit.problem, log_l=fitted + w * u_tilde)
        else:
            prob = fit.problem.take(resample_indices(cells, runs, rng, scheme == "cell_seed"))
        best = polish(prob, fit.theta, bounds)
        if vp_restart and scheme != "wild":
            th, sse = vp_grid(prob.log_x, np.exp(prob.log_l), bounds[fit.law.k], coarse)
            alt = polish(prob, th[int(np.argmin(sse))], bounds)
            best = alt if float(alt.fun) < float(best.fun) else best
        thetas.append(best.x)
        ok.append(best.status in (0, 2) and np.all(np.isfinite(best.x)))
        at_bound.append(bool(np.any(best.x <= lo + 1e-6) or np.any(best.x >= hi - 1e-6)))
    t_df = max(n_cells - 1, 1) if scheme == "wild" else None
    kappa = wild_kappa(fit, u_tilde) if scheme == "wild" else 1.0
    return BootstrapResult(fit, np.array(thetas), np.array(ok), np.array(at_bound), scheme, t_df, kappa)
