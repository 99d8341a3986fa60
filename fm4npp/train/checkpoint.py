"""Checkpointable training state (STYLE rule 10): save atomically, load with ``weights_only=True``.

A checkpoint file holds ``model``, ``optimizer`` and ``scheduler`` state dicts and ``train_state``, the
:class:`TrainState` as plain lists, numbers and tensors (no pickled Python objects), so that
``torch.load(..., weights_only=True)`` reads it. The train state also carries the metrics rows
logged since the previous checkpoint and the name of the Parquet part they belong to: the loop writes
the checkpoint first and the part second, and a resume writes the part if a crash fell in between, so
the loss curve never loses or duplicates a step.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fm4npp.atomic import atomic_path
from fm4npp.errors import StoreError
from fm4npp.store import claim

CHECKPOINT_VERSION = 1


@dataclass
class TrainState:
    """Everything besides model/optimizer/scheduler state that an exact resume needs.

    ``hits_seen`` counts valid hits (tokens), ``hits_computed`` hits incl. batch padding (for FLOPs);
    ``sampler_position`` = events drawn from the event-order sampler (global, all ranks).
    """

    step: int = 0
    total_steps: int = 0  # horizon of the LR schedule; a resume must not change it
    events_seen: int = 0
    hits_seen: int = 0
    hits_computed: int = 0
    sampler_position: int = 0
    best_val_loss: float = float("inf")
    val_losses: list[float] = field(default_factory=list)  # every validation, in order
    wall_time_s: float = 0.0  # summed over all attempts
    pending_part: str = ""  # metrics part file name the pending rows go to ("" = none)
    pending_rows: dict[str, list[float]] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)  # see capture_rng


def capture_rng() -> dict[str, Any]:
    """Torch (CPU, CUDA), numpy and Python global RNG states as tensors and lists."""
    np_state: tuple[Any, ...] = np.random.get_state()  # type: ignore[assignment]  # noqa: NPY002 (saved as is)
    py_state = random.getstate()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng` (a CUDA state is restored only where CUDA exists)."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    legacy = ("MT19937", keys, n["pos"], n["has_gauss"], n["cached_gaussian"])
    np.random.set_state(legacy)  # noqa: NPY002 (restores the legacy global state)
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: TrainState,
) -> None:
    """Write ``path`` atomically (temporary name + rename); ``state.rng`` is captured here.

    Fencing: when this process holds the claim of the run directory (``path``'s grandparent), it must
    still own it (:func:`fm4npp.store.claim.check`), else :class:`~fm4npp.store.claim.ClaimLost`."""
    claim.check(path.parent.parent)
    state.rng = capture_rng()
    payload = {
        "version": CHECKPOINT_VERSION,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "train_state": asdict(state),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> TrainState:
    """Load ``path`` into the given objects (strict), restore RNG states, return the train state."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as err:
        raise StoreError(f"{path}: unreadable checkpoint ({err})") from None
    if payload.get("version") != CHECKPOINT_VERSION:
        raise StoreError(
            f"{path}: checkpoint version {payload.get('version')}, expected {CHECKPOINT_VERSION}"
        )
    model.load_state_dict(payload["model"], strict=True)
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    state = TrainState(**payload["train_state"])
    restore_rng(state.rng)
    return state


def save_weights(path: Path, model: torch.nn.Module, meta: dict[str, Any]) -> None:
    """Model weights only (e.g. ``checkpoints/best.pt``), atomically, with a small metadata dict."""
    claim.check(path.parent.parent)
    with atomic_path(path) as tmp:
        torch.save({"version": CHECKPOINT_VERSION, "model": model.state_dict(), "meta": meta}, tmp)
