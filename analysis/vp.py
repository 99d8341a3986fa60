"""Variable projection (SCALING.md §2.4): exact NNLS for (E, A, B) on an exhaustive exponent grid.

For fixed exponents the law is linear in its coefficients, with columns ``[1, X_1^(−α_1), …]``. Rows are
weighted by 1/L_i so that (L − L̂)/L approximates the log residual. All grid points are solved at once:
the weighted Gram matrices are assembled with a few matrix products, and NNLS on p ≤ 3 unknowns is done
exactly by enumerating the 2^p − 1 active sets (the NNLS optimum is the best feasible active-set
solution). This replaces Open-Athena/vpnls's per-point loop and takes ~0.1 s for 250² grid points.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
from numpy.typing import NDArray

from analysis.laws import COEF_BOUNDS

Array = NDArray[np.float64]

VP_STEP = 0.01  # §2.4: exponent grid resolution
VP_GRID = np.round(np.arange(0.01, 2.5 + 1e-9, VP_STEP), 10)  # 250 values, the §2.2 exponent bounds


def _gram(log_x: Array, y: Array, w: Array, grid: Array) -> tuple[Array, Array]:
    """Weighted Gram matrices (M, p, p) and right-hand sides (M, p) for every grid combination."""
    _n, k = log_x.shape
    powers = [np.exp(-grid[:, None] * log_x[None, :, j]) for j in range(k)]  # each (G, n)
    g = len(grid)
    m = g**k
    p = k + 1
    gram = np.empty((m, p, p))
    rhs = np.empty((m, p))
    idx = np.indices((g,) * k).reshape(k, -1)  # grid index of each axis per combination
    gram[:, 0, 0] = w.sum()
    rhs[:, 0] = (w * y).sum()
    for j, pw in enumerate(powers):
        gram[:, 0, j + 1] = gram[:, j + 1, 0] = (pw @ w)[idx[j]]
        gram[:, j + 1, j + 1] = ((pw * pw) @ w)[idx[j]]
        rhs[:, j + 1] = (pw @ (w * y))[idx[j]]
    for j1, j2 in combinations(range(k), 2):
        cross = (powers[j1] * w) @ powers[j2].T  # (G, G)
        gram[:, j1 + 1, j2 + 1] = gram[:, j2 + 1, j1 + 1] = cross[idx[j1], idx[j2]]
    return gram, rhs


def nnls_batch(gram: Array, rhs: Array, yy: float) -> tuple[Array, Array]:
    """Exact NNLS for many small normal-equation systems: returns x (M, p) ≥ 0 and the weighted SSE."""
    m, p = rhs.shape
    scale = np.sqrt(
        np.maximum(np.einsum("mii->mi", gram), 1e-300)
    )  # Jacobi scaling: columns span 1e-25…1
    gs = gram / (scale[:, :, None] * scale[:, None, :])
    hs = rhs / scale
    best_x = np.zeros((m, p))
    best_sse = np.full(m, yy)
    for size in range(1, p + 1):
        for sub in combinations(range(p), size):
            s = list(sub)
            g_sub = gs[:, s][:, :, s] + 1e-12 * np.eye(size)
            xs = np.linalg.solve(g_sub, hs[:, s, None])[..., 0]
            sse = yy - (xs * hs[:, s]).sum(axis=1)
            ok = np.all(xs >= 0, axis=1) & (sse < best_sse)
            best_sse = np.where(ok, sse, best_sse)
            full = np.zeros((m, p))
            full[:, s] = xs
            best_x = np.where(ok[:, None], full, best_x)
    return best_x / scale, best_sse


def vp_grid(
    log_x: Array, loss: Array, e_bounds: tuple[float, float], grid: Array = VP_GRID
) -> tuple[Array, Array]:
    """VP over the exponent grid: internal θ for every combination (M, p) and its weighted SSE (M,).

    ``log_x``: (n, K) log axes; ``loss``: (n,) linear loss. Zero coefficients are clipped to the
    lower bounds so every θ is a valid L-BFGS-B start.
    """
    k = log_x.shape[1]
    w = 1.0 / loss**2  # §2.4: 1/L row weights, squared in the normal equations
    gram, rhs = _gram(log_x, loss, w, grid)
    x, sse = nnls_batch(gram, rhs, float((w * loss * loss).sum()))
    with np.errstate(divide="ignore"):
        logs = np.log(x)
    theta = np.empty((len(sse), 2 * k + 1))
    theta[:, :k] = np.clip(logs[:, 1:], *COEF_BOUNDS)
    theta[:, k] = np.clip(logs[:, 0], *e_bounds)
    theta[:, k + 1 :] = grid[np.indices((len(grid),) * k).reshape(k, -1).T]
    return theta, sse
