"""Pure-PyTorch Mamba (v1) mixer with the names, shapes and initialisation of ``mamba_ssm.Mamba``.

SPEC §7.2–7.4. On CUDA with ``mamba_ssm`` importable, ``forward`` calls ``mamba_inner_fn`` with our
parameters; otherwise a fused sequential scan runs: one autograd Function whose forward and
backward loop over time on fp32, time-major buffers with in-place ops, saving one state buffer
(never per-timestep indexing of autograd tensors, which makes the backward O(L²)).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import FunctionCtx, once_differentiable

from fm4npp.model.precision import up


@functools.cache
def _inner_fn() -> Any | None:
    """``mamba_inner_fn`` or None; imported once, only when asked (CUDA input)."""
    try:
        from mamba_ssm.ops.selective_scan_interface import mamba_inner_fn
    except ImportError:
        return None
    return mamba_inner_fn


class _SelectiveScan(torch.autograd.Function):
    """y = scan(u, Δ, A, B, C) + D·u (SPEC §7.4); gradients by the reverse scan
    G_t = C_t·dy_t + exp(Δ_{t+1}A)·G_{t+1}. Shapes: u, Δ (Bt, L, Di); A (Di, N); B, C (Bt, L, N)."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        u: torch.Tensor,
        delta: torch.Tensor,
        A: torch.Tensor,
        B: torch.Tensor,
        C: torch.Tensor,
        D: torch.Tensor,
    ) -> torch.Tensor:
        dtype = u.dtype
        u, delta, A, B, C, D = (up(t) for t in (u, delta, A, B, C, D))
        dA = torch.exp(delta.transpose(0, 1)[..., None] * A)  # (L, Bt, Di, N) time-major
        hs = (delta * u).transpose(0, 1)[..., None] * B.transpose(0, 1)[:, :, None, :]  # ΔBu, then h
        for t in range(1, hs.shape[0]):
            hs[t].addcmul_(dA[t], hs[t - 1])
        y = torch.einsum("lbdn,bln->bld", hs, C) + u * D
        ctx.save_for_backward(u, delta, A, B, C, D, hs)
        ctx.in_dtype = dtype  # type: ignore[attr-defined]
        return y.to(dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, gy: torch.Tensor) -> tuple[torch.Tensor, ...]:
        u, delta, A, B, C, D, hs = ctx.saved_tensors  # type: ignore[attr-defined]
        gy = up(gy)
        dA = torch.exp(delta.transpose(0, 1)[..., None] * A)
        G = gy.transpose(0, 1)[..., None] * C.transpose(0, 1)[:, :, None, :]  # ∂/∂h_t from y_t
        for t in range(G.shape[0] - 2, -1, -1):
            G[t].addcmul_(dA[t + 1], G[t + 1])
        gC = torch.einsum("bld,lbdn->bln", gy, hs)
        h_prev = torch.cat([torch.zeros_like(hs[:1]), hs[:-1]])
        g_dA = G * h_prev * dA  # ∂/∂(ΔA) (L, Bt, Di, N)
        GB = torch.einsum("lbdn,bln->bld", G, B)  # Σ_n G·B
        g_delta = torch.einsum("lbdn,dn->bld", g_dA, A) + GB * u
        gA = torch.einsum("lbdn,bld->dn", g_dA, delta)
        gB = torch.einsum("lbdn,bld->bln", G, delta * u)
        gu = GB * delta + gy * D
        gD = (gy * u).sum(dim=(0, 1))
        dt = ctx.in_dtype  # type: ignore[attr-defined]
        return gu.to(dt), g_delta.to(dt), gA, gB.to(dt), gC.to(dt), gD


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
) -> torch.Tensor:
    """Fused sequential selective scan. u, delta (Bt, L, Di); A (Di, N); B, C (Bt, L, N); D (Di)
    → y (Bt, L, Di) in u's dtype (fp32 inside)."""
    y: torch.Tensor = _SelectiveScan.apply(u, delta, A, B, C, D)  # type: ignore[no-untyped-call]
    return y


class Mamba(nn.Module):
    """Mamba1 mixer (``mamba_ssm.modules.mamba_simple.Mamba`` constructor, names, shapes, init).

    Parameters: in_proj (2Di, D) → [x, z]; conv1d (Di, 1, K) + bias; x_proj (R + 2N, Di) → [dt, B, C];
    dt_proj (Di, R) + bias; A_log (Di, N); D (Di); out_proj (D, Di). forward: (Bt, L, D) → (Bt, L, D).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        use_fast_path: bool = True,
        layer_idx: int | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        fk: dict[str, Any] = {"device": device, "dtype": dtype}
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.use_fast_path, self.layer_idx = use_fast_path, layer_idx
        di = self.d_inner
        self.in_proj = nn.Linear(d_model, 2 * di, bias=bias, **fk)
        self.conv1d = nn.Conv1d(di, di, d_conv, groups=di, padding=d_conv - 1, bias=conv_bias, **fk)
        self.activation = "silu"
        self.x_proj = nn.Linear(di, self.dt_rank + 2 * d_state, bias=False, **fk)
        self.dt_proj = nn.Linear(self.dt_rank, di, bias=True, **fk)
        std = self.dt_rank**-0.5 * dt_scale  # preserve variance at init (mamba_ssm)
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        elif dt_init == "random":
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        else:
            raise ValueError(f"Mamba: dt_init must be 'constant' or 'random', got {dt_init!r}")
        dt = torch.exp(torch.rand(di, **fk) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(dt)
        self.dt_proj.bias._no_reinit = True  # type: ignore[attr-defined]
        # S4D-real initialisation: A = −(1..N) per channel
        A = torch.arange(1, d_state + 1, dtype=torch.float32, device=device).repeat(di, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D = nn.Parameter(torch.ones(di, device=device))
        self.D._no_weight_decay = True  # type: ignore[attr-defined]
        self.out_proj = nn.Linear(di, d_model, bias=bias, **fk)

    @property
    def backend(self) -> str:
        """ "mamba_ssm" when forward runs the fused kernel (CUDA parameters, kernel importable)."""
        if self.use_fast_path and self.out_proj.weight.is_cuda and _inner_fn() is not None:
            return "mamba_ssm"
        return "torch"

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u (Bt, L, D) → (Bt, L, D)."""
        L = u.shape[1]
        A = -torch.exp(up(self.A_log))
        if u.is_cuda and self.use_fast_path:
            fn = _inner_fn()
            if fn is not None:
                xz = self.in_proj(u).transpose(1, 2)  # (Bt, 2Di, L)
                return fn(  # type: ignore[no-any-return]
                    xz,
                    self.conv1d.weight,
                    self.conv1d.bias,
                    self.x_proj.weight,
                    self.dt_proj.weight,
                    self.out_proj.weight,
                    self.out_proj.bias,
                    A,
                    None,
                    None,
                    self.D.float(),
                    delta_bias=self.dt_proj.bias.float(),
                    delta_softplus=True,
                )
        x, z = self.in_proj(u).chunk(2, dim=-1)
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :L].transpose(1, 2))
        dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(up(dt @ self.dt_proj.weight.t()) + up(self.dt_proj.bias))
        y = selective_scan(x, delta, A, B, C, self.D)
        out: torch.Tensor = self.out_proj(y * F.silu(z))
        return out
