"""The nested data order of a WSD trunk and the step arithmetic of its cooldown branches.

Torch-free (numpy only), so the planner costs WSD branches with the same arithmetic the trainer runs.

Tiers d1 ⊂ d2 ⊂ … ⊂ dK are nested random subsets of the training split (:mod:`fm4npp.data.tiers`).
The trunk reads them in that order: segment j is ``epochs`` passes over the new events d_j \\ d_(j-1)
(a fresh seeded permutation per pass; a fractional pass takes the head of one), so after
P_i = round(epochs · n_i) events it has read exactly tier i's events, each ≈ ``epochs`` times: the
events of a cosine cell on tier i, by set and by count. With epochs = 1 the stream up to P_i is a
permutation of d_i, as in a cosine cell; with epochs > 1 a cosine cell interleaves its passes over the
whole tier, the trunk makes them per segment (events are i.i.d. draws, so only the order differs).

A branch at tier i reads the same stream *capped* at tier i: past P_i (the last partial batch when
P_i is not a multiple of the batch) it continues with permutations of tier i's events, as a cosine
cell wraps into its next epoch; it never reads an event outside d_i. Its horizon is the cosine cell's,
S_i = ceil(P_i / batch); its cooldown takes the last max(1, round(f · S_i)) steps, from
c_i = S_i − that, so the trunk (stable LR, uncapped stream) must run to c_i only, and the prefix it
shares with branch i (c_i · batch < P_i events) lies inside d_i.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fm4npp.errors import ConfigError


@dataclass(frozen=True)
class BranchPoint:
    """One cooldown branch of a trunk: the cell on tier ``n_events``."""

    n_events: int
    steps: int  # S_i: the branch's horizon, equal to a cosine cell's total steps
    cooldown_start: int  # c_i: the trunk step the branch starts its decay from

    @property
    def cooldown_steps(self) -> int:
        return self.steps - self.cooldown_start


def branch_points(
    tiers: Sequence[int], epochs: float, batch_events: int, cooldown_fraction: float
) -> list[BranchPoint]:
    """Branch points of the increasing tier sizes ``tiers`` (see the module docstring)."""
    out = []
    for n in tiers:
        steps = math.ceil(round(epochs * n) / batch_events)
        cooldown = min(steps, max(1, round(cooldown_fraction * steps)))
        out.append(BranchPoint(n, steps, steps - cooldown))
    return out


def wsd_warmup_steps(points: Sequence[BranchPoint], warmup_fraction: float) -> int:
    """The trunk's warm-up: ``warmup_fraction`` of the smallest branch's steps (shared by all branches);
    every cooldown must start after it."""
    warmup = round(warmup_fraction * points[0].steps)
    if points[0].cooldown_start < warmup:
        raise ConfigError(
            f"train.warmup_fraction / train.cooldown_fraction: the smallest WSD branch ({points[0].steps} "
            f"steps) would start its cooldown at step {points[0].cooldown_start}, before the end of its "
            f"{warmup}-step warm-up"
        )
    return warmup


def wsd_total_steps(points: Sequence[BranchPoint]) -> int:
    """Optimiser steps of one trunk and all its branches: the trunk to the last branch point plus
    every cooldown (≈ the largest tier's steps + the smaller tiers' cooldowns)."""
    return points[-1].cooldown_start + sum(p.cooldown_steps for p in points)


def segment_indices(tier_ids: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per segment, the new events of each tier as indices into the last tier's sorted ids."""
    last = np.asarray(tier_ids[-1])
    out, previous = [], np.zeros(0, np.int64)
    for ids in tier_ids:
        ids = np.asarray(ids)
        if not np.isin(previous, ids).all():
            raise ConfigError("WSD tiers are not nested (d_i ⊄ d_(i+1)); check data.split_seed")
        out.append(np.searchsorted(last, np.setdiff1d(ids, previous)).astype(np.int64))
        previous = ids
    return out


class NestedStream:
    """Dataset indices along the nested order, capped at the last segment (module docstring).

    Same interface as :class:`fm4npp.data.torch_dataset.EventOrderSampler`: ``take(n)`` and
    ``position`` (events drawn so far), the whole state, so a resume is exact.
    """

    def __init__(
        self, segments: Sequence[np.ndarray], epochs: float, seed: int, position: int = 0
    ) -> None:
        self.segments = [np.asarray(s, np.int64) for s in segments]
        self.seed, self.position = seed, position
        sizes = np.cumsum([len(s) for s in self.segments])
        self.bounds = [0] + [round(epochs * n) for n in sizes]  # P_0 = 0, P_1, …
        self.n_total = int(sizes[-1])
        self._key: tuple[int, int] | None = None
        self._perm = np.zeros(0, np.int64)

    def _order(self, segment: int, npass: int) -> np.ndarray:
        """Pass ``npass`` over segment ``segment`` (``segment = -1``: the whole capped tier)."""
        if self._key != (segment, npass):
            rng = np.random.default_rng(np.random.SeedSequence((self.seed, 0x57D, segment + 1, npass)))
            pool = np.concatenate(self.segments) if segment < 0 else self.segments[segment]
            self._key, self._perm = (segment, npass), rng.permutation(pool)
        return self._perm

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` indices; advances ``position``."""
        out = np.empty(n, np.int64)
        filled = 0
        while filled < n:
            p = self.position
            if p >= self.bounds[-1]:  # past the cap: passes over the whole tier
                npass, offset = divmod(p - self.bounds[-1], self.n_total)
                chunk = self._order(-1, npass)[offset : offset + n - filled]
            else:
                j = bisect.bisect_right(self.bounds, p) - 1
                npass, offset = divmod(p - self.bounds[j], len(self.segments[j]))
                end = min(self.bounds[j + 1] - p, len(self.segments[j]) - offset, n - filled)
                chunk = self._order(j, npass)[offset : offset + end]
            out[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
            self.position += len(chunk)
        return out


@dataclass(frozen=True)
class WsdSegment:
    """How :func:`fm4npp.train.pretrain.pretrain` runs a WSD trunk or branch instead of a cosine cell
    (built by :mod:`fm4npp.train.wsd`)."""

    tiers: tuple[int, ...]  # nested tier sizes the stream reads, up to its cap (= the run's n_events)
    total_steps: int  # the run's horizon: trunk c_K, branch S_i
    warmup_steps: int
    decay_start: int | None  # branch: c_i; None: a trunk (stable LR, no end-of-run validation)
    shape: str = "1-sqrt"
    branch_points: tuple[int, ...] = ()  # trunk: steps where checkpoints/branch-<step>.pt is kept
    stop_at: int | None = None  # trunk: checkpoint and return when this step is reached
    init_from: str | None = None  # branch: trunk checkpoint to start from when the run dir has none

    @property
    def is_trunk(self) -> bool:
        return self.decay_start is None


def branch_checkpoint_name(step: int) -> str:
    """File name (under the trunk's checkpoints/) of the trunk's state at branch point ``step``."""
    return f"branch-{step:08d}.pt"
