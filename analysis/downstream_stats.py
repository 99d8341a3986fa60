"""Downstream uncertainty (issue 11; SPEC §9 "every metric: mean ± std over seeds and bootstrap intervals
over events"): adapter-seed spread, event-bootstrap intervals and paired event bootstraps between two
variants evaluated on the same test events. Torch-free; reads the tables the evaluation writes.

Input tables (written by ``fm4npp.train.downstream``):

- metrics, ``eval/<name>.parquet``: cell_id, variant, task, metric, value, seed, n_labelled (one row
  per fit and metric).
- per-event scores, ``eval/events/<name>.parquet``: cell_id, variant, task, n_labelled, seed,
  event_id, metric, value. Tracking metrics: ``ari``, ``ari_signal``, ``n_particles``, ``n_found``,
  ``n_tracks``, ``n_matched``; pid/noise: ``n_points``, ``n_correct``.
- training curves, ``eval/curves/<name>.parquet``: cell_id, variant, task, n_labelled, seed, epoch,
  step, train_loss, val_loss, lr (one row per adapter epoch; plot val_loss vs step per variant).

Per-event headline metrics (:data:`EVENT_METRICS`): ARI is the mean of per-event ARI (FM4NPP's
convention); efficiency, purity and accuracy are ratios of event sums (pooled, as the metrics module).
Seeds are combined per event before resampling (ARI averaged, counts summed), so a bootstrap interval
covers the event sampling of the test split; the seed spread is reported beside it (:func:`seed_summary`).

Output tables, for the report to render as they are:

- :func:`seed_summary`: variant, cell_id, task, metric, n_labelled, mean, sd, n_seeds.
- :func:`bootstrap_table`: variant, cell_id, task, metric, n_labelled, value, lo, hi, n_events.
- :func:`paired_table`: task, metric, n_labelled, a, b (``variant/cell_id``), value_a, value_b, delta
  (a − b), lo, hi (paired interval of delta), n_events, verdict — ``"a better"`` / ``"b better"``
  only when the paired interval excludes 0, else ``"not resolved"``.

Variant names in the tables and how to label them (:data:`VARIANT_LABELS`): ``random_embedding`` is
FM4NPP's adapter-only baseline (the headline comparison), ``adapter_only`` the random-init frozen
backbone of the same size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

#: metric → ("mean", column) or ("ratio", numerator, denominator) over per-event scores
EVENT_METRICS: dict[str, tuple[str, ...]] = {
    "ari": ("mean", "ari"),
    "ari_signal": ("mean", "ari_signal"),
    "efficiency": ("ratio", "n_found", "n_particles"),
    "purity": ("ratio", "n_matched", "n_tracks"),
    "accuracy": ("ratio", "n_correct", "n_points"),
}
TASK_METRICS = {"tracking": ("ari", "efficiency", "purity"), "pid": ("accuracy",), "noise": ("accuracy",)}
VARIANT_LABELS = {
    "fm": "FM + adapter (pretrained frozen backbone)",
    "random_embedding": "adapter-only (fixed random embedding; FM4NPP baseline)",
    "adapter_only": "random-init frozen backbone + adapter",
    "hough": "Hough transform (classical)",
    "probe": "edge probe",
}
KEYS = ["variant", "cell_id", "task", "n_labelled"]
LEVEL = 0.95


def seed_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean ± sd over adapter seeds of every (variant, cell_id, task, metric, n_labelled)."""
    g = metrics.groupby([*KEYS[:3], "metric", "n_labelled"], sort=True)["value"]
    out = g.agg(mean="mean", sd="std", n_seeds="count").reset_index()
    return out[["variant", "cell_id", "task", "metric", "n_labelled", "mean", "sd", "n_seeds"]]


def event_matrix(events: pd.DataFrame) -> pd.DataFrame:
    """Per-event scores of one fit group, seeds combined: one row per event_id, one column per score
    (ARI-like columns averaged over seeds, count columns summed)."""
    wide = events.pivot_table(index=["event_id", "seed"], columns="metric", values="value", aggfunc="first")
    agg = {c: ("mean" if c.startswith("ari") else "sum") for c in wide.columns}
    return wide.groupby(level="event_id").agg(agg).sort_index()


