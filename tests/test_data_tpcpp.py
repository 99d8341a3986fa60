"""TPCpp-10M npz reader and converter on small files written by the test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fm4npp.cli.main import main
from fm4npp.data.fastsim.geometry import ROW_RADIUS_CM
from fm4npp.data.shards import ShardSet
from fm4npp.data.tpcpp import convert_tpcpp, read_tpcpp
from fm4npp.errors import DataError

SIZES = np.array([5, 3300, 0, 12, 7])


def _points(rng: np.random.Generator, n: int) -> np.ndarray:
    r = ROW_RADIUS_CM[rng.integers(0, 48, n)]
    phi = rng.uniform(-np.pi, np.pi, n)
    return np.c_[
        rng.gamma(2, 120, n), r * np.cos(phi), r * np.sin(phi), rng.uniform(-100, 100, n)
    ].astype(np.float32)


def write_split(root: Path, sharded: bool = False, pid_dir: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    n = int(SIZES.sum())
    data = _points(rng, n)
    labels = {
        "track_ids": rng.integers(1, 30, n),
        "pid": rng.integers(0, 5, n).astype(np.int64),
        "noise": rng.random(n) < 0.2,
    }
    if sharded:  # two shards split at an event boundary
        cut = int(SIZES[:2].sum())
        np.savez_compressed(root / "spacepoints_000.npz", data=data[:cut], size=SIZES[:2])
        np.savez_compressed(root / "spacepoints_001.npz", data=data[cut:], size=SIZES[2:])
    else:
        np.savez_compressed(root / "spacepoints.npz", data=data, size=SIZES)
    np.savez_compressed(root / "track_ids.npz", data=labels["track_ids"])
    if pid_dir:
        (root / "particle_ids").mkdir()
        np.savez_compressed(root / "particle_ids" / "part_000.npz", data=labels["pid"])
    else:
        np.savez_compressed(root / "pid_labels.npz", data=labels["pid"])
    np.savez_compressed(root / "noise_tags.npz", data=labels["noise"])
    return {"data": data, **labels}


@pytest.mark.parametrize(("sharded", "pid_dir"), [(False, False), (True, True)])
def test_read_filter_and_labels(tmp_path: Path, sharded: bool, pid_dir: bool) -> None:
    truth = write_split(tmp_path / "test", sharded, pid_dir)
    split = read_tpcpp(tmp_path / "test")
    assert split.n_events_total == 5
    assert split.n_dropped == 1
    events = list(split.iter_events())
    assert [e.event_id for e in events] == [0, 2, 3, 4]
    ev = events[2]  # event 3 starts after 5 + 3300 + 0 points
    a = 5 + 3300
    np.testing.assert_array_equal(ev.hits["energy"], truth["data"][a : a + 12, 0])
    np.testing.assert_array_equal(ev.hits["z"], truth["data"][a : a + 12, 3])
    np.testing.assert_array_equal(ev.hits["pid"], truth["pid"][a : a + 12])
    noise = truth["noise"][a : a + 12]
    np.testing.assert_array_equal(ev.hits["noise"], noise)
    np.testing.assert_array_equal(
        ev.hits["track_id"], np.where(noise, 0, truth["track_ids"][a : a + 12])
    )
    assert (ev.hits["layer"] >= 0).all()
    assert len(list(read_tpcpp(tmp_path / "test", max_hits=None).iter_events())) == 5


def test_convert_round_trip_and_cli(tmp_path: Path) -> None:
    write_split(tmp_path / "val")
    shard_set, dropped = convert_tpcpp(tmp_path / "val", tmp_path / "out")
    assert dropped == 1
    assert len(shard_set) == 4
    np.testing.assert_array_equal(shard_set.event_ids, [0, 2, 3, 4])
    assert shard_set.metadata["n_dropped_max_hits"] == 1
    direct = list(read_tpcpp(tmp_path / "val").iter_events())
    for a, b in zip(shard_set.iter_events(), direct, strict=True):
        assert a.event_id == b.event_id
        for name in ("energy", "x", "track_id", "noise", "pid", "layer"):
            np.testing.assert_array_equal(a.hits[name], b.hits[name])
    assert main(["data", "convert-tpcpp", str(tmp_path / "val"), "--out", str(tmp_path / "o2")]) == 0
    assert len(ShardSet(tmp_path / "o2")) == 4


def test_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_tpcpp(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"spacepoints\.npz"):
        read_tpcpp(tmp_path / "empty")
    write_split(tmp_path / "bad")
    np.savez_compressed(tmp_path / "bad" / "noise_tags.npz", data=np.zeros(3, bool))
    with pytest.raises(DataError, match=r"noise_tags\.npz: 3 labels"):
        read_tpcpp(tmp_path / "bad")
    (tmp_path / "bad" / "track_ids.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"track_ids\.npz"):
        read_tpcpp(tmp_path / "bad")
    np.savez_compressed(tmp_path / "bad" / "spacepoints.npz", data=np.zeros((4, 4)), size=np.array([5]))
    with pytest.raises(DataError, match="sum of 'size'"):
        read_tpcpp(tmp_path / "bad")
    assert main(["data", "convert-tpcpp", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 4
    assert not (tmp_path / "o").exists()
