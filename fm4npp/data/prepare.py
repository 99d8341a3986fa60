"""One-time preparation of a shard set for a study: fixed splits and voxel bin edges (torch-free).

``prepare_dataset`` runs once, in the CLI process, before any job starts (never in jobs, which would
race). It writes two artefacts beside the shards::

    <data_dir>/splits.json        train / val / test event ids (SPEC §2.2 hit filter applied and counted)
    <data_dir>/voxel_edges.json   bin edges fitted on ≤ 10,000 training events (SPEC §4.1), fixed mode
    <data_dir>/voxel_edges.compat.json   the same for compat mode (only if a cell uses it)
    <data_dir>/flat/              E, x, y, z of every event, memory-mapped by pretraining (fm4npp.data.flat)

and, when they already exist, verifies that they were made with the same settings (a changed split
seed or hit limit is an error, never a silent re-split: every cell of a study must share one
validation split, SCALING §6.4). Jobs call :func:`load_prepared`, which only reads.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fm4npp.atomic import atomic_path, write_json
from fm4npp.config.schema import DataConfig
from fm4npp.data.flat import FLAT_DIR, FlatEvents, flat_from_shards, shared_events
from fm4npp.data.serialize import Mode, VoxelEdges, fit_edges
from fm4npp.data.shards import ShardSet
from fm4npp.data.tiers import Splits, nested_subset, split_ids
from fm4npp.errors import DataError

SPLITS_FILE = "splits.json"
EDGES_FILE = "voxel_edges.json"
SPLITS_VERSION = 1
EDGES_FIT_EVENTS = 10_000  # SPEC §4.1: edges from ≤ 10,000 training events


@dataclass(frozen=True)
class PreparedDataset:
    """A prepared shard set: its fixed splits, bin edges and the filter bookkeeping."""

    data_dir: Path
    splits: Splits
    edges: VoxelEdges
    edges_sha256: str
    split_seed: int
    max_hits: int
    n_events_total: int  # events in the shard set
    n_dropped_max_hits: int  # events above ``max_hits`` (SPEC §2.2), in no split
    n_dropped_empty: int  # events without hits, in no split

    def tier(self, n_events: int) -> np.ndarray:
        """Training event ids of a cell with ``n_events`` events: nested seeded subsets d1 ⊂ d2 ⊂ …
        of the training split (SPEC §11 #6)."""
        if n_events > len(self.splits.train):
            raise DataError(
                f"{self.data_dir / SPLITS_FILE}: a tier of {n_events} events is larger than the "
                f"training split ({len(self.splits.train)} events)"
            )
        return np.asarray(nested_subset(self.splits.train, n_events, self.split_seed), dtype=np.int64)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ids_digest(ids: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(ids, dtype=np.int64).tobytes()).hexdigest()


def _settings(shards: ShardSet, cfg: DataConfig) -> dict[str, Any]:
    """What the splits depend on; a stored splits.json must match these exactly."""
    return {
        "version": SPLITS_VERSION,
        "split_seed": cfg.split_seed,
        "max_hits": cfg.max_hits,
        "val_events": cfg.val_events,
        "test_events": cfg.test_events,
        "n_events_total": len(shards),
        "event_ids_sha256": _ids_digest(shards.event_ids),
    }


def _make_splits(shards: ShardSet, cfg: DataConfig) -> tuple[Splits, dict[str, int]]:
    n_hits = np.asarray(shards.n_hits)
    too_big = n_hits > cfg.max_hits
    empty = n_hits == 0
    ids = np.asarray(shards.event_ids, dtype=np.int64)[~too_big & ~empty]
    need = cfg.val_events + cfg.test_events + 1
    if len(ids) < need:
        raise DataError(
            f"{shards.path}: {len(ids)} usable events (of {len(shards)}; {int(too_big.sum())} above "
            f"max_hits={cfg.max_hits}), need ≥ {need} for data.val_events={cfg.val_events} + "
            f"data.test_events={cfg.test_events} + training"
        )
    splits = split_ids(ids, cfg.split_seed, cfg.val_events / len(ids), cfg.test_events / len(ids))
    if (len(splits.val), len(splits.test)) != (cfg.val_events, cfg.test_events):
        raise DataError(
            f"{shards.path}: split sizes {len(splits.val)}/{len(splits.test)} differ from "
            f"data.val_events={cfg.val_events}/data.test_events={cfg.test_events}"
        )
    counts = {"n_dropped_max_hits": int(too_big.sum()), "n_dropped_empty": int(empty.sum())}
    return splits, counts


def edges_file(mode: str) -> str:
    """Edges file name of a serialization mode (fixed mode puts the φ seam in a sector gap, so the
    two modes need different edges, SPEC §4.4)."""
    return EDGES_FILE if mode == "fixed" else f"voxel_edges.{mode}.json"


def _fit_edges(shards: ShardSet, train: np.ndarray, seed: int, mode: Mode, path: Path) -> str:
    # A seeded random sample of the training split (never the first ids, SPEC §11 #6).
    fit_ids = nested_subset(train, min(EDGES_FIT_EVENTS, len(train)), seed)
    edges = fit_edges(shards.iter_events(fit_ids), mode=mode, max_events=EDGES_FIT_EVENTS)
    with atomic_path(path) as tmp:
        edges.save(tmp)
    return _sha256(path)


def prepare_dataset(
    data_dir: Path,
    data_cfg: DataConfig,
    max_train_events: int,
    modes: Iterable[Mode] = ("fixed",),
) -> PreparedDataset:
    """Write (or verify) ``splits.json`` and the voxel edges of every serialization mode in ``modes``.

    ``max_train_events`` is the largest tier any cell will use; a training split smaller than that is a
    DataError now rather than in a job hours later. Returns the prepared set of the first mode.
    """
    data_dir, modes = Path(data_dir), list(modes) or ["fixed"]
    shards = ShardSet(data_dir)
    splits_path = data_dir / SPLITS_FILE
    settings = _settings(shards, data_cfg)
    if splits_path.is_file():
        doc = _read_json(splits_path)
        stored = {key: doc.get(key) for key in settings}
        if stored != settings:
            diff = ", ".join(f"{k}: stored {stored[k]!r} vs now {v!r}" for k, v in settings.items()
                             if stored[k] != v)  # fmt: skip
            raise DataError(
                f"{splits_path}: made with other settings ({diff}); every cell of a study shares one "
                "split — use a new data directory or restore the settings"
            )
    else:
        for mode in modes:
            if (data_dir / edges_file(mode)).is_file():
                raise DataError(
                    f"{data_dir / edges_file(mode)}: exists without {SPLITS_FILE}; edges must be "
                    "fitted on this split's training events — remove it to refit"
                )
        splits, counts = _make_splits(shards, data_cfg)
        doc = {**settings, **counts, "voxel_edges_sha256": {}, "train": splits.train.tolist(),
               "val": splits.val.tolist(), "test": splits.test.tolist()}  # fmt: skip
    if not (data_dir / FLAT_DIR / "flat.json").is_file():
        flat_from_shards(shards, data_dir / FLAT_DIR)
    changed = not splits_path.is_file()
    for mode in modes:
        if not (data_dir / edges_file(mode)).is_file():
            train = np.asarray(doc["train"], dtype=np.int64)
            sha = _fit_edges(shards, train, data_cfg.split_seed, mode, data_dir / edges_file(mode))
            doc["voxel_edges_sha256"][mode] = sha
            changed = True
    if changed:
        write_json(splits_path, doc)
    prepared = load_prepared(data_dir, data_cfg, modes[0])
    for mode in modes[1:]:
        load_prepared(data_dir, data_cfg, mode)
    if max_train_events > len(prepared.splits.train):
        raise DataError(
            f"{splits_path}: training split has {len(prepared.splits.train)} events, but a cell needs "
            f"{max_train_events} (generate more events or lower the dataset ladder)"
        )
    return prepared


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as err:
        raise DataError(f"{path}: corrupt ({err})") from None


def load_prepared(
    data_dir: Path, data_cfg: DataConfig | None = None, mode: Mode = "fixed"
) -> PreparedDataset:
    """Read the prepared splits and the edges of ``mode`` (no writing). With ``data_cfg``, also check
    that the split settings (seed, hit limit, split sizes) are the ones the config asks for."""
    data_dir = Path(data_dir)
    splits_path, edges_path = data_dir / SPLITS_FILE, data_dir / edges_file(mode)
    for path in (splits_path, edges_path):
        if not path.is_file():
            raise DataError(
                f"{path}: missing — the dataset is not prepared (prepare_dataset runs in the CLI "
                "before jobs start)"
            )
    doc = _read_json(splits_path)
    if doc.get("version") != SPLITS_VERSION:
        raise DataError(f"{splits_path}: version {doc.get('version')}, expected {SPLITS_VERSION}")
    sha = _sha256(edges_path)
    if (doc.get("voxel_edges_sha256") or {}).get(mode) != sha:
        raise DataError(
            f"{edges_path}: sha256 {sha[:12]}… differs from the one recorded in {SPLITS_FILE}; the "
            "edges were replaced after the splits were made"
        )
    if data_cfg is not None:
        want = {
            "split_seed": data_cfg.split_seed,
            "max_hits": data_cfg.max_hits,
            "val_events": data_cfg.val_events,
            "test_events": data_cfg.test_events,
        }
        for key, value in want.items():
            if doc.get(key) != value:
                raise DataError(
                    f"{splits_path}: {key}={doc.get(key)!r}, but the run config has data.{key}={value!r}"
                )
    splits = Splits(
        train=np.asarray(doc["train"], dtype=np.int64),
        val=np.asarray(doc["val"], dtype=np.int64),
        test=np.asarray(doc["test"], dtype=np.int64),
    )
    return PreparedDataset(
        data_dir=data_dir,
        splits=splits,
        edges=VoxelEdges.load(edges_path),
        edges_sha256=sha,
        split_seed=int(doc["split_seed"]),
        max_hits=int(doc["max_hits"]),
        n_events_total=int(doc["n_events_total"]),
        n_dropped_max_hits=int(doc["n_dropped_max_hits"]),
        n_dropped_empty=int(doc["n_dropped_empty"]),
    )


def labelled_source(path: str | Path) -> tuple[ShardSet, Splits]:
    """A converted TPCpp-10M labelled set (``data.labelled_path``) and its published splits
    (train → labelled subsets, validation → adapter model selection, test → the metrics)."""
    from fm4npp.data.tpcpp_archive import labelled_split_ids

    shards = ShardSet(path)
    if shards.metadata.get("part") != "labelled":
        raise DataError(
            f"{path}: not a converted TPCpp-10M labelled set (data.labelled_path; made by "
            "`fm4npp-sweep data convert-tpcpp ROOT --out DIR` as DIR/labelled)"
        )
    by = labelled_split_ids(shards.event_ids)
    return shards, Splits(train=by["train"], val=by["validation"], test=by["test"])


def prepare_labelled(data_dir: Path, labelled_path: Path, max_labelled: int) -> Splits:
    """Check a labelled source against the study's pretraining data: the training split is large
    enough for every labelled subset and no labelled event occurs in the pretraining set (content
    fingerprints of the memory-mapped layouts, written here if missing)."""
    shards, splits = labelled_source(labelled_path)
    for name, ids in (("train", splits.train), ("validation", splits.val), ("test", splits.test)):
        if not len(ids):
            raise DataError(f"{labelled_path}: the labelled '{name}' split is empty")
    if max_labelled > len(splits.train):
        raise DataError(
            f"{labelled_path}: labelled train split has {len(splits.train)} events, but "
            f"eval.labelled_events needs {max_labelled}"
        )
    flat_dir = Path(labelled_path) / FLAT_DIR
    if not (flat_dir / "flat.json").is_file():
        flat_from_shards(shards, flat_dir)
    shared = shared_events(FlatEvents(Path(data_dir) / FLAT_DIR), FlatEvents(flat_dir))
    if shared:
        raise DataError(
            f"{labelled_path}: {shared} labelled events also occur in the pretraining data {data_dir} "
            "(data.labelled_path and data.path must be disjoint)"
        )
    return splits
