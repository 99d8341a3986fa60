"""LR schedule (pure function) and AdamW parameter groups (SPEC §5.4, §11 #11)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from fm4npp.config.schema import TrainConfig
from fm4npp.train.optim import build_optimizer, lr_at, param_groups


def test_schedule_warmup_peak_cosine_floor() -> None:
    peak, floor, total, warm = 2e-4, 2e-5, 1000, 100
    lrs = [lr_at(s, total, peak, floor, warm) for s in range(total + 50)]
    assert lrs[0] == pytest.approx(floor)  # warm-up starts at the floor (SPEC §5.4: 2e-5 → 2e-4)
    assert lrs[50] == pytest.approx(floor + 0.5 * (peak - floor))  # linear
    assert lrs[warm] == pytest.approx(peak)
    assert max(lrs) == pytest.approx(peak)
    mid = warm + (total - warm) // 2
    assert lrs[mid] == pytest.approx(floor + 0.5 * (peak - floor))  # half-way down the cosine
    assert lrs[total] == pytest.approx(floor)
    assert all(lr == pytest.approx(floor) for lr in lrs[total:])  # flat after the horizon
    assert all(a <= b for a, b in itertools.pairwise(lrs[: warm + 1]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[warm : total + 1]))


def test_schedule_without_warmup_starts_at_peak() -> None:
    assert lr_at(0, 10, 1.0, 0.1, 0) == pytest.approx(1.0)
    assert lr_at(5, 10, 1.0, 0.1, 0) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 2)))


class _Mixer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.in_proj = nn.Linear(4, 8, bias=False)
        self.conv1d = nn.Conv1d(8, 8, 4, groups=8)
        self.A_log = nn.Parameter(torch.zeros(2))
        self.D = nn.Parameter(torch.ones(2))
        self.dt_bias = nn.Parameter(torch.zeros(2))
        self.norm = nn.LayerNorm(8)
        self.tagged = nn.Parameter(torch.zeros(3, 3))
        self.tagged._no_weight_decay = True  # type: ignore[attr-defined]
        self.frozen = nn.Parameter(torch.zeros(4, 4), requires_grad=False)


def test_param_groups_fixed_mode_exempts_norms_biases_and_ssm_parameters() -> None:
    groups = {g["group"]: set(g["names"]) for g in param_groups(_Mixer(), 0.1, "fixed")}  # type: ignore[arg-type]
    assert groups["decay"] == {"in_proj.weight", "conv1d.weight"}
    assert groups["no_decay"] == {
        "conv1d.bias",
        "A_log",
        "D",
        "dt_bias",
        "norm.weight",
        "norm.bias",
        "tagged",
    }
    # frozen tensors (the fixed embedding) are not optimised at all
    assert "frozen" not in groups["decay"] | groups["no_decay"]


def test_param_groups_compat_mode_decays_everything() -> None:
    groups = {g["group"]: g["names"] for g in param_groups(_Mixer(), 0.1, "compat")}
    assert len(groups["no_decay"]) == 0  # type: ignore[arg-type]
    assert "A_log" in groups["decay"]  # type: ignore[operator]


def test_build_optimizer_follows_the_schedule() -> None:
    model = _Mixer()
    cfg = TrainConfig(lr=1e-3, lr_min=1e-4, warmup_fraction=0.1, beta2=0.95)
    opt, sched = build_optimizer(model, cfg, total_steps=20)
    assert opt.defaults["betas"] == (0.9, 0.95)
    decay = next(g for g in opt.param_groups if g["group"] == "decay")
    assert decay["weight_decay"] == 0.1
    seen = []
    for step in range(21):
        seen.append(opt.param_groups[0]["lr"])
        assert seen[-1] == pytest.approx(lr_at(step, 20, 1e-3, 1e-4, 2))
        opt.step()
        sched.step()
