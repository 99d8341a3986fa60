"""k nearest *later* neighbours of every hit: the targets of the k-NNN objective (SPEC §5.1, §4.4).

For point i a candidate j satisfies ``pos[j] > pos[i]`` (later in the sequence) and, with
``strict_r``, ``r[j] > r[i]`` (fixed mode, SPEC §4.4). Distances are Euclidean in normalised
(η_n, φ_n, r_n); with ``wrap_phi`` the φ difference is wrapped, Δφ ← Δφ − round(Δφ). Neighbours
are ordered by (squared distance, sequence position), so ties are deterministic.

Two implementations with identical results (same float64 distance formula, same sort keys):

- :func:`knn_later_ref`: the dense N×N reference (kept for tests and benchmarks; also the fallback
  of :func:`knn_later` when numba is missing).
- :func:`knn_later`: a numba kernel (:func:`_kernel`, compiled once and cached on disk). Hits are
  sorted by r and cut into slabs, each slab sorted by φ; a query visits slabs outward in r, stops
  once the r gap alone exceeds its current k-th key and reads only the φ window that can still
  beat it. Pruning is conservative in float64, so the result is exact, not approximate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

_F = TypeVar("_F", bound=Callable[..., Any])

try:
    from numba import njit

    _HAVE_NUMBA = True
except ImportError:  # pragma: no cover - numba is a dependency; without it knn_later is the dense path
    _HAVE_NUMBA = False

    def njit(*_args: object, **_kwargs: object) -> Callable[[_F], _F]:  # type: ignore[no-redef]
        return lambda f: f


_KEY_BITS = 24  # low bits of the d² key that hold the sequence position (pos < 2^24)
_INVALID = np.iinfo(np.int64).max
_LOW = (1 << _KEY_BITS) - 1
_BLOCK = 128  # default of knn_later's ``block``: kept for the signature, unused by the kernel
_SLAB = 128  # hits per r slab (measured at 500–2,000 hits, k = 30: 64–256 within 10 %)
_NBIN = 32  # φ bins per slab for the window lookup (16–64 within 5 %)
_CAP = 1.5  # first-pass cap / previous query's k-th d² (1.25–2 within 5 %; a miss costs a re-run)


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


@njit(cache=True, nogil=True)
def _scan(
    u0: int,
    u1: int,
    lay: tuple[np.ndarray, ...],
    q: tuple[float, float, float, int],
    strict_r: bool,
    wrap_phi: bool,
    buf: np.ndarray,
    cnt: int,
    cap: int | np.int64,
    tmp: np.ndarray,
) -> int:
    """Offer layout slots u0..u1-1 to query ``q`` = (η, φ, r, pos rank); returns the new count.

    ``buf`` (k,) holds the ``cnt`` best keys in ascending order: the float64 bits of d² with the
    low ``_KEY_BITS`` replaced by the pos rank (the order of :func:`_keys`, ties broken by pos);
    keys ≥ ``cap`` are dropped. ``tmp`` (≥ u1 - u0,) is scratch."""
    se, sf, sr, sp = lay
    ei, fi, ri, pi = q
    k = buf.shape[0]
    # pass 1, branch-free (vectorisable): every key, invalid candidates set to cap
    for u in range(u0, u1):
        pj = sp[u]
        de = se[u] - ei
        dp = sf[u] - fi
        if wrap_phi:
            dp -= np.rint(dp)  # SPEC §4.4; rint = numpy's round (half to even)
        dr = sr[u] - ri
        d2 = de * de + dp * dp + dr * dr  # the formula and order of _sqdist
        key = (np.int64(np.float64(d2).view(np.int64)) & ~_LOW) | pj
        ok = (pj > pi) & ((not strict_r) | (sr[u] > ri))
        tmp[u - u0] = key if ok else cap
    # pass 2: the few keys that beat the current k-th go into the buffer by insertion
    for t in range(u1 - u0):
        key = tmp[t]
        if key >= (buf[k - 1] if cnt == k else cap):
            continue
        m = cnt if cnt < k else k - 1
        while m > 0 and buf[m - 1] > key:
            buf[m] = buf[m - 1]
            m -= 1
        buf[m] = key
        if cnt < k:
            cnt += 1
    return cnt


@njit(cache=True, nogil=True)
def _bin(x: float, f0: float, scale: float, nb: int) -> int:
    """φ bin of ``x``, clipped to 0..nb-1; monotone in x, so bin ranges are conservative."""
    return int(min(max(np.floor((x - f0) * scale), 0.0), nb - 1.0))


@njit(cache=True, nogil=True)
def _kernel(
    lay: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    sfk: np.ndarray,
    perm: np.ndarray,
    slot: np.ndarray,
    k: int,
    strict_r: bool,
    wrap_phi: bool,
    slab: int,
    row: np.ndarray,
    tgt: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(idx (n, k) int64, -1 where missing; d² (n, k) float64, inf where missing) when ``row`` is
    empty; otherwise the k-NNN targets directly in output order (``idx``/``d²`` then empty):
    ``targets`` (n, k, 3) float32 = ``tgt`` (n, 3) of each neighbour hit, 0 where missing; ``mask``
    (n, k) bool; ``nbr`` (n, k) int64 = ``row`` of each neighbour hit, -1 where missing — all in rows
    ``row[i]`` for hit i (row = hit → sequence position; :func:`knn_targets`).

    Inputs from :func:`_layout`: ``lay`` = (η, φ, r, pos rank) per layout slot, ``sfk`` the φ sort
    key per slot, ``perm`` slot → hit, ``slot`` pos rank → slot (all (n,)). Layout: hits sorted by
    r, cut into slabs of ``slab`` hits, each slab sorted by φ (mod 1 with wrapping). A query visits
    slabs outward in r (upward only with ``strict_r``), stops once the slab's r gap alone gives a
    key above the k-th best, and inside a slab reads only the φ bins of the window that can still
    beat it. Both bounds are conservative (d² ≥ Δφ² + Δr² in float64 up to the margins below), so
    the result equals the dense reference. Queries run in layout order and first drop keys above
    ``_CAP`` × the previous query's k-th d² (neighbours in r and φ): exact whenever k keys
    survive, otherwise the query is redone uncapped."""
    n = sfk.shape[0]
    nslab = (n + slab - 1) // slab
    sr = lay[2]
    nb = _NBIN
    f0, scale = 0.0, float(nb)  # wrapped: fkey in [0, 1]
    if not wrap_phi and n > 0:
        f0, span = sfk.min(), sfk.max() - sfk.min()
        scale = nb / span if span > 0 else 0.0
    start = np.empty((nslab, nb + 1), np.int64)  # start[b, j] = first slot of slab b in bin ≥ j
    for b in range(nslab):
        u0, u1 = b * slab, min(n, (b + 1) * slab)
        u = u0
        for j in range(nb + 1):
            while u < u1 and _bin(sfk[u], f0, scale, nb) < j:
                u += 1
            start[b, j] = u
    rlo = np.empty(nslab)
    rhi = np.empty(nslab)
    for b in range(nslab):
        rlo[b] = sr[b * slab : min(n, (b + 1) * slab)].min()
        rhi[b] = sr[b * slab : min(n, (b + 1) * slab)].max()
    full = row.shape[0] == 0
    idx_out = np.full((n if full else 0, k), -1, np.int64)
    d2_out = np.full((n if full else 0, k), np.inf)
    nt = 0 if full else n
    targets = np.zeros((nt, k, 3), np.float32)
    mask = np.zeros((nt, k), np.bool_)
    nbr = np.full((nt, k), -1, np.int64)
    buf = np.empty(k, np.int64)
    tmp = np.empty(slab, np.int64)
    big = np.iinfo(np.int64).max
    guess = np.inf  # the previous query's k-th d²
    for v in range(n):
        q = (lay[0][v], lay[1][v], lay[2][v], lay[3][v])
        fki = sfk[v]
        b0 = v // slab
        cap0 = np.int64(np.float64(_CAP * guess).view(np.int64)) if guess < np.inf else big
        for cap in (cap0, big):
            cnt = 0
            for direction in range(1 if strict_r else 2):
                b, step = (b0, 1) if direction == 0 else (b0 - 1, -1)
                while 0 <= b < nslab:
                    u0, u1 = b * slab, min(n, (b + 1) * slab)
                    gap = 0.0 if b == b0 else (rlo[b] - q[2] if step > 0 else q[2] - rhi[b])
                    sb = start[b]
                    b += step
                    lim = buf[k - 1] if cnt == k else cap
                    if lim == big:
                        cnt = _scan(u0, u1, lay, q, strict_r, wrap_phi, buf, cnt, cap, tmp)
                        continue
                    g2 = gap * gap  # = Δr² of this slab's nearest hit (subtraction is monotone)
                    if (np.int64(np.float64(g2).view(np.int64)) & ~_LOW) > lim:
                        break  # this and every further slab only hold larger keys
                    # the smallest d² whose key exceeds lim; a wider |Δφ| cannot beat it
                    top = np.int64(((lim >> _KEY_BITS) + 1) << _KEY_BITS).view(np.float64)
                    w = np.sqrt(max(top - g2, 0.0) + 1e-12 * top) * (1 + 1e-9) + 1e-9
                    if not w < (0.5 if wrap_phi else np.inf):  # (NaN: overflowing input)
                        cnt = _scan(u0, u1, lay, q, strict_r, wrap_phi, buf, cnt, cap, tmp)
                        continue
                    lo, hi = sb[_bin(fki - w, f0, scale, nb)], sb[_bin(fki + w, f0, scale, nb) + 1]
                    cnt = _scan(lo, hi, lay, q, strict_r, wrap_phi, buf, cnt, cap, tmp)
                    if wrap_phi and fki - w < 0.0:  # the window crosses the seam
                        lo = max(hi, sb[_bin(fki - w + 1.0, f0, scale, nb)])
                        cnt = _scan(lo, u1, lay, q, strict_r, wrap_phi, buf, cnt, cap, tmp)
                    if wrap_phi and fki + w >= 1.0:
                        hi = min(lo, sb[_bin(fki + w - 1.0, f0, scale, nb) + 1])
                        cnt = _scan(u0, hi, lay, q, strict_r, wrap_phi, buf, cnt, cap, tmp)
            if cnt == k or cap == big:
                break
        guess = np.int64(buf[k - 1] & ~_LOW).view(np.float64) if cnt == k else np.inf
        i = perm[v]
        if not full:  # fused target assembly (SPEC §5.1), rows in sequence order
            ri_ = row[i]
            for m in range(cnt):
                j = perm[slot[buf[m] & _LOW]]
                targets[ri_, m, 0] = tgt[j, 0]
                targets[ri_, m, 1] = tgt[j, 1]
                targets[ri_, m, 2] = tgt[j, 2]
                mask[ri_, m] = True
                nbr[ri_, m] = row[j]
            continue
        for m in range(cnt):
            u = slot[buf[m] & _LOW]
            de = lay[0][u] - q[0]
            dp = lay[1][u] - q[1]
            if wrap_phi:
                dp -= np.rint(dp)
            dr = lay[2][u] - q[2]
            idx_out[i, m] = perm[u]
            d2_out[i, m] = de * de + dp * dp + dr * dr
    return idx_out, d2_out, targets, mask, nbr


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

    The numba kernel :func:`_kernel` (compiled once, cached on disk); without numba, the dense
    reference. ``block`` is accepted for compatibility and unused. Speed: benchmarks/bench_knn.py."""
    del block
    if not _HAVE_NUMBA:
        return knn_later_ref(coords, pos, k, strict_r=strict_r, wrap_phi=wrap_phi)
    c, p = _check(coords, pos, k)
    lay, sfk, perm, slot = _layout(c, p, wrap_phi, _SLAB)
    none_i, none_f = np.zeros(0, np.int64), np.zeros((0, 3), np.float32)
    idx, d2, _, _, _ = _kernel(
        lay, sfk, perm, slot, k, bool(strict_r), bool(wrap_phi), _SLAB, none_i, none_f
    )
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
    lay, sfk, perm, slot = _layout(c, p, wrap_phi, _SLAB)
    _, _, targets, mask, nbr = _kernel(
        lay, sfk, perm, slot, k, bool(strict_r), bool(wrap_phi), _SLAB, row, tgt
    )
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


def _layout(
    c: np.ndarray, p: np.ndarray, wrap_phi: bool, slab: int
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Slab layout for :func:`_kernel` (sorting here, in numpy, keeps numba's compile time short).

    c (n, 3), p (n,) → ((η, φ, r, pos rank) per slot, φ key per slot, slot → hit, pos rank → slot).
    Pos ranks order like pos (unique), fit the key's low bits for any n < 2^24 and index ``slot``."""
    n = len(c)
    fkey = np.mod(c[:, 1], 1.0) if wrap_phi else c[:, 1].copy()
    order = np.argsort(c[:, 2], kind="stable")  # by r; ties in any order would do
    perm = order[np.lexsort((fkey[order], np.arange(n) // slab))]  # slabs of r, each by φ
    prank = np.empty(n, dtype=np.int64)
    prank[np.argsort(p)] = np.arange(n)
    slot = np.empty(n, dtype=np.int64)
    slot[prank[perm]] = np.arange(n)
    lay = (c[perm, 0].copy(), c[perm, 1].copy(), c[perm, 2].copy(), prank[perm])
    return lay, fkey[perm], perm.astype(np.int64), slot
