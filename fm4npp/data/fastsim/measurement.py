"""From crossings to measured clusters (SPEC §3.7): smearing, sector gaps, hit efficiency, merging."""

from __future__ import annotations

import numpy as np

from fm4npp.data.fastsim.geometry import ROW_PAD_PHI, ROW_PITCH_CM, ROW_RADIUS_CM, in_sector_gap

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
    phi: np.ndarray, layer: np.ndarray, efficiency: float, rng: np.random.Generator
) -> np.ndarray:
    """Hits kept: outside sector gaps and passing the single-hit efficiency. (M,) bool."""
    return ~in_sector_gap(phi, layer) & (rng.random(len(phi)) < efficiency)


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
    order = np.lexsort((phi, layer, event))
    ev, ly, ph, zz = event[order], layer[order], phi[order], z[order]
    new = np.ones(len(order), dtype=bool)
    if len(order) > 1:
        close = (
            (ev[1:] == ev[:-1])
            & (ly[1:] == ly[:-1])
            & (ph[1:] - ph[:-1] <= merge_pads * ROW_PAD_PHI[ly[1:]])
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
    w_sum = np.bincount(groups, weights=e, minlength=n_groups)
    n_merged = np.bincount(groups, minlength=n_groups)
    # Largest-charge member of each cluster: sort by (group, -E) and take the first of each group.
    lead = np.lexsort((-e, groups))
    first = np.r_[0, np.cumsum(n_merged)[:-1]]
    lead_idx = lead[first]
    out = {name: col[lead_idx] for name, col in columns.items()}
    safe = np.maximum(w_sum, 1e-12)
    for name in ("x", "y", "z"):
        out[name] = np.bincount(groups, weights=e * columns[name], minlength=n_groups) / safe
    out["energy"] = w_sum
    r_row = ROW_RADIUS_CM[out["layer"]]
    phi = np.arctan2(out["y"], out["x"])
    out["x"], out["y"] = r_row * np.cos(phi), r_row * np.sin(phi)
    return out, n_merged
