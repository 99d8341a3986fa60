"""Parquet shard store: round trip, streaming reads, atomicity and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fm4npp.data.generate import generate_dataset, simulate_events
from fm4npp.data.gun import GunConfig
from fm4npp.data.schema import HIT_COLUMNS, PARTICLE_COLUMNS
from fm4npp.data.shards import ShardSet
from fm4npp.errors import ConfigError, DataError

GUN = GunConfig(multiplicity=(2, 6))


@pytest.fixture(scope="module")
def gun_set(tmp_path_factory: pytest.TempPathFactory) -> ShardSet:
    out = tmp_path_factory.mktemp("shards") / "gun"
    return generate_dataset(out, 250, seed=5, gun=GUN, progress=False, events_per_shard=100)


def test_round_trip_matches_in_memory_events(gun_set: ShardSet) -> None:
    assert len(gun_set) == 250
    np.testing.assert_array_equal(gun_set.event_ids, np.arange(250))
    assert len(list(gun_set.path.glob("shard_*.hits.parquet"))) == 3
    assert gun_set.metadata["seed"] == 5
    assert gun_set.metadata["source"] == "gun"
    ref = simulate_events(250, seed=5, gun=GUN)
    for got, want in zip(gun_set.iter_events(), ref, strict=True):
        assert got.event_id == want.event_id
        for name, dtype in HIT_COLUMNS.items():
            assert got.hits[name].dtype == np.dtype(dtype)
            np.testing.assert_array_equal(got.hits[name], want.hits[name])
        for name in PARTICLE_COLUMNS:
            np.testing.assert_array_equal(got.particles[name], want.particles[name])


def test_iter_and_read_subsets(gun_set: ShardSet) -> None:
    ids = np.array([201, 3, 150, 7])
    assert [e.event_id for e in gun_set.iter_events(ids)] == [3, 7, 150, 201]
    events = gun_set.read_events(ids)
    assert [e.event_id for e in events] == ids.tolist()
    assert [e.n_hits for e in events] == gun_set.n_hits[ids].tolist()
    with pytest.raises(DataError, match="not in this shard set"):
        gun_set.read_events([999])


def test_particle_ids_unique_positive_and_track_ids(gun_set: ShardSet) -> None:
    for ev in gun_set.iter_events(range(20)):
        pid = ev.particles["particle_id"]
        assert (pid > 0).all()
        assert len(np.unique(pid)) == len(pid)
        assert np.isin(ev.hits["particle_id"], pid).all()
        h = ev.hits
        np.testing.assert_array_equal(h["track_id"], np.where(h["noise"], 0, h["particle_id"]))


def test_missing_dir_and_existing_output(tmp_path: Path, gun_set: ShardSet) -> None:
    with pytest.raises(DataError, match="not found"):
        ShardSet(tmp_path / "nope")
    with pytest.raises(DataError, match="manifest missing"):
        ShardSet(tmp_path)
    with pytest.raises(DataError, match="not empty"):
        generate_dataset(gun_set.path, 10, 0, gun=GUN, progress=False)


def test_bad_inputs_leave_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--events"):
        generate_dataset(tmp_path / "a", 0, 0, gun=GUN, progress=False)
    with pytest.raises(ConfigError, match="--workers"):
        generate_dataset(tmp_path / "b", 10, 0, workers=0, gun=GUN, progress=False)
    with pytest.raises(DataError, match="parent"):
        generate_dataset(tmp_path / "x" / "y", 10, 0, gun=GUN, progress=False)
    assert list(tmp_path.iterdir()) == []


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_corrupt_shard_and_wrong_schema(tmp_path: Path, gun_set: ShardSet) -> None:
    bad = _copy(gun_set.path, tmp_path / "corrupt")
    (bad / "shard_00001.hits.parquet").write_bytes(b"not parquet")
    shard_set = ShardSet(bad)
    with pytest.raises(DataError, match=r"shard_00001.hits.parquet: corrupt"):
        list(shard_set.iter_events())

    old = _copy(gun_set.path, tmp_path / "old")
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["schema_version"] = 0
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="schema_version 0"):
        ShardSet(old)

    stale = _copy(gun_set.path, tmp_path / "stale")
    table = pq.read_table(stale / "shard_00000.hits.parquet")
    pq.write_table(table.replace_schema_metadata({b"fm4npp.schema_version": b"0"}),
                   stale / "shard_00000.hits.parquet")  # fmt: skip
    with pytest.raises(DataError, match="schema_version 0, expected"):
        ShardSet(stale).read_events([0])
    assert isinstance(table, pa.Table)
