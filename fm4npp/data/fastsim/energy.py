"""Cluster charge (SPEC §3.8): ALEPH Bethe–Bloch mean × path in the pad row × Moyal fluctuation,
expressed on the ADC-like scale of TPCpp-10M (mean ≈ 253)."""

from __future__ import annotations

import numpy as np

# ALICE TPC parameters of the ALEPH Bethe–Bloch parametrisation (SPEC §3.8).
_P1, _P2, _P3, _P4, _P5 = 0.0762, 10.632, 1.33e-5, 1.8631, 1.9479
MIP_KEV_PER_CM = 4.28  # SPEC §3.8: minimum-ionising dE/dx in Ne:CF4 50:50
MIN_MOYAL = 0.05  # floor of the fluctuation factor (a cluster needs a positive charge)
MAX_PATH_PITCHES = 8.0  # SPEC §3.8: the charge of a grazing crossing is collected over ≤ 8 pitches


def aleph_bethe_bloch(beta_gamma: np.ndarray) -> np.ndarray:
    """ALEPH f(βγ) (arbitrary units)."""
    bg = np.asarray(beta_gamma, dtype=np.float64)
    beta = bg / np.sqrt(1 + bg**2)
    bp = beta**_P4
    return _P1 / bp * (_P2 - bp - np.log(_P3 + 1 / bg**_P5))


_F_MIN = float(aleph_bethe_bloch(np.geomspace(1, 20, 4000)).min())


def mean_dedx_kev_per_cm(p_gev: np.ndarray, mass_gev: np.ndarray) -> np.ndarray:
    """Mean dE/dx (keV/cm), equal to the MIP value at the minimum of the curve."""
    bg = np.maximum(p_gev / np.maximum(mass_gev, 1e-6), 1e-3)
    return MIP_KEV_PER_CM * aleph_bethe_bloch(bg) / _F_MIN


def moyal(n: int, width: float, rng: np.random.Generator) -> np.ndarray:
    """Landau-like factor X = (1 − 1.2704 w) + w·(−ln g²), g ~ N(0, 1): mean 1 (SPEC §3.8).

    The far left tail (g² ≳ 15 at w = 0.24, probability ≈ 1e-4) would go negative: floored at
    MIN_MOYAL so every charge is positive (a positive charge is what merging weights need)."""
    g = rng.normal(size=n)
    x = (1 - 1.2704 * width) + width * -np.log(np.maximum(g * g, 1e-300))
    return np.maximum(x, MIN_MOYAL)


def deposit_kev(
    dedx_kev_per_cm: np.ndarray,
    pitch_cm: np.ndarray,
    cos_beta: np.ndarray,
    sin_theta: np.ndarray,
    width: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Charge (keV) of M crossings: ⟨dE/dx⟩·Δs·X with Δs = pitch/(|cos β|·sin θ) ≤ 8 pitches."""
    ds = pitch_cm / np.maximum(np.abs(cos_beta) * sin_theta, 1 / MAX_PATH_PITCHES)
    return dedx_kev_per_cm * ds * moyal(len(ds), width, rng)
