"""k nearest *later* neighbours of every hit: the targets of the k-NNN objective (SPEC §5.1, §4.4).

For point i a candidate j satisfies ``pos[j] > pos[i]`` (later in the sequence) and, with
``strict_r``, ``r[j] > r[i]`` (fixed mode, SPEC §4.4). Distances are Euclidean in normalised
(η_n, φ_n, r_n); with ``wrap_phi`` the φ difference is wrapped, Δφ ← Δφ − round(Δφ). Neighbours
are ordered by (squared distance, sequence position), so ties are deterministic.

Two implementations with identical results (same float64 distance formula, same sort keys):

- :func:`knn_later_ref`: the dense N×N reference (kept for tests and benchmarks; also the fallback
  of :func:`knn_later` when numba is missing).
- :func:`knn_later` / :func:`knn_targets`: the numba search of :mod:`fm4npp.data.knn_numba`
  (compiled once, cached on disk): r slabs grouped by φ bin, conservative float64 pruning, so the result
  is exact, not approximate."""

from __future__ import annotations

import numpy as np

try:
    from fm4npp.data import knn_numba

    _HAVE_NUMBA = True
except ImportError:  # pragma: no cover - numba is a dependency; without it knn_later is the dense path
    _HAVE_NUMBA = False

_KEY_BITS = 24  # low bits of the d² key that hold the sequence position (= knn_numba.KEY_BITS)
_INVALID = np.iinfo(np.int64).max
_BLOCK = 128  # default of knn_later's ``block``: kept for the signature, unused by the kernel


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

    The numba search :func:`fm4npp.data.knn_numba.search` (compiled once, cached on disk); without
    numba, the dense reference. ``block`` is accepted for compatibility and unused. Speed:
    benchmarks/bench_knn.py."""
    del block
    if not _HAVE_NUMBA:
        return knn_later_ref(coords, pos, k, strict_r=strict_r, wrap_phi=wrap_phi)
    c, p = _check(coords, pos, k)
    none_i, none_f = np.zeros(0, np.int64), np.zeros((0, 3), np.float32)
    idx, d2, _, _, _ = knn_numba.search(c, p, k, bool(strict_r), bool(wrap_phi), none_i, none_f)
    return idx, np.sqrt(d2)


def knn_targets(
    coords: np.ndarray,
    pos: np.ndarray,
    k: int,
    row: np.ndarray,
    tgt: np.ndarray,
    *,
    strict_r: bool = True,
    wrap_phi: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k-NNN targets in output order, fused into the search (no (n, k) index round trip).

    ``coords``/``pos`` as in :func:`knn_later`; ``row`` (n,) int64 a permutation (hit → output row,
    e.g. the sequence position); ``tgt`` (n, 3) float32 the values a neighbour contributes. Returns
    (targets (n, k, 3) float32, 0 where missing; mask (n, k) bool; nbr (n, k) int64 = ``row`` of the
    neighbour, -1 where missing), row r describing the hit with ``row`` = r. Equal to
    :func:`knn_targets_ref` (the numpy assembly on :func:`knn_later_ref`)."""
    row = np.ascontiguousarray(row, dtype=np.int64)
    tgt = np.ascontiguousarray(tgt, dtype=np.float32)
    if not _HAVE_NUMBA:
        return knn_targets_ref(coords, pos, k, row, tgt, strict_r=strict_r, wrap_phi=wrap_phi)
    c, p = _check(coords, pos, k)
    if row.shape != (len(c),) or tgt.shape != (len(c), 3):
        raise ValueError(f"knn: row must be (n,) and tgt (n, 3), got {row.shape} and {tgt.shape}")
    _, _, targets, mask, nbr = knn_numba.search(c, p, k, bool(strict_r), bool(wrap_phi), row, tgt)
    return targets, mask, nbr


def assemble_targets(
    nb: np.ndarray, row: np.ndarray, tgt: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference assembly (numpy): neighbour hit indices ``nb`` (n, k), -1 missing, → (targets, mask,
    nbr) in output rows, as :func:`knn_targets` returns them."""
    n = len(row)
    order = np.empty(n, dtype=np.int64)
    order[row] = np.arange(n)  # output row → hit
    nb_rows = nb[order]
    mask = nb_rows >= 0
    safe = np.where(mask, nb_rows, 0)
    targets = np.where(mask[..., None], tgt[safe], 0.0).astype(np.float32)
    return targets, mask, np.where(mask, row[safe], -1)


def knn_targets_ref(
    coords: np.ndarray,
    pos: np.ndarray,
    k: int,
    row: np.ndarray,
    tgt: np.ndarray,
    *,
    strict_r: bool = True,
    wrap_phi: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense reference of :func:`knn_targets`."""
    nb, _ = knn_later_ref(coords, pos, k, strict_r=strict_r, wrap_phi=wrap_phi)
    return assemble_targets(nb, np.asarray(row, np.int64), np.asarray(tgt, np.float32))
