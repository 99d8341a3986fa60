"""Parquet shard store for events (schema in fm4npp.data.schema).

A shard set is a directory::

    manifest.json                    schema version, n_events, shard list, generator metadata
    index.parquet                    event_id, shard, n_hits, n_particles (one row per event, sorted)
    shard_00000.hits.parquet         event_id + HIT_COLUMNS, sorted by event_id
    shard_00000.particles.parquet    event_id + PARTICLE_COLUMNS, sorted by event_id

Every file is written to a temporary name and renamed, and a whole set is built in a temporary
directory that :func:`commit_dir` renames into place, so readers never see half a shard or half a set.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fm4npp.data.schema import HIT_COLUMNS, PARTICLE_COLUMNS, SCHEMA_VERSION, Event
from fm4npp.errors import DataError

MANIFEST = "manifest.json"
INDEX = "index.parquet"
VERSION_KEY = b"fm4npp.schema_version"


@dataclass(frozen=True)
class ShardInfo:
    """One written shard: its name stem, its event ids (sorted), hits and particles per event."""

    name: str
    event_ids: np.ndarray
    n_hits: np.ndarray
    n_particles: np.ndarray


def _write_parquet(path: Path, columns: dict[str, np.ndarray]) -> None:
    table = pa.table({k: pa.array(v) for k, v in columns.items()})
    table = table.replace_schema_metadata({VERSION_KEY: str(SCHEMA_VERSION).encode()})
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)


def _sorted_by_event(cols: dict[str, np.ndarray], columns: dict[str, str]) -> dict[str, np.ndarray]:
    order = np.argsort(cols["event"], kind="stable")
    out = {"event_id": cols["event"][order].astype(np.int64)}
    for name, dtype in columns.items():
        out[name] = np.asarray(cols[name])[order].astype(dtype, copy=False)
    return out


def write_shard(
    directory: Path,
    index: int,
    hits: dict[str, np.ndarray],
    particles: dict[str, np.ndarray],
    event_ids: np.ndarray,
) -> ShardInfo:
    """Write one shard. ``hits``/``particles`` are flat tables with an ``event`` column (the event id);
    ``event_ids`` lists every event of the shard, including events without hits."""
    name = f"shard_{index:05d}"
    h = _sorted_by_event(hits, HIT_COLUMNS)
    p = _sorted_by_event(particles, PARTICLE_COLUMNS)
    _write_parquet(directory / f"{name}.hits.parquet", h)
    _write_parquet(directory / f"{name}.particles.parquet", p)
    ids = np.sort(np.asarray(event_ids, dtype=np.int64))
    n_hits = np.diff(np.searchsorted(h["event_id"], np.r_[ids, ids[-1] + 1] if len(ids) else ids))
    n_part = np.diff(np.searchsorted(p["event_id"], np.r_[ids, ids[-1] + 1] if len(ids) else ids))
    return ShardInfo(name, ids, n_hits.astype(np.int32), n_part.astype(np.int32))


def finalize(directory: Path, shards: list[ShardInfo], metadata: dict[str, Any]) -> None:
    """Write the index and the manifest (last) of a shard set whose shards are all written."""
    shards = sorted(shards, key=lambda s: s.name)
    ids = np.concatenate([s.event_ids for s in shards]) if shards else np.zeros(0, np.int64)
    if len(np.unique(ids)) != len(ids):
        raise DataError(f"{directory}: duplicate event ids across shards")
    shard_no = np.concatenate(
        [np.full(len(s.event_ids), i, np.int32) for i, s in enumerate(shards)] or [np.zeros(0, np.int32)]
    )
    order = np.argsort(ids, kind="stable")
    cat = {
        "event_id": ids[order],
        "shard": shard_no[order],
        "n_hits": np.concatenate([s.n_hits for s in shards] or [np.zeros(0, np.int32)])[order],
        "n_particles": np.concatenate([s.n_particles for s in shards] or [np.zeros(0, np.int32)])[order],
    }
    _write_parquet(directory / INDEX, cat)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "n_events": len(ids),
        "shards": [s.name for s in shards],
        "metadata": metadata,
    }
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    tmp.replace(directory / MANIFEST)


def staging_dir(out_dir: Path) -> Path:
    """Check that ``out_dir`` is absent or empty and return a fresh sibling staging directory."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DataError(f"{out_dir}: output directory exists and is not empty; choose a new --out")
    if not out_dir.parent.exists():
        raise DataError(f"{out_dir.parent}: parent directory of --out does not exist")
    stage = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    return stage


def commit_dir(stage: Path, out_dir: Path) -> None:
    """Move a finished staging directory to ``out_dir`` (which is absent or empty)."""
    if Path(out_dir).exists():
        Path(out_dir).rmdir()
    stage.replace(out_dir)


def _read(path: Path, what: str) -> pa.Table:
    if not path.exists():
        raise DataError(f"{path}: {what} missing")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{path}: corrupt {what} ({err})") from err
    version = (table.schema.metadata or {}).get(VERSION_KEY)
    if version != str(SCHEMA_VERSION).encode():
        found = version.decode() if version else "none"
        raise DataError(f"{path}: schema_version {found}, expected {SCHEMA_VERSION}")
    return table


