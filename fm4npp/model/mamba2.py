"""Pure-PyTorch Mamba2 mixer with the names, shapes and initialisation of ``mamba_ssm.Mamba2``.

SPEC §7.2–7.4. On CUDA with ``mamba_ssm`` importable, ``forward`` calls the fused kernel
``mamba_split_conv1d_scan_combined`` with our parameters; otherwise the chunked SSD below runs
(fp32 internals). ``mamba_ssm`` is imported lazily and only for CUDA inputs.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fm4npp.errors import ConfigError
from fm4npp.model.precision import up


@functools.cache
def _split_conv1d_scan() -> Any | None:
    """``mamba_split_conv1d_scan_combined`` (needs causal_conv1d's CUDA extension) or None;
    imported once, only when asked (CUDA input)."""
    try:
        import causal_conv1d_cuda  # noqa: F401  (the fused path calls it directly)
        from mamba_ssm.ops.triton.ssd_combined import mamba_split_conv1d_scan_combined
    except ImportError:
        return None
    return mamba_split_conv1d_scan_combined


@functools.cache
def _chunk_scan() -> Any | None:
    """mamba_ssm's Triton SSD kernel ``mamba_chunk_scan_combined`` (no causal_conv1d needed) or None."""
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except ImportError:
        return None
    return mamba_chunk_scan_combined


class RMSNormGated(nn.Module):
    """Gated RMSNorm of ``mamba_ssm.ops.triton.layernorm_gated.RMSNorm``: rmsnorm(y·silu(z))·w per
    group of ``group_size`` channels (norm_before_gate=False), or rmsnorm(y)·w·silu(z). fp32 inside."""

    def __init__(
        self,
        hidden_size: int,
        eps: float = 1e-5,
        group_size: int | None = None,
        norm_before_gate: bool = True,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.eps = eps
        self.group_size = hidden_size if group_size is None else group_size
        self.norm_before_gate = norm_before_gate
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))

    def forward(self, y: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """y, z (..., Di) → (..., Di) in y's dtype."""
        dtype = y.dtype
        y = up(y)
        g = None if z is None else F.silu(up(z))
        if g is not None and not self.norm_before_gate:
            y = y * g
        yg = y.view(*y.shape[:-1], -1, self.group_size)
        y = (yg * torch.rsqrt(yg.pow(2).mean(-1, keepdim=True) + self.eps)).flatten(-2) * up(self.weight)
        if g is not None and self.norm_before_gate:
            y = y * g
        return y.to(dtype)


def ssd_chunked(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, chunk: int
) -> torch.Tensor:
    """Chunked SSD (Mamba2 paper, ``ssd_minimal``), fp32. x (Bt, L, H, P); dt (Bt, L, H) after
    softplus; A (H) negative; B, C (Bt, L, G, N) → y (Bt, L, H, P), without the D skip.

    (1) dense masked Q×Q products inside chunks; (2) each chunk's outgoing state; (3) recurrence
    over chunks (a small dense (c+1)² decay matrix); (4) incoming state added to every position.
    −∞ goes above the diagonal before exp, so the backward has no inf·0 (SPEC §7.4)."""
    Bt, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    pad = (-L) % chunk
    x, dt, B, C = (up(t) for t in (x, dt, B, C))
    if pad:  # zero dt at the padded end: no decay and no input, and causal, so valid rows unchanged
        x, dt, B, C = (F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) for t in (x, dt, B, C))
    nc = (L + pad) // chunk
    x = x.view(Bt, nc, chunk, H, P)
    B = B.view(Bt, nc, chunk, G, N)
    C = C.view(Bt, nc, chunk, G, N)
    dA = (dt * up(A)).view(Bt, nc, chunk, H).permute(0, 3, 1, 2)  # (Bt, H, c, Q)
    xdt = x * dt.view(Bt, nc, chunk, H, 1)
    cs = torch.cumsum(dA, dim=-1)  # (Bt, H, c, Q)
    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=x.device).tril()
    seg = (cs[..., :, None] - cs[..., None, :]).masked_fill(~causal, -math.inf)
    decay = torch.exp(seg)  # (Bt, H, c, Q, Q): exp(cum_t − cum_s) for s ≤ t
    hpg = H // G
    CB = torch.einsum("bclgn,bcsgn->bcgls", C, B)  # (Bt, c, G, Q, Q)
    CB = CB.repeat_interleave(hpg, dim=2) if G > 1 else CB.expand(-1, -1, H, -1, -1)
    scores = CB * decay.permute(0, 2, 1, 3, 4)  # (Bt, c, H, Q, Q)
    y = torch.einsum("bchls,bcshp->bclhp", scores, xdt)
    # (2) chunk states: Σ_s exp(cum_last − cum_s) B_s (Δx)_s → (Bt, c, H, P, N)
    w = torch.exp(cs[..., -1:] - cs).permute(0, 2, 3, 1)  # (Bt, c, Q, H)
    Bh = B.repeat_interleave(hpg, dim=3) if G > 1 else B.expand(-1, -1, -1, H, -1)
    states = torch.einsum("bclhn,bclhp->bchpn", Bh * w[..., None], xdt)
    # (3) inter-chunk recurrence via exact segment sums of chunk totals (c + 1 small)
    tot = F.pad(cs[..., -1], (1, 0))  # (Bt, H, c+1)
    csum = torch.cumsum(tot, dim=-1)
    cmask = torch.ones(nc + 1, nc + 1, dtype=torch.bool, device=x.device).tril()
    cdecay = torch.exp((csum[..., :, None] - csum[..., None, :]).masked_fill(~cmask, -math.inf))
    states = F.pad(states, (0, 0, 0, 0, 0, 0, 1, 0))  # zero initial state: (Bt, c+1, H, P, N)
    incoming = torch.einsum("bhzc,bchpn->bzhpn", cdecay, states)[:, :-1]  # state entering chunk z
    # (4) incoming state → outputs, decayed to each position
    Ch = C.repeat_interleave(hpg, dim=3) if G > 1 else C.expand(-1, -1, -1, H, -1)
    out_decay = torch.exp(cs).permute(0, 2, 3, 1)  # (Bt, c, Q, H)
    y = y + torch.einsum("bclhn,bchpn->bclhp", Ch, incoming) * out_decay[..., None]
    return y.reshape(Bt, nc * chunk, H, P)[:, :L]