def _statistic(metric: str, mat: pd.DataFrame, idx: np.ndarray) -> np.ndarray:
    """The metric over event rows ``idx`` (R, E) for R resamples → (R,)."""
    kind = EVENT_METRICS[metric]
    if kind[0] == "mean":
        v = mat[kind[1]].to_numpy(dtype=np.float64)[idx]
        ok = np.isfinite(v)  # events without points have NaN ARI and are left out
        cnt = ok.sum(-1)
        return np.where(cnt > 0, np.where(ok, v, 0.0).sum(-1) / np.maximum(cnt, 1), np.nan)
    num = mat[kind[1]].to_numpy(dtype=np.float64)[idx].sum(-1)
    den = mat[kind[2]].to_numpy(dtype=np.float64)[idx].sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _resamples(n_events: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_events, size=(n_boot, n_events))


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if not len(v):
        return float("nan"), float("nan")
    a = (1 - level) / 2
    return float(np.quantile(v, a)), float(np.quantile(v, 1 - a))


def event_bootstrap(
    mat: pd.DataFrame, metric: str, n_boot: int = 2000, seed: int = 0, level: float = LEVEL
) -> tuple[float, float, float]:
    """(value, lo, hi): the metric on all events and its percentile event-bootstrap interval."""
    n = len(mat)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    value = float(_statistic(metric, mat, np.arange(n)[None])[0])
    lo, hi = _interval(_statistic(metric, mat, _resamples(n, n_boot, seed)), level)
    return value, lo, hi


def paired_bootstrap(
    mat_a: pd.DataFrame, mat_b: pd.DataFrame, metric: str, n_boot: int = 2000, seed: int = 0,
    level: float = LEVEL,
) -> dict[str, float]:  # fmt: skip
    """Paired event bootstrap of metric(a) − metric(b) over the events both were scored on: every
    resample draws the same events for both. Keys value_a, value_b, delta, lo, hi, n_events."""
    common = mat_a.index.intersection(mat_b.index)
    a, b = mat_a.loc[common], mat_b.loc[common]
    n = len(common)
    if n == 0:
        nan = float("nan")
        return {"value_a": nan, "value_b": nan, "delta": nan, "lo": nan, "hi": nan, "n_events": 0}
    full = np.arange(n)[None]
    va, vb = float(_statistic(metric, a, full)[0]), float(_statistic(metric, b, full)[0])
    idx = _resamples(n, n_boot, seed)
    lo, hi = _interval(_statistic(metric, a, idx) - _statistic(metric, b, idx), level)
    return {"value_a": va, "value_b": vb, "delta": va - vb, "lo": lo, "hi": hi, "n_events": n}


def verdict(lo: float, hi: float) -> str:
    """``a better`` / ``b better`` only when the paired interval excludes 0."""
    if np.isfinite(lo) and lo > 0:
        return "a better"
    if np.isfinite(hi) and hi < 0:
        return "b better"
    return "not resolved"


def _groups(events: pd.DataFrame) -> dict[tuple[str, str, str, int], pd.DataFrame]:
    return {
        (str(v), str(c), str(t), int(n)): event_matrix(g)
        for (v, c, t, n), g in events.groupby(KEYS, sort=True)
    }


def bootstrap_table(events: pd.DataFrame, n_boot: int = 2000, seed: int = 0, level: float = LEVEL) -> pd.DataFrame:
    """Event-bootstrap interval of every headline metric of every fit group in ``events``."""
    rows = []
    for (v, c, t, n), mat in _groups(events).items():
        for metric in TASK_METRICS.get(t, ()):
            value, lo, hi = event_bootstrap(mat, metric, n_boot, seed, level)
            rows.append({"variant": v, "cell_id": c, "task": t, "metric": metric, "n_labelled": n,
                         "value": value, "lo": lo, "hi": hi, "n_events": len(mat)})  # fmt: skip
    cols = ["variant", "cell_id", "task", "metric", "n_labelled", "value", "lo", "hi", "n_events"]
    return pd.DataFrame(rows, columns=cols)


