"""Reader of the public TPCpp-10M npz layout (SPEC §2.5) and a converter to our shard sets.

A split directory holds ``spacepoints.npz`` (or ``spacepoints_000.npz``, ``…_001.npz`` … concatenated in
order) with ``data`` (ΣN × 4: E, x, y, z) and ``size`` (points per event); optional per-point label files
``track_ids``, ``pid_labels`` (or a ``particle_ids/`` directory) and ``noise_tags``, each single or
sharded like the spacepoints, with key ``data``. Event ids are the event's index in the split, so they
stay stable when the 3,200-point filter drops events.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fm4npp.data.fastsim.geometry import row_of_radius
from fm4npp.data.schema import MAX_HITS_DEFAULT, Event, make_hits
from fm4npp.data.shards import (
    ShardInfo,
    ShardSet,
    commit_dir,
    events_to_tables,
    finalize,
    staging_dir,
    write_shard,
)
from fm4npp.errors import DataError


def _parts(src: Path, stem: str) -> list[Path]:
    single = src / f"{stem}.npz"
    if single.exists():
        return [single]
    sharded = sorted(src.glob(f"{stem}_[0-9]*.npz"))
    if sharded:
        return sharded
    folder = src / stem
    if folder.is_dir():
        return sorted(folder.glob("*.npz"))
    return []


def _load(paths: list[Path], key: str) -> np.ndarray:
    arrays = []
    for p in paths:
        try:
            with np.load(p) as z:
                if key not in z.files:
                    raise DataError(f"{p}: key '{key}' missing (keys: {', '.join(z.files)})")
                arrays.append(z[key])
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
            raise DataError(f"{p}: unreadable npz ({err})") from err
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)  # (no copy of a single file)


@dataclass
class TPCppSplit:
    """One labelled or unlabelled split: flat arrays plus event offsets (E+1,)."""

    src: Path
    data: np.ndarray
    offsets: np.ndarray
    track_ids: np.ndarray | None
    pid: np.ndarray | None
    noise: np.ndarray | None
    max_hits: int | None = MAX_HITS_DEFAULT
    n_dropped: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        sizes = np.diff(self.offsets)
        self.n_dropped = 0 if self.max_hits is None else int((sizes > self.max_hits).sum())

    @property
    def n_events_total(self) -> int:
        return len(self.offsets) - 1

    def kept_ids(self) -> np.ndarray:
        """Event ids passing the hit filter."""
        sizes = np.diff(self.offsets)
        keep = np.ones(len(sizes), bool) if self.max_hits is None else sizes <= self.max_hits
        return np.flatnonzero(keep).astype(np.int64)

    def event(self, i: int) -> Event:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        d = self.data[a:b]
        r = np.hypot(d[:, 1], d[:, 2])
        cols: dict[str, np.ndarray] = {
            "energy": d[:, 0], "x": d[:, 1], "y": d[:, 2], "z": d[:, 3], "layer": row_of_radius(r),
        }  # fmt: skip
        noise = self.noise[a:b].astype(bool) if self.noise is not None else None
        if self.track_ids is not None:
            tid = self.track_ids[a:b].astype(np.int64)
            cols["particle_id"] = tid
            cols["track_id"] = np.where(noise, 0, tid) if noise is not None else tid
        if self.pid is not None:
            cols["pid"] = self.pid[a:b]
        if noise is not None:
            cols["noise"] = noise
        return Event(event_id=i, hits=make_hits(**cols))

    def iter_events(self) -> Iterator[Event]:
        for i in self.kept_ids():
            yield self.event(int(i))


def read_tpcpp(src: str | Path, max_hits: int | None = MAX_HITS_DEFAULT) -> TPCppSplit:
    """Load one split directory; DataError naming the missing or inconsistent file."""
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"{src}: TPCpp-10M split directory not found")
    sp = _parts(src, "spacepoints")
    if not sp:
        raise DataError(f"{src / 'spacepoints.npz'}: missing (nor spacepoints_000.npz…)")
    data = _load(sp, "data")
    size = _load(sp, "size").astype(np.int64)
    if data.ndim != 2 or data.shape[1] != 4:
        raise DataError(f"{sp[0]}: 'data' has shape {data.shape}, expected (N, 4) = E, x, y, z")
    if int(size.sum()) != len(data) or (size < 0).any():
        raise DataError(f"{sp[0]}: sum of 'size' ({int(size.sum())}) != len(data) ({len(data)})")
    labels: dict[str, np.ndarray | None] = {}
    for key, stems in (
        ("track_ids", ("track_ids",)),
        ("pid", ("pid_labels", "particle_ids")),
        ("noise", ("noise_tags",)),
    ):
        paths = next((p for s in stems if (p := _parts(src, s))), [])
        labels[key] = _load(paths, "data").reshape(-1) if paths else None
        if labels[key] is not None and len(labels[key]) != len(data):  # type: ignore[arg-type]
            raise DataError(f"{paths[0]}: {len(labels[key])} labels for {len(data)} points")  # type: ignore[arg-type]
    return TPCppSplit(
        src, data.astype(np.float32, copy=False), np.r_[0, np.cumsum(size)],
        labels["track_ids"], labels["pid"], labels["noise"], max_hits,
    )  # fmt: skip


def convert_tpcpp(
    src: str | Path,
    out_dir: str | Path,
    max_hits: int | None = MAX_HITS_DEFAULT,
    events_per_shard: int = 1000,
) -> tuple[ShardSet, int]:
    """Convert a split to a shard set; returns (ShardSet, events dropped by the hit filter)."""
    split = read_tpcpp(src, max_hits)
    ids = split.kept_ids()
    stage = staging_dir(Path(out_dir))
    try:
        shards: list[ShardInfo] = []
        for k, start in enumerate(range(0, len(ids), events_per_shard)):
            chunk = ids[start : start + events_per_shard]
            events = [split.event(int(i)) for i in chunk]
            hits, parts, eids = events_to_tables(events)
            shards.append(write_shard(stage, k, hits, parts, eids))
        meta = {
            "source": "tpcpp-10m",
            "src": str(Path(src).resolve()),
            "n_events_total": split.n_events_total,
            "n_dropped_max_hits": split.n_dropped,
            "max_hits": max_hits,
            "labels": [k for k in ("track_ids", "pid", "noise") if getattr(split, k) is not None],
        }
        finalize(stage, shards, meta)
        commit_dir(stage, Path(out_dir))
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return ShardSet(out_dir), split.n_dropped

