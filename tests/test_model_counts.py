"""Built models vs the analytic ladder: parameter counts, FLOPs per token, forward contract."""

from __future__ import annotations

import pytest
import torch

from fm4npp.errors import ConfigError
from fm4npp.model.backbone import FM4NPPModel
from fm4npp.model.ladder import (
    Rung,
    block_params,
    flops_per_token,
    get_rung,
    n_params,
    n_params_total,
    n_params_trainable,
)


def _counts(model: FM4NPPModel) -> tuple[int, int, int]:
    sd = model.state_dict()
    layers = sum(v.numel() for k, v in sd.items() if k.startswith("layers."))
    total = sum(v.numel() for v in sd.values())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return layers, total, trainable


MAMBA1 = Rung("m1-mamba1-d64", "mamba1", 64, 3, d_state=16)


@pytest.mark.parametrize(
    "rung", [*(get_rung(n) for n in ("q1", "q1b", "q2", "q2b", "q3", "q4", "m1", "m2")), MAMBA1]
)
def test_counts_match_ladder(rung: Rung) -> None:
    assert _counts(FM4NPPModel(rung)) == (n_params(rung), n_params_total(rung), n_params_trainable(rung))


def test_paper_m1_count_and_flops() -> None:
    m1 = get_rung("m1")
    assert n_params_total(m1) == 323_138  # SPEC §6.1 (12 layers, formula §6.6)
    # SPEC §7.6 by hand for m1 (d 64, N 4, H 2, Di 128, Q 256): 6·P_layer ≈ 0.16M, 3·SSD ≈ 0.21M
    p_layer = 64 + 64 * (4 * 64 + 2 + 8) + 136 * 5 + 3 * 2 + 128 + 128 * 64
    assert block_params(m1) == p_layer == 26_094
    ssd = 2 * 256 * 4 * 1 + 128 * (2 * 256 + 4 * 4)
    assert round(6 * p_layer / 1e6, 2) == 0.16
    assert round(3 * ssd / 1e6, 2) == 0.21
    assert flops_per_token(m1) == pytest.approx(12 * (6 * p_layer + 3 * ssd) + 6 * 90 * 64 + 2 * 64 * 64)


def test_forward_shapes_blocks_and_frozen_embedding() -> None:
    torch.manual_seed(0)
    model = FM4NPPModel(get_rung("q2"), k=5, dropout=0.0).eval()
    feats = torch.rand(3, 20, 4)
    out = model(feats)
    assert out.shape == (3, 20, 5, 3)
    zs = model.block_outputs(feats)
    assert len(zs) == 2
    assert all(z.shape == (3, 20, 32) for z in zs)
    x = model.embedding(feats) + zs[0] + zs[1]
    torch.testing.assert_close(model.head(model.norm_f(x)).unflatten(-1, (5, 3)), out)
    # same seed → same frozen projections; they live in the state dict (load, never redraw)
    other = FM4NPPModel(get_rung("q2"), k=5, embed_seed=1)
    assert not torch.equal(other.embedding.pos_proj, model.embedding.pos_proj)
    other.load_state_dict(model.state_dict(), strict=True)
    torch.testing.assert_close(other.eval()(feats), out)
    # end padding never changes valid tokens (causal scan)
    padded = torch.cat([feats, torch.zeros(3, 7, 4)], dim=1)
    torch.testing.assert_close(model(padded)[:, :20], out, rtol=1e-5, atol=1e-6)


def test_unknown_block_family_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="allowed: mamba1, mamba2, transformer"):
        FM4NPPModel(Rung("x", "rwkv", 32, 1))  # type: ignore[arg-type]