def paired_table(
    events: pd.DataFrame, a: tuple[str, str], b: tuple[str, str], n_boot: int = 2000, seed: int = 0,
    level: float = LEVEL, metrics: Sequence[str] | None = None,
) -> pd.DataFrame:  # fmt: skip
    """Paired comparison a − b, ``a`` and ``b`` as (variant, cell_id), for every task, headline metric
    and labelled-set size both have."""
    return _paired_rows(_groups(events), a, b, n_boot, seed, level, metrics)


def _paired_rows(
    groups: dict[tuple[str, str, str, int], pd.DataFrame], a: tuple[str, str], b: tuple[str, str],
    n_boot: int, seed: int, level: float, metrics: Sequence[str] | None = None,
) -> pd.DataFrame:  # fmt: skip
    rows = []
    for (v, c, t, n), mat_a in groups.items():
        if (v, c) != a or (b[0], b[1], t, n) not in groups:
            continue
        for metric in metrics or TASK_METRICS.get(t, ()):
            if metric not in TASK_METRICS.get(t, ()):
                continue
            r = paired_bootstrap(mat_a, groups[(b[0], b[1], t, n)], metric, n_boot, seed, level)
            rows.append({"task": t, "metric": metric, "n_labelled": n, "a": f"{a[0]}/{a[1]}",
                         "b": f"{b[0]}/{b[1]}", **r, "verdict": verdict(r["lo"], r["hi"])})  # fmt: skip
    cols = ["task", "metric", "n_labelled", "a", "b", "value_a", "value_b", "delta", "lo", "hi",
            "n_events", "verdict"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


#: baselines an FM cell is compared with, headline first (SPEC §8: the random embedding is FM4NPP's
#: adapter-only); ``adapter_only`` is matched to the FM cell's own size, ``hough`` learns nothing and is
#: paired at every labelled-set size.
BASELINES = ("random_embedding", "adapter_only", "hough")


def fm_comparisons(events: pd.DataFrame, n_boot: int = 2000, seed: int = 0, level: float = LEVEL) -> pd.DataFrame:
    """Every FM cell with per-event scores against every baseline it can be paired with (same test
    events, same labelled-set size; Hough at every size): :func:`paired_table`'s columns with
    ``b`` = the baseline's variant, plus the FM cell's ``model`` and ``n_params``."""
    cols = ["task", "metric", "n_labelled", "model", "n_params", "a", "b", "value_a", "value_b", "delta",
            "lo", "hi", "n_events", "verdict"]  # fmt: skip
    if events is None or events.empty:
        return pd.DataFrame(columns=cols)
    ev = events.copy()
    ev["n_labelled"] = ev["n_labelled"].astype(int)
    fm = ev[ev["variant"] == "fm"]
    sizes = sorted(fm["n_labelled"].unique())
    label_free = ev[ev["variant"] == "hough"]
    if len(label_free) and sizes:  # a label-free baseline sits beside every labelled-set size
        ev = pd.concat([ev[ev["variant"] != "hough"]]
                       + [label_free.assign(n_labelled=n) for n in sizes], ignore_index=True)  # fmt: skip
    models = fm.drop_duplicates("cell_id").set_index("cell_id")
    groups = _groups(ev)  # one event matrix per fit group, shared by every pairing below
    out = []
    for cell, row in models.iterrows():
        for base in BASELINES:
            cell_ids = ev.loc[ev["variant"] == base, "cell_id"].unique()
            if base == "adapter_only":  # the random-init backbone of the FM cell's own size
                cell_ids = [c for c in cell_ids if str(c).endswith(f"-{row.get('model')}")]
            for b_cell in cell_ids:
                t = _paired_rows(groups, ("fm", str(cell)), (base, str(b_cell)), n_boot, seed, level)
                if len(t):
                    out.append(t.assign(b=base, model=row.get("model"), n_params=row.get("n_params")))
    if not out:
        return pd.DataFrame(columns=cols)
    return pd.concat(out, ignore_index=True)[cols]


__all__ = [
    "BASELINES",
    "EVENT_METRICS",
    "TASK_METRICS",
    "VARIANT_LABELS",
    "bootstrap_table",
    "event_bootstrap",
    "event_matrix",
    "fm_comparisons",
    "paired_bootstrap",
    "paired_table",
    "seed_summary",
    "verdict",
]
