"""Downstream adapters on frozen backbone features (SPEC §8): feature mixer, MaskFormer-style track
head and point classifiers (PID, noise), plus the track decoding used for every reported number.

Shapes: B events, L hits (padded at the end; ``valid_BL`` marks real hits, SPEC §11 #4), S stacked
feature sets (the backbone's residual-branch outputs z_1…z_S), D backbone width, C head width (256),
Q queries. Padding never takes part: it is masked out of every attention as a key and its outputs
are ignored by the losses and the decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

HEAD_WIDTH = 256  # SPEC §8: head width 256 for every backbone
NO_OBJECT, TRACK = 0, 1  # class indices of the track head's logits {no-object, track}
N_PID_CLASSES = 5  # SPEC §2.4: other, π, K, p, e
N_NOISE_CLASSES = 2  # signal, noise
_NEG = -1e9  # additive bias of masked keys; finite so that no softmax row can become NaN


class FeatureMixer(nn.Module):
    """Learned softmax-weighted sum over S feature sets (init uniform) → LayerNorm(D) → Linear(D → C).

    forward: feats_BLSD (B, L, S, D) → (B, L, C).
    """

    def __init__(self, n_sets: int, d_model: int, d_out: int = HEAD_WIDTH) -> None:
        super().__init__()
        self.mix_logits = nn.Parameter(torch.zeros(n_sets))  # zeros → uniform softmax (SPEC §8)
        self.norm = nn.LayerNorm(d_model)
        self.proj = nn.Linear(d_model, d_out)

    @property
    def mix_weights(self) -> torch.Tensor:
        return torch.softmax(self.mix_logits, dim=0)

    def forward(self, feats_BLSD: torch.Tensor) -> torch.Tensor:
        mixed = torch.einsum("blsd,s->bld", feats_BLSD, self.mix_weights.to(feats_BLSD.dtype))
        return self.proj(self.norm(mixed))


class Attention(nn.Module):
    """Multi-head attention with an additive float bias (B, H, Q, K) or a key mask (B, K) bool."""

    def __init__(self, dim: int, n_heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"attention width {dim} must be a multiple of n_heads={n_heads}")
        self.n_heads = n_heads
        # Dropout on the output, not on the attention weights: weight dropout forces the O(L²)-memory
        # math path of scaled_dot_product_attention on CPU (≈ 3× slower, measured).
        self.drop = nn.Dropout(dropout)
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.n_heads, c // self.n_heads).transpose(1, 2)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_valid_BK: torch.Tensor | None = None,
        bias_BHQK: torch.Tensor | None = None,
    ) -> torch.Tensor:
        q, k, v = self._split(self.q(query)), self._split(self.k(key)), self._split(self.v(value))
        mask: torch.Tensor | None = bias_BHQK
        if key_valid_BK is not None:
            pad = torch.zeros(key_valid_BK.shape, dtype=q.dtype, device=q.device)
            pad = pad.masked_fill(~key_valid_BK, _NEG)[:, None, None, :]
            mask = pad if mask is None else mask + pad
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        b, _, n, _ = y.shape
        return self.drop(self.out(y.transpose(1, 2).reshape(b, n, -1)))


def _mlp(d_in: int, d_hidden: int, d_out: int, dropout: float = 0.0) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d_in, d_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_hidden, d_out)
    )


class DecoderLayer(nn.Module):
    """Pre-LN: masked cross-attention → self-attention → FFN (C → 2C → C), each with a residual."""

    def __init__(self, dim: int = HEAD_WIDTH, n_heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm_cross, self.norm_self, self.norm_ffn = (
            nn.LayerNorm(dim),
            nn.LayerNorm(dim),
            nn.LayerNorm(dim),
        )
        self.cross = Attention(dim, n_heads, dropout)
        self.self_attn = Attention(dim, n_heads, dropout)
        self.ffn = _mlp(dim, 2 * dim, dim, dropout)  # SPEC §8: FFN 256 → 512 → 256

    def forward(
        self, q_BQC: torch.Tensor, pos_BQC: torch.Tensor, mem_BLC: torch.Tensor, bias_BHQL: torch.Tensor
    ) -> torch.Tensor:
        h = self.norm_cross(q_BQC) + pos_BQC
        q_BQC = q_BQC + self.cross(h, mem_BLC, mem_BLC, bias_BHQK=bias_BHQL)
        h = self.norm_self(q_BQC)
        q_BQC = q_BQC + self.self_attn(h + pos_BQC, h + pos_BQC, h)
        return q_BQC + self.ffn(self.norm_ffn(q_BQC))


@dataclass(frozen=True)
class TrackOutput:
    """What the track head predicts for a batch: ``sets``, one (class_logits (B, Q, 2), mask_logits
    (B, Q, L)) per prediction set (the initial queries and after each decoder layer; the last one is
    the final prediction), and ``noise_logits`` (B, L, 2) {signal, noise} per hit, or None."""

    sets: list[tuple[torch.Tensor, torch.Tensor]]
    noise_logits: torch.Tensor | None = None

    @property
    def final(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sets[-1]

    @property
    def p_noise(self) -> torch.Tensor | None:
        """(B, L) probability that a hit is noise, or None without a noise output."""
        if self.noise_logits is None:
            return None
        return torch.softmax(self.noise_logits.float(), dim=-1)[..., 1]


class TrackHead(nn.Module):
    """MaskFormer-style track finder (SPEC §8).

    forward(feats_BLSD, valid_BL) → :class:`TrackOutput`. mask_prob[n, i] = sigmoid(⟨P_i, M_n⟩) with
    P = MLP(RMSNorm(features)) and M = MLP(query). Cross-attention of layer l is biased by
    log(mask_prob + 1e−6) of the prediction before it (detached, as in Mask2Former), and padded hits
    are masked as keys. Deep supervision: every prediction set is trained.

    ``noise_output`` (fixed mode, where noise is no instance): a per-hit noise classifier on the mixed
    features (:class:`HitClassifier`, 2 classes), trained jointly; decoding multiplies a hit's track
    scores by P(signal) (:func:`track_scores`), so noise hits can stay unassigned although every mask
    gives them some probability. Without it the mask scores alone must separate noise from signal
    hits, which they do poorly (issue 11: ARI_all 0.39 as is, 0.70 with noise hits left out).
    """

    def __init__(
        self,
        n_sets: int,
        d_model: int,
        n_queries: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        dim: int = HEAD_WIDTH,
        dropout: float = 0.0,
        noise_output: bool = False,
    ) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.mixer = FeatureMixer(n_sets, d_model, dim)
        self.point_norm = nn.RMSNorm(dim, eps=1e-5)
        self.point_mlp = _mlp(dim, dim, dim)
        self.query = nn.Parameter(torch.randn(n_queries, dim) * 0.02)
        self.query_pos = nn.Parameter(torch.randn(n_queries, dim) * 0.02)
        self.layers = nn.ModuleList(DecoderLayer(dim, n_heads, dropout) for _ in range(n_layers))
        self.out_norm = nn.LayerNorm(dim)
        self.class_head = nn.Linear(dim, 2)
        self.mask_mlp = _mlp(dim, dim, dim)
        self.noise = HitClassifier(dim, N_NOISE_CLASSES, n_heads, dropout) if noise_output else None

    def _predict(
        self, q_BQC: torch.Tensor, points_BLC: torch.Tensor, valid_BL: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.out_norm(q_BQC)
        mask_logits = torch.einsum("bqc,blc->bql", self.mask_mlp(h), points_BLC)
        # padded hits get a very negative logit so that no consumer can read them as members
        return self.class_head(h), mask_logits.masked_fill(~valid_BL[:, None, :], -1e4)

    def forward(self, feats_BLSD: torch.Tensor, valid_BL: torch.Tensor) -> TrackOutput:
        mem = self.mixer(feats_BLSD)
        points = self.point_mlp(self.point_norm(mem))
        b = mem.shape[0]
        q = self.query[None].expand(b, -1, -1)
        pos = self.query_pos[None].expand(b, -1, -1)
        preds = [self._predict(q, points, valid_BL)]
        pad = torch.zeros(valid_BL.shape, dtype=mem.dtype, device=mem.device).masked_fill(
            ~valid_BL, _NEG
        )
        for layer in self.layers:
            bias = torch.log(torch.sigmoid(preds[-1][1].detach()) + 1e-6) + pad[:, None, :]
            bias = bias[:, None].expand(-1, self.n_heads, -1, -1)
            q = layer(q, pos, mem, bias)
            preds.append(self._predict(q, points, valid_BL))
        noise = None if self.noise is None else self.noise(mem, valid_BL)
        return TrackOutput(preds, noise)


class HitClassifier(nn.Module):
    """Per-hit logits with context (SPEC §8 point heads): one pre-LN self-attention layer over the
    event's valid hits (4 heads, residual, no FFN) → RMSNorm → MLP → logits.

    forward(x_BLC, valid_BL) → logits (B, L, n_classes).
    """

    def __init__(self, dim: int, n_classes: int, n_heads: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = Attention(dim, n_heads, dropout)
        self.out_norm = nn.RMSNorm(dim, eps=1e-5)
        self.mlp = _mlp(dim, dim, n_classes, dropout)

    def forward(self, x_BLC: torch.Tensor, valid_BL: torch.Tensor) -> torch.Tensor:
        h = self.attn_norm(x_BLC)
        x_BLC = x_BLC + self.attn(h, h, h, key_valid_BK=valid_BL)
        return self.mlp(self.out_norm(x_BLC))


class PointClassifier(nn.Module):
    """Per-hit classifier for PID (5 classes) or noise (2) (SPEC §8): mixer (LayerNorm + Linear → C)
    → :class:`HitClassifier`.

    forward(feats_BLSD, valid_BL) → logits (B, L, n_classes).
    """

    def __init__(
        self, n_sets: int, d_model: int, n_classes: int, n_heads: int = 4, dim: int = HEAD_WIDTH,
        dropout: float = 0.1,
    ) -> None:  # fmt: skip
        super().__init__()
        self.mixer = FeatureMixer(n_sets, d_model, dim)
        self.classify = HitClassifier(dim, n_classes, n_heads, dropout)

    def forward(self, feats_BLSD: torch.Tensor, valid_BL: torch.Tensor) -> torch.Tensor:
        return self.classify(self.mixer(feats_BLSD), valid_BL)


@torch.no_grad()
def track_scores(out: TrackOutput) -> tuple[torch.Tensor, torch.Tensor]:
    """Best score and best query per hit, each (B, L), of the final prediction set (SPEC §8 inference).

    score[n, i] = mask_prob[n, i] × max class prob of query n × P(signal)_i (the last factor only with
    a noise output), and −1 for queries whose argmax is no-object; a hit's best score is the maximum
    over queries (−1 when every query says no-object).
    """
    class_logits_BQ2, mask_logits_BQL = out.final
    probs = torch.softmax(class_logits_BQ2.float(), dim=-1)
    top_p, top_cls = probs.max(dim=-1)
    score = torch.sigmoid(mask_logits_BQL.float()) * top_p[..., None]
    if out.p_noise is not None:
        score = score * (1 - out.p_noise)[:, None, :]
    score = score.masked_fill((top_cls == NO_OBJECT)[..., None], -1.0)
    return score.max(dim=1)


@torch.no_grad()
def decode_tracks(out: TrackOutput, valid_BL: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Track id per hit (B, L) int64, −1 = unassigned or padding.

    Decoding (SPEC §8): each hit goes to the query of its best score (:func:`track_scores`) and stays
    unassigned when that score is ≤ ``threshold``.

    - ``threshold = 0`` is FM4NPP's rule (compat mode): a hit is unassigned only when every query
      predicts no-object. It works there because noise is one ground-truth instance, so noise hits
      get a query of their own.
    - Fixed mode has no noise instance: noise hits are negatives of every mask, so their best score
      is low but still > 0 (sigmoid × p > 0 always). The threshold, chosen on the validation split
      (:func:`fm4npp.train.adapter_fit.choose_threshold`), is what leaves them unassigned; with 0 every
      noise hit joins a track and ARI is capped near 0.5 even with perfect features. The head's noise
      output (``TrackHead(noise_output=True)``) scales each hit's scores by P(signal), so the same
      threshold also drops the hits it calls noise.
    """
    best, arg = track_scores(out)
    return torch.where((best > threshold) & valid_BL, arg, torch.full_like(arg, -1))


