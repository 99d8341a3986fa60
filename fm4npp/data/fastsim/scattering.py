"""Multiple Coulomb scattering in the material inside the TPC (SPEC §3.5), as position offsets.

Each particle gets Highland kicks (ε in the bending plane, η in the dip angle) at its first crossing of
the beam pipe, MVTX, INTT and the inner field cage; a kick at t_j shifts a later crossing at t by
R·ε·sin(t − t_j) transversely and by R·(t − t_j)·η/sin²θ in z. The gas itself (x/X0 ≈ 7e-5 per row) is
neglected: its kicks stay below the 150 µm point resolution for p > 100 MeV/c.
"""

from __future__ import annotations

import numpy as np

from fm4npp.data.fastsim.helix import Crossings, Helices, first_crossing

#: (radius cm, x/X0) of beam pipe, MVTX, INTT, inner field cage (SPEC §3.5; an assumption).
MATERIAL = ((2.0, 0.0022), (3.3, 0.009), (8.5, 0.02), (20.0, 0.0113))


def highland_theta0(p_gev: np.ndarray, beta: np.ndarray, x_over_x0: np.ndarray) -> np.ndarray:
    """Highland width θ0 (rad) with its log term folded into the factor 0.9 (SPEC §3.5)."""
    return 0.0136 / (beta * p_gev) * np.sqrt(x_over_x0) * 0.9


def scatter_offsets(
    hx: Helices,
    cr: Crossings,
    p_gev: np.ndarray,
    mass_gev: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Transverse (along the local direction ⊥ to the radius) and z offsets (cm) of each crossing.

    ``hx`` describes P particles, ``p_gev``/``mass_gev`` are (P,), ``cr`` holds M crossings. → (M,), (M,).
    """
    n_p = len(hx.radius)
    d_perp = np.zeros(len(cr.t))
    d_z = np.zeros(len(cr.t))
    if n_p == 0 or len(cr.t) == 0:
        return d_perp, d_z
    beta = p_gev / np.sqrt(p_gev**2 + mass_gev**2)
    sin_theta = 1 / np.sqrt(1 + hx.lam**2)
    for r, x0 in MATERIAL:
        t_j = first_crossing(hx, r)
        hit = np.isfinite(t_j) & (t_j < hx.t_lim)
        theta0 = highland_theta0(p_gev, beta, x0 / sin_theta)
        eps = np.where(hit, rng.normal(size=n_p) * theta0, 0.0)
        eta = np.where(hit, rng.normal(size=n_p) * theta0, 0.0)
        dt = cr.t - t_j[cr.particle]
        after = dt > 0
        rad = hx.radius[cr.particle]
        d_perp += np.where(after, rad * eps[cr.particle] * np.sin(np.where(after, dt, 0)), 0.0)
        d_z += np.where(after, rad * np.where(after, dt, 0) * eta[cr.particle], 0.0) / (
            sin_theta[cr.particle] ** 2
        )
    return d_perp, d_z
