"""k nearest *later* neighbours of every hit: the targets of the k-NNN objective (SPEC §5.1, §4.4).

For point i a candidate j satisfies ``pos[j] > pos[i]`` (later in the sequence) and, with
``strict_r``, ``r[j] > r[i]`` (fixed mode, SPEC §4.4). Distances are Euclidean in normalised
(η_n, φ_n, r_n); with ``wrap_phi`` the φ difference is wrapped, Δφ ← Δφ − round(Δφ). Neighbours
are ordered by (squared distance, sequence position), so ties are deterministic.

Two implementations with identical results (same float64 distance formula, same sort keys):

- :func:`knn_later_ref`: the dense N×N reference (kept for tests and benchmarks).
- :func:`knn_later`: blocks of consecutive sequence positions. Hits later than the whole block (in
  pos and r) are candidates of every query and go into a ``scipy.spatial.cKDTree`` (φ rotated so
  the block's arc sits opposite the seam) queried for k + 2; hits that are candidates of only some
  queries are pruned by a bounding-box test and checked densely. Rows whose k-th pick reaches the
  tree's horizon are redone densely, so the result is exact.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

_SAFETY = 1.0 - 1e-7  # margin between cKDTree's distances and our keys (quantised at 2^-28)
_KEY_BITS = 24  # low bits of the d² key that hold the sequence position (pos < 2^24)
_INVALID = np.iinfo(np.int64).max
_BLOCK = 128  # queries per block (measured at 1,000 hits: 64–256 within 20 %)


def _sqdist(cols: tuple[np.ndarray, ...], i: np.ndarray, j: np.ndarray, wrap_phi: bool) -> np.ndarray:
    """Squared distances between hits ``i`` (m, 1) and ``j`` (m, c), float64, (m, c).

    ``cols`` = (η_n, φ_n, r_n) as contiguous float64 arrays. One explicit formula, evaluated in the
    same order by both implementations, so their distances agree bit for bit."""
    eta, phi, r = cols
    de = eta[j] - eta[i]
    dp = phi[j] - phi[i]
    if wrap_phi:
        dp -= np.round(dp)  # SPEC §4.4: φ_n = 0 and 1 are the same direction
    dr = r[j] - r[i]
    out: np.ndarray = de * de + dp * dp + dr * dr
    return out


def _check(coords: np.ndarray, pos: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    c = np.ascontiguousarray(coords, dtype=np.float64)
    p = np.ascontiguousarray(pos, dtype=np.int64)
    if c.ndim != 2 or c.shape[1] != 3 or p.shape != (len(c),):
        raise ValueError(f"knn: coords must be (n, 3) and pos (n,), got {c.shape} and {p.shape}")
    if k <= 0:
        raise ValueError(f"knn: k must be > 0, got {k}")
    if len(p) and (p.min() < 0 or p.max() >= 1 << _KEY_BITS):
        raise ValueError(f"knn: positions must lie in [0, 2^{_KEY_BITS})")
    return c, p


def _keys(d2: np.ndarray, pos_nb: np.ndarray) -> np.ndarray:
    """Sort keys (int64) encoding (d², pos): the bit pattern of a non-negative float64 is monotone;
    its low ``_KEY_BITS`` bits make room for the position (ties within 2^-28 relative break by pos)."""
    bits = np.ascontiguousarray(d2, dtype=np.float64).view(np.int64)
    keys = ((bits >> _KEY_BITS) << _KEY_BITS) | pos_nb
    return np.where(np.isfinite(d2), keys, _INVALID)


def _select(d2: np.ndarray, pos_nb: np.ndarray, nb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k smallest (d², pos) among columns; invalid entries carry d² = inf.

    (m, c) arrays → (idx (m, k) int64 with -1 where missing, d² (m, k) float64 with inf)."""
    m, c = d2.shape
    keys = _keys(d2, pos_nb)
    if c > k:
        part = np.argpartition(keys, k - 1, axis=1)[:, :k]
        keys = np.take_along_axis(keys, part, axis=1)
        nb = np.take_along_axis(nb, part, axis=1)
        d2 = np.take_along_axis(d2, part, axis=1)
    order = np.argsort(keys, axis=1)
    d2s = np.take_along_axis(d2, order, axis=1)
    idx = np.take_along_axis(nb, order, axis=1)
    if c < k:
        d2s = np.concatenate([d2s, np.full((m, k - c), np.inf)], axis=1)
        idx = np.concatenate([idx, np.full((m, k - c), -1, dtype=np.int64)], axis=1)
    return np.where(np.isfinite(d2s), idx, -1), d2s


