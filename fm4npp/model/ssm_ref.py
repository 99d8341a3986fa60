"""Naive sequential fp64 reference recurrences for Mamba1 and Mamba2 (SPEC §7.4).

Slow by design (a Python loop over time with autograd): for tests on tiny sizes only. The fast
paths in :mod:`fm4npp.model.mamba1` and :mod:`fm4npp.model.mamba2` are tested against these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from fm4npp.model.mamba1 import Mamba
    from fm4npp.model.mamba2 import Mamba2


def selective_scan_ref(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
) -> torch.Tensor:
    """Mamba1 scan in fp64. u, delta (Bt, L, Di); A (Di, N); B, C (Bt, L, N); D (Di) → y (Bt, L, Di).

    h_t = exp(Δ_t A) h_{t−1} + Δ_t B_t u_t;  y_t = C_t · h_t + D u_t."""
    u, delta, A, B, C, D = (t.double() for t in (u, delta, A, B, C, D))
    h = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])
    ys = []
    for t in range(u.shape[1]):
        h = (
            torch.exp(delta[:, t, :, None] * A) * h
            + (delta[:, t] * u[:, t])[..., None] * B[:, t, None, :]
        )
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, t]) + D * u[:, t])
    return torch.stack(ys, dim=1)


def ssd_ref(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, D: torch.Tensor
) -> torch.Tensor:
    """Mamba2 SSD recurrence in fp64. x (Bt, L, H, P); dt (Bt, L, H) after softplus; A (H);
    B, C (Bt, L, G, N); D (H) or (H, P) → y (Bt, L, H, P).

    H_t = exp(Δ_t A) H_{t−1} + Δ_t x_t B_tᵀ;  y_t = H_t C_t + D x_t (head h reads group h·G/H)."""
    x, dt, A, B, C, D = (t.double() for t in (x, dt, A, B, C, D))
    nh, ng = x.shape[2], B.shape[2]
    B = B.repeat_interleave(nh // ng, dim=2)
    C = C.repeat_interleave(nh // ng, dim=2)
    Dp = D[:, None] if D.dim() == 1 else D
    s = x.new_zeros(x.shape[0], nh, x.shape[3], B.shape[3])
    ys = []
    for t in range(x.shape[1]):
        a = torch.exp(dt[:, t] * A)[..., None, None]
        s = a * s + (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", s, C[:, t]) + Dp * x[:, t])
    return torch.stack(ys, dim=1)


def _causal_conv(xBC: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Depthwise causal conv in fp64. (Bt, L, C), weight (C, 1, K) → (Bt, L, C)."""
    L = xBC.shape[1]
    out = F.conv1d(
        xBC.transpose(1, 2),
        weight.double(),
        None if bias is None else bias.double(),
        padding=weight.shape[-1] - 1,
        groups=weight.shape[0],
    )
    return out[..., :L].transpose(1, 2)


def mamba2_ref(m: Mamba2, u: torch.Tensor) -> torch.Tensor:
    """Whole Mamba2 mixer with ``m``'s parameters, fp64 sequential. u (Bt, L, D) → (Bt, L, D)."""
    u = u.double()
    zxbcdt = F.linear(
        u, m.in_proj.weight.double(), None if m.in_proj.bias is None else m.in_proj.bias.double()
    )
    di, gn, nh = m.d_inner, m.ngroups * m.d_state, m.nheads
    z, xBC, dt = torch.split(zxbcdt, [di, di + 2 * gn, nh], dim=-1)
    xBC = F.silu(_causal_conv(xBC, m.conv1d.weight, m.conv1d.bias))
    x, B, C = torch.split(xBC, [di, gn, gn], dim=-1)
    dt = F.softplus(dt + m.dt_bias.double())
    lo, hi = m.dt_limit
    dt = dt.clamp(min=lo, max=hi)
    A = -torch.exp(m.A_log.double())
    Bt, L = u.shape[:2]
    D = m.D.double().view(nh, m.headdim) if m.D_has_hdim else m.D.double()
    y = ssd_ref(
        x.view(Bt, L, nh, m.headdim),
        dt,
        A,
        B.view(Bt, L, m.ngroups, m.d_state),
        C.view(Bt, L, m.ngroups, m.d_state),
        D,
    ).reshape(Bt, L, di)
    w = m.norm.weight.double()
    g = F.silu(z)
    if not m.norm.norm_before_gate:
        y = y * g
    yg = y.view(Bt, L, -1, m.norm.group_size)
    y = (yg * torch.rsqrt(yg.pow(2).mean(-1, keepdim=True) + m.norm.eps)).view(Bt, L, di) * w
    if m.norm.norm_before_gate:
        y = y * g
    return F.linear(
        y, m.out_proj.weight.double(), None if m.out_proj.bias is None else m.out_proj.bias.double()
    )


def mamba1_ref(m: Mamba, u: torch.Tensor) -> torch.Tensor:
    """Whole Mamba1 mixer with ``m``'s parameters, fp64 sequential. u (Bt, L, D) → (Bt, L, D)."""
    u = u.double()
    xz = F.linear(
        u, m.in_proj.weight.double(), None if m.in_proj.bias is None else m.in_proj.bias.double()
    )
    x, z = xz.chunk(2, dim=-1)
    x = F.silu(_causal_conv(x, m.conv1d.weight, m.conv1d.bias))
    x_dbl = F.linear(x, m.x_proj.weight.double())
    dt, B, C = torch.split(x_dbl, [m.dt_rank, m.d_state, m.d_state], dim=-1)
    delta = F.softplus(F.linear(dt, m.dt_proj.weight.double(), m.dt_proj.bias.double()))
    y = selective_scan_ref(x, delta, -torch.exp(m.A_log.double()), B, C, m.D.double())
    y = y * F.silu(z)
    return F.linear(
        y, m.out_proj.weight.double(), None if m.out_proj.bias is None else m.out_proj.bias.double()
    )
