"""The numba fast path of :func:`fm4npp.data.serialize.serialize_event`.

It normalises the features, computes raster cell ranks and sorts the hits into the sequence, for
the k-NNN search (:func:`fm4npp.data.knn_numba.search`) to take over; the
numpy path of ``serialize_event(..., reference=True)`` computes the same arrays, and the tests
compare the two field by field. What must match numpy bit for bit is written the numpy way: the
same float64 operations in the same order (no fastmath), ``searchsorted`` counting (NaN last) and
``lexsort``'s order (a stable sort, NaN after every number). The transcendental functions (η, φ, r
from x, y, z) and compat mode's non-stable r sort stay in numpy, whose results they define.

Measured (issue 13; 765-hit gun events, k = 30, 2-core VM at load ≈ 3): the ≈ 40 numpy calls
around the search (features, cell ranks, lexsort, the search's layout) took ≈ 0.6 ms of 2.3 ms per
event; with this module and the numba layout they take ≈ 0.3 ms, transcendentals included.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def features(
    eta: np.ndarray, phi: np.ndarray, r: np.ndarray, energy: np.ndarray, consts: np.ndarray
) -> np.ndarray:
    """(n, 4) float32 [E_n, η_n, φ_n, r_n] from float64 (n,) columns; ``consts`` = (E mean, E std,
    η min, η span, φ shift, φ span, r min, r span) as :func:`~fm4npp.data.serialize.normalized_features`
    uses them: x_n = (x − min) / span, evaluated in float64 and rounded once to float32."""
    n = eta.shape[0]
    out = np.empty((n, 4), np.float32)
    for i in range(n):
        out[i, 0] = (energy[i] - consts[0]) / consts[1]
        out[i, 1] = (eta[i] - consts[2]) / consts[3]
        out[i, 2] = (phi[i] + consts[4]) / consts[5]
        out[i, 3] = (r[i] - consts[6]) / consts[7]
    return out


@njit(cache=True, nogil=True, inline="always")
def _bin(v: float, e: np.ndarray, ne: int) -> int:
    """= clip(searchsorted(e[:ne], v, side="left") - 1, 0, ne - 2); NaN sorts after every edge."""
    i = ne
    if not np.isnan(v):
        i = 0
        while i < ne and e[i] < v:
            i += 1
    return min(max(i - 1, 0), ne - 2)


@njit(cache=True, nogil=True)
def raster_key(
    feats: np.ndarray, phib: np.ndarray, edges: np.ndarray, ne: np.ndarray, dims: np.ndarray
) -> np.ndarray:
    """Cell rank (n,) int64 of a raster order from features (n, 4) and binned φ (n,) float64.

    ``edges`` (3, m): row d holds the ``ne[d]`` bin edges of axis d (0 = η, 1 = φ, 2 = r); ``dims``
    the axes from major to minor (:data:`~fm4npp.data.serialize.RASTER_ORDERS`)."""
    n = feats.shape[0]
    key = np.zeros(n, np.int64)
    b = np.empty(3, np.int64)
    for i in range(n):
        b[0] = _bin(np.float64(feats[i, 1]), edges[0], ne[0])
        b[1] = _bin(phib[i], edges[1], ne[1])
        b[2] = _bin(np.float64(feats[i, 3]), edges[2], ne[2])
        for d in dims:
            key[i] = key[i] * (ne[d] - 1) + b[d]
    return key


@njit(cache=True, nogil=True, inline="always")
def _lt(a: float, b: float) -> bool:
    """numpy's sort order of float64: NaN after every number (and equal to NaN)."""
    return a < b or (np.isnan(b) and not np.isnan(a))


@njit(cache=True, nogil=True, inline="always")
def _before(i: int, j: int, key: np.ndarray, cols: np.ndarray) -> bool:
    """Hit i sorts strictly before hit j by (key, cols[0], cols[1], cols[2])."""
    if key[i] != key[j]:
        return key[i] < key[j]
    for c in range(cols.shape[0]):
        if _lt(cols[c, i], cols[c, j]):
            return True
        if _lt(cols[c, j], cols[c, i]):
            return False
    return False


