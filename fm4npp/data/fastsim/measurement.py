"""From crossings to measured clusters (SPEC §3.7): smearing, sector gaps, hit efficiency, merging."""

from __future__ import annotations

import numpy as np

from fm4npp.data.fastsim.geometry import (
    ROW_PAD_PHI,
    ROW_PITCH_CM,
    ROW_RADIUS_CM,
    Z_MAX_CM,
    in_sector_gap,
)

SIGMA_RPHI_CM = 0.015  # SPEC §2.1: σ_rφ ≈ 150 µm
SIGMA_Z_CM = 0.05  # SPEC §2.1: σ_z ≈ 500 µm
MIN_COS_BETA = 0.05  # keeps the angular terms finite at the turning point of a looper


def smear(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    layer: np.ndarray,
    cos_beta: np.ndarray,
    cot_theta: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Measured (x, y, z, φ) of M crossings: r = row centre, φ and z smeared (SPEC §3.7). (M,) each."""
    pitch = ROW_PITCH_CM[layer]
    cb = np.maximum(np.abs(cos_beta), MIN_COS_BETA)
    tan2 = (1 - cb**2) / cb**2
    s_rphi = np.sqrt(SIGMA_RPHI_CM**2 + 0.1 * pitch**2 * tan2 / 12)
    s_z = np.sqrt(SIGMA_Z_CM**2 + 0.1 * (pitch * cot_theta / cb) ** 2 / 12)
    r = ROW_RADIUS_CM[layer]
    phi = np.arctan2(y, x) + rng.normal(size=len(r)) * s_rphi / r
    zm = z + rng.normal(size=len(r)) * s_z
    return r * np.cos(phi), r * np.sin(phi), zm, phi


def acceptance_mask(
    phi: np.ndarray, z: np.ndarray, layer: np.ndarray, efficiency: float, rng: np.random.Generator
) -> np.ndarray:
    """Hits kept: measured inside |z| < 105.5 cm (after smearing and scattering), outside sector gaps,
    passing the single-hit efficiency. (M,) bool."""
    inside = np.abs(z) < Z_MAX_CM
    return inside & ~in_sector_gap(phi, layer) & (rng.random(len(phi)) < efficiency)


def merge_groups(
    event: np.ndarray,
    layer: np.ndarray,
    phi: np.ndarray,
    z: np.ndarray,
    merge_pads: float,
    merge_dz_cm: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster hits of one row closer than ``merge_pads`` pads in φ and ``merge_dz_cm`` in z.

    Hits are sorted by (event, layer, φ); a new cluster starts where the event or row changes or the
    neighbour in φ is too far in φ or z (a chain approximation of 2D clustering). Returns the sort
    order (M,) and the cluster index of each sorted hit (M,), non-decreasing from 0.
    """
    # One float64 sort key instead of a 3-key lexsort: (event, row) in the integer part, φ + π ∈ [0, 2π)
    # in [0, 8); exact to ≈ 1e-11 rad for the ≤ 1e5 (event, row) pairs of a block.
    row_key = (event - (event.min() if len(event) else 0)) * 48 + layer
    order = np.argsort(row_key * 8.0 + (phi + np.pi))
    rk, ph, zz = row_key[order], phi[order], z[order]
    new = np.ones(len(order), dtype=bool)
    if len(order) > 1:
        close = (
            (rk[1:] == rk[:-1])
            & (ph[1:] - ph[:-1] <= merge_pads * ROW_PAD_PHI[layer[order][1:]])
            & (np.abs(zz[1:] - zz[:-1]) <= merge_dz_cm)
        )
        new[1:] = ~close
    return order, np.cumsum(new) - 1


def merge(
    columns: dict[str, np.ndarray], groups: np.ndarray, n_groups: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Merge sorted hits (columns in sorted order) by cluster: charge-weighted x, y, z, summed energy,
    labels of the largest-charge member. Position is projected back onto the row radius.

    Returns the merged columns (n_groups,) and ``n_merged`` (n_groups,).
    """
    e = columns["energy"]
    if n_groups == 0:
        return {name: col[:0] for name, col in columns.items()}, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    n_merged = np.diff(np.r_[starts, len(groups)])
    w_sum = np.add.reduceat(e, starts)
    # Largest-charge member of each cluster: the first member whose charge equals the cluster maximum.
    is_max = np.flatnonzero(e == np.maximum.reduceat(e, starts)[groups])
    lead_idx = is_max[np.r_[True, groups[is_max][1:] != groups[is_max][:-1]]]
    out = {name: col[lead_idx] for name, col in columns.items()}
    safe = np.maximum(w_sum, 1e-12)
    for name in ("x", "y", "z"):
        out[name] = np.add.reduceat(e * columns[name], starts) / safe
    out["energy"] = w_sum
    r_row = ROW_RADIUS_CM[out["layer"]]
    phi = np.arctan2(out["y"], out["x"])
    out["x"], out["y"] = r_row * np.cos(phi), r_row * np.sin(phi)
    return out, n_merged
