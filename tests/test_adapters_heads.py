"""Adapter heads and set matching (SPEC §8): shapes, padding masks, Hungarian assignment, decoding."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from fm4npp.model.adapters import (
    NO_OBJECT,
    TRACK,
    FeatureMixer,
    PointClassifier,
    TrackHead,
    TrackOutput,
    adapter_for,
    decode_tracks,
)
from fm4npp.train.matching import hungarian_match, instance_targets, set_loss, track_loss

B, L, S, D, Q, C = 3, 20, 2, 8, 6, 32


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny tensors: thread hand-offs cost more than they save on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(B, L, S, D, generator=g)
    valid = torch.ones(B, L, dtype=torch.bool)
    valid[1, 12:] = False
    valid[2, 5:] = False
    return feats, valid


def test_mixer_starts_uniform_and_maps_to_head_width() -> None:
    mixer = FeatureMixer(S, D, C)
    assert torch.allclose(mixer.mix_weights, torch.full((S,), 1 / S))
    assert mixer(torch.randn(B, L, S, D)).shape == (B, L, C)


def test_track_head_shapes_and_deep_supervision() -> None:
    feats, valid = _inputs()
    head = TrackHead(S, D, n_queries=Q, n_layers=2, dim=C, noise_output=True)
    out = head(feats, valid)
    assert len(out.sets) == 3  # initial queries + one per decoder layer
    for cls, masks in out.sets:
        assert cls.shape == (B, Q, 2)
        assert masks.shape == (B, Q, L)
    assert out.noise_logits is not None
    assert out.noise_logits.shape == (B, L, 2)
    assert TrackHead(S, D, n_queries=Q, dim=C)(feats, valid).noise_logits is None  # compat mode
    labels = decode_tracks(out, valid)
    assert labels.shape == (B, L)
    assert labels.dtype == torch.int64
    assert (labels[~valid] == -1).all()


@pytest.mark.parametrize("task", ["tracking", "pid", "noise"])
def test_padding_does_not_change_valid_outputs(task: str) -> None:
    """Padded hits are masked keys: their values never reach a valid hit's output."""
    torch.manual_seed(0)
    model = adapter_for(task, S, D, n_queries=Q, head_width=C).eval()
    feats, valid = _inputs()
    other = feats.clone()
    other[~valid] = torch.randn(int((~valid).sum()), S, D) * 100
    with torch.no_grad():
        a, b = model(feats, valid), model(other, valid)
    if task == "tracking":
        (ca, ma), (cb, mb) = a.final, b.final
        assert torch.allclose(ca, cb, atol=1e-5)
        assert torch.allclose(
            ma[valid[:, None, :].expand_as(ma)], mb[valid[:, None, :].expand_as(mb)], atol=1e-4
        )
        assert torch.allclose(a.noise_logits[valid], b.noise_logits[valid], atol=1e-5)
    else:
        assert a.shape == (B, L, 5 if task == "pid" else 2)
        assert torch.allclose(a[valid], b[valid], atol=1e-5)


def test_point_classifier_shapes() -> None:
    feats, valid = _inputs()
    assert PointClassifier(S, D, 5, dim=C)(feats, valid).shape == (B, L, 5)


def test_instances_fixed_and_compat_and_padding() -> None:
    track_id = torch.tensor([3, 3, 0, 7, 7, 7, 0, 0])
    valid = torch.tensor([True] * 6 + [False] * 2)  # two padded hits with the zero fill value
    fixed = instance_targets(track_id, valid, "fixed")
    assert fixed.tolist() == [
        [True, True, False, False, False, False, False, False],
        [False, False, False, True, True, True, False, False],
    ]
    compat = instance_targets(track_id, valid, "compat")
    assert compat.shape == (3, 8)
    assert compat[0].tolist() == [
        False,
        False,
        True,
        False,
        False,
        False,
        False,
        False,
    ]  # noise, valid only
    # padding alone never creates an instance, even in compat mode
    only_pad = instance_targets(torch.zeros(4, dtype=torch.long), torch.tensor([False] * 4), "compat")
    assert only_pad.shape == (0, 4)


def _two_track_predictions() -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """Hits 0–3 form track 5, hits 4–7 track 9; query 2 predicts track 9, query 0 track 5, query 1
    nothing. Hits 8–9 are padding."""
    valid = torch.tensor([[True] * 8 + [False] * 2])
    track_id = torch.tensor([[5, 5, 5, 5, 9, 9, 9, 9, 0, 0]])
    masks = torch.full((1, 3, 10), -8.0)
    masks[0, 0, :4] = 8.0
    masks[0, 2, 4:8] = 8.0
    masks[0, :, 8:] = 8.0  # garbage on padding must not matter
    cls = torch.tensor([[[-4.0, 4.0], [4.0, -4.0], [-4.0, 4.0]]])
    targets = [instance_targets(track_id[0], valid[0], "fixed")]
    return cls, masks, targets, valid


def test_hungarian_matching_gives_the_obvious_assignment() -> None:
    cls, masks, targets, valid = _two_track_predictions()
    (rows, cols), = hungarian_match(cls, masks, targets, valid)  # fmt: skip
    assert dict(zip(rows.tolist(), cols.tolist(), strict=True)) == {0: 0, 2: 1}
    labels = decode_tracks(TrackOutput([(cls, masks)]), valid)
    assert labels[0].tolist() == [0, 0, 0, 0, 2, 2, 2, 2, -1, -1]


