"""Point-classification metrics (SPEC §9): PID (5 classes) and noise tagging (binary).

All metrics pool the valid points of every event (accuracy over valid points, not an event mean).
Macro averages follow ``sklearn.metrics.precision_score(average="macro")``, which FM4NPP used: the
unweighted mean over the classes present in truth or prediction, a class that is never predicted
(never present) counting as precision (recall) 0. Per-class arrays hold NaN where 0/0 instead.
"""

from __future__ import annotations

import numpy as np

from fm4npp.data.schema import PID_CLASSES

N_PID_CLASSES = len(PID_CLASSES)  # SPEC §2.4: other, π±, K±, p/p̄, e±
PT_BINS_GEV = np.linspace(0.0, 3.0, 16)  # same 15 bins over 0–3 GeV as the tracking efficiency


def _flat(true: np.ndarray, pred: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    true = np.asarray(true).astype(np.int64).ravel()
    pred = np.asarray(pred).astype(np.int64).ravel()
    if true.shape != pred.shape:
        raise ValueError(f"labels {true.shape} and predictions {pred.shape} differ in shape")
    if valid is not None:
        mask = np.asarray(valid, dtype=bool).ravel()
        true, pred = true[mask], pred[mask]
    return true, pred


def confusion_matrix(
    true: np.ndarray, pred: np.ndarray, n_classes: int, valid: np.ndarray | None = None
) -> np.ndarray:
    """(n_classes, n_classes) int64 counts, rows = true class, columns = predicted class."""
    t, p = _flat(true, pred, valid)
    bad = (t < 0) | (t >= n_classes) | (p < 0) | (p >= n_classes)
    if bad.any():
        raise ValueError(f"class labels must lie in 0..{n_classes - 1}")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_precision_recall(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class (precision, recall), each (C,), NaN where undefined (no predictions / no truth)."""
    tp = np.diag(cm).astype(np.float64)
    n_pred = cm.sum(axis=0).astype(np.float64)
    n_true = cm.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_pred > 0, tp / n_pred, np.nan), np.where(n_true > 0, tp / n_true, np.nan)


def _macro(cm: np.ndarray) -> tuple[float, float]:
    """sklearn-style macro precision and recall: mean over classes present in truth or prediction."""
    present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
    if not present.any():
        return float("nan"), float("nan")
    prec, rec = per_class_precision_recall(cm)
    return float(np.nan_to_num(prec[present]).mean()), float(np.nan_to_num(rec[present]).mean())


def _accuracy(cm: np.ndarray) -> float:
    total = cm.sum()
    return float(np.trace(cm) / total) if total > 0 else float("nan")


def precision_recall_vs_pt(
    true: np.ndarray,
    pred: np.ndarray,
    pt: np.ndarray,
    n_classes: int = N_PID_CLASSES,
    edges: np.ndarray = PT_BINS_GEV,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class precision and recall in bins of the true particle pT (GeV), each (B, C), NaN where
    undefined. Points outside ``edges`` are ignored."""
    t, p = _flat(true, pred, valid)
    pt_v = np.asarray(pt, dtype=np.float64).ravel()
    if valid is not None:
        pt_v = pt_v[np.asarray(valid, dtype=bool).ravel()]
    idx = np.digitize(pt_v, edges) - 1
    n_bins = len(edges) - 1
    prec = np.full((n_bins, n_classes), np.nan)
    rec = np.full((n_bins, n_classes), np.nan)
    for b in range(n_bins):
        m = idx == b
        if m.any():
            prec[b], rec[b] = per_class_precision_recall(confusion_matrix(t[m], p[m], n_classes))
    return prec, rec


def pid_metrics(
    true: np.ndarray,
    pred: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    pt: np.ndarray | None = None,
    n_classes: int = N_PID_CLASSES,
) -> dict[str, object]:
    """PID metrics over valid points (SPEC §9). ``true``, ``pred`` (n,) class indices 0..4, ``valid``
    (n,) bool, ``pt`` (n,) true particle pT in GeV for the pT-binned curves.

    Keys: ``accuracy``, ``precision`` and ``recall`` (macro), ``precision_per_class``,
    ``recall_per_class`` (lists in :data:`PID_CLASSES` order), ``confusion`` (nested list, rows true),
    ``n_points``; with ``pt``: ``pt_bins_gev``, ``precision_vs_pt`` and ``recall_vs_pt`` ((B, C) lists).
    """
    cm = confusion_matrix(true, pred, n_classes, valid)
    prec_c, rec_c = per_class_precision_recall(cm)
    prec, rec = _macro(cm)
    out: dict[str, object] = {
        "accuracy": _accuracy(cm),
        "precision": prec,
        "recall": rec,
        "precision_per_class": prec_c.tolist(),
        "recall_per_class": rec_c.tolist(),
        "confusion": cm.tolist(),
        "n_points": int(cm.sum()),
    }
    if pt is not None:
        pb, rb = precision_recall_vs_pt(true, pred, pt, n_classes, PT_BINS_GEV, valid)
        out["pt_bins_gev"] = np.round(PT_BINS_GEV, 6).tolist()
        out["precision_vs_pt"] = pb.tolist()
        out["recall_vs_pt"] = rb.tolist()
    return out


def noise_metrics(
    true: np.ndarray, pred: np.ndarray, *, valid: np.ndarray | None = None
) -> dict[str, float | int]:
    """Noise-tagging metrics (SPEC §9). ``true``, ``pred`` (n,) bool or 0/1 (1 = noise).

    Keys: ``accuracy``; ``precision``, ``recall`` macro over {signal, noise} (FM4NPP code path);
    ``precision_noise``, ``recall_noise`` for the noise class alone (NaN where 0/0); ``n_points``.
    """
    cm = confusion_matrix(np.asarray(true).astype(np.int64), np.asarray(pred).astype(np.int64), 2, valid)
    prec_c, rec_c = per_class_precision_recall(cm)
    prec, rec = _macro(cm)
    return {
        "accuracy": _accuracy(cm),
        "precision": prec,
        "recall": rec,
        "precision_noise": float(prec_c[1]),
        "recall_noise": float(rec_c[1]),
        "n_points": int(cm.sum()),
    }
