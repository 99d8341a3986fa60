"""sPHENIX TPC geometry (SPEC §2.1): 48 pad rows in three modules, 12 sectors per side, field, length."""

from __future__ import annotations

import numpy as np

B_FIELD_T = 1.4  # SPEC §2.1: uniform approximation of the field map
#: Helix radius per GeV of pT: R[cm] = 100·pT / (0.299792458·|q|·Bz) = 238.3·pT (SPEC §2.1).
R_PER_GEV_CM = 100.0 / (0.299792458 * B_FIELD_T)
Z_MAX_CM = 105.5  # SPEC §2.1: maximal drift length, membrane at z = 0
R_EXIT_CM = 90.0  # SPEC §3.4: tracks stop at the first outward crossing of the EMCal face
N_SECTORS = 12  # per side, SPEC §2.1

# Module (r_min cm, pitch cm, pads per ring, active sector width rad), SPEC §2.1 [CS] PHG4TpcSubsystem.cc
_MODULES = (
    (31.105, 0.5715, 1152, 0.5024),
    (41.153, 1.0201, 1536, 0.5087),
    (58.367, 1.0965, 2304, 0.5097),
)
ROWS_PER_MODULE = 16


def _rows() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    radius, pitch, pad_phi, width = [], [], [], []
    for r_min, p, n_pads, w in _MODULES:
        for i in range(ROWS_PER_MODULE):
            radius.append(r_min + (i + 0.5) * p)
            pitch.append(p)
            pad_phi.append(2 * np.pi / n_pads)
            width.append(w)
    return np.array(radius), np.array(pitch), np.array(pad_phi), np.array(width)


#: (48,) row centre radii (cm), radial pitch (cm), pad width in φ (rad), active sector width (rad).
ROW_RADIUS_CM, ROW_PITCH_CM, ROW_PAD_PHI, ROW_SECTOR_WIDTH = _rows()
N_ROWS = len(ROW_RADIUS_CM)


def row_of_radius(r: np.ndarray, tol_cm: float = 0.3) -> np.ndarray:
    """Pad row index (int16) of each radius, -1 when no row centre lies within ``tol_cm``. (N,) → (N,)."""
    r = np.asarray(r, dtype=np.float64)
    idx = np.clip(np.searchsorted(ROW_RADIUS_CM, r), 1, N_ROWS - 1)
    left = ROW_RADIUS_CM[idx - 1]
    right = ROW_RADIUS_CM[idx]
    best = np.where(np.abs(r - left) <= np.abs(r - right), idx - 1, idx)
    ok = np.abs(r - ROW_RADIUS_CM[best]) <= tol_cm
    return np.where(ok, best, -1).astype(np.int16)


def in_sector_gap(phi: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """True where φ falls in the dead gap between sectors (sectors centred at multiples of 2π/12;
    the real offset is unverified, SPEC §3.7). (N,), (N,) → (N,) bool."""
    step = 2 * np.pi / N_SECTORS
    dphi = np.abs(np.remainder(phi + step / 2, step) - step / 2)
    return dphi > ROW_SECTOR_WIDTH[layer] / 2