def _columns(table: pa.Table, columns: dict[str, str], path: Path) -> dict[str, np.ndarray]:
    missing = [c for c in ("event_id", *columns) if c not in table.column_names]
    if missing:
        raise DataError(f"{path}: columns {missing} missing")
    out = {"event_id": table.column("event_id").to_numpy()}
    for name, dtype in columns.items():
        out[name] = table.column(name).to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    return out


class ShardSet:
    """Streaming reader of a shard set directory; loads one shard at a time."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise DataError(f"{self.path}: shard set directory not found")
        manifest_path = self.path / MANIFEST
        if not manifest_path.exists():
            raise DataError(f"{manifest_path}: manifest missing (not a shard set, or unfinished)")
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as err:
            raise DataError(f"{manifest_path}: corrupt manifest ({err})") from err
        if manifest.get("schema_version") != SCHEMA_VERSION:
            raise DataError(
                f"{manifest_path}: schema_version {manifest.get('schema_version')}, "
                f"expected {SCHEMA_VERSION}"
            )
        self._shards: list[str] = list(manifest["shards"])
        self.metadata: dict[str, Any] = dict(manifest.get("metadata", {}))
        index = _read(self.path / INDEX, "event index")
        self.event_ids: np.ndarray = index.column("event_id").to_numpy()
        self.n_hits: np.ndarray = index.column("n_hits").to_numpy()
        self.n_particles: np.ndarray = index.column("n_particles").to_numpy()
        self._shard_of: np.ndarray = index.column("shard").to_numpy()
        if len(self.event_ids) != manifest.get("n_events"):
            raise DataError(f"{manifest_path}: n_events disagrees with {INDEX}")

    def __len__(self) -> int:
        return len(self.event_ids)

    def _positions(self, ids: Iterable[int] | np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        pos = np.searchsorted(self.event_ids, ids)
        bad = (pos >= len(self.event_ids)) | (self.event_ids[np.minimum(pos, len(self) - 1)] != ids)
        if len(self) == 0 or bad.any():
            missing = ids[bad][:5].tolist() if len(self) else ids[:5].tolist()
            raise DataError(f"{self.path}: event ids {missing} not in this shard set")
        return pos

    def _load_shard(self, k: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        stem = self.path / self._shards[k]
        hits_path = Path(f"{stem}.hits.parquet")
        part_path = Path(f"{stem}.particles.parquet")
        hits = _columns(_read(hits_path, "hits shard"), HIT_COLUMNS, hits_path)
        parts = _columns(_read(part_path, "particles shard"), PARTICLE_COLUMNS, part_path)
        return hits, parts

    def iter_events(self, ids: Iterable[int] | np.ndarray | None = None) -> Iterator[Event]:
        """Yield events in increasing id order (all of them, or the given ids), one shard in memory."""
        for events in self.iter_shards(ids):
            yield from events

    def iter_shards(self, ids: Iterable[int] | np.ndarray | None = None) -> Iterator[list[Event]]:
        """The events of each shard in turn (all, or the given ids), increasing id order."""
        pos = np.arange(len(self)) if ids is None else np.unique(self._positions(ids))
        shard_of = self._shard_of[pos]
        for k in np.unique(shard_of):
            hits, parts = self._load_shard(int(k))
            yield [_slice_event(int(e), hits, parts) for e in self.event_ids[pos[shard_of == k]]]

    def read_events(self, ids: Iterable[int] | np.ndarray) -> list[Event]:
        """Events with the given ids, in the order given."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        by_id = {e.event_id: e for e in self.iter_events(ids)}
        return [by_id[int(i)] for i in ids]


def _slice_event(event_id: int, hits: dict[str, np.ndarray], parts: dict[str, np.ndarray]) -> Event:
    lo, hi = np.searchsorted(hits["event_id"], [event_id, event_id + 1])
    plo, phi = np.searchsorted(parts["event_id"], [event_id, event_id + 1])
    return Event(
        event_id=event_id,
        hits={n: hits[n][lo:hi] for n in HIT_COLUMNS},
        particles={n: parts[n][plo:phi] for n in PARTICLE_COLUMNS},
    )


def events_to_tables(
    events: Iterable[Event],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """Flatten events to (hits, particles, event_ids) tables with an ``event`` column."""
    events = list(events)
    ids = np.array([e.event_id for e in events], dtype=np.int64)
    hits = {"event": np.repeat(ids, [e.n_hits for e in events])}
    for n, dtype in HIT_COLUMNS.items():
        hits[n] = np.concatenate([e.hits[n] for e in events] or [np.zeros(0, dtype)])
    n_part = [len(e.particles["particle_id"]) for e in events]
    parts = {"event": np.repeat(ids, n_part)}
    for n, dtype in PARTICLE_COLUMNS.items():
        parts[n] = np.concatenate([e.particles[n] for e in events] or [np.zeros(0, dtype)])
    return hits, parts, ids
