"""IsoFLOP (Approach 2) cross-check of the compute-optimal exponent a in N_opt ∝ C^a (SCALING.md §5.1, §5.3).

Grid designs (sizes × data levels) rarely put five runs on one iso-FLOP line, so each size's loss is first
interpolated along its own data axis onto a common grid of budgets (monotone PCHIP in log L vs log C, inside
the size's sampled range only, never extrapolated). Per budget covered by at least 3 sizes, a profile in
x = log N (cubic with ≥ 4 sizes, parabola with 3) gives the minimum N*(C); a minimum on the edge of the
sampled sizes is not bracketed and is dropped. ``a`` is the log-log OLS slope of N* on C over the bracketed
budgets; its 95% interval comes from a seed-noise bootstrap (cell means perturbed by the measured seed
spread, or by the joint fit's robust residual scale without replicates), as Porian et al. do.

C is k·N·D by default, the definition under the joint law's closed form a = β/(α+β), so the two estimates
compare like with like; ``use_flops=True`` uses the stored FLOPs column instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from analysis.inputs import FitData

Array = NDArray[np.float64]
MIN_SIZES = 3  # sizes covering a budget for a profile
MIN_BUDGETS = 3  # bracketed budgets for a slope (SCALING §5.1)
N_BUDGETS = 24  # log-spaced budgets over the covered range
MIN_SPAN_DECADES = 0.2  # bracketed budgets must span at least this much of C
EDGE = 0.02  # a minimum within this share of the log-N range from an end is not bracketed


@dataclass
class IsoFlopResult:
    """Approach-2 estimate. ``a`` is NaN when it could not be estimated (``why`` says why)."""

    a: float
    lo: float = float("nan")
    hi: float = float("nan")
    budgets: pd.DataFrame = field(default_factory=pd.DataFrame)  # C, n_sizes, N_star, L_star, bracketed
    profile: str = ""  # "cubic" / "quadratic" / mixed
    c_definition: str = ""
    boot_ok: float = float("nan")  # share of bootstrap draws where a was estimable
    n_boot: int = 0
    why: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.a))

    @property
    def closed(self) -> bool:
        return bool(np.isfinite(self.lo) and np.isfinite(self.hi))


def cell_means(data: FitData, k: float = 6.0, use_flops: bool = False) -> pd.DataFrame:
    """One row per (N, D) configuration: N, D, C, mean log L, number of runs."""
    c = data.C if (use_flops and data.C is not None) else k * data.N * data.D
    df = pd.DataFrame({"N": data.N, "D": data.D, "logC": np.log(c), "logL": np.log(data.L)})
    out = df.groupby(["N", "D"], sort=True).agg(logC=("logC", "mean"), logL=("logL", "mean"),
                                                runs=("logL", "size"))  # fmt: skip
    return out.reset_index()


Sizes = list[tuple[float, Array, Array]]  # (N, sorted log C, log L) per size


def _sizes(means: pd.DataFrame) -> Sizes:
    """Per size with ≥ 2 distinct data levels: (N, log C ascending, mean log L)."""
    out = []
    for n, grp in means.groupby("N", sort=True):
        g = grp.sort_values("logC")
        if g["logC"].nunique() >= 2:
            out.append((float(n), g["logC"].to_numpy(float), g["logL"].to_numpy(float)))
    return out


def _interp(x: Array, y: Array, q: Array) -> Array:
    """Monotone PCHIP (3+ points) or linear (2 points) interpolation of y(x) at q; NaN outside [x0, x-1]."""
    if len(x) < 3:
        v = np.interp(q, x, y)
    else:
        from scipy.interpolate import PchipInterpolator

        v = PchipInterpolator(x, y, extrapolate=False)(q)
    return np.where((q >= x[0] - 1e-9) & (q <= x[-1] + 1e-9), v, np.nan)


def _profile_min(log_n: Array, log_l: Array) -> tuple[float, float, bool, str]:
    """(log N*, log L*, bracketed, form) of a cubic (≥ 4 sizes) or parabola (3 sizes) in log N."""
    deg = 3 if len(log_n) >= 4 else 2
    coef = np.polyfit(log_n, log_l, deg)
    xs = np.linspace(log_n.min(), log_n.max(), 400)
    ys = np.polyval(coef, xs)
    j = int(np.argmin(ys))
    span = log_n.max() - log_n.min()
    interior = EDGE * span < xs[j] - log_n.min() and log_n.max() - xs[j] > EDGE * span
    convex = np.polyval(np.polyder(coef, 2), xs[j]) > 0
    return float(xs[j]), float(ys[j]), bool(interior and convex), "cubic" if deg == 3 else "quadratic"


def _budgets(sizes: Sizes) -> tuple[pd.DataFrame, str]:
    if len(sizes) < MIN_SIZES:
        return pd.DataFrame(), f"needs ≥ {MIN_SIZES} sizes with ≥ 2 data levels each, got {len(sizes)}"
    lo = min(x[0] for _, x, _ in sizes)
    hi = max(x[-1] for _, x, _ in sizes)
    grid = np.linspace(lo, hi, N_BUDGETS)
    log_n = np.log([n for n, _, _ in sizes])
    table = np.stack([_interp(x, y, grid) for _, x, y in sizes])  # (sizes, budgets) log L
    rows = []
    for j, lc in enumerate(grid):
        have = np.isfinite(table[:, j])
        if have.sum() < MIN_SIZES:
            continue
        xn, yl, ok, form = _profile_min(log_n[have], table[have, j])
        rows.append((float(np.exp(lc)), int(have.sum()), float(np.exp(xn)), float(np.exp(yl)), ok, form))
    if not rows:
        return pd.DataFrame(), f"no budget is covered by ≥ {MIN_SIZES} sizes (their C ranges do not overlap)"
    return pd.DataFrame(rows, columns=["C", "n_sizes", "N_star", "L_star", "bracketed", "profile"]), ""


def _slope(budgets: pd.DataFrame) -> tuple[float, str]:
    if budgets.empty:
        return float("nan"), "no budgets"
    b = budgets[budgets["bracketed"]]
    if len(b) < MIN_BUDGETS:
        return float("nan"), (
            f"only {len(b)} of {len(budgets)} budgets have a minimum inside the sampled sizes "
            f"(≥ {MIN_BUDGETS} needed): the optimum lies outside the ladder at most budgets"
        )
    x = np.log10(b["C"].to_numpy())
    if np.ptp(x) < MIN_SPAN_DECADES:
        return float("nan"), f"bracketed budgets span only {np.ptp(x):.2f} decades of C"
    return float(np.polyfit(x, np.log10(b["N_star"].to_numpy()), 1)[0]), ""


def estimate_a(
    data: FitData,
    sigma: float | None = None,
    n_boot: int = 200,
    k: float = 6.0,
    use_flops: bool = False,
    rng: np.random.Generator | None = None,
) -> IsoFlopResult:
    """Approach-2 exponent a with a seed-noise bootstrap interval (``sigma``: sd of log L per run)."""
    means = cell_means(data, k, use_flops)
    c_def = "stored FLOPs" if (use_flops and data.C is not None) else f"C = {k:g}·N·D"
    sizes = _sizes(means)
    budgets, why = _budgets(sizes)
    a, why_slope = _slope(budgets) if not why else (float("nan"), why)
    res = IsoFlopResult(a, budgets=budgets, c_definition=c_def, why=why or why_slope)
    if not budgets.empty:
        res.profile = "/".join(sorted(set(budgets["profile"])))
        n_edge = int((~budgets["bracketed"]).sum())
        if n_edge:
            res.warnings.append("not_bracketed")
    if not res.ok or n_boot <= 0 or sigma is None or not np.isfinite(sigma) or sigma <= 0:
        return res
    rng = rng or np.random.default_rng(0)
    draws = []
    runs = means.groupby("N", sort=True).apply(
        lambda g: g.sort_values("logC")["runs"].to_numpy(float), include_groups=False
    )
    for _ in range(n_boot):
        noisy = [(n, x, y + rng.normal(0.0, sigma, len(y)) / np.sqrt(runs[n])) for n, x, y in sizes]
        b, w = _budgets(noisy)
        draws.append(_slope(b)[0] if not w else float("nan"))
    v = np.asarray(draws)
    ok = np.isfinite(v)
    res.n_boot, res.boot_ok = n_boot, float(ok.mean())
    if ok.mean() >= 0.5:
        res.lo, res.hi = (float(q) for q in np.quantile(v[ok], [0.025, 0.975]))
    return res


def compare(iso: IsoFlopResult, a_joint: float, lo: float, hi: float) -> tuple[str, str | None]:
    """(sentence, warning code or None): do the Approach-2 and joint-law (Approach 3) a agree?"""
    if not iso.ok:
        return f"IsoFLOP (Approach 2) a not estimable: {iso.why}.", None
    joint = f"joint law a = β/(α+β) = {a_joint:.3g}" + (
        f" [{lo:.3g}, {hi:.3g}]" if np.isfinite(lo) and np.isfinite(hi) else " (interval open)"
    )
    if not iso.closed:
        return f"IsoFLOP (Approach 2) a = {iso.a:.3g} (no bootstrap interval) vs {joint}.", None
    text = f"IsoFLOP (Approach 2) a = {iso.a:.3g} [{iso.lo:.3g}, {iso.hi:.3g}] vs {joint}"
    if np.isfinite(lo) and np.isfinite(hi) and (iso.hi < lo or hi < iso.lo):
        return text + ": the 95% intervals are disjoint.", "isoflop_law_disagreement"
    return text + ": the 95% intervals overlap (agree).", None


def noise_sigma(data: FitData, resid: Array) -> float:
    """sd of log L per run: the pooled seed spread, else 1.4826·MAD of the joint fit's log residuals."""
    from analysis.diagnostics import seed_noise

    s = seed_noise(data)
    return s if np.isfinite(s) else 1.4826 * float(np.median(np.abs(resid)))


def summary(iso: IsoFlopResult, a_joint: float, lo: float, hi: float) -> dict[str, object]:
    """JSON-safe record for fit-laws and the catalog: a, ci, why, C definition, agreement with the joint a."""
    text, code = compare(iso, a_joint, lo, hi)
    return {"a": iso.a, "ci": [iso.lo, iso.hi], "why": iso.why, "c_definition": iso.c_definition,
            "n_budgets": len(iso.budgets), "bracketed": int(iso.budgets["bracketed"].sum()) if len(iso.budgets) else 0,
            "joint_a": a_joint, "joint_ci": [lo, hi], "disagree": code is not None, "text": text}  # fmt: skip
