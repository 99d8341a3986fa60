"""Particle gun (SPEC §3.11): simple events of π/K/p/e from the beam line, no PYTHIA, for tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fm4npp.errors import ConfigError

MASS_GEV = {211: 0.13957, 321: 0.493677, 2212: 0.938272, 11: 0.000511, 13: 0.105658}


@dataclass(frozen=True)
class GunConfig:
    """Gun settings: multiplicity range (inclusive), species PDG codes and fractions, pT range (GeV/c,
    log-uniform) or a fixed pT, |η| range, and whether to smear the vertex like p+p."""

    multiplicity: tuple[int, int] = (5, 15)
    species: tuple[int, ...] = (211, 321, 2212, 11)
    fractions: tuple[float, ...] = (0.7, 0.12, 0.1, 0.08)  # SPEC §3.11
    pt_range_gev: tuple[float, float] = (0.1, 5.0)
    fixed_pt_gev: float | None = None
    eta_max: float = 1.1  # SPEC §2.1 acceptance
    smear_vertex: bool = False

    def __post_init__(self) -> None:
        lo, hi = self.multiplicity
        if not 0 <= lo <= hi:
            raise ConfigError(f"gun multiplicity {self.multiplicity} must satisfy 0 <= min <= max")
        if len(self.species) != len(self.fractions) or not self.species:
            raise ConfigError("gun species and fractions must have the same non-zero length")
        unknown = [s for s in self.species if abs(s) not in MASS_GEV]
        if unknown:
            raise ConfigError(f"gun species {unknown} unknown; allowed: {sorted(MASS_GEV)}")
        if min(self.fractions) < 0 or sum(self.fractions) <= 0:
            raise ConfigError("gun fractions must be non-negative with a positive sum")
        if not 0 < self.pt_range_gev[0] <= self.pt_range_gev[1]:
            raise ConfigError(f"gun pt_range_gev {self.pt_range_gev} must be 0 < lo <= hi")
        if self.fixed_pt_gev is not None and self.fixed_pt_gev <= 0:
            raise ConfigError(f"gun fixed_pt_gev={self.fixed_pt_gev} must be > 0")


def parse_multiplicity(text: str) -> tuple[int, int]:
    """'10' → (10, 10); '5-15' or '5,15' → (5, 15); else ConfigError naming --gun-multiplicity."""
    parts = text.replace(",", "-").split("-")
    try:
        values = [int(p) for p in parts if p.strip()]
    except ValueError:
        values = []
    if len(values) not in (1, 2):
        raise ConfigError(f"--gun-multiplicity '{text}': expected N or MIN-MAX (e.g. 5-15)")
    return values[0], values[-1]


def gun_particles(
    n_events: int, cfg: GunConfig, rng: np.random.Generator, first_event: int = 0
) -> dict[str, np.ndarray]:
    """Particle table (see fastsim.detector) of ``n_events`` gun events. Columns (P,)."""
    counts = rng.integers(cfg.multiplicity[0], cfg.multiplicity[1] + 1, size=n_events)
    n = int(counts.sum())
    event = np.repeat(np.arange(n_events, dtype=np.int64) + first_event, counts)
    frac = np.asarray(cfg.fractions, dtype=np.float64)
    species = np.asarray(cfg.species)[rng.choice(len(frac), size=n, p=frac / frac.sum())]
    sign = np.where(rng.random(n) < 0.5, 1, -1)
    pdg = np.abs(species) * sign
    # Positive charge for π+, K+, p and e+ (PDG −11) and μ+ (PDG −13).
    lepton = np.isin(np.abs(species), (11, 13))
    charge = np.where(lepton, -sign, sign)
    if cfg.fixed_pt_gev is not None:
        pt = np.full(n, cfg.fixed_pt_gev)
    else:
        lo, hi = np.log(cfg.pt_range_gev)
        pt = np.exp(rng.uniform(float(lo), float(hi), size=n))
    eta = rng.uniform(-cfg.eta_max, cfg.eta_max, size=n)
    phi = rng.uniform(-np.pi, np.pi, size=n)
    if cfg.smear_vertex:
        from fm4npp.data.pythia import VERTEX_SIGMA_CM

        vtx = (rng.normal(size=(n_events, 3)) * np.array(VERTEX_SIGMA_CM))[event - first_event]
    else:
        vtx = np.zeros((n, 3))
    return {
        "event": event,
        "pdg": pdg.astype(np.int32),
        "charge": charge.astype(np.int8),
        "mass": np.array([MASS_GEV[abs(int(s))] for s in species], dtype=np.float64).reshape(n),
        "px": pt * np.cos(phi),
        "py": pt * np.sin(phi),
        "pz": pt * np.sinh(eta),
        "vx": vtx[:, 0],
        "vy": vtx[:, 1],
        "vz": vtx[:, 2],
        "s_max_cm": np.full(n, np.inf),
        "max_turns": np.zeros(n, dtype=np.int64),
        "origin": np.zeros(n, dtype=np.int8),
        "primary": np.ones(n, dtype=bool),
        "parent": np.zeros(n, dtype=np.int64),
    }
