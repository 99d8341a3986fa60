"""The numba search behind :func:`fm4npp.data.knn.knn_later` and :func:`~fm4npp.data.knn.knn_targets`.

Layout (:func:`layout`, two counting sorts): hits bucketed by r into slabs of ``SLAB`` hits, each
slab grouped by φ bin (φ mod 1 with wrapping). A query visits slabs outward in r (upward only with
``strict_r``), skips slabs without a later hit, stops once the r gap alone gives a key above its
current k-th and, inside a slab, reads only the φ bins of the window that can still beat it. All
bounds are conservative in float64 (d² ≥ Δφ² + Δr² up to the margins below) and hold for any
grouping: slab r ranges are the exact min/max of their hits, and the stopping tests use running
extremes, so the result equals the dense reference exactly. Inputs the bounds do not cover
(non-finite η or r, |φ| > ``_PHI_MAX``) are searched without pruning.

Each candidate's key is the float64 bit pattern of d² with the low ``KEY_BITS`` replaced by its
sequence-position rank, so one int64 comparison orders by (d², position) as the reference does
(:func:`fm4npp.data.knn._keys`). Keys of a whole φ window are computed branch-free (vectorised),
those below the current k-th are compacted, then inserted into a sorted buffer.

Speed notes (issue 13; benchmarks/bench_serialize.py, A/B on the same events): helpers are inlined
(a numba call per window refcounts every array argument: −10 %), indices are unsigned in the hot
loop (numba's negative-index wraparound kept it from vectorising: −12 %), the compaction step
(−5 %), and the layout is two O(n) counting sorts (numba's argsort took 0.1 ms per event).
"""

from __future__ import annotations

import numpy as np
from numba import njit

KEY_BITS = 24  # low bits of the d² key that hold the sequence-position rank (n < 2^24)
_LOW = (1 << KEY_BITS) - 1
_BIG = np.iinfo(np.int64).max
SLAB = 128  # hits per r slab (measured at 500–2,000 hits, k = 30: 64–256 within 10 %)
NBIN = 32  # φ bins per slab for the window lookup (16–64 within 5 %)
_CAP = 1.5  # first-pass cap / previous query's k-th d² (1.2–2 within 5 %; a miss costs a re-run)
_PHI_MAX = 8.0  # beyond this |φ| the float64 window margins are not proven: no φ pruning


@njit(cache=True, nogil=True, inline="always")
def _bin(x: float, f0: float, scale: float, nb: int) -> int:
    """φ bin of ``x``, clipped to 0..nb-1; monotone in x, so bin ranges are conservative."""
    return int(min(max(np.floor((x - f0) * scale), 0.0), nb - 1.0))


@njit(cache=True, nogil=True)
def _counting_order(bucket: np.ndarray, nbucket: int, items: np.ndarray) -> np.ndarray:
    """``items`` stably ordered by ``bucket[item]`` (0..nbucket-1)."""
    count = np.zeros(nbucket + 1, np.int64)
    for i in items:
        count[bucket[i] + 1] += 1
    for b in range(nbucket):
        count[b + 1] += count[b]
    out = np.empty(len(items), np.int64)
    for i in items:
        out[count[bucket[i]]] = i
        count[bucket[i]] += 1
    return out


