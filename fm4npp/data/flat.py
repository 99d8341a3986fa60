"""Memory-mapped pretraining storage (SPEC §2.5): flat float32 hits + int64 offsets, read in place.

A flat set is a directory::

    hits.npy       (ΣN, 4) float32   E, x, y, z of every hit, events concatenated in event-id order
    offsets.npy    (E + 1,) int64    event i's hits are hits[offsets[i]:offsets[i + 1]]
    event_ids.npy  (E,) int64        sorted, unique
    flat.json      n_events, n_hits, source (written last: its presence means the set is complete)

Pretraining needs only (E, x, y, z) per hit (SPEC §5.1: positions and energy; labels are for the
downstream tasks), so the three arrays are all a training process opens. They are memory-mapped, never
loaded: a process touches only the pages of the events it reads, so its resident memory does not grow
with the tier (issue 13; compressed ``.npz`` and Parquet cannot be mapped). Writers stream event
chunks into a preallocated ``.npy`` (:func:`write_flat`), so conversion memory is bounded by one chunk.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fm4npp.data.schema import Event, make_hits
from fm4npp.data.shards import ShardSet
from fm4npp.errors import DataError

FLAT_DIR = "flat"  # sub-directory of a prepared shard set
FLAT_VERSION = 1
_MANIFEST = "flat.json"


def write_flat(
    out_dir: Path,
    chunks: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
    n_events: int,
    n_hits: int,
    source: dict[str, Any] | None = None,
) -> Path:
    """Write a flat set from ``chunks`` of (event_ids (e,), sizes (e,), hits (Σsizes, 4) float32), in
    increasing event-id order, totalling ``n_events`` events and ``n_hits`` hits. Built in a staging
    directory renamed into place, so a reader never sees half a set. Returns ``out_dir``."""
    out_dir = Path(out_dir)
    if (out_dir / _MANIFEST).is_file():
        raise DataError(f"{out_dir}: flat set exists already")
    stage = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        hits = np.lib.format.open_memmap(stage / "hits.npy", "w+", np.float32, (n_hits, 4))
        offsets = np.lib.format.open_memmap(stage / "offsets.npy", "w+", np.int64, (n_events + 1,))
        ids = np.lib.format.open_memmap(stage / "event_ids.npy", "w+", np.int64, (n_events,))
        offsets[0] = 0
        e = h = 0
        last = None
        for chunk_ids, sizes, chunk_hits in chunks:
            m, s = len(chunk_ids), int(np.sum(sizes))
            if e + m > n_events or h + s > n_hits or len(chunk_hits) != s:
                raise DataError(f"{out_dir}: more events or hits than announced, or sizes ≠ hits")
            if m and ((last is not None and chunk_ids[0] <= last) or np.any(np.diff(chunk_ids) <= 0)):
                raise DataError(f"{out_dir}: event ids must be written in increasing order")
            ids[e : e + m] = chunk_ids
            offsets[e + 1 : e + m + 1] = h + np.cumsum(sizes)
            hits[h : h + s] = chunk_hits
            e, h = e + m, h + s
            last = int(chunk_ids[-1]) if m else last
        if (e, h) != (n_events, n_hits):
            raise DataError(f"{out_dir}: wrote {e} events / {h} hits, announced {n_events} / {n_hits}")
        for arr in (hits, offsets, ids):
            arr.flush()
        del hits, offsets, ids
        doc = {"version": FLAT_VERSION, "n_events": n_events, "n_hits": n_hits, "source": source or {}}
        (stage / _MANIFEST).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        stage.replace(out_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return out_dir


def shard_chunks(shards: ShardSet) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(event_ids, sizes, hits) chunks of a shard set, one shard at a time."""
    for events in shards.iter_shards():
        if events:
            yield _events_chunk(events)


