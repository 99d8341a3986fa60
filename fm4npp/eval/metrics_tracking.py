"""Track-finding metrics (SPEC §9): ARI variants, double-majority matching, efficiency, track purity,
fake and duplicate rates, hit efficiency/purity, TrackML score.

Per event: truth id T_i (0 = noise), prediction Y_i (−1 = unassigned). Matching counts are pooled over
events, then divided; ARI is computed per event and averaged (the convention that reproduces FM4NPP),
with a numpy copy of ``sklearn.metrics.adjusted_rand_score`` that gives identical values 10× faster.

Project defaults (SPEC §9, always stated next to a number): candidate tracks need ≥ 5 hits, selected
particles ≥ 5 hits, strict > 0.5 majority both ways, noise excluded from truth particles.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from fm4npp.eval.trackml_score import trackml_event_score, trackml_weights, uniform_weights

PT_BINS_GEV = np.linspace(0.0, 3.0, 16)  # SPEC §9: 15 bins over 0–3 GeV, as in [Rb]
ETA_BINS = np.linspace(-1.1, 1.1, 12)  # 11 bins over the |η| < 1.1 acceptance (SPEC §2.1)


@dataclass(frozen=True)
class MatchConfig:
    """Thresholds of double-majority matching. ``strict``: fractions must exceed ``fraction``
    (TrackML/Exa.TrkX); otherwise ≥ (ACTS ``TrackTruthMatcher``)."""

    min_track_hits: int = 3  # purity/fake/duplicate over tracks with ≥ 3 hits (issue 7; SPEC §9)
    min_particle_hits: int = 5
    fraction: float = 0.5
    strict: bool = True


@dataclass(frozen=True)
class TrackingEvent:
    """One event's labels. ``truth`` (n,) particle id per hit, 0 = noise; ``pred`` (n,) track id, −1 =
    unassigned. Optional per-particle table ``particles`` (columns ``particle_id``, ``pt``, ``eta``, and
    optionally ``primary``) and per-hit ``weight`` (n,) TrackML weights, ``order`` (n,) along-track key."""

    truth: np.ndarray
    pred: np.ndarray
    particles: dict[str, np.ndarray] | None = None
    weight: np.ndarray | None = None
    order: np.ndarray | None = None


@dataclass(frozen=True)
class EventMatch:
    """Result of :func:`match_event`. Track arrays (K,) cover candidate tracks (n_k ≥ min_track_hits);
    particle arrays (P,) cover every non-noise truth particle of the event."""

    track_id: np.ndarray
    track_n_hits: np.ndarray
    track_major: np.ndarray  # majority particle id (0 = noise)
    track_major_n_hits: np.ndarray  # n_kp* shared hits
    track_matched: np.ndarray  # bool
    track_duplicate: np.ndarray  # bool: matched but not the best track of its particle
    particle_id: np.ndarray
    particle_n_hits: np.ndarray
    particle_matched: np.ndarray  # bool: ≥ 1 matched track
    particle_best_shared: np.ndarray  # n_{k*p}, 0 if unmatched
    particle_best_track_hits: np.ndarray  # n_{k*}, 0 if unmatched


def _exceeds(num: np.ndarray, den: np.ndarray, fraction: float, strict: bool) -> np.ndarray:
    # fraction·den is exact for fraction = 0.5, so a 50/50 split compares exactly at the boundary
    lhs, rhs = num.astype(np.float64), fraction * den.astype(np.float64)
    return lhs > rhs if strict else lhs >= rhs


def match_event(truth: np.ndarray, pred: np.ndarray, config: MatchConfig = MatchConfig()) -> EventMatch:
    """Double-majority matching of one event (SPEC §9).

    Each candidate track k (``pred`` ≥ 0, n_k ≥ ``min_track_hits``) gets its majority particle p* over
    all its hits, noise included (ties → smaller id, so a noise tie wins). k is matched if p* ≠ 0 and
    n_kp*/n_k and n_kp*/n_p* pass the fraction test, where n_p counts every hit of p in the event.
    Among tracks matched to one particle the best has the most shared hits (ties → smaller track id);
    the others are duplicates. Only the ≥ convention can produce duplicates.
    """
    truth = np.asarray(truth, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    part, p_inv, p_counts = np.unique(truth, return_inverse=True, return_counts=True)
    signal = part != 0
    sel = pred >= 0
    trk, t_inv, t_counts = np.unique(pred[sel], return_inverse=True, return_counts=True)
    code = t_inv.astype(np.int64) * len(part) + p_inv[sel]
    pair, pair_counts = np.unique(code, return_counts=True)
    pair_trk, pair_part = pair // max(len(part), 1), pair % max(len(part), 1)
    order = np.lexsort((pair_part, -pair_counts, pair_trk))
    first = order[np.unique(pair_trk[order], return_index=True)[1]]  # majority pair of each track
    maj_part, maj_n = pair_part[first], pair_counts[first]
    cand = t_counts >= config.min_track_hits
    matched = (
        cand
        & signal[maj_part]
        & _exceeds(maj_n, t_counts, config.fraction, config.strict)
        & _exceeds(maj_n, p_counts[maj_part], config.fraction, config.strict)
    )
    # best matched track per particle: most shared hits, ties → smaller track id
    m_idx = np.flatnonzero(matched)
    m_order = m_idx[np.lexsort((trk[m_idx], -maj_n[m_idx], maj_part[m_idx]))]
    best = m_order[np.unique(maj_part[m_order], return_index=True)[1]] if len(m_order) else m_order
    duplicate = matched.copy()
    duplicate[best] = False
    best_shared = np.zeros(len(part), dtype=np.int64)
    best_hits = np.zeros(len(part), dtype=np.int64)
    best_shared[maj_part[best]] = maj_n[best]
    best_hits[maj_part[best]] = t_counts[best]
    return EventMatch(
        track_id=trk[cand],
        track_n_hits=t_counts[cand],
        track_major=part[maj_part][cand],
        track_major_n_hits=maj_n[cand],
        track_matched=matched[cand],
        track_duplicate=duplicate[cand],
        particle_id=part[signal],
        particle_n_hits=p_counts[signal],
        particle_matched=best_shared[signal] > 0,
        particle_best_shared=best_shared[signal],
        particle_best_track_hits=best_hits[signal],
    )


def adjusted_rand_score(labels_true: np.ndarray, labels_pred: np.ndarray) -> float:
    """ARI exactly as ``sklearn.metrics.adjusted_rand_score`` (pair-confusion form, same special
    cases; a test checks equality), without sklearn's per-call validation (~3 ms per call)."""
    n = len(labels_true)
    _, t = np.unique(labels_true, return_inverse=True)
    _, y = np.unique(labels_pred, return_inverse=True)
    _, pair_counts = np.unique(t.astype(np.int64) * (int(y.max(initial=0)) + 1) + y, return_counts=True)
    sum_sq = int((pair_counts.astype(np.int64) ** 2).sum())
    rows = int((np.bincount(t).astype(np.int64) ** 2).sum())
    cols = int((np.bincount(y).astype(np.int64) ** 2).sum())
    tp = sum_sq - n
    fp = cols - sum_sq  # sklearn's C[0, 1]
    fn = rows - sum_sq  # sklearn's C[1, 0]
    tn = n * n - fp - fn - sum_sq
    if fn == 0 and fp == 0:
        return 1.0
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


