"""What to run next (issue 16 §3): the predicted loss of the next ladder rung(s) and which runs would most
narrow the intervals of α and β per node-hour.

Costs never come from the planner (``fm4npp.sweep`` sits above ``analysis``): a caller may pass a
``cost(model, n_events) -> node-hours`` function (the workflow can hand in the planner's); otherwise the
cost is the study's own planned node-hours per training FLOP (median over its cells, FLOPs from the
torch-free ``fm4npp.model.ladder``) times the candidate's FLOPs.

Design criterion (stated on the page): for each candidate run (every size of the study and the next rungs ×
every data level and one level above), one more run there would update the delta-method covariance of the
joint law by Sherman–Morrison, with the run's noise the measured seed spread (or the robust residual scale).
Score = mean over α and β of the relative variance reduction, divided by the candidate's node-hours.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from analysis.fit import FitResult
from fm4npp.errors import ConfigError
from fm4npp.model.ladder import RUNGS, Rung, flops_per_token, get_rung, n_params

Cost = Callable[[str, float], float]  # (model name, events) -> node-hours
CRITERION = (
    "one more run at the candidate shrinks the delta-method variances of α and β (Sherman–Morrison update "
    "of the joint fit's covariance, run noise = measured seed spread); score = mean relative variance "
    "reduction of α and β per node-hour"
)


def _rung(name: object) -> Rung | None:
    try:
        return get_rung(str(name))
    except ConfigError:
        return None


def next_rungs(cells: pd.DataFrame, n_next: int = 2) -> list[Rung]:
    """The ``n_next`` rungs of the ladder family (same arch and name prefix) above the study's largest."""
    if "model" not in cells.columns:
        return []
    rungs = [r for r in (_rung(m) for m in cells["model"].dropna().unique()) if r is not None]
    if not rungs:
        return []
    top = max(rungs, key=n_params)
    family = sorted(
        (r for r in RUNGS.values() if r.arch == top.arch and r.name[:1] == top.name[:1]),
        key=n_params,
    )
    return [r for r in family if n_params(r) > n_params(top)][:n_next]


def _hits_per_event(cells: pd.DataFrame) -> float:
    if {"n_hits", "n_events"} <= set(cells.columns):
        v = pd.to_numeric(cells["n_hits"], errors="coerce") / pd.to_numeric(cells["n_events"], errors="coerce")
        v = v[np.isfinite(v) & (v > 0)]
        if len(v):
            return float(v.median())
    return 850.0  # SPEC: about 830–860 TPC hits per event


def study_cost(cells: pd.DataFrame) -> Cost | None:
    """node-hours(model, events) from the study's planned node-hours per ladder FLOP; None without them."""
    need = {"model", "n_events", "node_hours_planned"}
    if not need <= set(cells.columns):
        return None
    hpe = _hits_per_event(cells)
    ratios = []
    for row in cells.drop_duplicates("cell_id" if "cell_id" in cells.columns else "model").itertuples():
        r = _rung(row.model)
        nh = pd.to_numeric(row.node_hours_planned, errors="coerce")
        if r is None or not np.isfinite(nh) or nh <= 0:
            continue
        ratios.append(float(nh) / (flops_per_token(r) * hpe * float(row.n_events)))
    if not ratios:
        return None
    per_flop = float(np.median(ratios))

    def cost(model: str, events: float) -> float:
        r = _rung(model)
        return float("nan") if r is None else per_flop * flops_per_token(r) * hpe * float(events)

    return cost


def _d_levels(cells: pd.DataFrame, d_col: str = "n_events") -> list[float]:
    d = sorted(pd.to_numeric(cells[d_col], errors="coerce").dropna().unique().astype(float))
    return [*d, 2.0 * d[-1]] if d else []


def next_rung_table(fit: FitResult, cells: pd.DataFrame, cost: Cost | None = None, n_next: int = 2) -> pd.DataFrame:
    """Per next rung × (largest D of the study, and 2× it): predicted loss, 95% prediction interval, node-hours."""
    from analysis.uncertainty import log_prediction_band

    cost = cost or study_cost(cells)
    rows = []
    d_levels = _d_levels(cells)[-2:]
    n_max = float(np.max(fit.data.N))
    for r in next_rungs(cells, n_next):
        n = float(n_params(r))
        for d in d_levels:
            pred = float(fit.predict(N=np.array([n]), D=np.array([d]))[0])
            lo, hi = log_prediction_band(fit, {"N": np.array([n]), "D": np.array([d])}, prediction=True)
            rows.append({
                "model": r.name, "N": n, "D (events)": d, "predicted L": pred,
                "95% PI": (float(lo[0]), float(hi[0])), "decades beyond fitted N": np.log10(n / n_max),
                "node-hours": cost(r.name, d) if cost else float("nan"),
            })  # fmt: skip
    return pd.DataFrame(rows)


def design_table(fit: FitResult, cells: pd.DataFrame, cost: Cost | None = None, top: int = 6) -> pd.DataFrame:
    """Candidate runs ranked by the stated criterion (:data:`CRITERION`); needs model names for costs."""
    from analysis.diagnostics import seed_noise
    from analysis.uncertainty import _jac, covariance

    cost = cost or study_cost(cells)
    if cost is None or "model" not in cells.columns:
        return pd.DataFrame()
    models = {str(m) for m in cells["model"].dropna().unique() if _rung(m) is not None}
    cand_models = sorted(models, key=lambda m: n_params(get_rung(m)))
    cand_models += [r.name for r in next_rungs(cells, 1)]
    names = fit.law.theta_names
    ia, ib = names.index("alpha"), names.index("beta")
    cov = covariance(fit)
    s = seed_noise(fit.data)
    if not np.isfinite(s):
        s = 1.4826 * float(np.median(np.abs(fit.residuals())))
    s2 = max(s * s, 1e-12)
    va, vb = cov[ia, ia], cov[ib, ib]
    if not (va > 0 and vb > 0):
        return pd.DataFrame()
    from analysis.laws import predict_log

    rows = []
    for m in cand_models:
        n = float(n_params(get_rung(m)))
        for d in _d_levels(cells):
            lx = np.log([[n, d]])
            j = _jac(lambda th, lx=lx: predict_log(th, lx), fit.theta)[0]
            cj = cov @ j
            denom = s2 + float(j @ cj)
            ra = cj[ia] ** 2 / denom / va  # relative variance reduction of α
            rb = cj[ib] ** 2 / denom / vb
            nh = cost(m, d)
            rows.append({
                "model": m, "N": n, "D (events)": d, "node-hours": nh,
                "α width shrink": 1 - np.sqrt(1 - ra), "β width shrink": 1 - np.sqrt(1 - rb),
                "score per node-hour": (ra + rb) / 2 / nh if nh > 0 else float("nan"),
            })  # fmt: skip
    df = pd.DataFrame(rows).sort_values("score per node-hour", ascending=False)
    return df.head(top).reset_index(drop=True)
