"""Edge probe: a fast measure of how much track information frozen per-hit features carry (issue 11).

Seconds per backbone instead of the minutes a track head needs, so representation quality can be
followed across pretraining steps and sizes cheaply. Same input for every variant (FM backbone, random
embedding, random-init backbone), so only the features differ.

1. Candidate edges: each hit and its ``k`` nearest hits in space (x, y, z in cm, recovered from the
   normalized inputs, SPEC §2.3), within one event. Label: both hits of the same non-noise particle.
2. Pair features [h_i ⊙ h_j, |h_i − h_j|] of standardised per-hit features h (the mean over the S
   feature sets, z-scored with training statistics) → a one-hidden-layer MLP trained with
   cross-entropy (class-balanced) on the labelled events' edges, full batch, a fixed number of steps.
3. Decoding: edges with probability > t form a graph; its connected components are the tracks;
   components smaller than ``min_component`` hits are unassigned (−1). t is chosen on the validation
   split by mean per-event ARI (grid :data:`EDGE_THRESHOLDS`).
4. Scores: the usual tracking metrics (:func:`~fm4npp.eval.metrics_tracking.evaluate_tracking`) plus
   edge accuracy and the positive-edge recall (``edge_*``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from fm4npp.data.serialize import ETA_MAX, ETA_MIN, R_MAX_CM, R_MIN_CM
from fm4npp.eval.metrics_tracking import (
    MatchConfig,
    TrackingEvent,
    adjusted_rand_score,
    evaluate_tracking,
)
from fm4npp.train.features import EventSet

EDGE_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class ProbeSettings:
    k: int = 8  # spatial neighbours per hit
    hidden: int = 64
    steps: int = 200  # full-batch Adam steps
    lr: float = 3e-3
    max_edges: int = 50_000  # training edges (random subset above this)
    min_component: int = 3  # smaller components are unassigned
    seed: int = 0


def positions_cm(inputs: np.ndarray) -> np.ndarray:
    """(n, 3) x, y, z in cm from normalized inputs [E, η, φ, r] (n, 4) (inverse of SPEC §2.3)."""
    eta = inputs[:, 1].astype(np.float64) * (ETA_MAX - ETA_MIN) + ETA_MIN
    phi = inputs[:, 2].astype(np.float64) * 2 * np.pi - np.pi
    r = inputs[:, 3].astype(np.float64) * (R_MAX_CM - R_MIN_CM) + R_MIN_CM
    return np.stack([r * np.cos(phi), r * np.sin(phi), r * np.sinh(eta)], axis=1)


def event_edges(data: EventSet, i: int, k: int) -> np.ndarray:
    """(M, 2) int64 hit-index pairs (i < j, unique) of event ``i``: each hit and its k nearest hits."""
    if data.inputs is None:
        raise ValueError("edge probe: the event set has no inputs (build it with build_event_set)")
    a, b = data.offsets[i], data.offsets[i + 1]
    n = b - a
    if n < 2:
        return np.zeros((0, 2), np.int64)
    pos = positions_cm(data.inputs[a:b])
    _, nb = cKDTree(pos).query(pos, k=min(k + 1, n))
    src = np.repeat(np.arange(n), nb.shape[1] - 1)
    dst = nb[:, 1:].ravel()
    pairs = np.sort(np.stack([src, dst], axis=1), axis=1)
    return np.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0).astype(np.int64)


def _hit_features(data: EventSet) -> np.ndarray:
    return data.feats.float().mean(dim=1).numpy()


def _pairs(data: EventSet, h: np.ndarray, k: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Per-event edges; stacked pair features and labels over all events."""
    edges, feats, labels = [], [], []
    for i in range(len(data)):
        e = event_edges(data, i, k)
        edges.append(e)
        a = data.offsets[i]
        hi, hj = h[a + e[:, 0]], h[a + e[:, 1]]
        feats.append(np.concatenate([hi * hj, np.abs(hi - hj)], axis=1))
        t = data.labels(i)[0]
        labels.append((t[e[:, 0]] == t[e[:, 1]]) & (t[e[:, 0]] != 0))
    d = 2 * h.shape[1]
    x = np.concatenate(feats) if feats else np.zeros((0, d))
    y = np.concatenate(labels) if labels else np.zeros(0, bool)
    return edges, x.astype(np.float32), y


def _components(n: int, edges: np.ndarray, keep: np.ndarray, min_component: int) -> np.ndarray:
    e = edges[keep]
    graph = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    _, lab = connected_components(graph, directed=False)
    size = np.bincount(lab)
    return np.where(size[lab] >= min_component, lab, -1).astype(np.int64)


def _decode(data: EventSet, edges: list[np.ndarray], prob: np.ndarray, t: float, s: ProbeSettings) -> list[np.ndarray]:
    out, start = [], 0
    for i, e in enumerate(edges):
        p = prob[start : start + len(e)]
        start += len(e)
        out.append(_components(int(data.n_hits[i]), e, p > t, s.min_component))
    return out


def run_probe(train: EventSet, val: EventSet, test: EventSet, s: ProbeSettings = ProbeSettings(),
              min_hits: int = 5) -> dict[str, float]:  # fmt: skip
    """Fit the edge probe on ``train``, choose the edge threshold on ``val``, score ``test``."""
    t0 = time.perf_counter()
    h_tr = _hit_features(train)
    mu, sd = h_tr.mean(0), h_tr.std(0) + 1e-6
    _, x, y = _pairs(train, (h_tr - mu) / sd, s.k)
    rng = np.random.default_rng(s.seed)
    if len(x) > s.max_edges:
        sel = rng.choice(len(x), s.max_edges, replace=False)
        x, y = x[sel], y[sel]
    torch.manual_seed(s.seed)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], s.hidden), torch.nn.GELU(), torch.nn.Linear(s.hidden, 1))
    opt = torch.optim.Adam(net.parameters(), lr=s.lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))
    pos_weight = torch.tensor((len(y) - y.sum()) / max(int(y.sum()), 1), dtype=torch.float32)
    for _ in range(s.steps):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(xt)[:, 0], yt, pos_weight=pos_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    fit_s = time.perf_counter() - t0

    @torch.no_grad()
    def prob(data: EventSet) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        edges, xe, ye = _pairs(data, (_hit_features(data) - mu) / sd, s.k)
        return edges, torch.sigmoid(net(torch.from_numpy(xe))[:, 0]).numpy(), ye

    v_edges, v_prob, _ = prob(val)
    v_truth = [val.labels(i)[0] for i in range(len(val))]

    def val_ari(t: float) -> float:
        preds = _decode(val, v_edges, v_prob, t, s)
        return float(np.mean([adjusted_rand_score(a, b) for a, b in zip(v_truth, preds, strict=True)]))

    thr = max(EDGE_THRESHOLDS, key=val_ari) if len(val) else 0.5
    edges, p, ye = prob(test)
    preds = _decode(test, edges, p, thr, s)
    events = [TrackingEvent(truth=test.labels(i)[0], pred=preds[i], particles=test.particles[i] or None)
              for i in range(len(test))]  # fmt: skip
    metrics = evaluate_tracking(events, MatchConfig(min_track_hits=min_hits, min_particle_hits=min_hits))
    out = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    pred_pos = p > thr
    out.update(edge_accuracy=float((pred_pos == ye).mean()) if len(ye) else float("nan"),
               edge_recall=float(pred_pos[ye].mean()) if ye.any() else float("nan"),
               edge_threshold=float(thr), n_edges_train=float(len(y)), fit_time_s=fit_s,
               probe_time_s=time.perf_counter() - t0)  # fmt: skip
    return out
