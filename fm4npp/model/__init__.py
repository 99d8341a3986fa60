"""The model (layer L1): the size ladder (parameter counts and FLOPs per token, torch-free), the
embedding, Mamba2/Mamba1 blocks in pure PyTorch with ``mamba_ssm`` names (its kernels on CUDA when
importable), the backbone, and the downstream heads and adapters."""

from __future__ import annotations
