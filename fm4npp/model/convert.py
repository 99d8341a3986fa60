"""Map FM4NPP checkpoints ([R] ``mambagpt.MambaGPT``) to our layout (SPEC §7.2, §5.3).

FM4NPP's Mamba2 has separate ``lin_B`` / ``lin_C`` (d → GN) and an ``in_proj`` giving [z, x, dt];
mathematically the standard block, whose ``in_proj`` rows are [z, x, B, C, dt]. Model-level names:
``embedder.proj`` → ``embedding.energy_proj``, ``embedder.embed.projection`` → ``embedding.pos_proj``,
``mamba_layers.{i}.0`` (RMSNorm) → ``layers.{i}.norm``, ``mamba_layers.{i}.1`` → ``layers.{i}.mixer``,
``norm`` → ``norm_f``, ``output_layer`` → ``head``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from fm4npp.errors import DataError

_PREFIXES = ("module.", "model.", "_orig_mod.")


def merge_in_proj(
    in_proj: torch.Tensor, lin_B: torch.Tensor, lin_C: torch.Tensor, nheads: int
) -> torch.Tensor:
    """[z, x, dt] (2Di + H, D) + lin_B, lin_C (GN, D) → standard [z, x, B, C, dt] (2Di + 2GN + H, D)."""
    zx, dt = in_proj[: in_proj.shape[0] - nheads], in_proj[in_proj.shape[0] - nheads :]
    return torch.cat([zx, lin_B, lin_C, dt], dim=0)


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p) :], True
    return key


def convert_fm4npp_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """FM4NPP ``MambaGPT`` state dict (optionally Lightning-wrapped) → ``FM4NPPModel`` state dict."""
    if "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
        sd = sd["state_dict"]
    src = {_strip(k): v for k, v in sd.items()}
    out: dict[str, torch.Tensor] = {}
    simple = {
        "embedder.proj": "embedding.energy_proj",
        "embedder.embed.projection": "embedding.pos_proj",
        "norm.weight": "norm_f.weight",
        "output_layer.weight": "head.weight",
        "output_layer.bias": "head.bias",
    }
    pat = re.compile(r"mamba_layers\.(\d+)\.([01])\.(.+)")
    for key, val in src.items():
        if key in simple:
            out[simple[key]] = val
            continue
        m = pat.fullmatch(key)
        if m is None:
            raise DataError(f"FM4NPP checkpoint: unexpected key '{key}'")
        i, part, rest = m.groups()
        if part == "0":
            out[f"layers.{i}.norm.{rest}"] = val
        elif rest not in ("in_proj.weight", "lin_B.weight", "lin_C.weight"):
            out[f"layers.{i}.mixer.{rest}"] = val
    for key, val in src.items():
        m = pat.fullmatch(key)
        if m and m.group(3) == "in_proj.weight":
            i = m.group(1)
            base = f"mamba_layers.{i}.1."
            try:
                lin_B, lin_C = src[base + "lin_B.weight"], src[base + "lin_C.weight"]
                nheads = src[base + "A_log"].shape[0]
            except KeyError as exc:
                raise DataError(f"FM4NPP checkpoint: layer {i} lacks {exc.args[0]}") from None
            out[f"layers.{i}.mixer.in_proj.weight"] = merge_in_proj(val, lin_B, lin_C, nheads)
    return out
