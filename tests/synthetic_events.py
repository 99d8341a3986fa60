"""Test double: a cheap synthetic shard set (random hits on the 48 pad rows), for tests that need many
events fast (the gun and PYTHIA are far slower). Not physics: uniform φ and |η| < 1.1, no truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fm4npp.data.fastsim.geometry import ROW_RADIUS_CM
from fm4npp.data.schema import HIT_COLUMNS, PARTICLE_COLUMNS
from fm4npp.data.shards import ShardInfo, commit_dir, finalize, staging_dir, write_shard


def write_synthetic_shards(
    out: Path, n_events: int, hits: tuple[int, int] = (20, 80), seed: int = 0, per_shard: int = 20_000
) -> Path:
    """Shard set of ``n_events`` events with a uniform number of hits in ``hits`` (inclusive)."""
    rng = np.random.default_rng(seed)
    stage = staging_dir(out)
    infos: list[ShardInfo] = []
    for k, start in enumerate(range(0, n_events, per_shard)):
        ids = np.arange(start, min(n_events, start + per_shard), dtype=np.int64)
        sizes = rng.integers(hits[0], hits[1] + 1, len(ids))
        n = int(sizes.sum())
        r = ROW_RADIUS_CM[rng.integers(0, 48, n)]
        phi = rng.uniform(-np.pi, np.pi, n)
        eta = rng.uniform(-1.1, 1.1, n)
        cols = {name: np.zeros(n, dtype) for name, dtype in HIT_COLUMNS.items()}
        cols.update(
            event=np.repeat(ids, sizes), x=r * np.cos(phi), y=r * np.sin(phi), z=r * np.sinh(eta),
            energy=rng.gamma(1.0, 253.0, n), layer=np.full(n, -1),
        )  # fmt: skip
        parts = {name: np.zeros(0, dtype) for name, dtype in PARTICLE_COLUMNS.items()}
        parts["event"] = np.zeros(0, np.int64)
        infos.append(write_shard(stage, k, cols, parts, ids))
    finalize(stage, infos, {"source": "synthetic-test"})
    commit_dir(stage, out)
    return out
