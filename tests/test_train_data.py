"""Collate with boolean masks (SPEC §11 #4), targets gathered from neighbour positions, and the
resumable event-order sampler."""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass, fields

import numpy as np
import pytest
import torch

from fm4npp.data.fastsim.geometry import ROW_RADIUS_CM
from fm4npp.data.schema import Event, make_hits
from fm4npp.data.serialize import _serialize_numpy, fit_edges, serialize_event
from fm4npp.data.torch_dataset import EventOrderSampler, collate


@dataclass(frozen=True)
class _Serialized:
    """The fields of fm4npp.data.serialize.SerializedEvent that collate reads."""

    feats: np.ndarray
    nbr: np.ndarray
    track_id: np.ndarray
    pid: np.ndarray
    noise: np.ndarray


def _event(n: int, k: int, rng: np.random.Generator, first_track: int) -> _Serialized:
    nbr = np.where(rng.random((n, k)) < 0.7, rng.integers(0, n, (n, k)), -1)
    return _Serialized(
        feats=rng.random((n, 4), dtype=np.float32) + 0.5,
        nbr=nbr,
        track_id=rng.integers(first_track, first_track + 3, n),  # includes 0 (noise) for first_track=0
        pid=rng.integers(0, 5, n).astype(np.int8),
        noise=rng.random(n) < 0.2,
    )


def test_collate_pads_at_the_end_with_masks_only() -> None:
    rng = np.random.default_rng(0)
    events = [_event(n, 5, rng, first) for n, first in ((7, 0), (3, 1), (11, 4))]
    batch = collate(events)
    targets, mask = batch.neighbour_targets()
    assert batch.feats.shape == (3, 11, 4)
    assert batch.nbr.shape == (3, 11, 5)
    assert batch.nbr.dtype == torch.int16  # int32 beyond 32,768 hits: see test_collate_pad_to
    assert targets.shape == (3, 11, 5, 3)
    assert targets.dtype == torch.float32
    assert batch.valid.dtype == torch.bool
    assert mask.dtype == torch.bool
    assert batch.track_id.dtype == torch.int64
    assert batch.pid.dtype == torch.int8
    assert batch.n_hits == 21
    assert batch.n_hits_padded == 33
    for i, e in enumerate(events):
        n = len(e.feats)
        # valid hits first, padding at the end
        assert batch.valid[i, :n].all()
        assert not batch.valid[i, n:].any()
        np.testing.assert_array_equal(batch.feats[i, :n].numpy(), e.feats)
        np.testing.assert_array_equal(mask[i, :n].numpy(), e.nbr >= 0)
        # a target is the neighbour's own (η_n, φ_n, r_n), within its own event
        want = np.where((e.nbr >= 0)[..., None], e.feats[np.maximum(e.nbr, 0), 1:], 0)
        np.testing.assert_array_equal(targets[i, :n].numpy(), want)
        # padding never carries a target, a feature or a label
        assert not mask[i, n:].any()
        assert (batch.nbr[i, n:] == -1).all()
        assert (batch.feats[i, n:] == 0).all()
        assert (targets[i, n:] == 0).all()
        assert not batch.noise[i, n:].any()
        # padding never creates an instance: the instances selected by `valid` are the event's own
        ids = batch.track_id[i][batch.valid[i]].numpy()
        np.testing.assert_array_equal(ids, e.track_id)
        assert set(np.unique(ids)) == set(np.unique(e.track_id))
        np.testing.assert_array_equal(batch.pid[i][batch.valid[i]].numpy(), e.pid)
    # the masked loss normaliser is the same with or without padding
    assert batch.n_targets == int(mask.sum()) == sum(int((e.nbr >= 0).sum()) for e in events)


def test_collate_pad_to_and_errors() -> None:
    rng = np.random.default_rng(1)
    assert collate([_event(4, 2, rng, 1)], pad_to=16).feats.shape == (1, 16, 4)
    small = _event(4, 2, rng, 1)
    narrow, wide = (collate([small], pad_to=n) for n in (32_768, 32_769))
    assert (narrow.nbr.dtype, wide.nbr.dtype) == (torch.int16, torch.int32)
    for got, want in zip(wide.neighbour_targets(), narrow.neighbour_targets(), strict=True):
        assert torch.equal(got[:, : want.shape[1]], want)
        assert not got[:, want.shape[1] :].any()
    with pytest.raises(ValueError, match="empty"):
        collate([])
    with pytest.raises(ValueError, match="k=2"):
        collate([_event(4, 2, rng, 1), _event(4, 3, rng, 1)])