def _singletons(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Give every masked entry a label of its own (distinct from all kept labels)."""
    out = labels.astype(np.int64, copy=True)
    base = out.max(initial=0) + 1
    out[mask] = base + np.arange(int(mask.sum()))
    return out


def ari_event(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """ARI variants of one event (SPEC §9), each NaN when undefined (no points / no signal points).

    ``all``: noise is one true cluster, unassigned one predicted cluster (FM4NPP); ``signal``: noise
    points dropped; ``singleton``: every noise and every unassigned point is its own cluster.
    """
    truth = np.asarray(truth, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    nan = float("nan")
    if len(truth) == 0:
        return {"all": nan, "signal": nan, "singleton": nan}
    sig = truth != 0
    return {
        "all": adjusted_rand_score(truth, pred),
        "signal": adjusted_rand_score(truth[sig], pred[sig]) if sig.any() else nan,
        "singleton": adjusted_rand_score(_singletons(truth, ~sig), _singletons(pred, pred < 0)),
    }


def event_counts(truth: np.ndarray, pred: np.ndarray, config: MatchConfig = MatchConfig()) -> dict[str, float]:
    """Per-event scores whose event-pooled ratios are the headline metrics (for event bootstraps):
    ``ari`` (ARI_all), ``ari_signal``, ``n_particles`` (selected: ≥ min_particle_hits), ``n_found``
    (selected with a matched track), ``n_tracks`` (candidates), ``n_matched`` (matched candidates).
    efficiency = Σ n_found / Σ n_particles and purity = Σ n_matched / Σ n_tracks over the same events
    reproduce :func:`evaluate_tracking` exactly (a test checks it)."""
    m = match_event(truth, pred, config)
    sel = m.particle_n_hits >= config.min_particle_hits
    a = ari_event(truth, pred)
    return {
        "ari": a["all"],
        "ari_signal": a["signal"],
        "n_particles": float(sel.sum()),
        "n_found": float((sel & m.particle_matched).sum()),
        "n_tracks": float(len(m.track_id)),
        "n_matched": float(m.track_matched.sum()),
    }


def _particle_column(event: TrackingEvent, ids: np.ndarray, name: str, fill: float) -> np.ndarray:
    """Look up a particle-table column for ``ids``; ``fill`` where the table or the id is missing."""
    out = np.full(len(ids), fill, dtype=np.float64)
    table = event.particles
    if table is None or name not in table or len(table["particle_id"]) == 0:
        return out
    pid = np.asarray(table["particle_id"])
    order = np.argsort(pid, kind="stable")
    pos = np.clip(np.searchsorted(pid[order], ids), 0, len(pid) - 1)
    found = pid[order][pos] == ids
    out[found] = np.asarray(table[name], dtype=np.float64)[order][pos[found]]
    return out


def _hit_pt(event: TrackingEvent) -> np.ndarray | None:
    if event.particles is None or "pt" not in event.particles:
        return None
    part, inv = np.unique(np.asarray(event.truth, dtype=np.int64), return_inverse=True)
    return _particle_column(event, part, "pt", 0.0)[inv]


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def _binned_efficiency(values: np.ndarray, found: np.ndarray, edges: np.ndarray) -> list[float]:
    idx = np.digitize(values, edges) - 1
    ok = (idx >= 0) & (idx < len(edges) - 1)
    den = np.bincount(idx[ok], minlength=len(edges) - 1)
    num = np.bincount(idx[ok], weights=found[ok].astype(np.float64), minlength=len(edges) - 1)
    return [_ratio(n, d) for n, d in zip(num, den, strict=True)]


@dataclass
class _Pool:
    """Per-particle and per-track arrays of all events, concatenated at the end."""

    particles: list[np.ndarray]  # rows: matched, n_p, shared, n_k*, pt, eta, primary
    tracks: list[np.ndarray]  # rows: matched, duplicate


def _pool_counts(matches: list[tuple[EventMatch, TrackingEvent]]) -> dict[str, np.ndarray]:
    pool = _Pool([], [])
    for m, ev in matches:
        ids = m.particle_id
        pool.particles.append(
            np.stack(
                [
                    m.particle_matched.astype(np.float64),
                    m.particle_n_hits.astype(np.float64),
                    m.particle_best_shared.astype(np.float64),
                    m.particle_best_track_hits.astype(np.float64),
                    _particle_column(ev, ids, "pt", np.nan),
                    _particle_column(ev, ids, "eta", np.nan),
                    _particle_column(ev, ids, "primary", np.nan),
                ]
            )
        )
        pool.tracks.append(np.stack([m.track_matched, m.track_duplicate]).astype(np.float64))
    p = np.concatenate(pool.particles, axis=1) if pool.particles else np.zeros((7, 0))
    t = np.concatenate(pool.tracks, axis=1) if pool.tracks else np.zeros((2, 0))
    names = ("matched", "n_hits", "shared", "track_hits", "pt", "eta", "primary")
    out = {name: p[i] for i, name in enumerate(names)}
    out["t_matched"], out["t_duplicate"] = t[0], t[1]
    return out


def _matching_summary(c: dict[str, np.ndarray], config: MatchConfig, suffix: str) -> dict[str, float]:
    sel = c["n_hits"] >= config.min_particle_hits
    found = c["matched"] > 0
    n_cand = len(c["t_matched"])
    n_matched = float(c["t_matched"].sum())
    return {
        f"efficiency{suffix}": _ratio(float(found[sel].sum()), float(sel.sum())),
        f"purity{suffix}": _ratio(n_matched, n_cand),
        f"fake_rate{suffix}": _ratio(n_cand - n_matched, n_cand),
        f"duplicate_rate{suffix}": _ratio(float(c["t_duplicate"].sum()), n_cand),
    }


def evaluate_tracking(
    events: Iterable[TrackingEvent], config: MatchConfig = MatchConfig()
) -> dict[str, float | int | list[float]]:
    """Pooled tracking metrics over events (SPEC §9).

    Keys: ``ari`` (= ARI_all, per-event mean), ``ari_signal``, ``ari_singleton``, ``ari_median``,
    ``ari_pooled``; ``efficiency``, ``purity`` (track purity = 1 − fake rate), ``fake_rate``,
    ``duplicate_rate`` under ``config`` and the same four with suffix ``_geq`` under the ≥ convention;
    ``efficiency_pt1`` (pT > 1 GeV), ``efficiency_primary_pt0p2`` (primaries, pT > 0.2 GeV),
    ``efficiency_sphenix`` (pT > 1 GeV, |η| < 1.1, ≥ 20 hits), ``efficiency_vs_pt`` (15 bins 0–3 GeV),
    ``efficiency_vs_eta`` (11 bins over |η| < 1.1), ``pt_bins_gev``, ``eta_bins``; ``hit_efficiency`` and
    ``hit_purity`` (best track of each found selected particle, averaged); ``trackml_score`` and
    ``trackml_score_uniform`` (per-event mean); ``n_events``, ``n_particles`` (selected), ``n_tracks``
    (candidates), ``min_track_hits``, ``min_particle_hits``. pT/η metrics are NaN without a particle table.
    """
    geq = MatchConfig(
        config.min_track_hits, config.min_particle_hits, config.fraction, not config.strict
    )
    aris: list[dict[str, float]] = []
    scores: list[tuple[float, float]] = []
    main: list[tuple[EventMatch, TrackingEvent]] = []
    other: list[tuple[EventMatch, TrackingEvent]] = []
    pooled_t: list[np.ndarray] = []
    pooled_y: list[np.ndarray] = []
    for i, ev in enumerate(events):
        truth = np.asarray(ev.truth, dtype=np.int64)
        pred = np.asarray(ev.pred, dtype=np.int64)
        if truth.shape != pred.shape:
            raise ValueError(f"event {i}: truth {truth.shape} and prediction {pred.shape} differ")
        aris.append(ari_event(truth, pred))
        main.append((match_event(truth, pred, config), ev))
        other.append((match_event(truth, pred, geq), ev))
        w = (
            ev.weight
            if ev.weight is not None
            else trackml_weights(truth, order=ev.order, pt=_hit_pt(ev))
        )
        scores.append(
            (
                trackml_event_score(truth, pred, w),
                trackml_event_score(truth, pred, uniform_weights(truth)),
            )
        )
        pooled_t.append(np.unique(truth, return_inverse=True)[1].ravel())
        pooled_y.append(np.unique(pred, return_inverse=True)[1].ravel())
    out: dict[str, float | int | list[float]] = {}
    ari_all = np.array([a["all"] for a in aris], dtype=np.float64)
    out["ari"] = _nanmean(ari_all)
    out["ari_signal"] = _nanmean(np.array([a["signal"] for a in aris], dtype=np.float64))
    out["ari_singleton"] = _nanmean(np.array([a["singleton"] for a in aris], dtype=np.float64))
    out["ari_median"] = float(np.nanmedian(ari_all)) if np.isfinite(ari_all).any() else float("nan")
    out["ari_pooled"] = _pooled_ari(pooled_t, pooled_y)
    c = _pool_counts(main)
    out.update(_matching_summary(c, config, ""))
    out.update(_matching_summary(_pool_counts(other), geq, "_geq"))
    sel = c["n_hits"] >= config.min_particle_hits
    found = c["matched"] > 0
    pt, eta = c["pt"], c["eta"]
    with np.errstate(invalid="ignore"):
        out["efficiency_pt1"] = _ratio(
            float(found[sel & (pt > 1.0)].sum()), float((sel & (pt > 1.0)).sum())
        )
        prim = sel & (c["primary"] > 0) & (pt > 0.2)
        out["efficiency_primary_pt0p2"] = _ratio(float(found[prim].sum()), float(prim.sum()))
        sph = (c["n_hits"] >= 20) & (pt > 1.0) & (np.abs(eta) < 1.1)  # SPEC §9 sPHENIX variant
        out["efficiency_sphenix"] = _ratio(float(found[sph].sum()), float(sph.sum()))
    out["efficiency_vs_pt"] = _binned_efficiency(pt[sel], found[sel], PT_BINS_GEV)
    out["efficiency_vs_eta"] = _binned_efficiency(eta[sel], found[sel], ETA_BINS)
    out["pt_bins_gev"] = np.round(PT_BINS_GEV, 6).tolist()
    out["eta_bins"] = np.round(ETA_BINS, 6).tolist()
    got = sel & found
    out["hit_efficiency"] = _nanmean(c["shared"][got] / c["n_hits"][got])
    out["hit_purity"] = _nanmean(c["shared"][got] / np.maximum(c["track_hits"][got], 1))
    s = np.array(scores, dtype=np.float64).reshape(-1, 2)
    out["trackml_score"] = _nanmean(s[:, 0])
    out["trackml_score_uniform"] = _nanmean(s[:, 1])
    out["n_events"] = len(aris)
    out["n_particles"] = int(sel.sum())
    out["n_tracks"] = len(c["t_matched"])
    out["min_track_hits"] = config.min_track_hits
    out["min_particle_hits"] = config.min_particle_hits
    return out


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else float("nan")


def _pooled_ari(truth: list[np.ndarray], pred: list[np.ndarray]) -> float:
    """ARI over all points of all events with event-unique labels (SPEC §9). Inputs: per-event dense
    labels 0..m−1, made unique across events by offsets."""
    if not truth or sum(len(t) for t in truth) == 0:
        return float("nan")

    def unique_across(labels: list[np.ndarray]) -> np.ndarray:
        sizes = np.array([int(x.max(initial=-1)) + 1 for x in labels])
        offsets = np.r_[0, np.cumsum(sizes)[:-1]]
        return np.concatenate([x + o for x, o in zip(labels, offsets, strict=True)])

    return adjusted_rand_score(unique_across(truth), unique_across(pred))
