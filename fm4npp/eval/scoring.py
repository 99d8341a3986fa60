"""Score a track-finding submission given as tables (CSV or Parquet), for ``score-tracks``.

Tables (one row per hit or particle, any number of events):

- HITS: ``event_id``, ``hit_id``, ``particle_id`` (0 = noise), optional ``weight`` (TrackML hit
  weight) and optional ``x``, ``y`` (cm; order the hits along a particle for the TrackML weights).
- TRACKS: ``event_id``, ``hit_id``, ``track_id`` (−1 = unassigned). Hits of HITS missing here count
  as unassigned; hits here missing from HITS are an error.
- PARTICLES (optional): ``event_id``, ``particle_id``, ``pt`` (GeV), ``eta``; optional ``primary``.

Every problem raises a one-line :class:`~fm4npp.errors.DataError` naming the file and the column.
"""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from fm4npp.errors import DataError
from fm4npp.eval.metrics_tracking import MatchConfig, TrackingEvent, evaluate_tracking

HITS_COLUMNS = ("event_id", "hit_id", "particle_id")
TRACKS_COLUMNS = ("event_id", "hit_id", "track_id")
PARTICLES_COLUMNS = ("event_id", "particle_id", "pt", "eta")
_INT_COLUMNS = {"event_id", "hit_id", "particle_id", "track_id"}
_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
MAX_TABLE_BYTES = 1 << 30  # uncompressed bytes of one table (a .csv.gz bomb is refused, not expanded)


def load_table(path: str | Path, required: tuple[str, ...], kind: str) -> pd.DataFrame:
    """Read a CSV or Parquet table and check its columns (``kind`` names the table in messages).

    Integer id columns must be integral without missing values; other required and optional numeric
    columns (``pt``, ``eta``, ``weight``, ``x``, ``y``) must be finite numbers.
    """
    path = Path(path)
    name = path.name.lower()
    if not name.endswith(_SUFFIXES):
        raise DataError(
            f"{path}: {kind} table must be CSV or Parquet (suffix one of {', '.join(_SUFFIXES)})"
        )
    if not path.is_file():
        raise DataError(f"{path}: {kind} file not found")
    _check_size(path, kind)
    try:
        df = pd.read_parquet(path) if name.endswith((".parquet", ".pq")) else pd.read_csv(path)
    except (OSError, ValueError, EOFError, pd.errors.EmptyDataError) as err:  # parse errors: ValueError
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"{path}: cannot read {kind} table ({msg})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: {kind} table lacks column(s) {', '.join(missing)} (required: {', '.join(required)})"
        )
    for col in df.columns:
        if col in _INT_COLUMNS:
            df[col] = _as_int(df[col], path, kind, col)
        elif col == "primary":
            df[col] = _as_flag(df[col], path, kind)
        elif col in ("pt", "eta", "weight", "x", "y", "z"):
            values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
            if not np.isfinite(values).all():
                raise DataError(f"{path}: {kind} column '{col}' has missing or non-numeric values")
            df[col] = values
    return df


def _check_size(path: Path, kind: str) -> None:
    """Refuse tables whose data exceed :data:`MAX_TABLE_BYTES` (a .csv.gz bomb is caught while
    streaming, before pandas builds anything)."""
    limit = MAX_TABLE_BYTES
    too_big = DataError(f"{path}: {kind} table is larger than {limit} bytes uncompressed; not allowed")
    name = path.name.lower()
    if path.stat().st_size > limit:
        raise too_big
    if name.endswith(".gz"):
        total = 0
        try:
            with gzip.open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    total += len(chunk)
                    if total > limit:
                        raise too_big
        except (OSError, EOFError) as err:
            raise DataError(f"{path}: cannot read {kind} table ({err})") from None
    elif name.endswith((".parquet", ".pq")):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            meta = pq.read_metadata(path)
        except (OSError, pa.ArrowException) as err:
            raise DataError(f"{path}: cannot read {kind} table ({err})") from None
        if sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)) > limit:
            raise too_big


def _as_int(col: pd.Series, path: Path, kind: str, name: str) -> np.ndarray:
    """Exact int64 ids: integer columns are taken as they are (never through float64, which merges ids
    ≥ 2^53); float columns only when integral and below 2^53; strings parsed as integers."""
    bad = DataError(f"{path}: {kind} column '{name}' must hold integers without missing values")
    if col.dtype == object:
        try:
            return np.array([int(str(v).strip()) for v in col], dtype=np.int64)
        except (ValueError, OverflowError):
            raise bad from None
    if pd.api.types.is_bool_dtype(col):
        raise bad
    if pd.api.types.is_integer_dtype(col):
        if (
            pd.api.types.is_unsigned_integer_dtype(col)
            and len(col)
            and col.max() > np.iinfo(np.int64).max
        ):
            raise DataError(f"{path}: {kind} column '{name}' has ids beyond the int64 range")
        return col.to_numpy(dtype=np.int64)
    values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
    if not np.isfinite(values).all() or (values != np.round(values)).any():
        raise bad
    if (np.abs(values) >= 2.0**53).any():
        raise DataError(
            f"{path}: {kind} column '{name}' has ids ≥ 2^53 stored as floating point (not exact); "
            "store them as integers"
        )
    return values.astype(np.int64)


