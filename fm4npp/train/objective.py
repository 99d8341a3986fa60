"""The k-NNN regression objective (SPEC §5.1): masked MSE, token-weighted over the whole batch.

loss = Σ(err · mask) / Σ mask, where err is the squared error of one neighbour's (η_n, φ_n, r_n)
averaged over its 3 coordinates (= the element-wise MSE over valid target entries that FM4NPP computes
with −100 sentinels) and the mask marks existing neighbours of valid hits. Large events weigh more.
To keep that exact under gradient accumulation and DDP, the loop sums errors per micro-batch and
divides by the global Σ mask of the optimiser step.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import numpy as np
import torch

from fm4npp.data.torch_dataset import SerializedEvents, collate
from fm4npp.train.distributed import DistEnv, all_reduce_sum


def masked_error_sum(
    pred_BLK3: torch.Tensor, targets_BLK3: torch.Tensor, mask_BLK: torch.Tensor
) -> torch.Tensor:
    """Σ over valid neighbours of the mean squared error over 3 coordinates (fp32 scalar).

    ``torch.where`` rather than a product: a non-finite prediction at a padded position must not
    leak into the sum (NaN · 0 = NaN).
    """
    sq = (pred_BLK3.float() - targets_BLK3.float()).pow(2).mean(dim=-1)
    return torch.where(mask_BLK, sq, torch.zeros_like(sq)).sum()


@torch.no_grad()
def validation_loss(
    model: Callable[[torch.Tensor], torch.Tensor],
    dataset: SerializedEvents,
    batch_events: int,
    env: DistEnv,
    autocast: Callable[[], AbstractContextManager[object]],
) -> float:
    """Token-weighted masked MSE over every event of ``dataset`` (ranks split the events).

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
        sums[0] += masked_error_sum(pred, batch.targets, batch.target_mask).double()
        sums[1] += batch.target_mask.sum()
    all_reduce_sum(sums, env)
    return float(sums[0] / sums[1]) if sums[1] > 0 else float("nan")
