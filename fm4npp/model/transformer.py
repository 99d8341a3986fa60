"""PointGPT-type causal transformer block: the talk's earlier backbone family (SPEC §6.2, [T1]).

One block is pre-norm with two residual branches (GPT-2 / PointGPT layout):

    a = Dropout(Attn(LN₁(x)));  m = Dropout(MLP(LN₂(x + a)));  block output z = a + m

so that the backbone keeps FM4NPP's contract x_l = x_{l−1} + z_l and ``block_outputs`` hands the
adapters the same kind of feature (the block's whole residual contribution) for both families.

Decisions where SPEC leaves the talk open (written here, tested in ``tests/test_transformer.py``):

- **B / E / D stacks.** The talk's table splits each rung's T layers into three stacks B / E / D
  with their own head counts, without defining them. The parameter column equals T identical
  blocks of width d within 0.3 % (t1: 12 · 12d² ≈ 2.38 M), and heads do not change a block's
  parameters, so the ladder is one causal stack of T blocks with the B stack's heads. Splitting it
  into an encoder/decoder would change neither N nor FLOPs per token.
- **Point grouping (group size 4 in the talk)** is not used: the k-NNN objective predicts each
  point's nearest *later* points, and a token made of 4 consecutive points would see up to 3 of its
  own targets. Every point is one token, as on the Mamba path, so the two families see identical
  inputs and targets and their laws are comparable.
- **Positions.** No positional encoding beyond the fixed NeRF embedding of (η, φ, r): the geometry is
  in the tokens, and a causal mask already carries order (NoPE). Padding sits at the end of the
  sequence, so under the causal mask a valid token never attends a padded one; an explicit boolean
  key mask can be passed as well (``key_valid_BL``) and is combined with the causal mask.
- **Attention** runs through ``torch.nn.functional.scaled_dot_product_attention`` with
  ``is_causal=True`` (flash / memory-efficient kernels on CUDA, bf16 under autocast).
- Norms are LayerNorm with bias and the MLP is GELU with ratio 4, as GPT-2 and PointGPT; qkv and the
  projections carry biases. ``fm4npp.model.ladder.block_params`` counts exactly these tensors.
- Initialisation as GPT-2: weights N(0, 0.02), biases 0, the two projections back into the residual
  stream scaled by 1/√(2·n_layers).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fm4npp.model.ladder import Rung

LN_EPS = 1e-5


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention. (B, L, d) → (B, L, d)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.attn_dropout = dropout

    def forward(self, x_BLD: torch.Tensor, key_valid_BL: torch.Tensor | None = None) -> torch.Tensor:
        b, length, d = x_BLD.shape
        q, k, v = self.qkv(x_BLD).view(b, length, 3, self.n_heads, d // self.n_heads).unbind(dim=2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, L, dh)
        p = self.attn_dropout if self.training else 0.0
        if key_valid_BL is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            causal = torch.ones(length, length, dtype=torch.bool, device=x_BLD.device).tril()
            mask = causal[None, None] & key_valid_BL[:, None, None, :].bool()
            # a padded query row may have no valid key: let it attend itself (its output is unused)
            mask = mask | torch.eye(length, dtype=torch.bool, device=x_BLD.device)[None, None]
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.proj(y.transpose(1, 2).reshape(b, length, d))  # type: ignore[no-any-return]


class TransformerBlock(nn.Module):
    """Pre-norm attention + MLP block returning its residual contribution z = a + m (B, L, d)."""

    def __init__(self, rung: Rung, dropout: float) -> None:
        super().__init__()
        d, f = rung.d_model, rung.mlp_ratio * rung.d_model
        self.norm = nn.LayerNorm(d, eps=LN_EPS)
        self.attn = CausalSelfAttention(d, rung.n_heads, dropout=0.0)
        self.norm2 = nn.LayerNorm(d, eps=LN_EPS)
        self.mlp = nn.Sequential(nn.Linear(d, f), nn.GELU(), nn.Linear(f, d))
        self.dropout = nn.Dropout(dropout)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        for out in (self.attn.proj, self.mlp[2]):
            nn.init.normal_(out.weight, std=0.02 / (2 * rung.n_layers) ** 0.5)

    def forward(self, x: torch.Tensor, key_valid_BL: torch.Tensor | None = None) -> torch.Tensor:
        a = self.dropout(self.attn(self.norm(x), key_valid_BL))
        m = self.dropout(self.mlp(self.norm2(x + a)))
        return a + m  # type: ignore[no-any-return]
