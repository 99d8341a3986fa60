"""Summary statistics of an event set, for validation against TPCpp-10M (SPEC §2.2, §3)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from fm4npp.data.schema import PID_CLASSES, Event

ETA_MAX = 1.1  # SPEC §2.1 acceptance
PRIMARY_MIN_PT_GEV = 0.1  # SPEC §3: dN/dη of charged primaries with pT > 0.1 GeV/c
TPCPP_TARGETS = {"hits_per_event_mean": 845.0, "tracks_ge5_per_event_mean": 15.5}  # SPEC §2.2


def summarize(events: Iterable[Event]) -> dict[str, Any]:
    """Streaming summary: hits/event (mean, quantiles), tracks with ≥ 5 hits/event (track_id > 0; and
    all particles incl. noise curlers), noise fraction, PID fractions of hits, energy mean/std,
    dN/dη and mean pT of charged primaries (|η| < 1.1, pT > 0.1)."""
    n_hits: list[int] = []
    tracks5: list[int] = []
    particles5: list[int] = []
    n_noise = 0
    pid_counts = np.zeros(len(PID_CLASSES), dtype=np.int64)
    e_sum = e_sq = 0.0
    prim_pt: list[np.ndarray] = []
    has_truth = False
    for ev in events:
        h = ev.hits
        n_hits.append(ev.n_hits)
        tid = h["track_id"][h["track_id"] > 0]
        _, c = np.unique(tid, return_counts=True)
        tracks5.append(int((c >= 5).sum()))
        pid_ids = h["particle_id"][h["particle_id"] > 0]
        _, c = np.unique(pid_ids, return_counts=True)
        particles5.append(int((c >= 5).sum()))
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
        "events_above_3200": int((arr > 3200).sum()),
        "tracks_ge5_per_event_mean": float(np.mean(tracks5)) if n_ev else float("nan"),
        "particles_ge5_per_event_mean": float(np.mean(particles5)) if n_ev else float("nan"),
        "noise_fraction": n_noise / total if total else float("nan"),
        "pid_fractions": {
            name: float(pid_counts[i] / total) if total else float("nan")
            for i, name in enumerate(PID_CLASSES)
        },
        "energy_mean": e_mean,
        "energy_std": float(np.sqrt(max(e_sq / total - e_mean**2, 0))) if total else float("nan"),
        "dndeta": float(len(pts) / n_ev / (2 * ETA_MAX)) if has_truth and n_ev else None,
        "mean_pt": float(pts.mean()) if len(pts) else None,
    }


def summarize_shards(path: str | Path) -> dict[str, Any]:
    """:func:`summarize` over every event of the shard set at ``path``, plus its metadata."""
    from fm4npp.data.shards import ShardSet

    shard_set = ShardSet(path)
    summary = summarize(shard_set.iter_events())
    summary["metadata"] = shard_set.metadata
    return summary
