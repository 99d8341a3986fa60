"""The whole TPCpp-10M archive (SPEC §2.5): unlabelled pretraining files and labeled/{train,validation,
test}, converted file by file into two shard sets, ``OUT/pretrain`` and ``OUT/labelled`` (issue 13).

Event ids are stable: unlabelled ``file number << 32 | index in the file``; labelled ``split code << 40
| index in the split`` (train 1, validation 2, test 3), so the published split of a labelled event is
its id >> 40. Per-split readers and the single-split converter live in :mod:`fm4npp.data.tpcpp`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fm4npp.data.fastsim.geometry import row_of_radius
from fm4npp.data.schema import MAX_HITS_DEFAULT, PARTICLE_COLUMNS, make_hits
from fm4npp.data.shards import ShardInfo, commit_dir, finalize, staging_dir, write_shard
from fm4npp.data.tpcpp import _load, _parts
from fm4npp.errors import DataError

LABELLED_DIRS = ("labeled", "labelled")
UNLABELLED_DIRS = ("unlabeled", "unlabelled")
SPLIT_CODES = {"train": 1, "validation": 2, "test": 3}
SPLIT_SHIFT = 40  # labelled event id = split code << 40 | index in the split
FILE_SHIFT = 32  # unlabelled event id = file number << 32 | index in the file
PRETRAIN_OUT, LABELLED_OUT = "pretrain", "labelled"
_LABEL_STEMS = {
    "track_ids": ("track_ids",),
    "pid": ("pid_labels", "particle_ids"),
    "noise": ("noise_tags",),
}


def is_archive_root(src: str | Path) -> bool:
    """True for the archive's top folder (it holds ``labeled/``), False for a single split folder."""
    return any((Path(src) / d).is_dir() for d in LABELLED_DIRS)


def unlabelled_files(root: Path) -> list[Path]:
    """The unlabelled (pretraining) npz files: ``*.npz`` in the top folder or in ``unlabeled/``."""
    files = sorted(root.glob("*.npz"))
    for d in UNLABELLED_DIRS:
        files += sorted((root / d).rglob("*.npz")) if (root / d).is_dir() else []
    return files


