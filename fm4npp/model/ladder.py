"""The model ladder as data: named rungs, analytic parameter counts and training FLOPs per token.

Torch-free (``plan`` imports it on login nodes). Every count here is checked against the built torch
module in ``tests/test_model_counts.py``.

Conventions (ARCHITECTURE §7, SCALING §6.2): N = non-embedding parameters = the residual blocks
(pre-norm + mixer) only; the frozen embedder (64·d), final norm and head are counted in
:func:`n_params_total`. FLOPs count a multiply-add as 2 (SPEC §7.6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from fm4npp.errors import ConfigError, allowed_list, did_you_mean

Arch = Literal["mamba2", "mamba1", "transformer"]
EMBED_IN = 64  # NeRF encoding 63 dims (v, sin, cos × 10 octaves) + 1 energy dim (SPEC §5.2)


@dataclass(frozen=True)
class Rung:
    """One model size. Mamba fields follow ``mamba_ssm`` names; transformer fields the talk's table."""

    name: str
    arch: Arch
    d_model: int
    n_layers: int
    d_state: int = 16
    headdim: int = 64
    expand: int = 2
    d_conv: int = 4
    ngroups: int = 1
    chunk_size: int = 256
    n_heads: int = 0  # transformer only
    mlp_ratio: int = 4  # transformer only
    gpus: int = 1  # GPUs per cell on a cluster (paper: 1, 1, 4, 8, 24, 64 for m1–m6)
    paper_name: str = ""  # name in the paper / talk / repo (SPEC §6.5 naming trap)

    def __post_init__(self) -> None:
        if self.arch == "mamba2" and (self.expand * self.d_model) % self.headdim:
            raise ConfigError(
                f"rung {self.name}: d_inner = expand·d_model = {self.expand * self.d_model} "
                f"must be a multiple of headdim = {self.headdim}"
            )
        if self.arch == "transformer" and (self.n_heads <= 0 or self.d_model % self.n_heads):
            raise ConfigError(f"rung {self.name}: d_model must be a multiple of n_heads > 0")

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def nheads(self) -> int:
        """Mamba2 heads H = d_inner / headdim."""
        return self.d_inner // self.headdim

    @property
    def dt_rank(self) -> int:
        """Mamba1 dt rank R = ceil(d_model / 16) (mamba_ssm default 'auto')."""
        return math.ceil(self.d_model / 16)

    @property
    def tag(self) -> str:
        """Explicit tuple name, e.g. ``mamba2-d1536-L12-s96`` (SPEC §6.5)."""
        if self.arch == "transformer":
            return f"transformer-d{self.d_model}-L{self.n_layers}-h{self.n_heads}"
        return f"{self.arch}-d{self.d_model}-L{self.n_layers}-s{self.d_state}"


