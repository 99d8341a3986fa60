"""The k-NNN objective on the φ ring (SPEC §4.4): a ring-perfect predictor pays zero in fixed mode,
the plain MSE everywhere away from the seam, and the validation loss applies the same rule."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch

from fm4npp.data.generate import simulate_events
from fm4npp.data.gun import GunConfig
from fm4npp.data.serialize import SerializedEvent, fit_edges, serialize_event
from fm4npp.train.distributed import DistEnv
from fm4npp.train.objective import PHI, coordinate_error, masked_error_sum, validation_loss, wrap_phi_for

K = 8


@pytest.fixture(scope="module")
def events() -> list[SerializedEvent]:
    evs = simulate_events(12, seed=3, gun=GunConfig(multiplicity=(20, 30)))
    edges = fit_edges(evs)
    return [serialize_event(e, edges, mode="fixed", k=K) for e in evs if e.n_hits]


def ring_perfect(ev: SerializedEvent) -> np.ndarray:
    """Neighbour φ seen from the query's side of the seam: φ_q + wrap(φ_n − φ_q), which leaves [0, 1]
    exactly for the targets that cross the seam; η and r exact."""
    pred = ev.targets.astype(np.float64).copy()
    phi_q = ev.feats[:, None, 1 + PHI].astype(np.float64)  # feats = [E_n, η_n, φ_n, r_n]
    d = pred[..., PHI] - phi_q
    pred[..., PHI] = phi_q + d - np.round(d)
    return pred.astype(np.float32)


def seam_share(ev: SerializedEvent) -> float:
    d = ev.targets[..., PHI] - ev.feats[:, None, 1 + PHI]
    return float((np.abs(d) > 0.5)[ev.target_mask].mean())


def test_ring_perfect_predictor_has_zero_loss_only_when_wrapped(events: list[SerializedEvent]) -> None:
    shares = [seam_share(e) for e in events]
    assert max(shares) > 0  # the fixture has targets across the seam, else the test proves nothing
    for ev in events:
        pred, tgt = torch.from_numpy(ring_perfect(ev)), torch.from_numpy(ev.targets)
        mask = torch.from_numpy(ev.target_mask)
        wrapped = float(masked_error_sum(pred, tgt, mask, wrap_phi=True))
        assert wrapped < 1e-9
        absolute = float(masked_error_sum(pred, tgt, mask, wrap_phi=False))
        crossing = int(
            ((np.abs(ring_perfect(ev)[..., PHI] - ev.targets[..., PHI]) > 0.5) & ev.target_mask).sum()
        )
        assert absolute == pytest.approx(crossing / 3, rel=1e-3)  # each crossing costs (±1)²/3


def test_wrapped_error_is_the_plain_error_away_from_the_seam() -> None:
    g = torch.Generator().manual_seed(0)
    tgt = torch.rand(2, 5, K, 3, generator=g) * 0.5 + 0.25  # φ in [0.25, 0.75]
    pred = (tgt + 0.2 * (torch.rand(2, 5, K, 3, generator=g) - 0.5)).requires_grad_(True)
    mask = torch.rand(2, 5, K, generator=g) > 0.3
    a = masked_error_sum(pred, tgt, mask, wrap_phi=True)
    (ga,) = torch.autograd.grad(a, pred)
    b = masked_error_sum(pred, tgt, mask, wrap_phi=False)
    (gb,) = torch.autograd.grad(b, pred)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)
    assert torch.allclose(ga, gb)


def test_wrapped_phi_error_is_the_signed_ring_distance() -> None:
    tgt = torch.tensor([[0.02, 0.98, 0.5]]).T.expand(3, 3).contiguous()
    pred = torch.tensor([[0.97, 0.01, 0.5]]).T.expand(3, 3).contiguous()
    err = coordinate_error(pred, tgt, wrap_phi=True)[:, PHI]
    assert torch.allclose(err, torch.tensor([-0.05, 0.03, 0.0]), atol=1e-6)
    assert coordinate_error(pred, tgt, wrap_phi=False)[0, PHI] == pytest.approx(0.95)


def test_mode_picks_the_rule() -> None:
    assert wrap_phi_for("fixed") is True
    assert wrap_phi_for("compat") is False


class _Events:
    """A dataset double: in-memory serialized events (``get_many``, ``len``)."""

    def __init__(self, events: Sequence[SerializedEvent]) -> None:
        self.events = list(events)

    def __len__(self) -> int:
        return len(self.events)

    def get_many(self, idx: Sequence[int] | np.ndarray) -> list[SerializedEvent]:
        return [self.events[int(i)] for i in idx]


class _RingOracle:
    """A model double that outputs the ring-perfect prediction of whichever event it is shown."""

    def __init__(self, events: Sequence[SerializedEvent]) -> None:
        self.by_feats = {e.feats.tobytes(): ring_perfect(e) for e in events}

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(*feats.shape[:2], K, 3)
        for b, row in enumerate(feats.numpy()):
            for key, pred in self.by_feats.items():
                n = len(pred)
                if n <= len(row) and row[:n].tobytes() == key:
                    out[b, :n] = torch.from_numpy(pred)
                    break
        return out


def test_validation_loss_uses_the_training_rule(events: list[SerializedEvent]) -> None:
    env = DistEnv(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    oracle, data = _RingOracle(events), _Events(events)
    from contextlib import nullcontext

    fixed = validation_loss(oracle, data, 4, env, nullcontext, wrap_phi=True)  # type: ignore[arg-type]
    compat = validation_loss(oracle, data, 4, env, nullcontext, wrap_phi=False)  # type: ignore[arg-type]
    assert fixed < 1e-9
    n_targets = sum(int(e.target_mask.sum()) for e in events)
    crossing = sum(seam_share(e) * int(e.target_mask.sum()) for e in events)
    assert compat == pytest.approx(crossing / n_targets / 3, rel=1e-3)
