"""The k-NNN regression objective (SPEC §5.1, §4.4): masked MSE, token-weighted over the whole batch.

loss = Σ(err · mask) / Σ mask, where err is the squared error of one neighbour's (η_n, φ_n, r_n)
averaged over its 3 coordinates (= the element-wise MSE over valid target entries that FM4NPP computes
with −100 sentinels) and the mask marks existing neighbours of valid hits. Large events weigh more.
To keep that exact under gradient accumulation and DDP, the loop sums errors per micro-batch and
divides by the global Σ mask of the optimiser step.

φ on the ring (SPEC §4.4, fixed mode). φ_n = (φ + π)/(2π) has period 1, and φ = ±π (φ_n = 0 ↔ 1)
is a dense sector centre in our geometry. The kNN search already wraps Δφ; the *loss* does too in
fixed mode: the φ error is wrapped, e_φ ← e_φ − round(e_φ), so it is the signed distance on the ring
(|e_φ| ≤ ½) and a predictor that is perfect on the ring pays exactly zero. The error is wrapped rather
than the target re-expressed as Δφ relative to the query because
- the targets, the serialized-event cache and the compat reference stay bit-identical (one rule, in
  the loss, not a second encoding in the data layer);
- away from the seam the wrapped loss *is* the plain MSE (same value, same gradient: ``round`` has
  zero gradient), so fixed and compat differ only where compat is wrong;
- the task stays "predict where the neighbours are" in absolute coordinates, as in FM4NPP, so
  downstream probes of the head are unchanged.
``wrap_phi=False`` is the compat objective (absolute φ_n, as released): a target across the seam
costs up to 1/3 per neighbour (measured share and cost: benchmarks/bench_seam.py, RESULTS §10).
:func:`wrap_phi_for` is the one place where the mode picks the rule; training and validation both
call :func:`masked_error_sum` with it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import numpy as np
import torch

from fm4npp.data.torch_dataset import SerializedEvents, collate
from fm4npp.train.distributed import DistEnv, all_reduce_sum

PHI = 1  # index of φ_n in the (η_n, φ_n, r_n) targets (fm4npp.data.serialize.SerializedEvent)


def wrap_phi_for(mode: str) -> bool:
    """The objective's φ rule for a serialization mode: wrapped in fixed mode, absolute in compat."""
    return mode != "compat"


def coordinate_error(pred: torch.Tensor, targets: torch.Tensor, wrap_phi: bool = True) -> torch.Tensor:
    """pred − targets in fp32, (..., 3); with ``wrap_phi`` the φ component is wrapped to [−½, ½]."""
    err = pred.float() - targets.float()
    if not wrap_phi:
        return err
    dphi = err[..., PHI]
    wrapped = dphi - torch.round(dphi)  # round has zero gradient: d(wrapped)/d(pred) = 1
    return torch.cat([err[..., :PHI], wrapped.unsqueeze(-1), err[..., PHI + 1 :]], dim=-1)


def masked_error_sum(
    pred_BLK3: torch.Tensor, targets_BLK3: torch.Tensor, mask_BLK: torch.Tensor, wrap_phi: bool = True
) -> torch.Tensor:
    """Σ over valid neighbours of the mean squared error over 3 coordinates (fp32 scalar).

    ``wrap_phi`` (fixed mode): the φ error is taken on the ring (module docstring); False = compat.
    ``torch.where`` rather than a product: a non-finite prediction at a padded position must not
    leak into the sum (NaN · 0 = NaN).
    """
    sq = coordinate_error(pred_BLK3, targets_BLK3, wrap_phi).pow(2).mean(dim=-1)
    return torch.where(mask_BLK, sq, torch.zeros_like(sq)).sum()


@torch.no_grad()
def validation_loss(
    model: Callable[[torch.Tensor], torch.Tensor],
    dataset: SerializedEvents,
    batch_events: int,
    env: DistEnv,
    autocast: Callable[[], AbstractContextManager[object]],
    wrap_phi: bool = True,
) -> float:
    """Token-weighted masked MSE over every event of ``dataset`` (ranks split the events), with the
    training loss's φ rule (``wrap_phi``, :func:`wrap_phi_for`).

    Events are batched in order of length so that little padding is computed; the sum does not
    depend on the batching.
    """
    positions = np.arange(len(dataset))
    lengths = np.array([len(e.feats) for e in dataset.get_many(positions)])
    mine = positions[np.argsort(lengths, kind="stable")][env.rank :: env.world_size]
    sums = torch.zeros(2, dtype=torch.float64, device=env.device)
    for start in range(0, len(mine), batch_events):
        batch = collate(dataset.get_many(mine[start : start + batch_events])).to(env.device)
        with autocast():
            pred = model(batch.feats)
        targets, mask = batch.neighbour_targets()
        sums[0] += masked_error_sum(pred, targets, mask, wrap_phi).double()
        sums[1] += mask.sum()
    all_reduce_sum(sums, env)
    return float(sums[0] / sums[1]) if sums[1] > 0 else float("nan")
