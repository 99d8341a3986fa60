"""Mamba2 / Mamba1 torch paths vs the fp64 sequential reference; layout, loading and dispatch."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from fm4npp.model.convert import convert_fm4npp_state_dict
from fm4npp.model.mamba1 import Mamba, selective_scan
from fm4npp.model.mamba2 import Mamba2, ssd_chunked
from fm4npp.model.ssm_ref import mamba1_ref, mamba2_ref, selective_scan_ref, ssd_ref

MAMBA2_KEYS = [
    "dt_bias", "A_log", "D", "in_proj.weight", "conv1d.weight", "conv1d.bias", "norm.weight",
    "out_proj.weight",
]  # fmt: skip
MAMBA1_KEYS = [
    "A_log", "D", "in_proj.weight", "conv1d.weight", "conv1d.bias", "x_proj.weight",
    "dt_proj.weight", "dt_proj.bias", "out_proj.weight",
]  # fmt: skip


def _mamba2(**kw: object) -> Mamba2:
    torch.manual_seed(0)
    return Mamba2(32, d_state=8, headdim=16, chunk_size=16, **kw)  # type: ignore[arg-type]


def _mamba1() -> Mamba:
    torch.manual_seed(0)
    return Mamba(16, d_state=4)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(
        (a.detach().double() - b.detach().double()).abs().max() / b.detach().double().abs().max()
    )


@pytest.mark.parametrize("ngroups", [1, 2])
def test_mamba2_matches_sequential_reference(ngroups: int) -> None:
    m = _mamba2(ngroups=ngroups)
    u = torch.randn(2, 45, 32)  # not a multiple of the chunk: exercises end padding
    g = torch.randn(2, 45, 32)
    (m(u) * g).sum().backward()
    ours = {k: p.grad.clone() for k, p in m.named_parameters()}  # type: ignore[union-attr]
    m.zero_grad()
    y_ref = mamba2_ref(m, u)
    (y_ref * g.double()).sum().backward()
    assert _rel(m(u), y_ref) < 1e-5
    for k, p in m.named_parameters():
        assert _rel(ours[k], p.grad) < 1e-4, k  # type: ignore[arg-type]


def test_mamba1_matches_sequential_reference() -> None:
    m = _mamba1()
    u, g = torch.randn(2, 37, 16), torch.randn(2, 37, 16)
    (m(u) * g).sum().backward()
    ours = {k: p.grad.clone() for k, p in m.named_parameters()}  # type: ignore[union-attr]
    m.zero_grad()
    y_ref = mamba1_ref(m, u)
    (y_ref * g.double()).sum().backward()
    assert _rel(m(u), y_ref) < 1e-5
    for k, p in m.named_parameters():
        assert _rel(ours[k], p.grad) < 1e-4, k  # type: ignore[arg-type]


def test_gradcheck_float64() -> None:
    torch.manual_seed(1)
    bt, L, h, p, g, n = 1, 7, 2, 2, 1, 3
    x = torch.randn(bt, L, h, p, dtype=torch.float64, requires_grad=True)
    dt = torch.rand(bt, L, h, dtype=torch.float64, requires_grad=True)
    A = -torch.rand(h, dtype=torch.float64).add(0.5).requires_grad_()
    B = torch.randn(bt, L, g, n, dtype=torch.float64, requires_grad=True)
    C = torch.randn(bt, L, g, n, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: ssd_chunked(*a, chunk=3), (x, dt, A, B, C))
    zero_d = torch.zeros(h, dtype=torch.float64)
    torch.testing.assert_close(ssd_chunked(x, dt, A, B, C, 3), ssd_ref(x, dt, A, B, C, zero_d))
    di = 3
    u = torch.randn(bt, L, di, dtype=torch.float64, requires_grad=True)
    delta = torch.rand(bt, L, di, dtype=torch.float64, requires_grad=True)
    A1 = -torch.rand(di, n, dtype=torch.float64).add(0.5).requires_grad_()
    B1 = torch.randn(bt, L, n, dtype=torch.float64, requires_grad=True)
    C1 = torch.randn(bt, L, n, dtype=torch.float64, requires_grad=True)
    D1 = torch.randn(di, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(selective_scan, (u, delta, A1, B1, C1, D1))
    torch.testing.assert_close(
        selective_scan(u, delta, A1, B1, C1, D1), selective_scan_ref(u, delta, A1, B1, C1, D1)
    )


def test_chunk_size_invariance() -> None:
    m = _mamba2()
    u = torch.randn(2, 70, 32)
    y16 = m(u)
    for q in (1, 8, 64, 256):
        m.chunk_size = q
        torch.testing.assert_close(m(u), y16, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("make", [_mamba2, _mamba1])
def test_end_padding_does_not_change_valid_outputs(make: object) -> None:
    m = make()  # type: ignore[operator]
    d = m.d_model
    u = torch.randn(1, 30, d)
    padded = torch.cat([u, 100 * torch.randn(1, 19, d)], dim=1)
    torch.testing.assert_close(m(padded)[:, :30], m(u), rtol=1e-5, atol=1e-6)


def test_state_dict_keys_shapes_and_strict_round_trip() -> None:
    m2, m1 = _mamba2(), _mamba1()
    assert list(m2.state_dict()) == MAMBA2_KEYS
    assert list(m1.state_dict()) == MAMBA1_KEYS
    # Mamba2 d 32, N 8, headdim 16 → Di 64, H 4: in_proj rows 2·64 + 2·8 + 4 (SPEC §7.3)
    assert m2.in_proj.weight.shape == (148, 32)
    assert m2.conv1d.weight.shape == (80, 1, 4)
    assert m1.x_proj.weight.shape == (1 + 8, 32)
    assert m1.A_log.shape == (32, 4)
    for m in (m2, m1):
        assert m.A_log._no_weight_decay
        assert m.D._no_weight_decay
        other = type(m)(
            **(
                {"d_model": 32, "d_state": 8, "headdim": 16, "chunk_size": 16}
                if m is m2
                else {"d_model": 16, "d_state": 4}
            )
        )
        other.load_state_dict(m.state_dict(), strict=True)
        u = torch.randn(1, 9, m.d_model)
        torch.testing.assert_close(other(u), m(u))


def test_initialisation_follows_mamba_ssm() -> None:
    m2, m1 = _mamba2(), _mamba1()
    with torch.no_grad():
        dt = torch.nn.functional.softplus(m2.dt_bias)
        assert bool(((dt >= 1e-3 * 0.999) & (dt <= 0.1 * 1.001)).all())
        assert bool(((m2.A_log.exp() >= 1) & (m2.A_log.exp() <= 16)).all())
        torch.testing.assert_close(m1.A_log.exp()[0], torch.arange(1.0, 5.0))
        assert float(m1.dt_proj.weight.abs().max()) <= 1.0  # U(±R^-1/2), R = 1
        assert bool((m2.D == 1).all())
        assert bool((m1.D == 1).all())


def test_convert_fm4npp_layout() -> None:
    from fm4npp.model.backbone import FM4NPPModel
    from fm4npp.model.ladder import get_rung

    torch.manual_seed(0)
    model = FM4NPPModel(get_rung("q1"))
    sd = model.state_dict()
    fm: dict[str, torch.Tensor] = {
        "model.embedder.proj": sd["embedding.energy_proj"],
        "model.embedder.embed.projection": sd["embedding.pos_proj"],
        "model.norm.weight": sd["norm_f.weight"],
        "model.output_layer.weight": sd["head.weight"],
        "model.output_layer.bias": sd["head.bias"],
    }
    for i, layer in enumerate(model.layers):
        mix = layer.mixer
        fm[f"model.mamba_layers.{i}.0.weight"] = sd[f"layers.{i}.norm.weight"]
        w = mix.in_proj.weight
        di, gn = mix.d_inner, mix.ngroups * mix.d_state
        for k, v in mix.state_dict().items():
            if k != "in_proj.weight":
                fm[f"model.mamba_layers.{i}.1.{k}"] = v
        fm[f"model.mamba_layers.{i}.1.in_proj.weight"] = torch.cat([w[: 2 * di], w[2 * di + 2 * gn :]])
        fm[f"model.mamba_layers.{i}.1.lin_B.weight"] = w[2 * di : 2 * di + gn]
        fm[f"model.mamba_layers.{i}.1.lin_C.weight"] = w[2 * di + gn : 2 * di + 2 * gn]
    out = convert_fm4npp_state_dict({"state_dict": fm})
    assert out.keys() == sd.keys()
    for k in sd:
        torch.testing.assert_close(out[k], sd[k])


def test_cpu_path_never_imports_mamba_ssm() -> None:
    code = (
        "import sys, torch\n"
        "from fm4npp.model.backbone import FM4NPPModel\nfrom fm4npp.model.ladder import get_rung\n"
        "m = FM4NPPModel(get_rung('q1')); m(torch.rand(1, 8, 4)); assert m.backend == 'torch'\n"
        "from fm4npp.model.ladder import Rung\nFM4NPPModel(Rung('x', 'mamba1', 32, 1))(torch.rand(1, 8, 4))\n"
        "assert not any(k.startswith(('mamba_ssm', 'causal_conv1d')) for k in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _kernel_mixer(kind: str) -> torch.nn.Module:
    if kind == "mamba1":
        ext = pytest.importorskip("selective_scan_cuda")
        if not hasattr(ext, "fwd"):
            pytest.skip("mamba_ssm built without its CUDA extension: no Mamba1 kernels")
        return Mamba(64, d_state=16)
    pytest.importorskip("mamba_ssm")
    return Mamba2(128, d_state=16, headdim=32, chunk_size=64)


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["mamba2", "mamba1"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernel_parity_gpu(kind: str, dtype: torch.dtype) -> None:
    m = _kernel_mixer(kind).cuda()
    assert m.backend.startswith("mamba_ssm")
    u = torch.randn(2, 256, m.d_model, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        y_kernel = m(u).float()
        m.use_mem_eff_path = m.use_fast_path = False  # type: ignore[union-attr]
        y_torch = m(u).float()
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    assert _rel(y_torch, y_kernel) < tol
