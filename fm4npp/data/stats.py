"""Summary statistics of an event set, for validation against TPCpp-10M (SPEC §2.2, §3).

The comparison table against the reference values lives in :mod:`fm4npp.data.validation`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from fm4npp.data.fastsim.geometry import R_PER_GEV_CM
from fm4npp.data.schema import MAX_HITS_DEFAULT, ORIGIN_NAMES, PID_CLASSES, Event

ETA_MAX = 1.1  # SPEC §2.1 acceptance
PRIMARY_MIN_PT_GEV = 0.1  # SPEC §3: dN/dη of charged primaries with pT > 0.1 GeV/c
MIN_TRACK_HITS = 5  # SPEC §9: project default for a "track"


def return_branch(
    x: np.ndarray,
    y: np.ndarray,
    pt: np.ndarray,
    phi: np.ndarray,
    charge: np.ndarray,
    vx: np.ndarray,
    vy: np.ndarray,
) -> np.ndarray:
    """True where a hit at (x, y) lies on the return (inward-moving) branch of the helix of its truth
    particle (pT, φ and vertex at production, charge; uniform Bz as in SPEC §3.4). All (M,) → (M,) bool.

    With h = sign(q) the helix centre is C = v + h·R·(sin φ, −cos φ) and the radial velocity at P has
    the sign of h·(Cx·Py − Cy·Px)."""
    h = np.sign(charge).astype(np.float64)
    radius = R_PER_GEV_CM * np.asarray(pt, dtype=np.float64) / np.maximum(np.abs(charge), 1)
    cx = vx + h * radius * np.sin(phi)
    cy = vy - h * radius * np.cos(phi)
    return h * (cx * y - cy * x) < 0


def _event_return_hits(ev: Event) -> tuple[int, int]:
    """(return-branch signal hits, signal hits with a known particle) of one event."""
    h, p = ev.hits, ev.particles
    sig = h["track_id"] > 0
    if not sig.any() or len(p["particle_id"]) == 0:
        return 0, 0
    order = np.argsort(p["particle_id"])
    ids = p["particle_id"][order]
    pos = np.clip(np.searchsorted(ids, h["track_id"][sig]), 0, len(ids) - 1)
    known = ids[pos] == h["track_id"][sig]
    row = order[pos[known]]
    ret = return_branch(
        h["x"][sig][known].astype(np.float64), h["y"][sig][known].astype(np.float64),
        p["pt"][row], p["phi"][row].astype(np.float64), p["charge"][row],
        p["vx"][row].astype(np.float64), p["vy"][row].astype(np.float64),
    )  # fmt: skip
    return int(ret.sum()), int(known.sum())


def summarize(events: Iterable[Event]) -> dict[str, Any]:
    """Streaming summary: hits/event (mean, quantiles, share above 3,200), tracks with ≥ 5 hits/event
    (track_id > 0; and all particles incl. noise curlers), noise fraction, PID fractions of hits, energy
    mean/std, return-branch share of signal hits, tracks with ≥ 5 hits by origin, dN/dη and mean pT of
    charged primaries (|η| < 1.1, pT > 0.1)."""
    n_hits: list[int] = []
    tracks5: list[int] = []
    particles5: list[int] = []
    n_noise = 0
    pid_counts = np.zeros(len(PID_CLASSES), dtype=np.int64)
    origin5 = np.zeros(len(ORIGIN_NAMES), dtype=np.int64)
    e_sum = e_sq = 0.0
    n_return = n_signal_known = 0
    prim_pt: list[np.ndarray] = []
    has_truth = False
    for ev in events:
        h = ev.hits
        n_hits.append(ev.n_hits)
        tid = h["track_id"][h["track_id"] > 0]
        ids, c = np.unique(tid, return_counts=True)
        tracks5.append(int((c >= MIN_TRACK_HITS).sum()))
        pid_ids = h["particle_id"][h["particle_id"] > 0]
        _, c2 = np.unique(pid_ids, return_counts=True)
        particles5.append(int((c2 >= MIN_TRACK_HITS).sum()))
        n_noise += int(h["noise"].sum())
        pid_counts += np.bincount(h["pid"], minlength=len(PID_CLASSES))[: len(PID_CLASSES)]
        e = h["energy"].astype(np.float64)
        e_sum += float(e.sum())
        e_sq += float((e * e).sum())
        p = ev.particles
        if len(p["particle_id"]):
            has_truth = True
            sel = (
                p["primary"]
                & (p["charge"] != 0)
                & (np.abs(p["eta"]) < ETA_MAX)
                & (p["pt"] > PRIMARY_MIN_PT_GEV)
            )
            prim_pt.append(p["pt"][sel].astype(np.float64))
            r, k = _event_return_hits(ev)
            n_return += r
            n_signal_known += k
            long_ids = ids[c >= MIN_TRACK_HITS]
            origin = p["origin"][np.isin(p["particle_id"], long_ids)].astype(np.int64)
            origin5 += np.bincount(origin.clip(0, len(ORIGIN_NAMES) - 1), minlength=len(ORIGIN_NAMES))
    n_ev = len(n_hits)
    total = int(np.sum(n_hits))
    arr = np.asarray(n_hits, dtype=np.float64)
    pts = np.concatenate(prim_pt) if prim_pt else np.zeros(0)
    e_mean = e_sum / total if total else float("nan")
    return {
        "n_events": n_ev,
        "n_hits_total": total,
        "hits_per_event_mean": float(arr.mean()) if n_ev else float("nan"),
        "hits_per_event_quantiles": {
            q: float(np.quantile(arr, float(q))) if n_ev else float("nan")
            for q in ("0.1", "0.5", "0.9", "0.99")
        },
        "events_above_3200": int((arr > MAX_HITS_DEFAULT).sum()),
        "share_above_3200": float((arr > MAX_HITS_DEFAULT).mean()) if n_ev else float("nan"),
        "tracks_ge5_per_event_mean": float(np.mean(tracks5)) if n_ev else float("nan"),
        "particles_ge5_per_event_mean": float(np.mean(particles5)) if n_ev else float("nan"),
        "tracks_ge5_by_origin": (
            {name: float(origin5[i] / n_ev) for i, name in enumerate(ORIGIN_NAMES)}
            if has_truth and n_ev
            else None
        ),
        "noise_fraction": n_noise / total if total else float("nan"),
        "pid_fractions": {
            name: float(pid_counts[i] / total) if total else float("nan")
            for i, name in enumerate(PID_CLASSES)
        },
        "energy_mean": e_mean,
        "energy_std": float(np.sqrt(max(e_sq / total - e_mean**2, 0))) if total else float("nan"),
        "return_branch_share": n_return / n_signal_known if n_signal_known else None,
        "dndeta": float(len(pts) / n_ev / (2 * ETA_MAX)) if has_truth and n_ev else None,
        "mean_pt": float(pts.mean()) if len(pts) else None,
    }


def summarize_shards(path: str | Path) -> dict[str, Any]:
    """:func:`summarize` over every event of the shard set at ``path``, its validation table against
    TPCpp-10M (``validation``, see :mod:`fm4npp.data.validation`) and its metadata."""
    from fm4npp.data.shards import ShardSet
    from fm4npp.data.validation import validation_rows

    shard_set = ShardSet(path)
    summary = summarize(shard_set.iter_events())
    summary["validation"] = validation_rows(summary)
    summary["metadata"] = shard_set.metadata
    return summary
