"""Set-prediction training of the track head (SPEC §8, [Rb] ``train/downstream/loss.py``): ground-truth
instances, per-event Hungarian matching and the MaskFormer loss with deep supervision.

Ground truth (SPEC §11 #4): one mask per track id over the *valid* hits of an event. Noise (track id 0)
is one extra instance in ``compat`` mode (FM4NPP) and dropped in ``fixed`` mode (noise hits then must
stay unassigned). Padding never creates an instance, because instances are built from valid hits
only, and it never enters a cost or a loss term.

Shapes: B events, Q queries, L hits (padded), T instances of one event, n valid hits of one event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from fm4npp.model.adapters import NO_OBJECT, TRACK, TrackOutput

# SPEC §8 ([Rb] loss.py): matching cost and loss weights.
COST_CLASS, COST_DICE, COST_FOCAL = 0.5, 1.0, 30.0
W_MATCHED_CE, W_UNMATCHED_CE, W_DICE, W_FOCAL = 0.5, 0.1, 1.0, 30.0
FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0
# weight of the head's noise output (cross-entropy per valid hit, fixed mode): the set loss of a batch
# is ≈ 50 (summed over queries and prediction sets) and the gradients are clipped to norm 1, so a
# unit weight would leave the noise branch almost untrained (issue 11)
W_NOISE = 10.0


def instance_targets(
    track_id_L: torch.Tensor, valid_L: torch.Tensor, mode: str = "fixed"
) -> torch.Tensor:
    """Ground-truth masks (T, L) bool of one event: one row per distinct track id among valid hits,
    in increasing id order; noise (id 0) is a row only in ``compat`` mode. Padded hits are False."""
    if mode not in ("fixed", "compat"):
        raise ValueError(f"mode '{mode}': allowed fixed, compat")
    ids = torch.unique(track_id_L[valid_L])
    if mode == "fixed":
        ids = ids[ids != 0]
    return (track_id_L[None, :] == ids[:, None]) & valid_L[None, :]


def sigmoid_focal(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Element-wise sigmoid focal loss (α 0.25, γ 2; Lin et al. 2017), same shape as ``logits``."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    alpha_t = FOCAL_ALPHA * targets + (1 - FOCAL_ALPHA) * (1 - targets)
    return alpha_t * ce * (1 - p_t) ** FOCAL_GAMMA


@torch.no_grad()
def match_costs(
    class_logits_BQ2: torch.Tensor,
    mask_logits_BQL: torch.Tensor,
    targets_BTL: torch.Tensor,
    valid_BL: torch.Tensor,
) -> torch.Tensor:
    """Matching costs (B, Q, T) = 0.5·(−p_track) + 1·Dice + 30·Focal over each event's valid hits.

    ``targets_BTL`` are the events' instances padded with empty rows to a common T (their columns of
    the result are meaningless). Focal with target 1 is α(1−p)^γ·softplus(−x), with target 0
    (1−α)p^γ·softplus(x); both are averaged over the event's n valid hits.
    """
    x = mask_logits_BQL.float()
    v = valid_BL.float()[:, :, None]  # (B, L, 1)
    t = targets_BTL.float().transpose(1, 2) * v  # (B, L, T)
    n = v.sum(1).clamp(min=1)[:, None]  # (B, 1, 1)
    p = torch.sigmoid(x)
    sp_neg = F.softplus(-x)  # −log p
    pos = FOCAL_ALPHA * (1 - p) ** FOCAL_GAMMA * sp_neg
    neg = (1 - FOCAL_ALPHA) * p**FOCAL_GAMMA * (sp_neg + x)  # softplus(x) = softplus(−x) + x
    focal = (torch.bmm(pos, t) + torch.bmm(neg, v - t)) / n
    p = p * valid_BL[:, None, :].float()
    dice = 1 - (2 * torch.bmm(p, t) + 1) / (p.sum(-1)[..., None] + t.sum(1)[:, None, :] + 1)
    p_track = torch.softmax(class_logits_BQ2.float(), dim=-1)[..., TRACK]
    return COST_CLASS * -p_track[..., None] + COST_DICE * dice + COST_FOCAL * focal


def hungarian_match(
    class_logits_BQ2: torch.Tensor,
    mask_logits_BQL: torch.Tensor,
    targets: list[torch.Tensor],
    valid_BL: torch.Tensor,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Optimal one-to-one assignment per event: (query indices, instance indices), sorted by query.
    ``targets[b]`` (T_b, L) bool; every instance is matched when T_b ≤ Q."""
    b, _, length = mask_logits_BQL.shape
    t_max = max((len(t) for t in targets), default=0)
    empty = np.zeros(0, dtype=np.int64)
    if t_max == 0:
        return [(empty, empty)] * b
    padded = torch.zeros((b, t_max, length), dtype=torch.bool, device=mask_logits_BQL.device)
    for i, t in enumerate(targets):
        padded[i, : len(t)] = t
    cost = match_costs(class_logits_BQ2, mask_logits_BQL, padded, valid_BL).cpu().numpy()
    out = []
    for i, t in enumerate(targets):
        if len(t) == 0:
            out.append((empty, empty))
            continue
        rows, cols = linear_sum_assignment(cost[i, :, : len(t)])
        out.append((rows.astype(np.int64), cols.astype(np.int64)))
    return out


