"""Downstream and task scaling (SCALING.md §7): metric vs N and the two-step proxy → metric chain.

Bounded metrics that improve upward (ARI, efficiency, purity, accuracy) are fitted as err = 1 − metric with
the floored law err = E + A·N^(−α); a floor reached inside the ladder (the last gain within seed noise) is
reported as saturated, and no exponent is extrapolated from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from analysis.fit import FitResult, fit_law
from analysis.inputs import from_arrays
from fm4npp.errors import FitError

Array = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class MetricFit:
    """A metric-vs-N law. ``fit`` is None when there were too few sizes to fit; ``saturated`` per §7."""

    task: str
    metric: str
    higher_is_better: bool
    fit: FitResult | None
    saturated: bool
    seed_sd: float  # mean across sizes of the per-size seed standard deviation
    summary: pd.DataFrame  # per size: n_params, mean, sd, n

    def predict(self, N: Array) -> Array:
        """Predicted metric at N (NaN without a fit)."""
        if self.fit is None:
            return np.full(np.shape(N), np.nan)
        err = self.fit.predict(N=np.asarray(N, dtype=float))
        return 1.0 - err if self.higher_is_better else err


def fit_metric_vs_n(
    n_params: Array, value: Array, task: str = "", metric: str = "", higher_is_better: bool = True
) -> MetricFit:
    """Fit one task metric against N (needs ≥ 3 sizes; fewer gives ``fit=None`` and a summary only)."""
    n = np.asarray(n_params, dtype=float)
    v = np.asarray(value, dtype=float)
    df = pd.DataFrame({"n_params": n, "value": v}).dropna()
    summ = df.groupby("n_params")["value"].agg(mean="mean", sd="std", n="count").reset_index()
    seed_sd = float(np.nanmean(summ["sd"])) if summ["n"].max() > 1 else float("nan")
    saturated = False
    if len(summ) >= 2:
        gain = summ["mean"].iloc[-1] - summ["mean"].iloc[-2]
        gain = gain if higher_is_better else -gain
        noise = summ["sd"].iloc[-2:].max()
        saturated = bool(np.isfinite(noise) and gain <= noise)
    target = 1.0 - df["value"].to_numpy() if higher_is_better else df["value"].to_numpy()
    fit = None
    if len(summ) >= 3 and np.all(target > 0):
        try:
            fit = fit_law(
                from_arrays(df["n_params"].to_numpy(), None, target, source=f"{task}/{metric}"),
                "kaplan_n",
            )
        except FitError:
            fit = None
    return MetricFit(task, metric, higher_is_better, fit, saturated, seed_sd, summ)


FM = "fm"  # the pretrained backbone's variant; baselines: adapter_only, random_embedding, hough
SIZED_BASELINES = ("adapter_only",)  # baselines with one backbone per model size (plotted vs N)


def prepare_evals(evals: pd.DataFrame, cells: pd.DataFrame | None = None) -> pd.DataFrame:
    """Catalog ``eval_metrics`` rows ready to fit and plot (one row per value, long format).

    ``variant`` defaults to ``fm``; ``adapter_only`` rows (cell_id ``baseline-adapter_only-<model>``, N
    NaN in the catalog) get that model's N from ``cells``; ``fm`` rows get the cell's ``n_events`` (D);
    per (task, variant) only the largest ``n_labelled`` is kept (the adapter budget is held fixed, §7).
    """
    need = {"task", "metric", "value"}
    if not need <= set(evals.columns):
        raise FitError(f"eval_metrics lacks column(s) {', '.join(sorted(need - set(evals.columns)))}")
    df = evals.copy()
    df["variant"] = df["variant"].fillna(FM).astype(str) if "variant" in df.columns else FM
    has_n = "n_params" in df.columns
    df["n_params"] = pd.to_numeric(df["n_params"], errors="coerce").astype(float) if has_n else np.nan
    cid = df["cell_id"].astype(str) if "cell_id" in df.columns else pd.Series("", index=df.index)
    if cells is not None and {"cell_id", "n_params"} <= set(cells.columns):
        by_cell = cells.drop_duplicates("cell_id").set_index("cell_id")
        df["n_params"] = df["n_params"].fillna(cid.map(by_cell["n_params"]).astype(float))
        if "n_events" in by_cell.columns:
            df["n_events"] = cid.map(by_cell["n_events"]).astype(float)
        if "model" in cells.columns:
            size = cells.dropna(subset=["model"]).groupby("model")["n_params"].first().astype(float)
            for v in SIZED_BASELINES:
                model = cid.str.removeprefix(f"baseline-{v}-")
                if "model" in df.columns:
                    model = df["model"].where(df["model"].notna(), model).astype(str)
                hit = (df["variant"] == v) & df["n_params"].isna()
                if hit.any():
                    df.loc[hit, "n_params"] = model[hit].map(size).astype(float)
    if "n_labelled" in df.columns:
        top = df.groupby(["task", "variant"])["n_labelled"].transform("max")
        df = df[df["n_labelled"].isna() | (df["n_labelled"] == top)]
    return df.reset_index(drop=True)


#: The quality metrics plotted and fitted per task (SPEC §9); bookkeeping rows (counts, timings,
#: epochs) stay in the tables only.
HEADLINE_METRICS: dict[str, tuple[str, ...]] = {
    "tracking": (
        "ari",
        "ari_signal",
        "efficiency",
        "efficiency_pt1",
        "purity",
        "fake_rate",
        "hit_efficiency",
        "hit_purity",
        "trackml_score",
    ),
    "pid": ("accuracy", "precision", "recall"),
    "noise": ("accuracy", "precision", "recall", "precision_noise", "recall_noise"),
}


def headline(evals: pd.DataFrame) -> pd.DataFrame:
    """The rows of :data:`HEADLINE_METRICS` (tasks without an entry keep all their metrics)."""
    keep = [
        m in HEADLINE_METRICS.get(t, (m,)) for t, m in zip(evals["task"], evals["metric"], strict=True)
    ]
    return evals[keep]


def fit_eval_metrics(
    evals: pd.DataFrame, lower_is_better: tuple[str, ...] = ("loss", "mse", "fake_rate", "ms_per")
) -> list[MetricFit]:
    """One :class:`MetricFit` per headline (task, metric) of the ``fm`` rows (``prepare_evals``
    output or raw). With a D column (``n_events``) each size is fitted at its largest D.
    """
    need = {"task", "metric", "n_params", "value"}
    if not need <= set(evals.columns):
        raise FitError(f"eval_metrics lacks column(s) {', '.join(sorted(need - set(evals.columns)))}")
    evals = headline(evals)
    fm = evals if "variant" not in evals.columns else evals[evals["variant"].fillna(FM) == FM]
    fm = fm.dropna(subset=["n_params", "value"])
    if "n_events" in fm.columns and fm["n_events"].notna().all():
        fm = fm[fm["n_events"] == fm.groupby("n_params")["n_events"].transform("max")]
    out = []
    for (task, metric), grp in fm.groupby(["task", "metric"], sort=True):
        hib = not any(s in str(metric).lower() for s in lower_is_better)
        out.append(
            fit_metric_vs_n(
                grp["n_params"].to_numpy(float),
                grp["value"].to_numpy(float),
                str(task),
                str(metric),
                hib,
            )
        )
    return out


def downstream_table(evals: pd.DataFrame) -> pd.DataFrame:
    """Mean, seed sd and count per task, metric, variant and N (NaN N for size-free baselines)."""
    keys = ["task", "metric", "variant", "n_params"]
    df = evals.assign(n_params=evals["n_params"].fillna(-1.0))
    if "n_events" in df.columns:
        df = df.assign(n_events=df["n_events"].fillna(-1.0))
        keys.append("n_events")
    out = df.groupby(keys, sort=True)["value"].agg(mean="mean", sd="std", n="count").reset_index()
    return out.replace({"n_params": {-1.0: np.nan}, "n_events": {-1.0: np.nan}})


@dataclass(frozen=True)
class SigmoidFit:
    """Step 2 of the OLMo ladder chain: m(P) = a / (1 + exp(−k·(P − P0))) + b, k < 0 when lower P is better."""

    a: float
    k: float
    p0: float
    b: float

    def __call__(self, proxy: Array) -> Array:
        return self.a / (1.0 + np.exp(-self.k * (np.asarray(proxy, dtype=float) - self.p0))) + self.b


def fit_sigmoid(proxy: Array, metric: Array) -> SigmoidFit:
    """Bounded ``curve_fit`` of the metric against a proxy loss (§7, Bhagia et al. 2024)."""
    from scipy.optimize import curve_fit

    p = np.asarray(proxy, dtype=float)
    m = np.asarray(metric, dtype=float)
    if len(p) < 4:
        raise FitError(f"sigmoid fit needs at least 4 (proxy, metric) points, got {len(p)}")

    def f(x: Array, a: float, k: float, p0: float, b: float) -> Array:
        return a / (1.0 + np.exp(-k * (x - p0))) + b

    span = float(np.ptp(p)) or 1.0
    x0 = [float(np.ptp(m)) or 1.0, -4.0 / span, float(np.median(p)), float(m.min())]
    lo = [0.0, -1e3 / span, float(p.min()) - 10 * span, -1.0]
    hi = [2.0, 1e3 / span, float(p.max()) + 10 * span, 1.0]
    popt, _ = curve_fit(f, p, m, p0=x0, bounds=(lo, hi), maxfev=20_000)
    return SigmoidFit(*map(float, popt))
