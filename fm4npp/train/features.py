"""Labelled events with cached frozen features for the downstream adapters (SPEC §8).

The backbone is frozen (``eval()``, no grad, dropout 0), so its features are computed once per event
and kept in memory: S feature sets of width D per hit (the residual-branch outputs z_1…z_S of a
backbone, or S = 1 fixed random embedding for the random-embedding baseline). Per-hit labels are in
the same (serialized) order as the features. Batches are padded at the end with a boolean ``valid``
mask (SPEC §11 #4); padded entries are zero and carry no meaning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fm4npp.data.schema import Event
from fm4npp.data.serialize import SerializedEvent
from fm4npp.errors import StoreError

FEATURE_BATCH_EVENTS = 16  # events per frozen forward pass (features are cached, so only speed)
PARTICLE_KEYS = ("particle_id", "pt", "eta", "primary")  # particle columns the tracking metrics read
CACHE_FP16_BYTES = 2 * 1024**3  # above ≈ 2 GiB of float32 features, cache in float16 (half memory)


@dataclass(frozen=True)
class FeatureBatch:
    """Padded batch: feats (B, L, S, D) float32, valid (B, L) bool, track_id (B, L) int64 (0 = noise),
    pid (B, L) int64, noise (B, L) int64 (1 = noise)."""

    feats: torch.Tensor
    valid: torch.Tensor
    track_id: torch.Tensor
    pid: torch.Tensor
    noise: torch.Tensor


@dataclass(frozen=True)
class EventSet:
    """Events with cached features. ``feats`` (ΣN, S, D) all hits of all events concatenated in
    sequence order, ``offsets`` (E + 1,) int64; labels (ΣN,) alike; ``particles`` per event (for
    the pT/η tracking metrics); ``event_ids`` (E,); ``inputs`` (ΣN, 4) the normalized model inputs
    [E, η, φ, r] (SPEC §2.3) where known (geometric neighbours of the edge probe)."""

    event_ids: np.ndarray
    offsets: np.ndarray
    feats: torch.Tensor
    track_id: np.ndarray
    pid: np.ndarray
    noise: np.ndarray
    particles: list[dict[str, np.ndarray]]
    inputs: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.event_ids)

    @property
    def n_hits(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def n_sets(self) -> int:
        return int(self.feats.shape[1])

    @property
    def d_model(self) -> int:
        return int(self.feats.shape[2])

    def labels(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(track_id, pid, noise) of event ``i``, each (n_i,)."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.track_id[a:b], self.pid[a:b], self.noise[a:b]

    def select(self, ids: np.ndarray) -> EventSet:
        """The events whose ids are in ``ids`` (kept in this set's order); features are copied."""
        keep = np.flatnonzero(np.isin(self.event_ids, ids))
        if len(keep) != len(np.unique(ids)):
            raise ValueError("EventSet.select: some requested event ids are not in this set")
        hit_idx = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in keep])
        sizes = self.n_hits[keep]
        return EventSet(
            event_ids=self.event_ids[keep],
            offsets=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
            feats=self.feats[torch.from_numpy(hit_idx)],
            track_id=self.track_id[hit_idx],
            pid=self.pid[hit_idx],
            noise=self.noise[hit_idx],
            particles=[self.particles[i] for i in keep],
            inputs=None if self.inputs is None else self.inputs[hit_idx],
        )

    def batch(self, idx: Sequence[int] | np.ndarray, device: torch.device | str = "cpu") -> FeatureBatch:
        """Events ``idx`` padded at the end to the longest of them."""
        idx = np.asarray(idx, dtype=np.int64)
        sizes = self.n_hits[idx]
        b, length = len(idx), max(int(sizes.max(initial=0)), 1)
        valid = torch.from_numpy(np.arange(length)[None, :] < sizes[:, None])
        rows = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in idx])
        flat = torch.from_numpy(rows)
        feats = torch.zeros((b, length, self.n_sets, self.d_model), dtype=torch.float32)
        feats[valid] = self.feats[flat].float()

        def _pad(values: np.ndarray) -> torch.Tensor:
            out = torch.zeros((b, length), dtype=torch.int64)
            out[valid] = torch.from_numpy(values[rows].astype(np.int64))
            return out

        return FeatureBatch(
            feats=feats.to(device),
            valid=valid.to(device),
            track_id=_pad(self.track_id).to(device),
            pid=_pad(self.pid).to(device),
            noise=_pad(self.noise).to(device),
        )


