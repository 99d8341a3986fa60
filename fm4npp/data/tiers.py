"""Dataset tiers: disjoint train/val/test splits and nested random subsets d1 ⊂ d2 ⊂ … (ARCHITECTURE §7).

Splits are a function of the *set* of event ids and the seed (input order does not matter). A subset of
size n is the first n ids of one seeded permutation of the training ids, so subsets of one seed nest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fm4npp.data.schema import MAX_HITS_DEFAULT
from fm4npp.errors import DataError


@dataclass(frozen=True)
class Splits:
    """Sorted, pairwise disjoint event-id arrays."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def split_ids(
    event_ids: np.ndarray, seed: int, val_fraction: float = 0.1, test_fraction: float = 0.1
) -> Splits:
    """Split unique ids into train/val/test with ⌊fraction·n⌉ ids for val and test (seeded)."""
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= f < 1:
            raise DataError(f"{name}={f}: must be in [0, 1)")
    if val_fraction + test_fraction >= 1:
        raise DataError(f"val_fraction + test_fraction = {val_fraction + test_fraction}: must be < 1")
    ids = np.unique(np.asarray(event_ids, dtype=np.int64))
    perm = np.random.default_rng(np.random.SeedSequence((seed, 0x5B11))).permutation(ids)
    n_val = round(val_fraction * len(ids))
    n_test = round(test_fraction * len(ids))
    return Splits(
        train=np.sort(perm[n_val + n_test :]),
        val=np.sort(perm[:n_val]),
        test=np.sort(perm[n_val : n_val + n_test]),
    )


def nested_subset(train_ids: np.ndarray, n: int, seed: int) -> np.ndarray:
    """The first ``n`` of one seeded permutation of ``train_ids`` (sorted): nests across n."""
    ids = np.unique(np.asarray(train_ids, dtype=np.int64))
    if not 0 <= n <= len(ids):
        raise DataError(f"subset of {n} events requested but only {len(ids)} training events exist")
    perm = np.random.default_rng(np.random.SeedSequence((seed, 0xD1))).permutation(ids)
    return np.sort(perm[:n])


def filter_by_hits(
    event_ids: np.ndarray, n_hits: np.ndarray, max_hits: int | None = MAX_HITS_DEFAULT
) -> tuple[np.ndarray, int]:
    """Drop events with more than ``max_hits`` hits (SPEC §2.2); returns (kept ids, number dropped)."""
    ids = np.asarray(event_ids)
    if max_hits is None:
        return ids, 0
    keep = np.asarray(n_hits) <= max_hits
    return ids[keep], int((~keep).sum())