def _as_flag(col: pd.Series, path: Path, kind: str) -> np.ndarray:
    """``primary``: booleans, or the numbers 0/1."""
    if pd.api.types.is_bool_dtype(col):
        return col.to_numpy(dtype=bool)
    values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
    if not np.isin(values, (0.0, 1.0)).all():
        raise DataError(f"{path}: {kind} column 'primary' must hold true/false or 0/1 values")
    return values.astype(bool)


def _check_unique(df: pd.DataFrame, keys: list[str], path: Path, kind: str) -> None:
    if df.duplicated(keys).any():
        raise DataError(f"{path}: {kind} table repeats ({', '.join(keys)}) pairs; each must appear once")


def join_tables(
    hits: pd.DataFrame, tracks: pd.DataFrame, hits_path: Path, tracks_path: Path
) -> pd.DataFrame:
    """HITS left-joined with TRACKS on (event_id, hit_id); unassigned hits get track_id −1."""
    _check_unique(hits, ["event_id", "hit_id"], hits_path, "HITS")
    _check_unique(tracks, ["event_id", "hit_id"], tracks_path, "TRACKS")
    if (hits["particle_id"] < 0).any():
        raise DataError(f"{hits_path}: HITS column 'particle_id' must be ≥ 0 (0 = noise)")
    if (tracks["track_id"] < -1).any():
        raise DataError(f"{tracks_path}: TRACKS column 'track_id' must be ≥ −1 (−1 = unassigned)")
    merged = hits.merge(
        tracks[list(TRACKS_COLUMNS)], on=["event_id", "hit_id"], how="outer", indicator=True, sort=True
    )
    if (merged["_merge"] == "right_only").any():
        raise DataError(
            f"{tracks_path}: TRACKS column 'hit_id' names hits that are not in {hits_path.name}"
        )
    merged["track_id"] = merged["track_id"].fillna(-1).astype(np.int64)
    return merged.drop(columns="_merge")


def iter_events(merged: pd.DataFrame, particles: pd.DataFrame | None) -> Iterator[TrackingEvent]:
    """One :class:`TrackingEvent` per event_id of the joined table (sorted by event_id)."""
    ev = merged["event_id"].to_numpy()
    starts = np.r_[0, np.flatnonzero(np.diff(ev)) + 1, len(ev)]
    by_event = dict(iter(particles.groupby("event_id"))) if particles is not None else {}
    has_w = "weight" in merged.columns
    has_xy = "x" in merged.columns and "y" in merged.columns
    truth_all = merged["particle_id"].to_numpy()
    pred_all = merged["track_id"].to_numpy()
    for a, b in itertools.pairwise(starts):
        table = None
        if particles is not None:
            p = by_event.get(ev[a])
            cols = [
                c for c in ("particle_id", "pt", "eta", "primary") if p is not None and c in p.columns
            ]
            table = {c: p[c].to_numpy() for c in cols} if p is not None else {"particle_id": np.zeros(0)}
        order = np.hypot(merged["x"].to_numpy()[a:b], merged["y"].to_numpy()[a:b]) if has_xy else None
        yield TrackingEvent(
            truth=truth_all[a:b],
            pred=pred_all[a:b],
            particles=table,
            weight=merged["weight"].to_numpy()[a:b] if has_w else None,
            order=order,
        )


def score_tracks(
    hits_path: str | Path,
    tracks_path: str | Path,
    particles_path: str | Path | None = None,
    *,
    min_hits: int = 5,
    min_track_hits: int = 3,
    strict: bool = True,
) -> dict[str, float | int | list[float]]:
    """Tracking metrics of a submission (keys of :func:`~fm4npp.eval.metrics_tracking.evaluate_tracking`).

    ``min_hits`` selects truth particles (n_p ≥ min_hits); ``min_track_hits`` (default 3,
    issue 7) selects the candidate tracks of purity, fake and duplicate rates; ``strict`` chooses > 0.5 (True) or ≥ 0.5 majority fractions.
    """
    if min_hits < 1 or min_track_hits < 1:
        raise DataError(f"--min-hits must be ≥ 1, got {min_hits if min_hits < 1 else min_track_hits}")
    hits_path, tracks_path = Path(hits_path), Path(tracks_path)
    hits = load_table(hits_path, HITS_COLUMNS, "HITS")
    tracks = load_table(tracks_path, TRACKS_COLUMNS, "TRACKS")
    particles = None
    if particles_path is not None:
        particles_path = Path(particles_path)
        particles = load_table(particles_path, PARTICLES_COLUMNS, "PARTICLES")
        _check_unique(particles, ["event_id", "particle_id"], particles_path, "PARTICLES")
    if len(hits) == 0:
        raise DataError(f"{hits_path}: HITS table has no rows")
    merged = join_tables(hits, tracks, hits_path, tracks_path)
    config = MatchConfig(
        min_track_hits=min_track_hits,
        min_particle_hits=min_hits,
        strict=strict,
    )
    return evaluate_tracking(iter_events(merged, particles), config)