def test_a_collated_batch_is_one_storage_and_pickles_as_one() -> None:
    """A loader worker hands the batch over as one shared-memory storage (one file descriptor);
    the training process sees the same fields. A batch whose fields do not share a storage (after
    pin_memory, say) pickles field by field."""
    from multiprocessing.reduction import ForkingPickler

    import torch.multiprocessing  # registers the shared-memory reductions

    rng = np.random.default_rng(2)
    batch = collate([_event(n, 4, rng, 1) for n in (9, 5, 12)])
    names = [f.name for f in fields(batch)]

    def storages(b: object) -> set[int]:
        return {getattr(b, n).untyped_storage().data_ptr() for n in names}

    assert len(storages(batch)) == 1
    separate = type(batch)(*(getattr(batch, n).clone() for n in names))
    for original in (batch, separate):
        for back in (
            pickle.loads(pickle.dumps(original)),
            pickle.loads(bytes(ForkingPickler.dumps(original))),
        ):
            for n in names:
                got, want = getattr(back, n), getattr(original, n)
                assert (got.dtype, got.stride()) == (want.dtype, want.stride()), n
                assert torch.equal(got, want), n
            assert len(storages(back)) == len(storages(original))


def _hits_event(seed: int, n: int) -> Event:
    """Hits on the 48 pad rows, uniform in φ (across the seam) and |η| < 1.1."""
    rng = np.random.default_rng(seed)
    r = ROW_RADIUS_CM[rng.integers(0, 48, n)]
    phi = rng.uniform(-math.pi, math.pi, n)
    eta = rng.uniform(-1.1, 1.1, n)
    zeros = np.zeros(n, np.int64)
    hits = make_hits(
        x=r * np.cos(phi), y=r * np.sin(phi), z=r * np.sinh(eta), energy=rng.uniform(0, 600, n),
        track_id=zeros, pid=zeros, noise=zeros.astype(bool),
    )  # fmt: skip
    return Event(seed, hits)


def _dense_collate(dense: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The padded targets and mask as collate built them before it shipped neighbour positions:
    zero-filled (B, L, k, 3) and (B, L, k), each event's dense assembly copied at the front."""
    length, k = max(len(t) for t, _ in dense), dense[0][0].shape[1]
    targets = np.zeros((len(dense), length, k, 3), np.float32)
    mask = np.zeros((len(dense), length, k), bool)
    for i, (t, m) in enumerate(dense):
        targets[i, : len(t)], mask[i, : len(t)] = t, m
    return targets, mask


@pytest.mark.parametrize("mode", ["fixed", "compat"])
@pytest.mark.parametrize("order", ["EPR", "hilbert"])
def test_gathered_targets_equal_the_dense_reference_batch(mode: str, order: str) -> None:
    """Batch.neighbour_targets (a gather of feats by nbr) equals, bit for bit, the batch of targets
    and masks that the dense reference serialization assembles by hit index; fast path and
    reference serialize to the same batch."""
    events = [_hits_event(s, n) for s, n in ((0, 300), (1, 170), (2, 260), (3, 1))]
    edges = fit_edges(events, mode=mode)  # type: ignore[arg-type]
    for k in (8, 30):
        dense = [_serialize_numpy(e, edges, order, mode, k, True)[2:4] for e in events]  # type: ignore[arg-type]
        want_t, want_m = _dense_collate(dense)
        for reference in (False, True):
            ser = [serialize_event(e, edges, order, mode, k, reference=reference) for e in events]  # type: ignore[arg-type]
            targets, mask = collate(ser).neighbour_targets()
            np.testing.assert_array_equal(mask.numpy(), want_m)
            assert targets.dtype == torch.float32
            # bit for bit: +0 where missing, the neighbour's float32 coordinates otherwise
            np.testing.assert_array_equal(targets.numpy().view(np.uint32), want_t.view(np.uint32))
            for e, (t, m) in zip(ser, dense, strict=True):  # the numpy rule on the event itself
                np.testing.assert_array_equal(e.targets.view(np.uint32), t.view(np.uint32))
                np.testing.assert_array_equal(e.target_mask, m)
        assert want_m.any()
        assert not want_m.all()


def test_sampler_epochs_are_seeded_permutations() -> None:
    s = EventOrderSampler(10, seed=3)
    first = s.take(10)
    assert sorted(first.tolist()) == list(range(10))
    np.testing.assert_array_equal(first, EventOrderSampler(10, seed=3).permutation(0))
    second = s.take(10)
    assert sorted(second.tolist()) == list(range(10))
    assert not np.array_equal(first, second)
    assert not np.array_equal(first, EventOrderSampler(10, seed=4).take(10))


def test_sampler_resumes_from_position_across_epoch_boundaries() -> None:
    straight = EventOrderSampler(7, seed=0).take(40)
    s = EventOrderSampler(7, seed=0)
    parts = [s.take(6), s.take(5)]
    resumed = EventOrderSampler(7, seed=0)
    resumed.load_state_dict(s.state_dict())
    parts.append(resumed.take(29))
    np.testing.assert_array_equal(np.concatenate(parts), straight)
    assert resumed.position == 40
    assert resumed.epoch == 5
    with pytest.raises(ValueError, match="seed"):
        EventOrderSampler(7, seed=1).load_state_dict(s.state_dict())
