"""k nearest *later* neighbours of every hit: the targets of the k-NNN objective (SPEC §5.1, §4.4).

For point i a candidate j satisfies ``pos[j] > pos[i]`` (later in the sequence) and, with
``strict_r``, ``r[j] > r[i]`` (fixed mode, SPEC §4.4). Distances are Euclidean in normalised
(η_n, φ_n, r_n); with ``wrap_phi`` the φ difference is wrapped, Δφ ← Δφ − round(Δφ). Neighbours
are ordered by (squared distance, sequence position), so ties are deterministic.

Two implementations with identical results:

- :func:`knn_later_ref`: the dense N×N reference (O(N²) memory, kept for tests and benchmarks).
- :func:`knn_later`: r-shell trees. Points are sorted by (r, pos) and cut into shells; the queries
  of shell g search a ``scipy.spatial.cKDTree`` (periodic in φ) built on the points from shell g
  outwards, which holds every candidate. The k nearest valid hits among the tree's kk nearest are
  exact when at least k valid hits lie strictly inside the kk-th tree distance; rows that fail the
  test are retried with a larger kk and finally resolved densely against their shell's tree points.
  Distances are always recomputed with the same float64 formula as the reference, so both agree
  bit for bit.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

_SAFETY = 1.0 - 1e-9  # relative margin between cKDTree's and our float64 distances
_SHELL_SIZE = 128  # query points per shell; ~n/128 trees balances build and query cost (measured)
_OFFSET = 16.0  # shift of the non-periodic axes into [0, box) for a periodic cKDTree
_BOX = 1.0e4  # "box" of the non-periodic axes: far larger than any distance


def _sqdist(ci: np.ndarray, cj: np.ndarray, wrap_phi: bool) -> np.ndarray:
    """Squared distances, broadcasting ``ci`` (..., 3) against ``cj`` (..., 3) in float64."""
    d = cj - ci
    if wrap_phi:
        d[..., 1] -= np.round(d[..., 1])
    return np.einsum("...c,...c->...", d, d)


def _check(coords: np.ndarray, pos: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    c = np.ascontiguousarray(coords, dtype=np.float64)
    p = np.ascontiguousarray(pos, dtype=np.int64)
    if c.ndim != 2 or c.shape[1] != 3 or p.shape != (len(c),):
        raise ValueError(f"knn: coords must be (n, 3) and pos (n,), got {c.shape} and {p.shape}")
    if k <= 0:
        raise ValueError(f"knn: k must be > 0, got {k}")
    return c, p


def _select(
    d2: np.ndarray, pos_nb: np.ndarray, nb: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k smallest (d2, pos) among columns; invalid entries carry d2 = inf.

    (m, c) arrays → (idx (m, k) int64 with -1 where missing, dist (m, k) float64 with inf)."""
    m, c = d2.shape
    order = np.lexsort((pos_nb, d2), axis=1)[:, :k]
    d2s = np.take_along_axis(d2, order, axis=1)
    idx = np.take_along_axis(nb, order, axis=1)
    if c < k:
        d2s = np.concatenate([d2s, np.full((m, k - c), np.inf)], axis=1)
        idx = np.concatenate([idx, np.full((m, k - c), -1, dtype=np.int64)], axis=1)
    idx = np.where(np.isfinite(d2s), idx, -1)
    return idx, np.sqrt(d2s)


def knn_later_ref(
    coords: np.ndarray, pos: np.ndarray, k: int, *, strict_r: bool = True, wrap_phi: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Dense reference. coords (n, 3) = (η_n, φ_n, r_n); pos (n,) sequence positions (unique).

    Returns (idx (n, k) int64 indices into ``coords``, -1 where fewer than k candidates exist;
    dist (n, k) float64, inf where missing), each row sorted by (distance, pos)."""
    c, p = _check(coords, pos, k)
    n = len(c)
    d2 = _sqdist(c[:, None, :], c[None, :, :], wrap_phi)
    valid = p[None, :] > p[:, None]
    if strict_r:
        valid &= c[None, :, 2] > c[:, None, 2]
    d2 = np.where(valid, d2, np.inf)
    nb = np.broadcast_to(np.arange(n, dtype=np.int64), (n, n))
    return _select(d2, np.broadcast_to(p, (n, n)), nb, k)


def _tree_coords(c: np.ndarray, wrap_phi: bool) -> tuple[np.ndarray, np.ndarray | None]:
    if not wrap_phi:
        return c, None
    t = c + _OFFSET
    t[:, 1] = np.mod(c[:, 1], 1.0)
    t[:, 1] = np.where(t[:, 1] >= 1.0, 0.0, t[:, 1])  # mod can round up to exactly 1.0
    return t, np.array([_BOX, 1.0, _BOX])


def knn_later(
    coords: np.ndarray,
    pos: np.ndarray,
    k: int,
    *,
    strict_r: bool = True,
    wrap_phi: bool = True,
    shell_size: int = _SHELL_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """Fast k nearest later neighbours; same contract and results as :func:`knn_later_ref`.

    Requires every candidate of i to come after i in (r, pos) order: true with ``strict_r``, and
    in compat mode where ``pos`` is the r-sorted order. Otherwise one shell (a single tree) is used.
    """
    c, p = _check(coords, pos, k)
    n = len(c)
    idx_out = np.full((n, k), -1, dtype=np.int64)
    dist_out = np.full((n, k), np.inf)
    if n < 2:
        return idx_out, dist_out
    srt = np.lexsort((p, c[:, 2]))  # by r, then pos
    if not strict_r and np.any(np.diff(p[srt]) < 0):
        shell_size = n  # candidates may precede i in r order: search everything
    tc, box = _tree_coords(c, wrap_phi)
    r = c[:, 2]
    for start in range(0, n, shell_size):
        q = srt[start : start + shell_size]  # query points of this shell
        pts = srt[start:]  # every candidate of q lies here
        tree = cKDTree(tc[pts], boxsize=box, balanced_tree=False, compact_nodes=False)
        todo = np.arange(len(q))
        kk = min(len(pts), 4 * k)
        while len(todo):
            qi = q[todo]
            dt, loc = tree.query(tc[qi], k=kk)
            dt = dt.reshape(len(qi), kk)
            nb = pts[loc.reshape(len(qi), kk)]
            valid = p[nb] > p[qi, None]
            if strict_r:
                valid &= r[nb] > r[qi, None]
            d2 = np.where(valid, _sqdist(c[qi, None, :], c[nb], wrap_phi), np.inf)
            idx, dist = _select(d2, p[nb], nb, k)
            if kk >= len(pts):
                done = np.ones(len(qi), dtype=bool)
            else:
                bound = (dt[:, -1] * _SAFETY) ** 2
                done = np.count_nonzero(d2 < bound[:, None], axis=1) >= k
            idx_out[qi[done]] = idx[done]
            dist_out[qi[done]] = dist[done]
            todo = todo[~done]
            if len(todo) and kk * 4 >= len(pts) // 2:
                kk = len(pts)  # cheaper to take the whole shell than to query again
            else:
                kk = min(len(pts), kk * 4)
    return idx_out, dist_out
