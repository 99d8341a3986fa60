"""AdamW with a no-decay parameter group, and the LR schedules (SPEC §5.4, §11 #11): warm-up + cosine
(:func:`lr_at`), or warm-up + stable + decay (WSD, :func:`lr_wsd`; Hägele et al. 2024, arXiv:2405.18392).

A schedule is a pure function of the optimiser step; the torch scheduler only wraps it
(``LambdaLR`` multiplies each group's base LR by ``lr_at / peak``, so per-group LR scales survive, unlike
FM4NPP's μP groups, SPEC §11 #7).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from fm4npp.config.schema import TrainConfig

#: Parameter names (last dotted component) that never decay in fixed mode: the SSM's decay rates,
#: skip gains and dt offsets are not weights to shrink toward zero (mamba_ssm sets
#: ``_no_weight_decay`` on A_log and D; SPEC §5.4 adds dt_bias).
NO_DECAY_NAMES = frozenset({"A_log", "D", "dt_bias"})


def lr_at(step: int, total_steps: int, peak: float, floor: float, warmup_steps: int) -> float:
    """Learning rate of optimiser step ``step`` (0-based).

    Linear warm-up from ``floor`` to ``peak`` over ``warmup_steps`` steps, then a half cosine from
    ``peak`` down to ``floor`` at ``step = total_steps``; constant ``floor`` afterwards. SPEC §5.4:
    2e-5 → 2e-4 over 1,000 steps, cosine to 2e-5 at 50,000.
    """
    if step < warmup_steps:
        return floor + (peak - floor) * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return floor + 0.5 * (peak - floor) * (1.0 + math.cos(math.pi * progress))


def lr_wsd(
    step: int,
    peak: float,
    floor: float,
    warmup_steps: int,
    decay_start: int | None,
    decay_end: int,
    shape: str = "1-sqrt",
) -> float:
    """Learning rate of step ``step`` under warm-up, stable, decay (WSD).

    Linear warm-up from ``floor`` to ``peak`` over ``warmup_steps``; ``peak`` until ``decay_start``
    (``None``: stable forever, a trunk); then down to ``floor`` at ``decay_end``, linearly or as
    ``1-sqrt`` (``lr = floor + (peak - floor)·(1 - sqrt(progress))``, Hägele et al.'s best cooldown);
    constant ``floor`` afterwards.
    """
    if step < warmup_steps:
        return floor + (peak - floor) * step / warmup_steps
    if decay_start is None or step <= decay_start:
        return peak
    progress = min(1.0, (step - decay_start) / max(1, decay_end - decay_start))
    left = 1.0 - math.sqrt(progress) if shape == "1-sqrt" else 1.0 - progress
    return floor + (peak - floor) * left


@dataclass(frozen=True)
class Schedule:
    """The LR schedule of one run: ``cosine`` over ``total_steps``, or ``wsd`` (trunk or branch)."""

    kind: str  # "cosine" | "wsd"
    total_steps: int  # cosine horizon; wsd: end of the decay
    warmup_steps: int
    decay_start: int | None = None  # wsd: first step of the cooldown; None = no cooldown (trunk)
    shape: str = "1-sqrt"  # wsd decay: "linear" | "1-sqrt"

    def lr(self, step: int, peak: float, floor: float) -> float:
        if self.kind == "cosine":
            return lr_at(step, self.total_steps, peak, floor, self.warmup_steps)
        return lr_wsd(
            step, peak, floor, self.warmup_steps, self.decay_start, self.total_steps, self.shape
        )


def warmup_steps_for(train: TrainConfig, total_steps: int) -> int:
    """Warm-up length in optimiser steps: ``warmup_fraction`` of the run, rounded."""
    return round(train.warmup_fraction * total_steps)


def _no_decay(name: str, param: nn.Parameter) -> bool:
    """Norm gains and biases (1-D), SSM parameters by name, and anything tagged by its module."""
    leaf = name.rsplit(".", 1)[-1]
    return param.ndim < 2 or leaf in NO_DECAY_NAMES or bool(getattr(param, "_no_weight_decay", False))


def named_trainable(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """Parameters that receive gradients (the frozen embedding projections are left out)."""
    return ((n, p) for n, p in model.named_parameters() if p.requires_grad)


def param_groups(model: nn.Module, weight_decay: float, mode: str = "fixed") -> list[dict[str, object]]:
    """Two AdamW groups: ``decay`` and ``no_decay`` (with ``names`` lists for inspection).

    ``mode="compat"`` decays every tensor, as FM4NPP did (SPEC §5.4); ``fixed`` exempts norms,
    biases, ``A_log``, ``D`` and ``dt_bias`` (SPEC §11 #11).
    """
    decay: list[tuple[str, nn.Parameter]] = []
    no_decay: list[tuple[str, nn.Parameter]] = []
    for name, p in named_trainable(model):
        (no_decay if mode == "fixed" and _no_decay(name, p) else decay).append((name, p))
    return [
        {
            "params": [p for _, p in decay],
            "names": [n for n, _ in decay],
            "weight_decay": weight_decay,
            "group": "decay",
        },
        {
            "params": [p for _, p in no_decay],
            "names": [n for n, _ in no_decay],
            "weight_decay": 0.0,
            "group": "no_decay",
        },
    ]


def build_optimizer(
    model: nn.Module, train: TrainConfig, total_steps: int, schedule: Schedule | None = None
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (β from the config, SPEC §5.4: 0.9, 0.95) and its LambdaLR over ``schedule`` (default:
    warm-up + cosine over ``total_steps``, :func:`lr_at`)."""
    groups = [g for g in param_groups(model, train.weight_decay, train.mode) if g["params"]]
    # foreach (not fused): deterministic on CPU and identical across resumes.
    opt = torch.optim.AdamW(
        groups, lr=train.lr, betas=(train.beta1, train.beta2), eps=1e-8, foreach=True
    )
    sched = schedule or Schedule("cosine", total_steps, warmup_steps_for(train, total_steps))

    def factor(step: int) -> float:
        return sched.lr(step, train.lr, train.lr_min) / train.lr

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)
