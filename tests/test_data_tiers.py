"""Dataset tiers: disjoint splits, nested subsets, hit-limit filter."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fm4npp.data.tiers import filter_by_hits, nested_subset, split_ids
from fm4npp.errors import DataError


def test_splits_disjoint_cover_and_seeded() -> None:
    ids = np.arange(1000) * 3 + 7
    s = split_ids(ids, seed=1, val_fraction=0.1, test_fraction=0.05)
    assert (len(s.train), len(s.val), len(s.test)) == (850, 100, 50)
    assert not set(s.train) & set(s.val)
    assert not set(s.train) & set(s.test)
    assert not set(s.val) & set(s.test)
    np.testing.assert_array_equal(np.sort(np.concatenate([s.train, s.val, s.test])), ids)
    again = split_ids(ids[::-1], seed=1, val_fraction=0.1, test_fraction=0.05)
    np.testing.assert_array_equal(again.val, s.val)
    other = split_ids(ids, seed=2, val_fraction=0.1, test_fraction=0.05)
    assert not np.array_equal(other.val, s.val)
    with pytest.raises(DataError, match="val_fraction"):
        split_ids(ids, 0, val_fraction=0.6, test_fraction=0.5)


def test_nested_subsets_are_prefixes() -> None:
    train = split_ids(np.arange(5000), seed=0).train
    sizes = [10, 100, 1000, len(train)]
    subsets = [nested_subset(train, n, seed=4) for n in sizes]
    for n, sub in zip(sizes, subsets, strict=True):
        assert len(sub) == n
        assert len(np.unique(sub)) == n
        assert np.isin(sub, train).all()
    for small, big in itertools.pairwise(subsets):
        assert np.isin(small, big).all()
    assert not np.array_equal(nested_subset(train, 100, seed=5), subsets[1])
    assert not np.array_equal(subsets[0], np.sort(train)[:10]), "never the first N"
    with pytest.raises(DataError, match="only 4000 training events"):
        nested_subset(train, 4001, seed=4)


def test_filter_by_hits_counts_dropped() -> None:
    ids, n = filter_by_hits(np.arange(5), np.array([10, 3300, 3200, 0, 5000]))
    assert ids.tolist() == [0, 2, 3]
    assert n == 2
    ids, n = filter_by_hits(np.arange(2), np.array([1, 99999]), max_hits=None)
    assert len(ids) == 2
    assert n == 0