def _events_chunk(events: list[Event]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids = np.array([e.event_id for e in events], np.int64)
    sizes = np.array([e.n_hits for e in events], np.int64)
    cols = [np.concatenate([e.hits[c] for e in events]) for c in ("energy", "x", "y", "z")]
    return ids, sizes, np.stack(cols, axis=1).astype(np.float32, copy=False)


def flat_from_shards(shards: ShardSet, out_dir: Path) -> Path:
    """Write the flat set of every event of a shard set (streaming, one shard in memory)."""
    n_hits = int(np.sum(np.asarray(shards.n_hits, dtype=np.int64)))
    source = {"shard_set": str(Path(shards.path).resolve())}
    return write_flat(out_dir, shard_chunks(shards), len(shards), n_hits, source)


class FlatEvents:
    """Read-only, memory-mapped view of a flat set; :meth:`read_events` like a ShardSet's.

    Events carry E, x, y, z (other hit columns take their schema defaults: labels are not stored).
    Safe to share with forked DataLoader workers (the maps are opened read-only)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        manifest = self.path / _MANIFEST
        if not manifest.is_file():
            raise DataError(f"{manifest}: missing — the flat pretraining layout was not written "
                            "(prepare the data directory again)")  # fmt: skip
        try:
            doc = json.loads(manifest.read_text())
            self.hits = np.load(self.path / "hits.npy", mmap_mode="r")
            self.offsets = np.load(self.path / "offsets.npy", mmap_mode="r")
            self.event_ids = np.load(self.path / "event_ids.npy", mmap_mode="r")
        except (OSError, ValueError, json.JSONDecodeError) as err:
            raise DataError(f"{self.path}: unreadable flat set ({err})") from None
        if doc.get("version") != FLAT_VERSION:
            raise DataError(f"{manifest}: version {doc.get('version')}, expected {FLAT_VERSION}")
        if (
            self.hits.ndim != 2
            or self.hits.shape[1] != 4
            or len(self.offsets) != len(self.event_ids) + 1
            or int(self.offsets[-1]) != len(self.hits)
            or len(self.event_ids) != doc.get("n_events")
        ):
            raise DataError(f"{self.path}: inconsistent flat set (shapes disagree with {_MANIFEST})")

    def __len__(self) -> int:
        return len(self.event_ids)

    def __reduce__(self) -> tuple[type[FlatEvents], tuple[Path]]:
        """Pickled by path (spawned loader workers reopen the maps instead of copying the data)."""
        return (FlatEvents, (self.path,))

    def positions(self, ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """Row of each event id (DataError for unknown ids)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        pos = np.searchsorted(self.event_ids, ids)
        ok = pos < len(self.event_ids)
        ok[ok] = self.event_ids[pos[ok]] == ids[ok]
        if not ok.all():
            raise DataError(f"{self.path}: event ids {ids[~ok][:5].tolist()} not in this flat set")
        return pos

    def sizes(self, ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """Hits per event of the given ids."""
        pos = self.positions(ids)
        return np.asarray(self.offsets[pos + 1] - self.offsets[pos], dtype=np.int64)

    def read_events(self, ids: Iterable[int] | np.ndarray) -> list[Event]:
        """Events with the given ids, in the order given (copies of the mapped rows)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        out = []
        for i, p in zip(ids, self.positions(ids), strict=True):
            a, b = int(self.offsets[p]), int(self.offsets[p + 1])
            h = np.array(self.hits[a:b])
            out.append(Event(int(i), make_hits(energy=h[:, 0], x=h[:, 1], y=h[:, 2], z=h[:, 3])))
        return out


def fingerprints(flat: FlatEvents, chunk_events: int = 100_000) -> np.ndarray:
    """Per-event content fingerprint (E, 5) float64: (hits, ΣE, Σx, Σy, Σz), read chunk by chunk.

    Identical events give identical rows (same data, same summation order), so two sets share an event
    only if they share a row; used to check that pretraining and labelled events are disjoint."""
    n = len(flat)
    out = np.zeros((n, 5), np.float64)
    for start in range(0, n, chunk_events):
        stop = min(n, start + chunk_events)
        off = np.asarray(flat.offsets[start : stop + 1], dtype=np.int64)
        sizes = np.diff(off)
        out[start:stop, 0] = sizes
        nz = sizes > 0
        if nz.any():
            hits = np.asarray(flat.hits[off[0] : off[-1]], dtype=np.float64)
            sums = np.add.reduceat(hits, (off[:-1] - off[0])[nz], axis=0)
            out[start:stop][nz, 1:] = sums
    return out


def shared_events(a: FlatEvents, b: FlatEvents) -> int:
    """Number of non-empty events of ``b`` whose content also occurs in ``a`` (by fingerprint)."""
    fa, fb = fingerprints(a), fingerprints(b)
    fa, fb = fa[fa[:, 0] > 0], fb[fb[:, 0] > 0]
    view = np.dtype((np.void, 5 * 8))
    rows_a = np.ascontiguousarray(fa).view(view).ravel()
    rows_b = np.ascontiguousarray(fb).view(view).ravel()
    return int(np.isin(rows_b, rows_a).sum())
