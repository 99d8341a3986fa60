"""Test double: a tiny synthetic TPCpp-10M archive in the published layout (SPEC §2.5).

    ROOT/tpcpp_000.npz, tpcpp_001.npz          unlabelled: data (ΣN, 4) = E, x, y, z; size (E,)
    ROOT/labeled/train/spacepoints_000.npz …   sharded, with track_ids_000.npz, pid_labels_000.npz,
                                                noise_tags_000.npz … (key data, one entry per point)
    ROOT/labeled/{validation,test}/spacepoints.npz + track_ids.npz, pid_labels.npz, noise_tags.npz

Events are particle-gun events (real helices and labels), so adapters can learn something."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fm4npp.data.generate import simulate_events
from fm4npp.data.gun import GunConfig
from fm4npp.data.schema import Event

UNLABELLED_FILES = (30, 30)  # events per unlabelled file (plus one oversize event in the first)
LABELLED = {"train": (14, 14), "validation": (8,), "test": (8,)}  # events per file


def _arrays(events: list[Event]) -> dict[str, np.ndarray]:
    h = {c: np.concatenate([e.hits[c] for e in events]) for c in ("energy", "x", "y", "z")}
    return {
        "data": np.stack([h["energy"], h["x"], h["y"], h["z"]], axis=1).astype(np.float32),
        "size": np.array([e.n_hits for e in events], np.int64),
        "track_ids": np.concatenate([e.hits["particle_id"] for e in events]).astype(np.int64),
        "pid_labels": np.concatenate([e.hits["pid"] for e in events]).astype(np.int64),
        "noise_tags": np.concatenate([e.hits["noise"] for e in events]).astype(bool),
    }


def write_replica(root: Path, seed: int = 7, duplicate: bool = False) -> dict[str, int]:
    """Write the archive; returns hits per part. ``duplicate`` copies an unlabelled event into the
    labelled test split (for the disjointness check)."""
    n = sum(UNLABELLED_FILES) + sum(sum(v) for v in LABELLED.values())
    events = simulate_events(n, seed, gun=GunConfig(multiplicity=(3, 6)))
    events = [e for e in events if e.n_hits > 0]
    root.mkdir(parents=True)
    counts: dict[str, int] = {}
    start = 0
    for i, m in enumerate(UNLABELLED_FILES):
        a = _arrays(events[start : start + m])
        data, size = a["data"], a["size"]
        if i == 0:  # one event above the 3,200-point filter
            big = np.tile(data[:1], (3300, 1))
            data, size = np.concatenate([data, big]), np.r_[size, 3300]
        np.savez_compressed(root / f"tpcpp_{i:03d}.npz", data=data, size=size)
        start += m
    counts["unlabelled_hits"] = int(sum(e.n_hits for e in events[:start]))
    for split, files in LABELLED.items():
        d = root / "labeled" / split
        d.mkdir(parents=True)
        chunk = events[start : start + sum(files)]
        if duplicate and split == "test":
            chunk = [events[0], *chunk[1:]]
        counts[f"{split}_hits"] = int(sum(e.n_hits for e in chunk))
        counts[f"{split}_events"] = len(chunk)
        first = 0
        for j, m in enumerate(files):
            a = _arrays(chunk[first : first + m])
            suffix = f"_{j:03d}" if len(files) > 1 else ""
            np.savez_compressed(d / f"spacepoints{suffix}.npz", data=a["data"], size=a["size"])
            for key in ("track_ids", "pid_labels", "noise_tags"):
                np.savez_compressed(d / f"{key}{suffix}.npz", data=a[key])
            first += m
        start += sum(files)
    return counts
