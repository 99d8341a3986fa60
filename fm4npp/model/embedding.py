"""Fixed (untrained) token embedding of FM4NPP: NeRF position encoding + random projections.

SPEC §5.2, [R] ``fm4npp/models/embed.py`` (``EmbedderAdd`` with ``pe_method='nerf'``): for
v = (η_n, φ_n, r_n), γ(v) = [v, sin(2⁰v), cos(2⁰v), …, sin(2⁹v), cos(2⁹v)] (no π factor; 63 dims in
this order), token = E_n·P_E + γ(v)·P_pos with P ~ N(0, 1), frozen. Both projections are buffers,
drawn from a seeded generator and stored in the state dict: load them, never redraw.
"""

from __future__ import annotations

import torch
from torch import nn

N_FREQS = 10  # SPEC §5.2: octaves 2^0 … 2^9 ([R] multires = 10)
NERF_DIM = 3 + 2 * 3 * N_FREQS  # 63


def nerf_encode(v: torch.Tensor) -> torch.Tensor:
    """NeRF encoding. v (..., 3) → (..., 63): [v, sin(v), cos(v), sin(2v), cos(2v), …, cos(512v)]."""
    parts = [v]
    for j in range(N_FREQS):
        f = float(2**j)
        parts += [torch.sin(v * f), torch.cos(v * f)]
    return torch.cat(parts, dim=-1)


class NerfEmbedding(nn.Module):
    """feats (B, L, 4) [E_n, η_n, φ_n, r_n] → tokens (B, L, d). Buffers: ``pos_proj`` (63, d),
    ``energy_proj`` (1, d), N(0, 1) from ``torch.Generator().manual_seed(seed)``."""

    def __init__(self, d_model: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("pos_proj", torch.randn(NERF_DIM, d_model, generator=g))
        self.register_buffer("energy_proj", torch.randn(1, d_model, generator=g))
        self.pos_proj: torch.Tensor
        self.energy_proj: torch.Tensor

    def forward(self, feats_BLF: torch.Tensor) -> torch.Tensor:
        """(B, L, 4) → (B, L, d) in the buffers' dtype."""
        f = feats_BLF.to(self.pos_proj.dtype)
        return f[..., :1] @ self.energy_proj + nerf_encode(f[..., 1:4]) @ self.pos_proj
