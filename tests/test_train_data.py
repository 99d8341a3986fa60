"""Collate with boolean masks (SPEC §11 #4) and the resumable event-order sampler."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from fm4npp.data.torch_dataset import EventOrderSampler, collate


@dataclass(frozen=True)
class _Serialized:
    """The fields of fm4npp.data.serialize.SerializedEvent that collate reads."""

    feats: np.ndarray
    targets: np.ndarray
    target_mask: np.ndarray
    track_id: np.ndarray
    pid: np.ndarray
    noise: np.ndarray


def _event(n: int, k: int, rng: np.random.Generator, first_track: int) -> _Serialized:
    mask = rng.random((n, k)) < 0.7
    return _Serialized(
        feats=rng.random((n, 4), dtype=np.float32) + 0.5,
        targets=rng.random((n, k, 3), dtype=np.float32),
        target_mask=mask,
        track_id=rng.integers(first_track, first_track + 3, n),  # includes 0 (noise) for first_track=0
        pid=rng.integers(0, 5, n).astype(np.int8),
        noise=rng.random(n) < 0.2,
    )


def test_collate_pads_at_the_end_with_masks_only() -> None:
    rng = np.random.default_rng(0)
    events = [_event(n, 5, rng, first) for n, first in ((7, 0), (3, 1), (11, 4))]
    batch = collate(events)
    assert batch.feats.shape == (3, 11, 4)
    assert batch.targets.shape == (3, 11, 5, 3)
    assert batch.valid.dtype == torch.bool
    assert batch.target_mask.dtype == torch.bool
    assert batch.track_id.dtype == torch.int64
    assert batch.pid.dtype == torch.int64
    assert batch.n_hits == 21
    assert batch.n_hits_padded == 33
    for i, e in enumerate(events):
        n = len(e.feats)
        # valid hits first, padding at the end
        assert batch.valid[i, :n].all()
        assert not batch.valid[i, n:].any()
        np.testing.assert_array_equal(batch.feats[i, :n].numpy(), e.feats)
        np.testing.assert_array_equal(batch.target_mask[i, :n].numpy(), e.target_mask)
        # padding never carries a target, a feature or a label
        assert not batch.target_mask[i, n:].any()
        assert (batch.feats[i, n:] == 0).all()
        assert (batch.targets[i, n:] == 0).all()
        assert not batch.noise[i, n:].any()
        # padding never creates an instance: the instances selected by `valid` are the event's own
        ids = batch.track_id[i][batch.valid[i]].numpy()
        np.testing.assert_array_equal(ids, e.track_id)
        assert set(np.unique(ids)) == set(np.unique(e.track_id))
        np.testing.assert_array_equal(batch.pid[i][batch.valid[i]].numpy(), e.pid)
    # the masked loss normaliser is the same with or without padding
    assert int(batch.target_mask.sum()) == sum(int(e.target_mask.sum()) for e in events)


def test_collate_pad_to_and_errors() -> None:
    rng = np.random.default_rng(1)
    assert collate([_event(4, 2, rng, 1)], pad_to=16).feats.shape == (1, 16, 4)
    with pytest.raises(ValueError, match="empty"):
        collate([])
    with pytest.raises(ValueError, match="k=2"):
        collate([_event(4, 2, rng, 1), _event(4, 3, rng, 1)])


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