@dataclass(frozen=True)
class SetLoss:
    """Loss terms of one prediction set (scalars); ``total`` is their weighted sum."""

    total: torch.Tensor
    ce: torch.Tensor
    dice: torch.Tensor
    focal: torch.Tensor


def set_loss(
    class_logits_BQ2: torch.Tensor,
    mask_logits_BQL: torch.Tensor,
    targets: list[torch.Tensor],
    valid_BL: torch.Tensor,
) -> SetLoss:
    """0.5·CE(matched → track) + 0.1·CE(unmatched → no-object) + Dice + 30·Focal for one prediction set.

    ``targets[b]`` (T_b, L) bool are event b's instances. Every term is a *sum* over the queries (CE)
    or matched pairs (Dice, Focal; Focal first averaged over each event's valid hits), divided by
    the number of events B, as in FM4NPP ([Rb] ``loss.py::compute_point_loss``). Averaging over
    queries/instances instead would weaken the no-object term against the matched ones by the ratio
    of unmatched to matched queries (4–9× with 48–150 queries), which is what lets unused queries
    claim hits.
    """
    b, q, _ = class_logits_BQ2.shape
    labels = torch.full((b, q), NO_OBJECT, dtype=torch.long, device=class_logits_BQ2.device)
    sel_b, sel_q, rows = [], [], []
    for i, (qi, ti) in enumerate(hungarian_match(class_logits_BQ2, mask_logits_BQL, targets, valid_BL)):
        labels[i, qi] = TRACK
        sel_b.append(np.full(len(qi), i))
        sel_q.append(qi)
        rows.append(targets[i][ti])
    ce = F.cross_entropy(
        class_logits_BQ2.reshape(b * q, 2).float(), labels.reshape(-1), reduction="none"
    )
    matched = labels.reshape(-1) == TRACK
    per_event = 1.0 / max(b, 1)
    ce_total = (W_MATCHED_CE * ce[matched].sum() + W_UNMATCHED_CE * ce[~matched].sum()) * per_event
    zero = class_logits_BQ2.sum() * 0.0
    bi = torch.from_numpy(np.concatenate(sel_b)).to(labels.device)
    if len(bi) == 0:
        return SetLoss(ce_total, ce_total.detach(), zero.detach(), zero.detach())
    qi_all = torch.from_numpy(np.concatenate(sel_q)).to(labels.device)
    x = mask_logits_BQL[bi, qi_all].float()  # (M, L)
    t = torch.cat(rows).float()  # (M, L)
    v = valid_BL[bi].float()  # (M, L)
    focal = (sigmoid_focal(x, t) * v).sum(-1) / v.sum(-1).clamp(min=1)
    p = torch.sigmoid(x) * v
    dice = 1 - (2 * (p * t).sum(-1) + 1) / (p.sum(-1) + t.sum(-1) + 1)
    focal_s, dice_s = focal.sum() * per_event, dice.sum() * per_event
    total = ce_total + W_DICE * dice_s + W_FOCAL * focal_s
    return SetLoss(total, ce_total.detach(), dice_s.detach(), focal_s.detach())


def track_loss(
    out: TrackOutput,
    track_id_BL: torch.Tensor,
    valid_BL: torch.Tensor,
    mode: str = "fixed",
) -> torch.Tensor:
    """Deep-supervised loss: :func:`set_loss` summed over every prediction set of the track head
    (each set matched on its own), plus ``W_NOISE`` × the cross-entropy of the noise output over the
    valid hits (target: track id 0) when the head has one."""
    targets = [instance_targets(track_id_BL[i], valid_BL[i], mode) for i in range(track_id_BL.shape[0])]
    total = torch.stack([set_loss(c, m, targets, valid_BL).total for c, m in out.sets]).sum()
    if out.noise_logits is not None:
        is_noise = (track_id_BL == 0).long()
        total = total + W_NOISE * F.cross_entropy(out.noise_logits[valid_BL].float(), is_noise[valid_BL])
    return total