class Mamba2(nn.Module):
    """Mamba2 mixer (``mamba_ssm.modules.mamba2.Mamba2`` constructor, names, shapes, init).

    Parameters: in_proj (2Di + 2GN + H, D) → [z, x, B, C, dt]; conv1d (Di + 2GN, 1, K) + bias;
    dt_bias (H); A_log (H); D (H); norm.weight (Di); out_proj (D, Di). forward: (Bt, L, D) → (Bt, L, D).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 128,
        d_conv: int = 4,
        conv_init: float | None = None,
        expand: int = 2,
        headdim: int = 64,
        d_ssm: int | None = None,
        ngroups: int = 1,
        A_init_range: tuple[float, float] = (1, 16),
        D_has_hdim: bool = False,
        rmsnorm: bool = True,
        norm_before_gate: bool = False,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        dt_limit: tuple[float, float] = (0.0, float("inf")),
        bias: bool = False,
        conv_bias: bool = True,
        chunk_size: int = 256,
        use_mem_eff_path: bool = True,
        layer_idx: int | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        fk: dict[str, Any] = {"device": device, "dtype": dtype}
        if d_ssm is not None or not rmsnorm:
            raise ConfigError("Mamba2: d_ssm and rmsnorm=False are not supported by fm4npp")
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = expand * d_model
        self.headdim, self.ngroups = headdim, ngroups
        if self.d_inner % headdim or (self.d_inner // headdim) % ngroups:
            raise ConfigError(
                f"Mamba2: d_inner {self.d_inner} must be a multiple of headdim {headdim} (#360)"
            )
        self.nheads = self.d_inner // headdim
        self.D_has_hdim, self.rmsnorm, self.norm_before_gate = D_has_hdim, rmsnorm, norm_before_gate
        self.dt_limit, self.chunk_size = dt_limit, chunk_size
        self.use_mem_eff_path, self.layer_idx = use_mem_eff_path, layer_idx
        self.activation = "silu"
        gn = ngroups * d_state
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner + 2 * gn + self.nheads, bias=bias, **fk)
        conv_dim = self.d_inner + 2 * gn
        self.conv1d = nn.Conv1d(
            conv_dim, conv_dim, d_conv, groups=conv_dim, padding=d_conv - 1, bias=conv_bias, **fk
        )
        if conv_init is not None:
            nn.init.uniform_(self.conv1d.weight, -conv_init, conv_init)
        # dt log-uniform in [dt_min, dt_max], floored; bias = softplus⁻¹(dt) (mamba_ssm init)
        dt = torch.exp(
            torch.rand(self.nheads, **fk) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        )
        dt = torch.clamp(dt, min=dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.dt_bias._no_weight_decay = True  # type: ignore[attr-defined]
        A = torch.empty(self.nheads, dtype=torch.float32, device=device).uniform_(*A_init_range)
        self.A_log = nn.Parameter(torch.log(A).to(dtype=dtype))  # A_log, D stay fp32 (SPEC §7.3)
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D = nn.Parameter(torch.ones(self.d_inner if D_has_hdim else self.nheads, device=device))
        self.D._no_weight_decay = True  # type: ignore[attr-defined]
        self.norm = RMSNormGated(
            self.d_inner,
            eps=1e-5,
            norm_before_gate=norm_before_gate,
            group_size=self.d_inner // ngroups,
            **fk,
        )
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **fk)

    @property
    def backend(self) -> str:
        """Which path ``forward`` runs for CUDA inputs: "mamba_ssm" (fused conv + SSD + norm +
        out_proj kernel), "mamba_ssm-ssd" (torch conv, Triton SSD kernel; when causal_conv1d is
        missing) or "torch" (the reference path; always on CPU)."""
        if not (self.use_mem_eff_path and self.out_proj.weight.is_cuda):
            return "torch"
        if _split_conv1d_scan() is not None:
            return "mamba_ssm"
        return "mamba_ssm-ssd" if _chunk_scan() is not None else "torch"

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u (Bt, L, D) → (Bt, L, D)."""
        zxbcdt = self.in_proj(u)
        A = -torch.exp(up(self.A_log))
        if u.is_cuda and self.use_mem_eff_path:
            fn = _split_conv1d_scan()
            if fn is not None:
                lim = {} if self.dt_limit == (0.0, float("inf")) else {"dt_limit": self.dt_limit}
                return fn(  # type: ignore[no-any-return]
                    zxbcdt,
                    self.conv1d.weight.squeeze(1),
                    self.conv1d.bias,
                    self.dt_bias,
                    A,
                    D=self.D.view(self.nheads, self.headdim) if self.D_has_hdim else self.D,
                    chunk_size=self.chunk_size,
                    activation=self.activation,
                    rmsnorm_weight=self.norm.weight,
                    rmsnorm_eps=self.norm.eps,
                    outproj_weight=self.out_proj.weight,
                    outproj_bias=self.out_proj.bias,
                    headdim=None if self.D_has_hdim else self.headdim,
                    ngroups=self.ngroups,
                    norm_before_gate=self.norm_before_gate,
                    **lim,
                )
        return self._forward_torch(
            zxbcdt, A, ssd=_chunk_scan() if u.is_cuda and self.use_mem_eff_path else None
        )

    def _forward_torch(
        self, zxbcdt: torch.Tensor, A: torch.Tensor, ssd: Any | None = None
    ) -> torch.Tensor:
        Bt, L, _ = zxbcdt.shape
        di, gn, nh = self.d_inner, self.ngroups * self.d_state, self.nheads
        z, xBC, dt = torch.split(zxbcdt, [di, di + 2 * gn, nh], dim=-1)
        xBC = F.silu(self.conv1d(xBC.transpose(1, 2))[..., :L].transpose(1, 2))
        x, B, C = torch.split(xBC, [di, gn, gn], dim=-1)
        dt = F.softplus(up(dt) + up(self.dt_bias))
        if self.dt_limit != (0.0, float("inf")):
            dt = dt.clamp(min=self.dt_limit[0], max=self.dt_limit[1])
        x = x.reshape(Bt, L, nh, self.headdim)
        B, C = B.reshape(Bt, L, self.ngroups, -1), C.reshape(Bt, L, self.ngroups, -1)
        if ssd is not None:  # mamba_ssm's Triton SSD; dt already softplus'ed and limited above
            y = ssd(x, dt, A, B, C, chunk_size=self.chunk_size).float()
        else:
            y = ssd_chunked(x, dt, A, B, C, self.chunk_size)
        D = up(self.D).view(nh, self.headdim) if self.D_has_hdim else up(self.D)[:, None]
        y = (y + up(x) * D).reshape(Bt, L, di)
        y = self.norm(y, z)
        out: torch.Tensor = self.out_proj(y.to(self.out_proj.weight.dtype))
        return out
