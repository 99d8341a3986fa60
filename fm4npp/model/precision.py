"""Precision rule of the scans (SPEC §7.4): fp32 internals whatever the autocast dtype."""

from __future__ import annotations

import torch


def up(t: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 → fp32 for the scan internals; fp32 and fp64 (gradcheck) stay as they are."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()