FeatureFn = Callable[[torch.Tensor], torch.Tensor]
"""Frozen feature map: feats (B, L, 4) → (B, L, S, D)."""


@torch.inference_mode()
def build_event_set(
    events: Sequence[Event],
    serialized: Sequence[SerializedEvent],
    feature_fn: FeatureFn,
    device: torch.device | str = "cpu",
    batch_events: int = FEATURE_BATCH_EVENTS,
) -> EventSet:
    """Run the frozen ``feature_fn`` over ``serialized`` (batched by length, padded at the end, so a
    causal backbone never mixes padding into valid hits) and cache the result on the CPU."""
    sizes = np.array([len(s.feats) for s in serialized], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    chunks: list[torch.Tensor | None] = [None] * len(serialized)
    order = np.argsort(sizes, kind="stable")  # similar lengths together: little padding
    for start in range(0, len(order), batch_events):
        idx = order[start : start + batch_events]
        length = max(int(sizes[idx].max()), 1)
        x = torch.zeros((len(idx), length, 4), dtype=torch.float32)
        for j, i in enumerate(idx):
            x[j, : sizes[i]] = torch.from_numpy(serialized[i].feats)
        out = feature_fn(x.to(device)).float().cpu()
        for j, i in enumerate(idx):
            chunks[i] = out[j, : sizes[i]]
    n_sets, d = (
        (int(chunks[0].shape[1]), int(chunks[0].shape[2]))
        if chunks and chunks[0] is not None
        else (1, 1)
    )
    total_bytes = int(offsets[-1]) * n_sets * d * 4
    dtype = torch.float16 if total_bytes > CACHE_FP16_BYTES else torch.float32
    feats = (
        torch.cat([c.to(dtype) for c in chunks if c is not None])
        if len(serialized)
        else torch.zeros((0, 1, 1))
    )
    return EventSet(
        event_ids=np.array([e.event_id for e in events], dtype=np.int64),
        offsets=offsets,
        feats=feats,
        track_id=np.concatenate([s.track_id for s in serialized])
        if len(serialized)
        else np.zeros(0, np.int64),
        pid=np.concatenate([s.pid for s in serialized]).astype(np.int64)
        if len(serialized)
        else np.zeros(0, np.int64),
        noise=np.concatenate([s.noise for s in serialized]).astype(np.int64)
        if len(serialized)
        else np.zeros(0, np.int64),
        particles=[_particle_table(e) for e in events],
        inputs=np.concatenate([s.feats for s in serialized]).astype(np.float32)
        if len(serialized)
        else np.zeros((0, 4), np.float32),
    )


def _particle_table(event: Event) -> dict[str, np.ndarray]:
    """The columns the tracking metrics read (SPEC §9 selections)."""
    p = event.particles
    return {k: np.asarray(p[k]) for k in PARTICLE_KEYS if k in p}


def backbone_feature_fn(model: torch.nn.Module) -> FeatureFn:
    """Frozen backbone features, stacked (B, L, 4) → (B, L, S, D) with S = 1 + n_layers: the fixed
    input embedding x_0 followed by the residual-branch outputs z_1…z_n (SPEC §8). x_0 is what the
    random-embedding baseline sees, so the FM head's input is a superset of the baseline's."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)

    def fn(x: torch.Tensor) -> torch.Tensor:
        x0 = model.embedding(x)  # type: ignore[operator]
        return torch.stack([x0, *model.block_outputs(x)], dim=2)  # type: ignore[operator]

    return fn


def embedding_feature_fn(embedding: torch.nn.Module) -> FeatureFn:
    """Each hit's fixed random embedding of its raw inputs (S = 1): (B, L, 4) → (B, L, 1, D)."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = embedding(x)
        return out[:, :, None, :]

    return fn


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop DDP (``module.``) and torch.compile (``_orig_mod.``) key prefixes."""
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    return out


def load_weights(path: Path, model: torch.nn.Module) -> None:
    """Load the ``model`` state dict of a checkpoint (``weights_only=True``, strict)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(strip_prefixes(payload["model"]), strict=True)
    except (OSError, RuntimeError, EOFError, KeyError) as err:
        raise StoreError(f"{path}: cannot load backbone weights ({err})") from None
