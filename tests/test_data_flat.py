"""Memory-mapped pretraining layout (fm4npp.data.flat) and the step sampler of the input pipeline."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from fm4npp.data.flat import FlatEvents, flat_from_shards, write_flat
from fm4npp.data.generate import generate_dataset
from fm4npp.data.gun import GunConfig
from fm4npp.data.shards import ShardSet
from fm4npp.data.torch_dataset import (
    EventOrderSampler,
    StepSampler,
    default_loader_workers,
    dispatch_order,
)
from fm4npp.errors import DataError


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> ShardSet:
    out = tmp_path_factory.mktemp("flat") / "shards"
    generate_dataset(out, 40, seed=3, gun=GunConfig(multiplicity=(1, 4)), progress=False)
    return ShardSet(out)


def test_flat_set_equals_the_shards_and_is_memory_mapped(shards: ShardSet, tmp_path: Path) -> None:
    flat = FlatEvents(flat_from_shards(shards, tmp_path / "flat"))
    assert isinstance(flat.hits, np.memmap)
    assert not flat.hits.flags.writeable
    assert len(flat) == len(shards)
    ids = shards.event_ids[[7, 0, 31, 7]]
    for a, b in zip(flat.read_events(ids), shards.read_events(ids), strict=True):
        assert a.event_id == b.event_id
        for col in ("energy", "x", "y", "z"):
            np.testing.assert_array_equal(a.hits[col], b.hits[col])
        assert (a.hits["track_id"] == 0).all()  # labels are not stored for pretraining
    np.testing.assert_array_equal(flat.sizes(ids), shards.n_hits[[7, 0, 31, 7]])
    with pytest.raises(DataError, match="not in this flat set"):
        flat.read_events([10**9])
    clone = pickle.loads(pickle.dumps(flat))  # by path: spawned workers reopen the maps
    assert len(pickle.dumps(flat)) < 1000
    a, b = clone.read_events(ids[:1])[0], flat.read_events(ids[:1])[0]
    np.testing.assert_array_equal(a.hits["x"], b.hits["x"])


def test_flat_writer_checks_its_input(tmp_path: Path) -> None:
    hits = np.ones((5, 4), np.float32)
    chunk = (np.array([3, 4]), np.array([2, 3]), hits)
    with pytest.raises(DataError, match="announced"):
        write_flat(tmp_path / "a", [chunk], n_events=3, n_hits=5)
    assert not (tmp_path / "a").exists()  # nothing half-written
    with pytest.raises(DataError, match="increasing"):
        write_flat(tmp_path / "b", [chunk, chunk], n_events=4, n_hits=10)
    with pytest.raises(DataError, match="missing"):
        FlatEvents(tmp_path / "b")
    flat = FlatEvents(write_flat(tmp_path / "c", [chunk], n_events=2, n_hits=5))
    assert flat.sizes([4, 3]).tolist() == [3, 2]


def test_step_sampler_reproduces_the_global_batch_split_by_rank(
    shards: ShardSet, tmp_path: Path
) -> None:
    """Per step: the next batch_events positions of the event-order sampler; rank r keeps every
    world-th event; sorted by size (stable), cut into micro-batches, yielded in dispatch order.
    Restartable at any position, with the same order as an uninterrupted stream."""
    flat = FlatEvents(flat_from_shards(shards, tmp_path / "flat"))
    tier = shards.event_ids[::2]
    kw = {"seed": 4, "batch_events": 8, "micro_batch_events": 2}
    order = EventOrderSampler(len(tier), 4)
    straight = [iter(StepSampler(flat, tier, position=0, rank=r, world_size=2, **kw)) for r in (0, 1)]
    for step in range(6):  # crosses an epoch boundary (20 events, 8 per step)
        glob = tier[order.take(8)]
        ranks = []
        for rank in (0, 1):
            it = iter(StepSampler(flat, tier, position=8 * step, rank=rank, world_size=2, **kw))
            micro = [next(it) for _ in range(2)]
            mine = glob[rank::2]
            want = mine[np.argsort(flat.sizes(mine), kind="stable")]
            cuts = [want[:2], want[2:]]
            for got, i in zip(micro, dispatch_order(2, step), strict=True):
                np.testing.assert_array_equal(got, cuts[i])
            for got in micro:  # resumed = uninterrupted, order included
                np.testing.assert_array_equal(got, next(straight[rank]))
            ranks.append(np.concatenate(micro))
        assert sorted(np.concatenate(ranks).tolist()) == sorted(glob.tolist())


def test_dispatch_order_balances_two_workers_and_ignores_the_worker_count() -> None:
    """Round robin over 2 workers: each gets one smaller and one larger of every four ascending
    micro-batches, and the two sets swap every step."""
    assert dispatch_order(4, 0) == [0, 1, 3, 2]
    assert dispatch_order(4, 1) == [1, 0, 2, 3]
    assert dispatch_order(4, 6) == dispatch_order(4, 0)
    assert dispatch_order(1, 1) == [0]
    for n in range(1, 9):
        for step in range(3):
            assert sorted(dispatch_order(n, step)) == list(range(n))
    costs = np.array([6.9, 8.9, 11.3, 18.7])  # ms per micro-batch, k = 30 (issue 13)
    per_worker = np.zeros(2)
    for step in range(2):
        for t, i in enumerate(dispatch_order(4, step)):
            per_worker[t % 2] += costs[i]
    assert per_worker[0] == pytest.approx(per_worker[1])


def test_default_loader_workers_follow_the_job_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "16")
    assert default_loader_workers() == 15
    assert default_loader_workers(cuda=False) == 15
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert default_loader_workers() == 0
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert default_loader_workers() == max(0, len(os.sched_getaffinity(0)) - 1)
    assert default_loader_workers(cuda=False) == 0  # local CPU studies: one cell per core already
