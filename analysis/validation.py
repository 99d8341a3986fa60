"""Does the law extrapolate? Rollout (hold out the largest) and leave-one-group-out (SCALING.md §4).

Record-level cross-validation is deliberately absent: it rewards interpolation (§4.2).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.derived import quantity
from analysis.fit import FitResult, fit_law
from analysis.inputs import FitData
from fm4npp.errors import FitError

MIN_GROUPS = 3  # §4.1: k = 3 … G−1


def _groups(data: FitData, axis: str) -> tuple[np.ndarray, np.ndarray]:
    x = data.axis(axis)
    levels = np.unique(x)
    return x, levels


def _errors(
    data: FitData, fit: FitResult, mask: np.ndarray, train_max: float, axis: str
) -> pd.DataFrame:
    held = data.subset(mask)
    pred = fit.predict(N=held.N, D=held.D)
    return pd.DataFrame({
        "N": held.N, "D": held.D, "L": held.L, "pred": pred,
        "signed_rel_err": (pred - held.L) / held.L,  # > 0: the law over-predicts the loss
        "log_ratio": np.log(pred / held.L),
        "distance_decades": np.log10(held.axis(axis) / train_max),
    })  # fmt: skip


def rollout(
    data: FitData, axis: str = "N", method: str = "vp", min_groups: int = MIN_GROUPS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit on the k smallest ``axis`` groups, predict every larger point, for k = min_groups … G−1.

    Returns (points, drift): per held-out point the signed relative error, log-ratio and distance in
    decades; per cutoff the fitted α, β, E, a (exponent drift, §4.1, plot 11).
    """
    x, levels = _groups(data, axis)
    if len(levels) <= min_groups:
        raise FitError(
            f"rollout along {axis} needs more than {min_groups} distinct levels, got {len(levels)}"
        )
    pts, drift = [], []
    for k in range(min_groups, len(levels)):
        train = x <= levels[k - 1]
        fit = fit_law(data.subset(train), "chinchilla", method, check_order=False)
        df = _errors(data, fit, ~train, float(levels[k - 1]), axis)
        df.insert(0, "cutoff_k", k)
        pts.append(df)
        row: dict[str, Any] = {"cutoff_k": k, "largest_" + axis: float(levels[k - 1]), **fit.params}
        row["a"] = float(quantity(fit.law, fit.theta, "a"))
        row["warnings"] = ",".join(fit.warning_codes)
        drift.append(row)
    return pd.concat(pts, ignore_index=True), pd.DataFrame(drift)


def hold_out_largest(data: FitData, axis: str = "N", method: str = "vp") -> pd.DataFrame:
    """The headline check: fit without the largest ``axis`` level and predict it (e.g. m6 from m1–m5).

    Per held-out point as in :func:`rollout`, plus ``pred_lo``/``pred_hi``, the 95% prediction band
    for a new run (delta method + seed variance). ``attrs``: ``warnings`` (codes of the reduced fit),
    ``train_max``, ``held`` (the held-out level) and ``params`` (the reduced fit).
    """
    from analysis.uncertainty import log_prediction_band

    x, levels = _groups(data, axis)
    if len(levels) < 2:
        raise FitError(f"hold-out along {axis} needs at least 2 distinct levels")
    train = x < levels[-1]
    fit = fit_law(data.subset(train), "chinchilla", method, check_order=False)
    df = _errors(data, fit, ~train, float(levels[-2]), axis)
    df["pred_lo"], df["pred_hi"] = log_prediction_band(
        fit, {"N": df["N"].to_numpy(), "D": df["D"].to_numpy()}, prediction=True
    )
    df.attrs.update(warnings=fit.warning_codes, train_max=float(levels[-2]), held=float(levels[-1]),
                    params=dict(fit.params))  # fmt: skip
    return df


def leave_one_group_out(
    data: FitData, axis: str = "N", method: str = "vp"
) -> tuple[pd.DataFrame, float]:
    """Drop each ``axis`` level in turn; error on it and its Mahalanobis distance from the rest (§4.2).

    Returns (per-group table, Spearman correlation of |mean log error| with distance).
    """
    from scipy.stats import spearmanr

    x, levels = _groups(data, axis)
    z = np.column_stack([np.log(data.N), np.log(data.D)])
    rows = []
    for lv in levels:
        out = x == lv
        rest = data.subset(~out)
        if len(np.unique(rest.axis(axis))) < 2 or len(rest) < 6:
            continue
        fit = fit_law(rest, "chinchilla", method, check_order=False)
        err = np.log(fit.predict(N=data.N[out], D=data.D[out]) / data.L[out])
        zr = z[~out]
        cov = np.atleast_2d(np.cov(zr.T)) + 1e-12 * np.eye(2)
        dz = z[out].mean(axis=0) - zr.mean(axis=0)
        maha = float(np.sqrt(dz @ np.linalg.solve(cov, dz)))
        rows.append({axis: float(lv), "mean_log_err": float(err.mean()), "mean_signed_rel_err": float(np.mean(np.expm1(err))),
                     "mahalanobis": maha, "n_points": int(out.sum())})  # fmt: skip
    df = pd.DataFrame(rows)
    rho = float("nan")
    if len(df) >= 3 and np.ptp(df["mahalanobis"]) > 0 and np.ptp(np.abs(df["mean_log_err"])) > 0:
        rho = float(spearmanr(df["mahalanobis"], np.abs(df["mean_log_err"]))[0])
    return df, rho
