"""Analytic N and FLOPs of the ladders against hand-computed values (SPEC §6.6, §7.6)."""

from __future__ import annotations

import pytest

from fm4npp.errors import ConfigError
from fm4npp.model import ladder


@pytest.mark.parametrize(
    ("name", "total"),
    # SPEC §6.1 column "params, 12 layers (formula §6.6)"; m3 equals the released checkpoint.
    [
        ("m1", 323_138),
        ("m2", 1_251_370),
        ("m3", 4_923_386),
        ("m4", 19_529_626),
        ("m5", 77_790_938),
        ("m6", 174_784_026),
    ],
)
def test_paper_ladder_total_params(name: str, total: int) -> None:
    assert ladder.n_params_total(ladder.get_rung(name)) == total


@pytest.mark.parametrize("d", [64, 128, 256, 512, 1024, 1536])
def test_nonembedding_formula(d: int) -> None:
    # SPEC §6.6: N = 73.875·d² + 164.625·d for the FM4NPP Mamba2 block.
    rung = next(
        r for r in ladder.RUNGS.values() if r.arch == "mamba2" and r.d_model == d and r.n_layers == 12
    )
    assert ladder.n_params(rung) == 73.875 * d * d + 164.625 * d
    assert ladder.n_params_trainable(rung) == ladder.n_params_total(rung) - 64 * d


def test_m1_flops_terms_by_hand() -> None:
    # m1: d 64, Di 128, N 4, H 2, Q 256. Block params: in_proj 64·(256+8+2) = 17024,
    # conv (128+8)·5 = 680, dt_bias/A_log/D 6, norm 128, out_proj 8192, pre-norm 64 → 26094.
    r = ladder.get_rung("m1")
    assert ladder.block_params(r) == 26094
    # SSD = 2·256·4·1 + 128·(2·256 + 4·4) = 2048 + 67584 = 69632 (SPEC table: 3·SSD ≈ 0.21M).
    assert ladder.ssd_flops(r) == 69632
    per_layer = 6 * 26094 + 3 * 69632
    head_embed = 6 * 90 * 64 + 2 * 64 * 64
    assert ladder.flops_per_token(r) == 12 * per_layer + head_embed
    # SPEC §7.6: full run at 1.1e10 tokens ≈ 4.7e16 FLOPs.
    assert ladder.flops_per_token(r) * 1.1e10 == pytest.approx(4.7e16, rel=0.05)


def test_transformer_ladder_matches_talk() -> None:
    # [T1] table: m1 2.38M … m9 1.01B (within 1 %: embeddings/heads excluded from N).
    assert ladder.n_params(ladder.get_rung("t1")) == pytest.approx(2.38e6, rel=0.01)
    assert ladder.n_params(ladder.get_rung("t9")) == pytest.approx(1.01e9, rel=0.01)
    r = ladder.get_rung("t1")
    # 6N + 6·L·n_ctx·d attention term.
    expected = 12 * (6 * ladder.block_params(r) + 6 * 840 * 128) + 6 * 90 * 128 + 2 * 64 * 128
    assert ladder.flops_per_token(r, seq_len=840) == expected


def test_mamba1_block_count_by_hand() -> None:
    r = ladder.Rung("x", "mamba1", 32, 1, d_state=16, headdim=16)
    # Di 64, R 2: pre-norm 32 + in_proj 4096 + conv 256+64 + x_proj 34·64 + dt_proj 128+64
    # + A_log 1024 + D 64 + out_proj 2048.
    assert ladder.block_params(r) == 32 + 4096 + 320 + 2176 + 192 + 1024 + 64 + 2048


def test_dataset_ladder_quarter_decades() -> None:
    assert ladder.get_dataset("d1") == 100_000
    assert ladder.get_dataset("d5") == 1_000_000
    assert ladder.get_dataset("d9") == 10_000_000
    assert ladder.get_dataset("d3") == round(1e5 * 10**0.5)


def test_unknown_names_suggest() -> None:
    with pytest.raises(ConfigError, match=r"unknown model 'm7'.*allowed: m1"):
        ladder.get_rung("m7")
    with pytest.raises(ConfigError, match=r"unknown dataset 'qd' \(did you mean 'qd\d'\?\)"):
        ladder.get_dataset("qd")


def test_headdim_must_divide_inner() -> None:
    with pytest.raises(ConfigError, match="headdim"):
        ladder.Rung("bad", "mamba2", 48, 2, headdim=64)