def labelled_split_ids(event_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Published split membership of converted labelled event ids (sorted ids per split name)."""
    ids = np.asarray(event_ids, dtype=np.int64)
    code = ids >> SPLIT_SHIFT
    return {name: np.sort(ids[code == c]) for name, c in SPLIT_CODES.items()}


@dataclass
class PartReport:
    """Conversion bookkeeping of one part (pretraining or one labelled split)."""

    files: int = 0
    events_total: int = 0
    dropped_max_hits: int = 0
    seconds: float = 0.0

    @property
    def kept(self) -> int:
        return self.events_total - self.dropped_max_hits


@dataclass
class ArchiveReport:
    """What ``convert_archive`` wrote: part name → report, and the two output shard sets."""

    parts: dict[str, PartReport]
    pretrain_dir: Path
    labelled_dir: Path
    peak_rss_mb: float = 0.0

    def lines(self) -> list[str]:
        out = []
        for name, p in self.parts.items():
            rate = p.events_total / p.seconds if p.seconds else float("nan")
            out.append(
                f"{name:11s} {p.files:4d} files {p.events_total:10d} events, {p.kept:10d} kept, "
                f"{p.dropped_max_hits:6d} dropped (> max hits), {rate:8.0f} events/s"
            )
        out.append(f"peak memory {self.peak_rss_mb:.0f} MB; pretraining shards {self.pretrain_dir}, "
                   f"labelled shards {self.labelled_dir}")  # fmt: skip
        return out


def _load_one(path: Path, key: str) -> np.ndarray:
    return _load([path], key)


def _write_events(
    stage: Path,
    shard_no: int,
    ids: np.ndarray,
    sizes: np.ndarray,
    data: np.ndarray,
    labels: dict[str, np.ndarray | None],
    max_hits: int | None,
    events_per_shard: int,
) -> tuple[list[ShardInfo], int]:
    """Filter (SPEC §2.2) and write the events of one file as shards ``shard_no``…; vectorised, no Event
    objects. Returns (shards written, events dropped)."""
    keep = np.ones(len(sizes), bool) if max_hits is None else sizes <= max_hits
    lab = dict(labels)
    if not keep.all():  # (no copy of the file's points when nothing is dropped)
        hit_keep = np.repeat(keep, sizes)
        ids, sizes, data = ids[keep], sizes[keep], data[hit_keep]
        lab = {k: (v[hit_keep] if v is not None else None) for k, v in labels.items()}
    offsets = np.r_[0, np.cumsum(sizes)]
    infos = []
    for k, start in enumerate(range(0, len(ids), events_per_shard)):
        stop = min(len(ids), start + events_per_shard)
        a, b = int(offsets[start]), int(offsets[stop])
        d = data[a:b]
        cols: dict[str, np.ndarray] = {
            "event": np.repeat(ids[start:stop], sizes[start:stop]),
            "energy": d[:, 0], "x": d[:, 1], "y": d[:, 2], "z": d[:, 3],
            "layer": row_of_radius(np.hypot(d[:, 1], d[:, 2])),
        }  # fmt: skip
        noise = lab["noise"][a:b].astype(bool) if lab["noise"] is not None else None
        if lab["track_ids"] is not None:
            tid = lab["track_ids"][a:b].astype(np.int64)
            cols["particle_id"] = tid
            cols["track_id"] = np.where(noise, 0, tid) if noise is not None else tid
        if lab["pid"] is not None:
            cols["pid"] = lab["pid"][a:b]
        if noise is not None:
            cols["noise"] = noise
        hits = make_hits(**{c: v for c, v in cols.items() if c != "event"})
        hits["event"] = cols["event"]
        parts = {name: np.zeros(0, dtype) for name, dtype in PARTICLE_COLUMNS.items()}
        parts["event"] = np.zeros(0, np.int64)
        infos.append(write_shard(stage, shard_no + k, hits, parts, ids[start:stop]))
    return infos, int((~keep).sum())


def _split_files(src: Path) -> tuple[list[Path], dict[str, list[Path]]]:
    sp = _parts(src, "spacepoints")
    if not sp:
        raise DataError(f"{src / 'spacepoints.npz'}: missing (nor spacepoints_000.npz…)")
    labels = {
        key: next((p for s in stems if (p := _parts(src, s))), []) for key, stems in _LABEL_STEMS.items()
    }
    return sp, labels


def convert_archive(
    root: str | Path,
    out_dir: str | Path,
    max_hits: int | None = MAX_HITS_DEFAULT,
    events_per_shard: int = 5000,
    progress: Callable[[str], None] | None = None,
) -> ArchiveReport:
    """Convert the archive's top folder into ``out_dir/pretrain`` (unlabelled files) and
    ``out_dir/labelled`` (labeled/{train,validation,test}; split = event id >> 40), file by file: at
    most one input file (plus, for a split whose labels are not sharded like its spacepoints, that
    split's label arrays) is in memory. Events above ``max_hits`` points are dropped and counted."""
    import resource
    import time

    root, out_dir = Path(root), Path(out_dir)
    if not is_archive_root(root):
        raise DataError(f"{root}: not the TPCpp-10M top folder (no labeled/ directory)")
    labelled_root = next(root / d for d in LABELLED_DIRS if (root / d).is_dir())
    files = unlabelled_files(root)
    if not files:
        raise DataError(f"{root}: no unlabelled *.npz files (top folder or unlabeled/)")
    missing = [s for s in SPLIT_CODES if not (labelled_root / s).is_dir()]
    if missing:
        raise DataError(
            f"{labelled_root}: split folders {missing} missing (need {', '.join(SPLIT_CODES)})"
        )
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DataError(f"{out_dir}: output directory exists and is not empty; choose a new --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _msg: None)
    report = ArchiveReport({}, out_dir / PRETRAIN_OUT, out_dir / LABELLED_OUT)
    meta = {"source": "tpcpp-10m", "src": str(root.resolve()), "max_hits": max_hits}
    # unlabelled: one file at a time
    stage = staging_dir(report.pretrain_dir)
    try:
        part, infos = PartReport(), []
        for f_no, path in enumerate(files):
            t0 = time.perf_counter()
            data = _load_one(path, "data").astype(np.float32, copy=False)
            sizes = _load_one(path, "size").astype(np.int64)
            _check_sizes(path, data, sizes)
            ids = (np.int64(f_no) << FILE_SHIFT) | np.arange(len(sizes), dtype=np.int64)
            none: dict[str, np.ndarray | None] = dict.fromkeys(_LABEL_STEMS)
            new, dropped = _write_events(stage, len(infos), ids, sizes, data, none, max_hits,
                                         events_per_shard)  # fmt: skip
            infos += new
            part.files, part.events_total = part.files + 1, part.events_total + len(sizes)
            part.dropped_max_hits += dropped
            part.seconds += time.perf_counter() - t0
            del data
            say(f"unlabelled {path.name}: {len(sizes)} events, {dropped} dropped")
        report.parts["pretrain"] = part
        finalize(stage, infos, {**meta, "part": "unlabelled", "files": [str(p) for p in files],
                                "n_dropped_max_hits": part.dropped_max_hits, "labels": []})  # fmt: skip
        commit_dir(stage, report.pretrain_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    # labelled splits: one spacepoints file at a time
    stage = staging_dir(report.labelled_dir)
    try:
        infos = []
        for split, code in SPLIT_CODES.items():
            part = PartReport()
            sp, label_files = _split_files(labelled_root / split)
            per_file = {k: len(v) == len(sp) and len(sp) > 1 for k, v in label_files.items()}
            whole = {k: (_load(v, "data").reshape(-1) if v and not per_file[k] else None)
                     for k, v in label_files.items()}  # fmt: skip
            first = 0  # index in the split of the file's first event
            point = 0  # index in the split of the file's first point
            for i, path in enumerate(sp):
                t0 = time.perf_counter()
                data = _load_one(path, "data").astype(np.float32, copy=False)
                sizes = _load_one(path, "size").astype(np.int64)
                _check_sizes(path, data, sizes)
                labels: dict[str, np.ndarray | None] = {}
                for key, files_k in label_files.items():
                    if not files_k:
                        labels[key] = None
                    elif per_file[key]:
                        labels[key] = _load_one(files_k[i], "data").reshape(-1)
                    else:
                        labels[key] = whole[key][point : point + len(data)]  # type: ignore[index]
                    got = labels[key]
                    if got is not None and len(got) != len(data):
                        src = files_k[i] if per_file[key] else files_k[0]
                        raise DataError(f"{src}: {len(got)} labels for {len(data)} points ({path.name})")
                ids = (np.int64(code) << SPLIT_SHIFT) | np.arange(
                    first, first + len(sizes), dtype=np.int64
                )
                new, dropped = _write_events(stage, len(infos), ids, sizes, data, labels, max_hits,
                                             events_per_shard)  # fmt: skip
                infos += new
                first, point = first + len(sizes), point + len(data)
                part.files, part.events_total = part.files + 1, part.events_total + len(sizes)
                part.dropped_max_hits += dropped
                part.seconds += time.perf_counter() - t0
                say(f"{split} {path.name}: {len(sizes)} events, {dropped} dropped")
            for key, arr in whole.items():
                if arr is not None and len(arr) != point:
                    raise DataError(f"{label_files[key][0]}: {len(arr)} labels for {point} points")
            report.parts[split] = part
        labels_present = [k for k, v in _split_files(labelled_root / "test")[1].items() if v]
        splits_meta = {s: vars(p) for s, p in report.parts.items() if s != "pretrain"}
        finalize(stage, infos, {**meta, "part": "labelled", "labels": labels_present,
                                "splits": splits_meta, "split_shift": SPLIT_SHIFT})  # fmt: skip
        commit_dir(stage, report.labelled_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    report.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return report


def _check_sizes(path: Path, data: np.ndarray, sizes: np.ndarray) -> None:
    if data.ndim != 2 or data.shape[1] != 4:
        raise DataError(f"{path}: 'data' has shape {data.shape}, expected (N, 4) = E, x, y, z")
    if int(sizes.sum()) != len(data) or (sizes < 0).any():
        raise DataError(f"{path}: sum of 'size' ({int(sizes.sum())}) != len(data) ({len(data)})")
