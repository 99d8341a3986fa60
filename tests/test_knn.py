"""The fast k-nearest-later-neighbour search agrees exactly with the dense reference."""

from __future__ import annotations

import numpy as np
import pytest

import fm4npp.data.knn as knn_mod
from fm4npp.data import knn_numba
from fm4npp.data.knn import knn_later, knn_later_ref


def _event(n: int, rng: np.random.Generator, grid: int | None) -> np.ndarray:
    """(n, 3) normalised (η, φ, r); with ``grid`` the coordinates are quantised (many exact ties)
    and φ crowds both sides of the seam."""
    c = np.stack([rng.uniform(0.2, 0.8, n), rng.uniform(0, 1, n), rng.uniform(0, 1, n)], axis=1)
    if grid:
        c = np.round(c * grid) / grid
        c[: n // 4, 1] = rng.choice([0.0, 1.0 / grid, 1.0 - 1.0 / grid, 1.0], n // 4)
    return c


@pytest.mark.parametrize("grid", [None, 8])
@pytest.mark.parametrize(("strict_r", "wrap_phi"), [(True, True), (False, False)])
@pytest.mark.parametrize("block", [7, 64])
def test_fast_equals_dense(grid: int | None, strict_r: bool, wrap_phi: bool, block: int) -> None:
    rng = np.random.default_rng(11)
    for n in (1, 2, 40, 300):
        c = _event(n, rng, grid)
        pos = rng.permutation(n) if strict_r else np.argsort(np.argsort(c[:, 2], kind="stable"))
        ref_i, ref_d = knn_later_ref(c, pos, 9, strict_r=strict_r, wrap_phi=wrap_phi)
        i, d = knn_later(c, pos, 9, strict_r=strict_r, wrap_phi=wrap_phi, block=block)
        np.testing.assert_array_equal(i, ref_i)
        np.testing.assert_array_equal(d, ref_d)


def test_contract_validity_order_and_wrap() -> None:
    rng = np.random.default_rng(3)
    c = _event(200, rng, 16)
    pos = rng.permutation(200)
    idx, dist = knn_later(c, pos, 12)
    ok = idx >= 0
    rows = np.nonzero(ok)[0]
    assert np.all(pos[idx[ok]] > pos[rows])
    assert np.all(c[idx[ok], 2] > c[rows, 2])
    assert np.all(np.diff(np.where(ok, dist, 10.0), axis=1) >= 0)
    assert np.all(np.isinf(dist[~ok]))
    # a hit across the φ seam is near with wrapping, far without
    two = np.array([[0.5, 0.99, 0.1], [0.5, 0.01, 0.2]])
    _, d_wrap = knn_later(two, np.array([0, 1]), 1)
    _, d_flat = knn_later(two, np.array([0, 1]), 1, wrap_phi=False)
    assert d_wrap[0, 0] == pytest.approx(np.hypot(0.02, 0.1))
    assert d_flat[0, 0] == pytest.approx(np.hypot(0.98, 0.1))


def test_tie_break_by_position() -> None:
    # three candidates at the same distance: sequence position decides
    c = np.array([[0.5, 0.5, 0.0], [0.6, 0.5, 0.1], [0.4, 0.5, 0.1], [0.5, 0.6, 0.1]])
    pos = np.array([0, 3, 1, 2])
    idx, _ = knn_later(c, pos, 3)
    np.testing.assert_array_equal(idx[0], [2, 3, 1])
    np.testing.assert_array_equal(knn_later_ref(c, pos, 3)[0][0], [2, 3, 1])


def _rows(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) hits on 12 exact row radii, few η values, φ crowding the seam: many same-row points,
    many equal distances and slabs that start and end inside a row."""
    eta = rng.choice([0.3, 0.5, 0.5 + 2.0**-10, 0.7], n)
    phi = np.concatenate([rng.uniform(0, 1, n - n // 3), rng.choice([0.0, 0.999, 1.0, 0.001], n // 3)])
    return np.stack([eta, phi, rng.integers(0, 12, n) / 11.0], axis=1)


@pytest.mark.parametrize(
    ("strict_r", "wrap_phi"), [(True, True), (True, False), (False, True), (False, False)]
)
def test_fast_equals_dense_rows_and_compat(strict_r: bool, wrap_phi: bool) -> None:
    """Exact agreement on row-quantised events larger than one slab, in fixed and compat order."""
    rng = np.random.default_rng(5)
    for n, k in ((0, 3), (3, 5), (257, 30), (700, 30), (700, 1), (400, 64)):
        c = _rows(n, rng)
        if strict_r:
            pos = rng.permutation(n)
        else:  # compat: pos = rank in a non-stable r sort (same-r hits in arbitrary order)
            pos = np.empty(n, dtype=np.int64)
            pos[np.argsort(c[:, 2] + rng.uniform(0, 1e-3, n))] = np.arange(n)
        ref_i, ref_d = knn_later_ref(c, pos, k, strict_r=strict_r, wrap_phi=wrap_phi)
        i, d = knn_later(c, pos, k, strict_r=strict_r, wrap_phi=wrap_phi)
        assert i.shape == d.shape == (n, k)
        np.testing.assert_array_equal(i, ref_i)
        np.testing.assert_array_equal(d, ref_d)


def test_fast_equals_dense_sparse_positions_and_duplicates() -> None:
    """Positions need not be 0..n-1; exact duplicate hits tie and break by position; φ outside
    [0, 1) wraps like its image inside."""
    rng = np.random.default_rng(9)
    c = _event(600, rng, None)
    c[300:] = c[:300]  # every hit twice
    c[::7, 1] += rng.choice([-1.0, 1.0], len(c[::7]))
    pos = rng.choice(1 << 20, 600, replace=False)
    for k in (2, 30):
        ref_i, ref_d = knn_later_ref(c, pos, k)
        i, d = knn_later(c, pos, k)
        np.testing.assert_array_equal(i, ref_i)
        np.testing.assert_array_equal(d, ref_d)


def test_fallback_without_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    c, pos = _event(50, rng, 8), rng.permutation(50)
    monkeypatch.setattr(knn_mod, "_HAVE_NUMBA", False)
    i, d = knn_later(c, pos, 5)
    np.testing.assert_array_equal(i, knn_later_ref(c, pos, 5)[0])
    np.testing.assert_array_equal(d, knn_later_ref(c, pos, 5)[1])


@pytest.mark.parametrize(("strict_r", "wrap_phi"), [(True, True), (False, False)])
def test_fused_targets_equal_the_dense_reference_assembly(strict_r: bool, wrap_phi: bool) -> None:
    """knn_targets (search + assembly in one kernel, rows in output order) == dense search + numpy."""
    rng = np.random.default_rng(5)
    for n, k in ((1, 3), (40, 9), (500, 30)):
        c = _event(n, rng, 8 if n == 40 else None)
        pos = rng.permutation(n)
        row = rng.permutation(n)
        tgt = rng.normal(size=(n, 3)).astype(np.float32)
        fast = knn_mod.knn_targets(c, pos, k, row, tgt, strict_r=strict_r, wrap_phi=wrap_phi)
        ref = knn_mod.knn_targets_ref(c, pos, k, row, tgt, strict_r=strict_r, wrap_phi=wrap_phi)
        for a, b in zip(fast, ref, strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
        assert fast[1].sum() > 0 or n == 1


def _edge_events(rng: np.random.Generator) -> list[np.ndarray]:
    """Events the pruning must get right: empty, fewer hits than k, φ on and across the seam
    (0, 1, ±ε, outside [0, 1)), exact duplicates, every hit on two radii (ties across slabs), a
    lattice (equal distances in many directions), and |φ| too large to prune."""
    seam = np.stack([rng.uniform(0.3, 0.7, 400), rng.choice([0.0, 1.0, 1e-12, -1e-12, 1 - 1e-12, -0.5, 1.5], 400), rng.uniform(0, 1, 400)], axis=1)  # fmt: skip
    dup = _event(300, rng, None)
    dup[150:] = dup[:150]
    two_r = _event(500, rng, None)
    two_r[:, 2] = rng.choice([0.25, 0.75], 500)
    g = np.arange(6) / 6
    lattice = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    wide = _event(200, rng, None)
    wide[::5, 1] *= 40.0
    return [np.zeros((0, 3)), _event(1, rng, None), _event(5, rng, 8), seam, dup, two_r, lattice, wide]


@pytest.mark.parametrize(
    ("strict_r", "wrap_phi"), [(True, True), (True, False), (False, True), (False, False)]
)
@pytest.mark.parametrize("pos_kind", ["permutation", "r_rank", "sparse"])
def test_fast_equals_dense_edge_cases(strict_r: bool, wrap_phi: bool, pos_kind: str) -> None:
    """Seam, ties, duplicates, fewer than k later hits, empty events: exact agreement."""
    rng = np.random.default_rng(17)
    for c in _edge_events(rng):
        n = len(c)
        if pos_kind == "permutation":
            pos = rng.permutation(n)
        elif pos_kind == "r_rank":  # compat: rank in an r sort (equal radii in any order)
            pos = np.empty(n, dtype=np.int64)
            pos[np.argsort(c[:, 2] + rng.uniform(0, 1e-9, n))] = np.arange(n)
        else:
            pos = rng.choice(1 << 22, n, replace=False)
        for k in (1, 7, 30):
            ref_i, ref_d = knn_later_ref(c, pos, k, strict_r=strict_r, wrap_phi=wrap_phi)
            i, d = knn_later(c, pos, k, strict_r=strict_r, wrap_phi=wrap_phi)
            np.testing.assert_array_equal(i, ref_i, err_msg=f"n={n} k={k}")
            np.testing.assert_array_equal(d, ref_d, err_msg=f"n={n} k={k}")
            row = rng.permutation(n)
            tgt = rng.normal(size=(n, 3)).astype(np.float32)
            fast = knn_mod.knn_targets(c, pos, k, row, tgt, strict_r=strict_r, wrap_phi=wrap_phi)
            ref = knn_mod.knn_targets_ref(c, pos, k, row, tgt, strict_r=strict_r, wrap_phi=wrap_phi)
            for a, b in zip(fast, ref, strict=True):
                np.testing.assert_array_equal(a, b, err_msg=f"n={n} k={k}")


def test_non_finite_coordinates_are_never_neighbours() -> None:
    """NaN / inf coordinates (no pruning bound holds): the fused targets still equal the dense ones."""
    rng = np.random.default_rng(4)
    c = _event(300, rng, None)
    c[::17, 0] = np.nan
    c[5::23, 2] = np.inf
    for strict_r in (True, False):
        pos, row = rng.permutation(300), rng.permutation(300)
        tgt = rng.normal(size=(300, 3)).astype(np.float32)
        fast = knn_mod.knn_targets(c, pos, 12, row, tgt, strict_r=strict_r, wrap_phi=strict_r)
        with np.errstate(invalid="ignore"):  # inf - inf in the dense reference
            ref = knn_mod.knn_targets_ref(c, pos, 12, row, tgt, strict_r=strict_r, wrap_phi=strict_r)
        for a, b in zip(fast, ref, strict=True):
            np.testing.assert_array_equal(a, b)


def test_key_bits_agree() -> None:
    """The numba kernel and the numpy reference pack positions into the same low key bits."""
    assert knn_mod._KEY_BITS == knn_numba.KEY_BITS