@njit(cache=True, nogil=True)
def _merge_sort(a: np.ndarray, key: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``a`` (hit indices in ascending order) stably merge-sorted by :func:`_before`."""
    n = len(a)
    b = np.empty(n, np.int64)
    width = 1
    while width < n:
        for lo in range(0, n, 2 * width):
            mid, hi = min(lo + width, n), min(lo + 2 * width, n)
            i, j, o = lo, mid, lo
            while i < mid and j < hi:
                if _before(a[j], a[i], key, cols):
                    b[o] = a[j]
                    j += 1
                else:
                    b[o] = a[i]
                    i += 1
                o += 1
            b[o : o + mid - i] = a[i:mid]
            o += mid - i
            b[o : o + hi - j] = a[j:hi]
        a, b = b, a
        width *= 2
    return a


@njit(cache=True, nogil=True)
def lex_order(key: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """= np.lexsort((arange(n), *cols[::-1], key)): a stable sort of 0..n-1 (ties keep the index
    order, lexsort's last key). key (n,) int64, cols (c, n) float64.

    Raster cell ranks (small non-negative keys) are counting-sorted first; each cell's few hits
    are then ordered by insertion, a large cell (the ``r`` order has one) by merge sort."""
    n = key.shape[0]
    if n == 0 or key.min() < 0 or key.max() > 4 * n + 1024:
        return _merge_sort(np.arange(n), key, cols)
    nkey = key.max() + 1
    count = np.zeros(nkey + 1, np.int64)
    for i in range(n):
        count[key[i] + 1] += 1
    for v in range(nkey):
        count[v + 1] += count[v]
    out = np.empty(n, np.int64)
    fill = count[:-1].copy()
    for i in range(n):  # ascending i: stable
        out[fill[key[i]]] = i
        fill[key[i]] += 1
    for v in range(nkey):
        lo, hi = count[v], count[v + 1]
        if hi - lo > 32:
            out[lo:hi] = _merge_sort(out[lo:hi].copy(), key, cols)
            continue
        for t in range(lo + 1, hi):  # insertion: stable, as _before is strict
            i, m = out[t], t
            while m > lo and _before(i, out[m - 1], key, cols):
                out[m] = out[m - 1]
                m -= 1
            out[m] = i
    return out


@njit(cache=True, nogil=True, inline="always")
def _remainder(x: float, m: float) -> float:
    """= np.remainder(x, m) for m > 0 (numpy's npy_divmod: fmod, then shifted into [0, m))."""
    r = np.fmod(x, m)
    if r != 0.0:
        if r < 0.0:
            r += m
    else:
        r = 0.0
    return r


@njit(cache=True, nogil=True)
def sequence(
    feats: np.ndarray,
    phi_offset: float,
    edges: np.ndarray,
    counts: np.ndarray,
    dims: np.ndarray,
    key: np.ndarray,
    rsort: np.ndarray,
    fixed: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(perm, inv, knn_pos, coords) of serialize_event from its features (n, 4) float32.

    φ is binned from the seam at ``phi_offset`` (as ``_phi_binned``); the sort key is the raster
    cell rank (:func:`raster_key` with ``edges``, ``counts``, ``dims``) or, with empty ``dims``,
    the given ``key`` (a curve key). ``rsort`` (compat only) is numpy's non-stable r order.
    Fixed mode: sequence by (key, r, φ binned, η, index), k-NNN positions = sequence positions.
    Compat: sequence = rsort stably sorted by key, k-NNN positions = ranks in rsort. ``coords``
    (n, 3) float64 are (η_n, φ_n, r_n) for the search.

    (The search is a separate call: numba compiles a callee into its caller, and this sort in
    front of the search kernel made the kernel ≈ 20 % slower.)"""
    n = feats.shape[0]
    coords = np.empty((n, 3))
    phib = np.empty(n)
    for i in range(n):
        for d in range(3):
            coords[i, d] = feats[i, d + 1]
        phib[i] = _remainder(coords[i, 1] - phi_offset, 1.0) if phi_offset != 0.0 else coords[i, 1]
    if len(dims):
        key = raster_key(feats, phib, edges, counts, dims)
    knn_pos = np.empty(n, np.int64)
    if fixed:
        cols = np.empty((3, n))
        cols[0], cols[1], cols[2] = coords[:, 2], phib, coords[:, 0]
        perm = lex_order(key, cols)
    else:
        knn_pos[rsort] = np.arange(n)
        perm = rsort[np.argsort(key[rsort], kind="mergesort")]  # stable
    inv = np.empty(n, np.int64)
    inv[perm] = np.arange(n)  # hit → sequence position
    if fixed:
        knn_pos[:] = inv
    return perm, inv, knn_pos, coords
