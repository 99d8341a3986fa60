"""The FM4NPP backbone: fixed embedding → pre-norm residual blocks → final norm → k-NNN head.

SPEC §5.3: x_0 = embed(feats); z_l = Dropout(Mixer(RMSNorm(x_{l−1}))); x_l = x_{l−1} + z_l;
out = Linear(d → 3k)(RMSNorm(x_n)). Parameter names: ``embedding.{pos_proj,energy_proj}``
(buffers), ``layers.{i}.norm``, ``layers.{i}.mixer`` (``mamba_ssm`` mixer names), ``norm_f``,
``head``. Padding goes at the sequence end: the scan is causal, so it never reaches valid tokens.

The block family is the rung's ``arch``: Mamba2 / Mamba1 mixers (FM4NPP), or the PointGPT-type
causal transformer of the talk's ladder (``fm4npp.model.transformer``: LayerNorm final norm, as
GPT-2). Both return the block's residual contribution, so features, head and objective are shared.
"""

from __future__ import annotations

import torch
from torch import nn

from fm4npp.errors import ConfigError
from fm4npp.model.embedding import NerfEmbedding
from fm4npp.model.ladder import Rung
from fm4npp.model.mamba1 import Mamba
from fm4npp.model.mamba2 import Mamba2
from fm4npp.model.transformer import LN_EPS, TransformerBlock

RMS_EPS = 1e-5  # SPEC §5.3


class Block(nn.Module):
    """Pre-norm residual branch: z = Dropout(Mixer(RMSNorm(x))). (B, L, D) → (B, L, D)."""

    def __init__(self, rung: Rung, layer_idx: int, dropout: float) -> None:
        super().__init__()
        d = rung.d_model
        self.norm = nn.RMSNorm(d, eps=RMS_EPS)
        self.mixer: nn.Module
        if rung.arch == "mamba2":
            self.mixer = Mamba2(
                d,
                d_state=rung.d_state,
                d_conv=rung.d_conv,
                expand=rung.expand,
                headdim=rung.headdim,
                ngroups=rung.ngroups,
                chunk_size=rung.chunk_size,
                layer_idx=layer_idx,
            )
        else:
            self.mixer = Mamba(
                d, d_state=rung.d_state, d_conv=rung.d_conv, expand=rung.expand, layer_idx=layer_idx
            )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.mixer(self.norm(x)))  # type: ignore[no-any-return]


class FM4NPPModel(nn.Module):
    """Backbone + k-NNN head for one ladder rung. forward: feats (B, L, 4) → (B, L, k, 3)."""

    def __init__(self, rung: Rung, k: int = 30, dropout: float = 0.1, embed_seed: int = 0) -> None:
        super().__init__()
        if rung.arch not in ("mamba2", "mamba1", "transformer"):
            raise ConfigError(
                f"model {rung.name}: arch '{rung.arch}' not implemented; "
                "allowed: mamba1, mamba2, transformer"
            )
        if k <= 0:
            raise ConfigError(f"model {rung.name}: k must be > 0, got {k}")
        self.rung, self.k = rung, k
        d = rung.d_model
        self.embedding = NerfEmbedding(d, seed=embed_seed)
        self.layers = nn.ModuleList(
            [
                TransformerBlock(rung, dropout) if rung.arch == "transformer" else Block(rung, i, dropout)
                for i in range(rung.n_layers)
            ]
        )
        self.norm_f: nn.Module = (
            nn.LayerNorm(d, eps=LN_EPS) if rung.arch == "transformer" else nn.RMSNorm(d, eps=RMS_EPS)
        )
        self.head = nn.Linear(d, 3 * k)

    @property
    def backend(self) -> str:
        """ "mamba_ssm" or "torch": what the mixers run on; "sdpa" for the transformer (torch's fused
        attention kernels on every device)."""
        if self.rung.arch == "transformer":
            return "sdpa"
        mixer = getattr(self.layers[0], "mixer", None) if len(self.layers) else None
        return str(getattr(mixer, "backend", "torch"))

    def block_outputs(self, feats_BLF: torch.Tensor) -> list[torch.Tensor]:
        """Residual-branch outputs z_1 … z_n (SPEC §8 adapter features), each (B, L, D)."""
        x = self.embedding(feats_BLF)
        zs = []
        for layer in self.layers:
            z = layer(x)
            zs.append(z)
            x = x + z
        return zs

    def forward(self, feats_BLF: torch.Tensor) -> torch.Tensor:
        """(B, L, 4) → predicted neighbour coordinates (B, L, k, 3), nearest first."""
        x = self.embedding(feats_BLF)
        for layer in self.layers:
            x = x + layer(x)
        out = self.head(self.norm_f(x))
        pred: torch.Tensor = out.view(*out.shape[:-1], self.k, 3)
        return pred
