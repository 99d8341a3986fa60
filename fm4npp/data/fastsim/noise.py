"""Curler electrons (SPEC §3.9): the low-pT e± (δ-rays, Compton and conversion electrons, back-splash)
whose hits TPCpp-10M labels as noise. They start anywhere in the TPC volume and spiral many turns."""

from __future__ import annotations

import numpy as np

from fm4npp.data.fastsim.geometry import Z_MAX_CM
from fm4npp.data.schema import ORIGIN_CURLER

ELECTRON_MASS_GEV = 0.000511
CURLER_R_RANGE_CM = (20.0, 90.0)  # SPEC §3.9: uniform in r between the inner field cage and the EMCal
CURLER_PT_RANGE_GEV = (0.005, 0.06)  # SPEC §3.9: log-uniform 5–60 MeV/c, all below the noise cut


def curler_particles(
    n_per_event: np.ndarray,
    first_event: int,
    rng: np.random.Generator,
    max_turns: int,
    path_cm: float,
    pt_range_gev: tuple[float, float] = CURLER_PT_RANGE_GEV,
    origin: int = ORIGIN_CURLER,
) -> dict[str, np.ndarray]:
    """Particle-table rows for curlers (e− with pT log-uniform in ``pt_range_gev``, from anywhere in the
    TPC volume); ``n_per_event`` (E,) counts per event. → columns of (P,)."""
    n = int(n_per_event.sum())
    event = np.repeat(np.arange(len(n_per_event)) + first_event, n_per_event)
    r = rng.uniform(*CURLER_R_RANGE_CM, size=n)
    phi = rng.uniform(-np.pi, np.pi, size=n)
    lo, hi = np.log(pt_range_gev)
    pt = np.exp(rng.uniform(float(lo), float(hi), size=n))
    cos_t = rng.uniform(-1, 1, size=n)
    sin_t = np.sqrt(1 - cos_t**2)
    phi_p = rng.uniform(-np.pi, np.pi, size=n)
    return {
        "event": event.astype(np.int64),
        "pdg": np.full(n, 11, dtype=np.int32),  # electrons: δ-rays and Compton electrons dominate
        "charge": np.full(n, -1, dtype=np.int8),
        "mass": np.full(n, ELECTRON_MASS_GEV),
        "px": pt * np.cos(phi_p),
        "py": pt * np.sin(phi_p),
        "pz": pt * cos_t / np.maximum(sin_t, 1e-3),
        "vx": r * np.cos(phi),
        "vy": r * np.sin(phi),
        "vz": rng.uniform(-Z_MAX_CM, Z_MAX_CM, size=n),
        "s_max_cm": np.full(n, path_cm),
        "max_turns": np.full(n, max_turns, dtype=np.int64),
        "origin": np.full(n, origin, dtype=np.int8),
        "primary": np.zeros(n, dtype=bool),
        "parent": np.zeros(n, dtype=np.int64),
    }


def material_secondaries(
    n_per_event: np.ndarray,
    first_event: int,
    rng: np.random.Generator,
    pt_range_gev: tuple[float, float],
    r_range_cm: tuple[float, float],
    eta_max: float,
    origin: int,
) -> dict[str, np.ndarray]:
    """Particle-table rows for e± (either sign) born in the inner material: r uniform in ``r_range_cm``,
    |z| < 105.5 cm, pT log-uniform in ``pt_range_gev``, direction uniform in φ and in |η| < ``eta_max``.
    ``n_per_event`` (E,) counts per event. → columns of (P,)."""
    n = int(n_per_event.sum())
    event = np.repeat(np.arange(len(n_per_event)) + first_event, n_per_event)
    r = rng.uniform(*r_range_cm, size=n)
    phi = rng.uniform(-np.pi, np.pi, size=n)
    lo, hi = np.log(pt_range_gev)
    pt = np.exp(rng.uniform(float(lo), float(hi), size=n))
    eta = rng.uniform(-eta_max, eta_max, size=n)
    phi_p = rng.uniform(-np.pi, np.pi, size=n)
    sign = np.where(rng.random(n) < 0.5, 1, -1)
    return {
        "event": event.astype(np.int64),
        "pdg": (11 * sign).astype(np.int32),  # e− is PDG 11 with charge −1
        "charge": (-sign).astype(np.int8),
        "mass": np.full(n, ELECTRON_MASS_GEV),
        "px": pt * np.cos(phi_p),
        "py": pt * np.sin(phi_p),
        "pz": pt * np.sinh(eta),
        "vx": r * np.cos(phi),
        "vy": r * np.sin(phi),
        "vz": rng.uniform(-Z_MAX_CM, Z_MAX_CM, size=n),
        "s_max_cm": np.full(n, np.inf),
        "max_turns": np.zeros(n, dtype=np.int64),  # filled by the caller's SimConfig
        "origin": np.full(n, origin, dtype=np.int8),
        "primary": np.zeros(n, dtype=bool),
        "parent": np.zeros(n, dtype=np.int64),
    }