def _paper_mamba2(name: str, d: int, gpus: int, paper: str) -> Rung:
    # SPEC §5.3: d_state = d/16, headdim 64, expand 2, d_conv 4, 12 layers, chunk 256.
    return Rung(name, "mamba2", d, 12, d_state=d // 16, headdim=64, gpus=gpus, paper_name=paper)


def _talk_transformer(name: str, d: int, layers: int, heads: int) -> Rung:
    # SPEC §6.2 ([T1]): PointGPT-type ladder; heads = those of the B stack.
    return Rung(name, "transformer", d, layers, n_heads=heads, paper_name=f"talk {name}")


def _tiny_transformer(name: str, d: int, heads: int) -> Rung:
    # CPU transformer rungs matched in N to q1–q4 (within 3.5 %; tests/test_transformer.py).
    return Rung(name, "transformer", d, 2, n_heads=heads, paper_name="cpu")


def _tiny(name: str, d: int, layers: int) -> Rung:
    # CPU-sized Mamba2 rungs for the quickstart: headdim 16 so d_inner/headdim ≥ 2 heads at d = 16.
    return Rung(name, "mamba2", d, layers, d_state=16, headdim=16, chunk_size=64, paper_name="cpu")


RUNGS: dict[str, Rung] = {
    r.name: r
    for r in (
        # Paper Mamba2 ladder (SPEC §6.1); GPUs per rung as in the paper.
        _paper_mamba2("m1", 64, 1, "paper m1 / repo m64"),
        _paper_mamba2("m2", 128, 1, "paper m2 / repo m128"),
        _paper_mamba2("m3", 256, 4, "paper m3 / repo m1"),
        _paper_mamba2("m4", 512, 8, "paper m4 / repo m3"),
        _paper_mamba2("m5", 1024, 24, "paper m5 / repo m4"),
        _paper_mamba2("m6", 1536, 64, "paper m6 / repo m5"),
        # Talk transformer ladder m1–m9 (SPEC §6.2), prefixed t to avoid the naming trap.
        _talk_transformer("t1", 128, 12, 4),
        _talk_transformer("t2", 196, 12, 4),
        _talk_transformer("t3", 256, 12, 8),
        _talk_transformer("t4", 384, 12, 8),
        _talk_transformer("t5", 512, 14, 8),
        _talk_transformer("t6", 768, 14, 8),
        _talk_transformer("t7", 1024, 18, 16),
        _talk_transformer("t8", 1536, 20, 16),
        _talk_transformer("t9", 2048, 20, 16),
        # Tiny CPU rungs for the quickstart study.
        _tiny("q1", 16, 2),
        _tiny("q1b", 24, 2),  # between q1 and q2: ≥ 4 sizes over a decade of N on CPU (issue 12)
        _tiny("q2", 32, 2),
        _tiny("q2b", 48, 2),
        _tiny("q3", 64, 2),
        _tiny("q4", 128, 2),
        _tiny_transformer("tq1", 14, 2),
        _tiny_transformer("tq2", 25, 5),
        _tiny_transformer("tq3", 48, 4),
        _tiny_transformer("tq4", 94, 2),
    )
}


def get_rung(name: str, source: str = "model ladder") -> Rung:
    """Look up a rung by name; an unknown name is a ConfigError listing the allowed names."""
    try:
        return RUNGS[name]
    except KeyError:
        raise ConfigError(
            f"{source}: unknown model '{name}'{did_you_mean(name, RUNGS)}; allowed: {allowed_list(RUNGS)}"
        ) from None


def block_params(r: Rung) -> int:
    """Parameters of one residual block: pre-norm (d) + mixer."""
    d = r.d_model
    if r.arch == "mamba2":
        di, g, n, h, k = r.d_inner, r.ngroups, r.d_state, r.nheads, r.d_conv
        conv_dim = di + 2 * g * n
        in_proj = d * (2 * di + 2 * g * n + h)  # [z, x, B, C, dt]
        conv = conv_dim * k + conv_dim  # depthwise weight + bias
        return d + in_proj + conv + 3 * h + di + di * d  # + dt_bias/A_log/D + gated norm + out_proj
    if r.arch == "mamba1":
        di, n, k, rr = r.d_inner, r.d_state, r.d_conv, r.dt_rank
        return (
            d
            + 2 * di * d  # in_proj → [x, z]
            + di * k
            + di  # conv
            + (rr + 2 * n) * di  # x_proj → [dt, B, C]
            + di * rr
            + di  # dt_proj
            + di * n
            + di  # A_log, D
            + d * di  # out_proj
        )
    # transformer: pre-LN attention (qkv + out, with biases) and MLP, two LayerNorms.
    f = r.mlp_ratio * d
    return 4 * d * d + 4 * d + 2 * d * f + f + d + 4 * d


def n_params(r: Rung) -> int:
    """N: non-embedding parameters (all residual blocks)."""
    return r.n_layers * block_params(r)


def head_params(r: Rung, k: int = 30) -> int:
    """Final norm (RMSNorm d; the transformer's LayerNorm 2d) + linear head d → 3k with bias."""
    norm = 2 * r.d_model if r.arch == "transformer" else r.d_model
    return norm + 3 * k * r.d_model + 3 * k


def n_params_total(r: Rung, k: int = 30) -> int:
    """Everything in the checkpoint: frozen embedder (64·d) + blocks + final norm + head."""
    return EMBED_IN * r.d_model + n_params(r) + head_params(r, k)


def n_params_trainable(r: Rung, k: int = 30) -> int:
    return n_params_total(r, k) - EMBED_IN * r.d_model


def ssd_flops(r: Rung) -> float:
    """Forward SSD FLOPs per token of one Mamba2 layer: 2·Q·N·G + Di·(2Q + 4N) (SPEC §7.6)."""
    q, n, g, di = r.chunk_size, r.d_state, r.ngroups, r.d_inner
    return 2.0 * q * n * g + di * (2.0 * q + 4.0 * n)


def flops_per_token(r: Rung, seq_len: float = 840.0) -> float:
    """Training FLOPs per token (forward + backward), SPEC §7.6.

    Mamba2: 6·P_layer + 3·SSD per layer; Mamba1: 6·P_layer + 27·Di·N; transformer: 6·P_layer +
    6·L·d attention: causal QKᵀ and AV over an average context of L/2 (2 · 2·d·L/2 forward, ×3 with
    the backward; Kaplan's 2·n_ctx·d forward term), L = ``seq_len``. A dense FLOP counter sees twice
    that (it counts the masked half of L²); ``tests/test_transformer.py`` checks both. Plus the head
    (6·90·d) and the frozen embedding (2·64·d, forward only).
    """
    p = block_params(r)
    if r.arch == "mamba2":
        per_layer = 6.0 * p + 3.0 * ssd_flops(r)
    elif r.arch == "mamba1":
        per_layer = 6.0 * p + 27.0 * r.d_inner * r.d_state
    else:
        per_layer = 6.0 * p + 6.0 * seq_len * r.d_model
    return r.n_layers * per_layer + 6.0 * 90 * r.d_model + 2.0 * EMBED_IN * r.d_model


# ---------------------------------------------------------------------------------------------
# Dataset ladder (SPEC §6.3): d_i = 0.1M · 10^((i−1)/4), plus the talk's node-hour rows (§6.4)
# and tiny CPU tiers for the quickstart.

DATASETS: dict[str, int] = {f"d{i}": round(100_000 * 10 ** ((i - 1) / 4)) for i in range(1, 10)}
DATASETS.update(
    {
        "0.1M": 100_000,
        "0.23M": 230_000,
        "0.5M": 500_000,
        "1.18M": 1_180_000,
        "2M": 2_000_000,
        "4.72M": 4_720_000,
        "10M": 10_000_000,
    }
)
DATASETS.update({"qd1": 400, "qd2": 800, "qd3": 1600, "qd4": 3200})  # CPU quickstart tiers (×2)
DATASETS.update({"qd200": 200, "qd630": 630, "qd2000": 2000})  # CPU quickstart: a decade, half-decade steps
DATASETS.update({"td1": 48, "td2": 96, "td3": 192})  # test tiers: the quickstart chain in CI


def get_dataset(name: str, source: str = "dataset ladder") -> int:
    """Events of a named dataset rung; an unknown name is a ConfigError listing the allowed names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(
            f"{source}: unknown dataset '{name}'{did_you_mean(name, DATASETS)}; "
            f"allowed: {allowed_list(DATASETS)}"
        ) from None
