"""Training: the pretraining loop (checkpoint/resume, DDP, AMP) and its parts. Imports torch."""

from __future__ import annotations

# Rebinding ``pretrain`` to the function (the import system first binds the submodule of that name).
from fm4npp.train.pretrain import Interrupted, pretrain

__all__ = ["Interrupted", "pretrain"]
