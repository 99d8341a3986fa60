"""The event schema shared by the generator, the shard store, the TPCpp-10M reader and the model.

An :class:`Event` holds one p+p collision as seen by the TPC: per hit (spacepoint) columns and,
when truth is known, per particle columns. Arrays are numpy, one entry per hit / particle.

Label conventions (SPEC §2.4, TPCpp-10M):
- ``track_id``: truth particle id of the hit, 0 for noise (particles with pT < 0.06 GeV/c).
- ``particle_id``: truth particle id (> 0) even for noise hits; -1 when unknown (TPCpp-10M).
- ``pid``: 0 other, 1 pi+-, 2 K+-, 3 p/pbar, 4 e+-.
- ``noise``: True iff the hit's particle has pT < ``NOISE_PT_GEV``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SCHEMA_VERSION = 1
NOISE_PT_GEV = 0.06  # SPEC §2.4: noise = hits of particles with pT < 0.06 GeV/c
PID_CLASSES = ("other", "pion", "kaon", "proton", "electron")
MAX_HITS_DEFAULT = 3200  # SPEC §2.2: events above 3,200 points are dropped in every split
#: Particle ``origin`` codes (SPEC §3.10).
ORIGIN_PRIMARY = 0
ORIGIN_WEAK_DECAY = 1  # displaced daughters of PYTHIA's weak decays (K0S, Λ, Σ, Ξ, Ω)
ORIGIN_CONVERSION = 2  # e± of photon conversions in the material and the gas
ORIGIN_DECAY_IN_FLIGHT = 3  # μ± / π± of π± and K± decays inside the TPC
ORIGIN_CURLER = 4  # low-pT secondary e± source (δ-rays, Compton e±, back-splash), SPEC §3.9
ORIGIN_SECONDARY = 5  # phenomenological e± (calibration knob, off by default; see fastsim.noise)
ORIGIN_NAMES = ("primary", "weak_decay", "conversion", "decay_in_flight", "curler", "secondary")

#: Per-hit columns and their dtypes, in storage order.
HIT_COLUMNS: dict[str, str] = {
    "energy": "float32",  # ADC-like charge, mean ~253 (TPCpp-10M scale)
    "x": "float32",  # cm
    "y": "float32",  # cm
    "z": "float32",  # cm
    "layer": "int16",  # pad row 0..47, -1 unknown
    "particle_id": "int64",
    "track_id": "int64",
    "pid": "int8",
    "noise": "bool",
}

#: Per-particle columns and their dtypes.
PARTICLE_COLUMNS: dict[str, str] = {
    "particle_id": "int64",
    "pdg": "int32",
    "charge": "int8",
    "pt": "float32",  # GeV/c
    "eta": "float32",
    "phi": "float32",
    "vx": "float32",  # cm
    "vy": "float32",
    "vz": "float32",
    "primary": "bool",
    "origin": "int8",  # 0 primary, 1 weak decay, 2 conversion, 3 decay in flight, 4 curler
    "pid": "int8",
    "n_hits": "int32",
}


def _empty(columns: dict[str, str]) -> dict[str, np.ndarray]:
    return {name: np.zeros(0, dtype=dtype) for name, dtype in columns.items()}


@dataclass(frozen=True)
class Event:
    """One collision. ``hits`` maps every name of :data:`HIT_COLUMNS` to an array of length n_hits;
    ``particles`` maps every name of :data:`PARTICLE_COLUMNS` to arrays (empty when truth is unknown)."""

    event_id: int
    hits: dict[str, np.ndarray]
    particles: dict[str, np.ndarray] = field(default_factory=lambda: _empty(PARTICLE_COLUMNS))

    def __post_init__(self) -> None:
        n = len(self.hits["x"])
        for name in HIT_COLUMNS:
            if name not in self.hits:
                raise ValueError(f"event {self.event_id}: hit column '{name}' missing")
            if len(self.hits[name]) != n:
                raise ValueError(f"event {self.event_id}: hit column '{name}' has wrong length")

    @property
    def n_hits(self) -> int:
        return len(self.hits["x"])

    @property
    def r(self) -> np.ndarray:
        """Transverse radius of each hit (cm)."""
        return np.hypot(self.hits["x"], self.hits["y"])


def pid_class(pdg: np.ndarray) -> np.ndarray:
    """PID class from PDG codes (SPEC §2.4): 1 pi, 2 K, 3 p, 4 e, else 0."""
    a = np.abs(np.asarray(pdg))
    out = np.zeros(a.shape, dtype=np.int8)
    out[a == 211] = 1
    out[a == 321] = 2
    out[a == 2212] = 3
    out[a == 11] = 4
    return out


def make_hits(**columns: np.ndarray) -> dict[str, np.ndarray]:
    """Build a hits dict with every column cast to its schema dtype (missing labels get defaults)."""
    n = len(columns["x"])
    defaults = {"layer": -1, "particle_id": -1, "track_id": 0, "pid": 0, "noise": False, "energy": 0}
    out: dict[str, np.ndarray] = {}
    for name, dtype in HIT_COLUMNS.items():
        if name in columns:
            out[name] = np.asarray(columns[name]).astype(dtype, copy=False)
        else:
            out[name] = np.full(n, defaults[name], dtype=dtype)
    unknown = set(columns) - set(HIT_COLUMNS)
    if unknown:
        raise ValueError(f"unknown hit columns: {sorted(unknown)}")
    return out
