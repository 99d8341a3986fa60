"""The report's words: the headline sentences at the top of the page and the small tables under them.

Pure functions from analysis results to strings or DataFrames (no I/O, no HTML), so the sentences can
be tested and reused by the CLI.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.inputs import FitData

EXPONENTS = ("alpha", "beta", "a")
SYMBOL = {"alpha": "α", "beta": "β", "a": "a", "E": "E"}


def _best_interval(row: pd.Series) -> tuple[float, float, str] | None:
    """Profile interval if closed, else bootstrap, else delta: (lo, hi, method)."""
    for method in ("profile", "bootstrap", "delta"):
        v = row.get(method)
        if isinstance(v, tuple) and all(np.isfinite(v)):
            return float(v[0]), float(v[1]), method
    return None


def exponent_table(intervals: pd.DataFrame | None) -> pd.DataFrame:
    """α, β and a = β/(α+β) (N_opt ∝ C^a) with every 95% interval the report computed."""
    if intervals is None or intervals.empty:
        return pd.DataFrame(columns=["quantity", "estimate"])
    return intervals[intervals["quantity"].isin(EXPONENTS)].reset_index(drop=True)


def describe_design(data: FitData) -> str:
    n_cells = len(np.unique(data.cell))
    runs_per_cell = np.bincount(data.cell_ids())
    seeds = (
        f"{runs_per_cell.min()}" if runs_per_cell.min() == runs_per_cell.max()
        else f"{runs_per_cell.min()}–{runs_per_cell.max()}"
    )  # fmt: skip
    return (
        f"{len(data)} runs in {n_cells} cells ({len(np.unique(data.N))} sizes × "
        f"{len(np.unique(data.D))} D levels, {seeds} seed(s) per cell)"
    )


def fit_sentence(data: FitData, intervals: pd.DataFrame | None) -> str:
    """'The joint law fitted to …: α = … (95% CI …), …'."""
    parts = []
    if intervals is not None:
        for _, row in intervals.iterrows():
            name = str(row["quantity"])
            if name not in ("alpha", "beta", "E", "a"):
                continue
            ci = _best_interval(row)
            txt = f"{SYMBOL[name]} = {row['estimate']:.4g}"
            txt += f" (95% {ci[2]} interval {ci[0]:.4g}–{ci[1]:.4g})" if ci else " (interval open)"
            parts.append(txt)
    return (
        f"Joint law L = E + A/N^α + B/D^β fitted to {describe_design(data)}: " + "; ".join(parts) + "."
    )


def holdout_sentence(holdout: pd.DataFrame | None, why_not: str = "") -> str:
    """The held-out-largest extrapolation error in words (§4.1 headline)."""
    if holdout is None or holdout.empty:
        return f"Held-out-largest check not possible: {why_not or 'no held-out points'}."
    err = 100 * holdout["signed_rel_err"].to_numpy()
    inside = int(((holdout["L"] >= holdout["pred_lo"]) & (holdout["L"] <= holdout["pred_hi"])).sum())
    mean = float(err.mean())
    direction = "over-predicts" if mean > 0 else "under-predicts"
    dist = float(holdout["distance_decades"].max())
    text = (
        f"Extrapolation check: a fit without the largest size (N = {holdout.attrs.get('held', np.nan):.3g}),"
        f" on sizes up to N = {holdout.attrs.get('train_max', np.nan):.3g}, predicts its {len(err)} held-out "
        f"loss(es) with a mean signed error of {mean:+.2f}% (range {err.min():+.2f}% to {err.max():+.2f}%;"
        f" it {direction} the loss) at {dist:.2f} decades beyond the fitted N; {inside} of {len(err)} "
        "observed losses fall inside the 95% prediction band."
    )
    warns = holdout.attrs.get("warnings") or []
    if "too_few_levels_N" in warns:
        text += " The reduced fit has fewer than 3 sizes, so this is a rough check only."
    return text


def holdout_short(holdout: pd.DataFrame | None, why_not: str = "") -> str:
    """One line for the first screen: the held-out-largest error and band coverage."""
    if holdout is None or holdout.empty:
        return f"Held-out-largest check not possible: {why_not or 'no held-out points'}."
    err = 100 * holdout["signed_rel_err"].to_numpy()
    inside = int(((holdout["L"] >= holdout["pred_lo"]) & (holdout["L"] <= holdout["pred_hi"])).sum())
    return (
        f"Held out the largest size (N = {holdout.attrs.get('held', np.nan):.3g}) and predicted it from the "
        f"rest: mean signed error {err.mean():+.1f}% (range {err.min():+.1f}% to {err.max():+.1f}%), "
        f"{inside} of {len(err)} losses inside the 95% prediction band."
    )


def warning_sentence(codes: list[str]) -> str:
    uniq = sorted(set(codes))
    return f"{len(uniq)} warning code(s): {', '.join(uniq)}." if uniq else "No warnings."


def headline(
    data: FitData,
    intervals: pd.DataFrame | None,
    holdout: pd.DataFrame | None,
    holdout_why: str,
    codes: list[str],
) -> list[str]:
    """The sentences at the top of the page, in order: fit, extrapolation error, warnings."""
    return [
        fit_sentence(data, intervals),
        holdout_sentence(holdout, holdout_why),
        warning_sentence(codes),
    ]


def metric_fit_table(fits: list[Any]) -> pd.DataFrame:
    """Per task metric: sizes, fitted α of err = 1 − metric (or metric), saturation, seed sd (§7)."""
    rows = [
        {
            "task": mf.task,
            "metric": mf.metric,
            "sizes": len(mf.summary),
            "alpha": mf.fit.params["alpha"] if mf.fit is not None else float("nan"),
            "saturated": "yes" if mf.saturated else "no",
            "seed sd": mf.seed_sd,
        }
        for mf in fits
    ]
    return pd.DataFrame(rows)


def _variant_label(variant: str) -> str:
    from analysis.downstream_stats import VARIANT_LABELS

    return VARIANT_LABELS.get(variant, variant)


def comparison_table(comparisons: pd.DataFrame) -> pd.DataFrame:
    """FM − baseline on the same test events, one row per task, metric, labelled-set size and baseline:
    both values, the difference with its paired 95% interval and whether it excludes 0."""
    c = comparisons.sort_values(["task", "metric", "n_params", "b", "n_labelled"])
    return pd.DataFrame({
        "task": c["task"], "metric": c["metric"], "labelled events": c["n_labelled"].astype(int),
        "FM size": c["model"].fillna(""), "baseline": c["b"].map(_variant_label),
        "FM": c["value_a"], "baseline value": c["value_b"], "FM − baseline": c["delta"],
        "95% interval": [f"[{lo:.3g}, {hi:.3g}]" for lo, hi in zip(c["lo"], c["hi"], strict=True)],
        "verdict": c["verdict"].map({"a better": "FM better", "b better": "baseline better",
                                     "not resolved": "not resolved"}),
        "events": c["n_events"].astype(int),
    })  # fmt: skip


def event_interval_table(intervals: pd.DataFrame) -> pd.DataFrame:
    """Every variant's headline metrics on the test split with their 95% event-bootstrap interval."""
    t = intervals.sort_values(["task", "metric", "variant", "cell_id", "n_labelled"])
    return pd.DataFrame({
        "task": t["task"], "metric": t["metric"], "variant": t["variant"].map(_variant_label),
        "cell": t["cell_id"], "labelled events": t["n_labelled"].astype(int), "value": t["value"],
        "95% interval": [f"[{lo:.3g}, {hi:.3g}]" for lo, hi in zip(t["lo"], t["hi"], strict=True)],
        "events": t["n_events"].astype(int),
    })  # fmt: skip