def n_trainable(module: nn.Module) -> int:
    """Trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def adapter_for(
    task: str, n_sets: int, d_model: int, n_queries: int = 64, head_width: int = HEAD_WIDTH,
    mode: str = "fixed",
) -> nn.Module:  # fmt: skip
    """The adapter of ``task`` ('tracking', 'pid' or 'noise') for S feature sets of width D; the track
    head has a noise output in fixed mode (compat: noise is an instance, as in FM4NPP)."""
    if task == "tracking":
        return TrackHead(n_sets, d_model, n_queries=n_queries, dim=head_width, noise_output=mode == "fixed")
    if task == "pid":
        return PointClassifier(n_sets, d_model, N_PID_CLASSES, dim=head_width)
    if task == "noise":
        return PointClassifier(n_sets, d_model, N_NOISE_CLASSES, dim=head_width)
    raise ValueError(f"unknown downstream task '{task}'; allowed: noise, pid, tracking")


__all__ = [
    "HEAD_WIDTH",
    "NO_OBJECT",
    "TRACK",
    "Attention",
    "DecoderLayer",
    "FeatureMixer",
    "HitClassifier",
    "PointClassifier",
    "TrackHead",
    "TrackOutput",
    "adapter_for",
    "decode_tracks",
    "n_trainable",
    "track_scores",
]