def knn_later_ref(
    coords: np.ndarray, pos: np.ndarray, k: int, *, strict_r: bool = True, wrap_phi: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Dense reference. coords (n, 3) = (η_n, φ_n, r_n); pos (n,) sequence positions (unique).

    Returns (idx (n, k) int64 indices into ``coords``, -1 where fewer than k candidates exist;
    dist (n, k) float64, inf where missing), each row sorted by (distance, pos)."""
    c, p = _check(coords, pos, k)
    n = len(c)
    cols = (c[:, 0].copy(), c[:, 1].copy(), c[:, 2].copy())
    ar = np.arange(n)
    d2 = _sqdist(cols, ar[:, None], ar[None, :], wrap_phi)
    valid = p[None, :] > p[:, None]
    if strict_r:
        valid &= c[None, :, 2] > c[:, None, 2]
    d2 = np.where(valid, d2, np.inf)
    nb = np.broadcast_to(np.arange(n, dtype=np.int64), (n, n))
    idx, d2s = _select(d2, np.broadcast_to(p, (n, n)), nb, k)
    return idx, np.sqrt(d2s)


def _phi_arc(phi_q: np.ndarray) -> tuple[float, float]:
    """Shortest arc (start, width) of the φ_n ring covering all of ``phi_q``."""
    ring = np.sort(np.mod(phi_q, 1.0))
    gaps = np.diff(np.append(ring, ring[0] + 1.0))
    a = int(np.argmax(gaps))
    return float(ring[(a + 1) % len(ring)]), float(1.0 - gaps[a])


def _box_dist2(cols: tuple[np.ndarray, ...], q: np.ndarray, j: np.ndarray, wrap_phi: bool) -> np.ndarray:
    """Lower bound of the squared distance from hits ``j`` (m,) to every query ``q``: distance to
    the queries' bounding box, with φ's box the shortest arc covering them on the ring. (m,)."""
    out = np.zeros(len(j))
    for dim, col in enumerate(cols):
        x, xq = col[j], col[q]
        if dim == 1 and wrap_phi:
            start, width = _phi_arc(xq)
            t = np.mod(x - start, 1.0)
            d = np.where(t <= width, 0.0, np.minimum(t - width, 1.0 - t))
        else:
            d = np.maximum(0.0, np.maximum(xq.min() - x, x - xq.max()))
        out += d * d
    return out * _SAFETY


def knn_later(
    coords: np.ndarray,
    pos: np.ndarray,
    k: int,
    *,
    strict_r: bool = True,
    wrap_phi: bool = True,
    block: int = _BLOCK,
) -> tuple[np.ndarray, np.ndarray]:
    """Fast k nearest later neighbours; same contract and results as :func:`knn_later_ref`.

    Queries are processed in blocks of ``block`` consecutive sequence positions, [p0, p1] with radii
    [r0, r1]. Hits with pos > p1 (and r > r1) are candidates of every query: their k + 2 nearest come
    from a cKDTree. Other candidates (p0 < pos, r > r0) beyond every query's k-th tree distance are
    dropped by a box test; the rest are checked densely. Measured speed: benchmarks/bench_knn.py.
    """
    c, p = _check(coords, pos, k)
    n = len(c)
    idx_out = np.full((n, k), -1, dtype=np.int64)
    dist_out = np.full((n, k), np.inf)
    if n < 2:
        return idx_out, dist_out
    seq = np.argsort(p)
    cols = (c[:, 0].copy(), c[:, 1].copy(), c[:, 2].copy())
    r = cols[2]
    kq = k + 2  # two spare tree neighbours absorb ties at the boundary
    for start in range(0, n, block):
        q = seq[start : start + block]
        qc = q[:, None]
        p0, p1 = p[q[0]], p[q[-1]]
        maybe = p > p0
        sure = p > p1
        if strict_r:
            rq = r[q]
            maybe &= r > rq.min()
            sure &= r > rq.max()
        # hits that are candidates of every query: the kq nearest from a tree suffice
        s_pts = np.flatnonzero(sure)
        bound = np.full(len(q), np.inf)
        reach2 = np.inf  # no query's k-th neighbour lies farther than this (squared)
        if len(s_pts) > kq:
            # non-periodic tree in φ' = φ seen from the queries' arc centre: plain and wrapped
            # distances agree within 0.5 − |φ'_q − 0.5| of each query (checked in ``bound``)
            tq, ts = c[q].copy(), c[s_pts].copy()
            if wrap_phi:
                arc0, width = _phi_arc(cols[1][q])
                shift = 0.5 - (arc0 + 0.5 * width)
                tq[:, 1] = np.mod(tq[:, 1] + shift, 1.0)
                ts[:, 1] = np.mod(ts[:, 1] + shift, 1.0)
            tree = cKDTree(ts, balanced_tree=False, compact_nodes=False)
            dt, loc = tree.query(tq, k=kq)
            dt = dt.reshape(len(q), kq)
            s_nb = s_pts[loc.reshape(len(q), kq)]
            horizon = dt[:, -1]
            if wrap_phi:
                horizon = np.minimum(horizon, 0.5 - np.abs(tq[:, 1] - 0.5))
            bound = (horizon * _SAFETY) ** 2
            reach2 = float(dt[:, k - 1].max()) ** 2 / _SAFETY**2
        else:
            s_nb = np.broadcast_to(s_pts, (len(q), len(s_pts)))
        # hits that are candidates of some queries only: prune those beyond every query's reach,
        # then check validity densely
        u_pts = np.flatnonzero(maybe & ~sure)
        if np.isfinite(reach2) and len(u_pts):
            u_pts = u_pts[_box_dist2(cols, q, u_pts, wrap_phi) <= reach2]
        u_nb = u_pts[None, :]
        valid = p[u_nb] > p[qc]
        if strict_r:
            valid &= r[u_nb] > r[qc]
        d2_parts = [
            np.where(valid, _sqdist(cols, qc, u_nb, wrap_phi), np.inf),
            _sqdist(cols, qc, s_nb, wrap_phi),
        ]
        nb_parts = [np.broadcast_to(u_nb, valid.shape), s_nb]
        nb = np.concatenate(nb_parts, axis=1)
        idx, d2k = _select(np.concatenate(d2_parts, axis=1), p[nb], nb, k)
        # exact unless the k-th pick reaches the tree's horizon (then unseen tree hits may tie/beat it)
        bad = np.isfinite(bound) & ~(d2k[:, -1] < bound)
        if np.any(bad):  # redo these rows densely over all their candidates
            qb = q[bad][:, None]
            nb_b = np.flatnonzero(maybe)[None, :]
            valid = p[nb_b] > p[qb]
            if strict_r:
                valid &= r[nb_b] > r[qb]
            d2b = np.where(valid, _sqdist(cols, qb, nb_b, wrap_phi), np.inf)
            idx[bad], d2k[bad] = _select(d2b, p[nb_b], np.broadcast_to(nb_b, d2b.shape), k)
        idx_out[q] = idx
        dist_out[q] = np.sqrt(d2k)
    return idx_out, dist_out