def test_noise_output_leaves_the_hits_it_calls_noise_unassigned() -> None:
    """Fixed mode: a hit's scores are scaled by P(signal), so one threshold drops the hits the noise
    output is sure about and keeps the others on their best query."""
    cls, masks, _, valid = _two_track_predictions()
    noise = torch.zeros(1, 10, 2)
    noise[0, [1, 6], 1] = 8.0  # hits 1 and 6: noise with P ≈ 1
    out = TrackOutput([(cls, masks)], noise)
    assert decode_tracks(out, valid, threshold=0.1)[0].tolist() == [0, -1, 0, 0, 2, 2, -1, 2, -1, -1]
    # without the noise output the same threshold keeps every valid hit
    assert decode_tracks(TrackOutput([(cls, masks)]), valid, threshold=0.1)[0].tolist() == [
        0, 0, 0, 0, 2, 2, 2, 2, -1, -1
    ]  # fmt: skip


def test_noise_output_is_trained_on_track_id_zero() -> None:
    """The joint loss adds W_NOISE × cross-entropy of the noise output against track id 0 (valid hits
    only): a confident right answer costs (almost) nothing more, a confident wrong one a lot."""
    cls, masks, _, valid = _two_track_predictions()
    track_id = torch.tensor([[5, 5, 0, 5, 9, 9, 0, 9, 0, 0]])
    base = track_loss(TrackOutput([(cls, masks)]), track_id, valid)
    right = torch.zeros(1, 10, 2)
    right[0, :, 0] = 9.0
    right[0, [2, 6], :] = torch.tensor([0.0, 9.0])
    right[0, 8:] = torch.tensor([0.0, -50.0])  # padding: wrong and huge, must not count
    wrong = right.flip(-1)
    wrong[0, 8:] = right[0, 8:]
    assert float(track_loss(TrackOutput([(cls, masks)], right), track_id, valid)) < float(base) + 0.01
    assert float(track_loss(TrackOutput([(cls, masks)], wrong), track_id, valid)) > float(base) + 50


def test_loss_is_small_for_the_right_answer_and_ignores_padding() -> None:
    cls, masks, targets, valid = _two_track_predictions()
    good = set_loss(cls, masks, targets, valid).total
    assert float(good) < 0.1
    # a set loss: permuting the queries permutes the matching and leaves the loss unchanged
    perm = [2, 1, 0]
    assert torch.isclose(set_loss(cls[:, perm], masks[:, perm], targets, valid).total, good)
    wrong = masks.clone()
    wrong[0, 0, :4] = -8.0
    assert float(set_loss(cls, wrong, targets, valid).total) > float(good) + 1
    masks2 = masks.clone()
    masks2[0, :, 8:] = -3.0
    assert torch.isclose(set_loss(cls, masks2, targets, valid).total, good)


def test_event_without_instances_trains_towards_no_object() -> None:
    valid = torch.ones(1, 6, dtype=torch.bool)
    track_id = torch.zeros(1, 6, dtype=torch.long)  # noise only: no instance in fixed mode
    cls = torch.zeros(1, 4, 2, requires_grad=True)
    masks = torch.zeros(1, 4, 6, requires_grad=True)
    loss = track_loss(TrackOutput([(cls, masks)]), track_id, valid, "fixed")
    loss.backward()  # type: ignore[no-untyped-call]
    assert cls.grad is not None
    assert (cls.grad[..., NO_OBJECT] < 0).all()
    assert (cls.grad[..., TRACK] > 0).all()
    assert masks.grad is None or float(masks.grad.abs().sum()) == 0.0  # no mask is supervised


def test_track_head_learns_a_toy_problem() -> None:
    """Hits carry their track's one-hot code in the features: a few hundred steps must find them."""
    torch.manual_seed(0)
    n_tracks, hits = 3, 6
    track_id = torch.arange(1, n_tracks + 1).repeat_interleave(hits)[None].repeat(4, 1)
    feats = torch.nn.functional.one_hot(track_id - 1, D).float()[:, :, None, :] + 0.05 * torch.randn(
        4, 18, 1, D
    )
    valid = torch.ones(4, 18, dtype=torch.bool)
    head = TrackHead(1, D, n_queries=Q, dim=C)
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3)
    for _ in range(150):
        loss = track_loss(head(feats, valid), track_id, valid)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    labels = decode_tracks(head.eval()(feats, valid), valid).numpy()
    from sklearn.metrics import adjusted_rand_score

    assert np.mean([adjusted_rand_score(track_id[i].numpy(), labels[i]) for i in range(4)]) > 0.95


def test_majority_accuracy_by_hand() -> None:
    """The floor of a point head: the labelled set's commonest class, scored on the test hits."""
    from fm4npp.train.downstream import majority_accuracy
    from fm4npp.train.features import EventSet

    def events(pid: list[int], noise: list[int]) -> EventSet:
        n = len(pid)
        return EventSet(event_ids=np.array([0]), offsets=np.array([0, n]), feats=torch.zeros(n, 1, 1),
                        track_id=np.zeros(n, np.int64), pid=np.array(pid), noise=np.array(noise),
                        particles=[{}])  # fmt: skip

    train = events([1, 1, 4, 1, 0], [0, 0, 1, 0, 1])  # commonest: π (1) and signal (0)
    test = events([1, 4, 4, 1], [1, 1, 1, 0])
    assert majority_accuracy("pid", train, test) == 0.5
    assert majority_accuracy("noise", train, test) == 0.25