@njit(cache=True, nogil=True)
def layout(
    c: np.ndarray, p: np.ndarray, wrap_phi: bool, slab: int, nbin: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """c (n, 3) float64, p (n,) int64 unique → (``lay`` (4, n): η, φ, r, φ key per slot; pos rank
    per slot; slot → hit; pos rank → slot; ``start`` (nslab, nbin + 1): first slot of slab b in φ
    bin ≥ j; ``phi_bins`` = (f0, scale) of :func:`_bin`; ``prunable``).

    Pos ranks order like pos, fit the key's low bits for any n < 2^24 and index the slot array.
    ``prunable``: the window bounds hold (finite η and r, |φ| ≤ ``_PHI_MAX``)."""
    n = c.shape[0]
    prunable = True
    for i in range(n):
        if not (np.isfinite(c[i, 0]) and np.isfinite(c[i, 2]) and abs(c[i, 1]) <= _PHI_MAX):
            prunable = False
    fkey = np.zeros(n)
    rbin = np.zeros(n, np.int64)
    f0, fscale = 0.0, float(nbin)  # wrapped: φ key in [0, 1]
    if prunable and n > 0:
        for i in range(n):
            fkey[i] = c[i, 1] - np.floor(c[i, 1]) if wrap_phi else c[i, 1]
        if not wrap_phi:
            f0, span = fkey.min(), fkey.max() - fkey.min()
            fscale = nbin / span if span > 0 else 0.0
        r0, rspan = c[:, 2].min(), c[:, 2].max() - c[:, 2].min()
        rscale = n / rspan if rspan > 0 else 0.0  # ≈ one hit per r bucket
        for i in range(n):
            rbin[i] = _bin(c[i, 2], r0, rscale, n)
    # pos rank: p itself when it is a permutation of 0..n-1 (the sequence positions)
    prank = np.empty(n, np.int64)
    seen = np.zeros(n, np.bool_)
    is_range = True
    for i in range(n):
        if p[i] < 0 or p[i] >= n or seen[p[i]]:
            is_range = False
            break
        seen[p[i]] = True
        prank[i] = p[i]
    if not is_range:
        prank[np.argsort(p, kind="mergesort")] = np.arange(n)
    # slabs by r (exactly: a strict query only looks upward), then by φ bin inside each slab (the
    # order inside a bin is irrelevant); without pruning the grouping is arbitrary
    by_r = _counting_order(rbin, max(n, 1), np.arange(n))
    if prunable:  # exact r order (insertion sort: only hits of one bucket can be out of order)
        for t in range(1, n):
            i, m = by_r[t], t
            while m > 0 and c[by_r[m - 1], 2] > c[i, 2]:
                by_r[m] = by_r[m - 1]
                m -= 1
            by_r[m] = i
    nslab = (n + slab - 1) // slab
    start = np.empty((nslab, nbin + 1), np.int64)
    fb = np.empty(n, np.int64)
    for i in range(n):
        fb[i] = _bin(fkey[i], f0, fscale, nbin)
    perm = np.empty(n, np.int64)
    for b in range(nslab):
        u0, u1 = b * slab, min(n, (b + 1) * slab)
        perm[u0:u1] = _counting_order(fb, nbin, by_r[u0:u1])
        u = u0
        for j in range(nbin + 1):
            while u < u1 and fb[perm[u]] < j:
                u += 1
            start[b, j] = u
    lay = np.empty((4, n))
    sp, slot = np.empty(n, np.int64), np.empty(n, np.int64)
    for u in range(n):
        i = perm[u]
        lay[0, u], lay[1, u], lay[2, u], lay[3, u] = c[i, 0], c[i, 1], c[i, 2], fkey[i]
        sp[u] = prank[i]
        slot[prank[i]] = u
    return lay, sp, perm, slot, start, np.array([f0, fscale]), prunable


@njit(cache=True, nogil=True, inline="always")
def _scan(
    u0: int,
    u1: int,
    lay: np.ndarray,
    sp: np.ndarray,
    q: tuple[float, float, float, int],
    strict_r: bool,
    wrap_phi: bool,
    buf: np.ndarray,
    cnt: int,
    cap: int | np.int64,
    tmp: np.ndarray,
) -> tuple[int, int | np.int64]:
    """Offer layout slots u0..u1-1 to query ``q`` = (η, φ, r, pos rank); returns (count, limit).

    ``buf`` (k,) holds the ``cnt`` best keys in ascending order; keys ≥ the limit (its k-th key when
    full, else ``cap``) are dropped. ``tmp`` (≥ u1 - u0,) is scratch."""
    ei, fi, ri, pi = q
    k = buf.shape[0]
    # pass 1, branch-free (vectorised): every key, invalid candidates (and d² = inf/NaN) set to max
    for t in range(u1 - u0):
        u = np.uint64(u0 + t)  # unsigned: no negative-index wraparound, so the loop vectorises
        pj = sp[u]
        de = lay[0, u] - ei
        dp = lay[1, u] - fi
        if wrap_phi:
            dp -= np.rint(dp)  # SPEC §4.4; rint = numpy's round (half to even)
        dr = lay[2, u] - ri
        d2 = de * de + dp * dp + dr * dr  # the formula and order of knn._sqdist
        key = (np.int64(np.float64(d2).view(np.int64)) & ~_LOW) | pj
        ok = (pj > pi) & ((not strict_r) | (lay[2, u] > ri)) & (d2 < np.inf)
        tmp[np.uint64(t)] = key if ok else _BIG
    # pass 2: compact the keys below the limit (branch-free), then insert them in order
    lim = buf[k - 1] if cnt == k else cap
    nsel = 0
    for t in range(u1 - u0):
        key = tmp[np.uint64(t)]
        tmp[np.uint64(nsel)] = key
        nsel += key < lim
    for t in range(nsel):
        key = tmp[t]
        if key >= lim:
            continue
        m = cnt if cnt < k else k - 1
        while m > 0 and buf[m - 1] > key:
            buf[m] = buf[m - 1]
            m -= 1
        buf[m] = key
        if cnt < k:
            cnt += 1
        if cnt == k:
            lim = buf[k - 1]
    return cnt, lim


@njit(cache=True, nogil=True)
def kernel(
    lay: np.ndarray,
    sp: np.ndarray,
    perm: np.ndarray,
    slot: np.ndarray,
    start: np.ndarray,
    phi_bins: np.ndarray,
    prunable: bool,
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
    ``row[i]`` for hit i (row = hit → sequence position). With ``tgt`` empty only ``nbr`` is filled
    (``targets``/``mask`` empty): serialization derives them from ``nbr`` where they are used.

    Inputs from :func:`layout`. Queries run in layout order and first drop keys above ``_CAP`` × the
    previous query's k-th d² (neighbours in r and φ): exact whenever k keys survive, otherwise the
    query is redone uncapped."""
    n = sp.shape[0]
    nslab = (n + slab - 1) // slab
    nb = start.shape[1] - 1
    sr, sfk = lay[2], lay[3]
    f0, scale = phi_bins[0], phi_bins[1]
    # per slab: r range and latest position; running extremes make every stopping test exact
    # whatever the grouping (rlo_up: min r of slabs ≥ b; rhi_dn: max r of slabs ≤ b; same for pos)
    rlo_up, rhi_dn = np.empty(nslab), np.empty(nslab)
    pmax = np.empty(nslab, np.int64)
    pmax_up, pmax_dn = np.empty(nslab, np.int64), np.empty(nslab, np.int64)
    for b in range(nslab):
        u0, u1 = b * slab, min(n, (b + 1) * slab)
        rlo_up[b], rhi_dn[b], pmax[b] = sr[u0:u1].min(), sr[u0:u1].max(), sp[u0:u1].max()
        pmax_up[b], pmax_dn[b] = pmax[b], pmax[b]
    for b in range(1, nslab):
        rhi_dn[b] = max(rhi_dn[b], rhi_dn[b - 1])
        pmax_dn[b] = max(pmax_dn[b], pmax_dn[b - 1])
    for b in range(nslab - 2, -1, -1):
        rlo_up[b] = min(rlo_up[b], rlo_up[b + 1])
        pmax_up[b] = max(pmax_up[b], pmax_up[b + 1])
    full = row.shape[0] == 0
    idx_out = np.full((n if full else 0, k), -1, np.int64)
    d2_out = np.full((n if full else 0, k), np.inf)
    nt = 0 if full else n
    assemble = not full and tgt.shape[0] > 0
    na = n if assemble else 0
    targets = np.zeros((na, k, 3), np.float32)
    mask = np.zeros((na, k), np.bool_)
    nbr = np.full((nt, k), -1, np.int64)
    buf = np.empty(k, np.int64)
    tmp = np.empty(slab, np.int64)
    wmax = 0.5 if wrap_phi else np.inf
    guess = np.inf  # the previous query's k-th d²
    for v in range(n):
        q = (lay[0, v], lay[1, v], sr[v], sp[v])
        ri, pi, fki = sr[v], sp[v], sfk[v]
        b0 = v // slab
        cap0 = np.int64(np.float64(_CAP * guess).view(np.int64)) if guess < np.inf else _BIG
        cnt = 0
        for cap in (cap0, _BIG):
            cnt = 0
            lim = cap
            for direction in range(1 if strict_r and prunable else 2):
                b, step = (b0, 1) if direction == 0 else (b0 - 1, -1)
                while 0 <= b < nslab:
                    u0, u1 = b * slab, min(n, (b + 1) * slab)
                    if step > 0:
                        gap = 0.0 if b == b0 else max(rlo_up[b] - ri, 0.0)
                        if pmax_up[b] <= pi:
                            break  # no later hit here or above
                    else:
                        gap = max(ri - rhi_dn[b], 0.0)
                        if pmax_dn[b] <= pi:
                            break  # no later hit here or below
                    bb = b
                    b += step
                    if pmax[bb] <= pi:
                        continue
                    if not prunable:
                        cnt, lim = _scan(u0, u1, lay, sp, q, strict_r, wrap_phi, buf, cnt, cap, tmp)
                        continue
                    if lim != _BIG:
                        g2 = gap * gap  # ≤ Δr² of every hit from here on (subtraction is monotone)
                        if (np.int64(np.float64(g2).view(np.int64)) & ~_LOW) > lim:
                            break  # this and every further slab only hold larger keys
                        # the smallest d² whose key exceeds lim; a wider |Δφ| cannot beat it
                        top = np.int64(((lim >> KEY_BITS) + 1) << KEY_BITS).view(np.float64)
                        w = np.sqrt(max(top - g2, 0.0) + 1e-12 * top) * (1 + 1e-9) + 1e-9
                    else:
                        w = np.inf
                    if not w < wmax:  # (NaN: overflowing input)
                        cnt, lim = _scan(u0, u1, lay, sp, q, strict_r, wrap_phi, buf, cnt, cap, tmp)
                        continue
                    lo = start[bb, _bin(fki - w, f0, scale, nb)]
                    hi = start[bb, _bin(fki + w, f0, scale, nb) + 1]
                    cnt, lim = _scan(lo, hi, lay, sp, q, strict_r, wrap_phi, buf, cnt, cap, tmp)
                    if wrap_phi and fki - w < 0.0:  # the window crosses the seam
                        lo = max(hi, start[bb, _bin(fki - w + 1.0, f0, scale, nb)])
                        cnt, lim = _scan(lo, u1, lay, sp, q, strict_r, wrap_phi, buf, cnt, cap, tmp)
                    if wrap_phi and fki + w >= 1.0:
                        hi = min(lo, start[bb, _bin(fki + w - 1.0, f0, scale, nb) + 1])
                        cnt, lim = _scan(u0, hi, lay, sp, q, strict_r, wrap_phi, buf, cnt, cap, tmp)
            if cnt == k or cap == _BIG:
                break
        guess = np.int64(buf[k - 1] & ~_LOW).view(np.float64) if cnt == k else np.inf
        i = perm[v]
        if not full:  # fused target assembly (SPEC §5.1), rows in sequence order
            ri_ = row[i]
            for m in range(cnt):
                j = perm[slot[buf[m] & _LOW]]
                nbr[ri_, m] = row[j]
                if assemble:
                    targets[ri_, m, 0] = tgt[j, 0]
                    targets[ri_, m, 1] = tgt[j, 1]
                    targets[ri_, m, 2] = tgt[j, 2]
                    mask[ri_, m] = True
            continue
        for m in range(cnt):
            u = slot[buf[m] & _LOW]
            de = lay[0, u] - q[0]
            dp = lay[1, u] - q[1]
            if wrap_phi:
                dp -= np.rint(dp)
            dr = lay[2, u] - q[2]
            idx_out[i, m] = perm[u]
            d2_out[i, m] = de * de + dp * dp + dr * dr
    return idx_out, d2_out, targets, mask, nbr


@njit(cache=True, nogil=True)
def search(
    c: np.ndarray,
    p: np.ndarray,
    k: int,
    strict_r: bool,
    wrap_phi: bool,
    row: np.ndarray,
    tgt: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Layout + kernel in one call (one numba dispatch per event); outputs as :func:`kernel`."""
    lay, sp, perm, slot, start, phi_bins, prunable = layout(c, p, wrap_phi, SLAB, NBIN)
    return kernel(lay, sp, perm, slot, start, phi_bins, prunable, k, strict_r, wrap_phi, SLAB, row, tgt)
