"""TrackML score (SPEC §9), re-implemented from ``LAL/trackml-library`` (``trackml/weights.py``,
``trackml/score.py``) in vectorised numpy.

Hit weight = order weight × pT weight, 0 for noise (particle id 0) and for particles with fewer than
4 hits, normalised so that the weights of one event sum to 1. The event score is the summed weight of
the majority-particle hits of every *good* track (strict double majority: > 50 % both ways).
"""

from __future__ import annotations

import numpy as np

ORDER_PROPOSAL = (10.0, 8.0, 6.0, 5.0, 3.0, 3.0, 3.0, 5.0, 6.0)  # trackml/weights.py
ORDER_MIN_HITS = 4  # particles with fewer hits get weight 0
ORDER_MAX_HITS = 20  # longer particles use the 20-hit profile; hits past the 20th get weight 0


def _order_matrix() -> np.ndarray:
    """(ORDER_MAX_HITS + 1, ORDER_MAX_HITS) weights indexed by (n_hits, i_hit), each row summing to 1."""
    w = np.zeros((ORDER_MAX_HITS + 1, ORDER_MAX_HITS))
    n_prop = len(ORDER_PROPOSAL)
    for n in range(ORDER_MIN_HITS, ORDER_MAX_HITS + 1):
        supports = np.arange(n_prop) * (n - 1) / (n_prop - 1)
        row = np.interp(np.arange(n), supports, ORDER_PROPOSAL)
        w[n, :n] = row / row.sum()
    return w


ORDER_MATRIX = _order_matrix()


def weight_pt(pt: np.ndarray) -> np.ndarray:
    """pT weight: 0.2 up to 0.5 GeV, linear to 1 at 3 GeV, 1 above; 0 below 0.05 GeV (trackml)."""
    return np.interp(
        np.asarray(pt, dtype=np.float64), [0.05, 0.5, 3.0], [0.2, 0.2, 1.0], left=0.0, right=1.0
    )


def trackml_weights(
    truth: np.ndarray, *, order: np.ndarray | None = None, pt: np.ndarray | None = None
) -> np.ndarray:
    """Per-hit TrackML weights of one event, shape (n_hits,), summing to 1 (all zero if no signal).

    ``truth`` (n_hits,) particle id per hit, 0 = noise. ``order`` (n_hits,) sorts the hits of a particle
    along its trajectory (SPEC §9: helix turning angle; trackml uses |z − vz|); ties and ``None`` fall back
    to the hit index. ``pt`` (n_hits,) is the particle pT of each hit in GeV; ``None`` gives uniform pT
    weights (the "uniform-weight" variant, which keeps the order profile).
    """
    truth = np.asarray(truth)
    n = len(truth)
    if n == 0:
        return np.zeros(0)
    key = np.zeros(n) if order is None else np.asarray(order, dtype=np.float64)
    idx = np.lexsort((np.arange(n), key, truth))  # group by particle, then by order
    sorted_truth = truth[idx]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_truth)) + 1]
    counts = np.diff(np.r_[starts, n])
    n_hits = np.repeat(counts, counts)
    i_hit = np.arange(n) - np.repeat(starts, counts)
    w_order = np.zeros(n)
    ok = (n_hits >= ORDER_MIN_HITS) & (i_hit < ORDER_MAX_HITS) & (sorted_truth != 0)
    w_order[ok] = ORDER_MATRIX[np.minimum(n_hits[ok], ORDER_MAX_HITS), i_hit[ok]]
    w = np.zeros(n)
    w[idx] = w_order
    if pt is not None:
        w *= weight_pt(pt)
    total = w.sum()
    return w / total if total > 0 else w


def uniform_weights(truth: np.ndarray) -> np.ndarray:
    """Every signal hit of a particle with ≥ 4 hits weighs the same; (n_hits,), summing to 1."""
    truth = np.asarray(truth)
    _, inverse, counts = np.unique(truth, return_inverse=True, return_counts=True)
    w = ((truth != 0) & (counts[inverse] >= ORDER_MIN_HITS)).astype(np.float64)
    total = w.sum()
    return w / total if total > 0 else w


def trackml_event_score(truth: np.ndarray, pred: np.ndarray, weights: np.ndarray) -> float:
    """TrackML score of one event in [0, 1].

    ``truth`` (n_hits,) particle ids (0 = noise), ``pred`` (n_hits,) track ids (−1 = unassigned: those
    hits are on no track), ``weights`` (n_hits,) from :func:`trackml_weights`. Majority ties go to the
    smaller particle id.
    """
    truth = np.asarray(truth)
    pred = np.asarray(pred)
    weights = np.asarray(weights, dtype=np.float64)
    if len(truth) == 0:
        return 0.0
    part, p_inv, p_counts = np.unique(truth, return_inverse=True, return_counts=True)
    sel = pred >= 0
    if not sel.any():
        return 0.0
    _, t_inv, t_counts = np.unique(pred[sel], return_inverse=True, return_counts=True)
    code = t_inv.astype(np.int64) * len(part) + p_inv[sel]
    pair, pair_inv, pair_counts = np.unique(code, return_inverse=True, return_counts=True)
    pair_w = np.bincount(pair_inv, weights=weights[sel], minlength=len(pair))
    pair_trk, pair_part = pair // len(part), pair % len(part)
    order = np.lexsort((pair_part, -pair_counts, pair_trk))
    first = order[np.unique(pair_trk[order], return_index=True)[1]]
    maj_n = pair_counts[first]
    good = (maj_n / t_counts[pair_trk[first]] > 0.5) & (maj_n / p_counts[pair_part[first]] > 0.5)
    total = weights.sum()
    return float(pair_w[first][good].sum() / total) if total > 0 else 0.0
