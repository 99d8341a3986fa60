"""PYTHIA 8 driver (SPEC §3.1–3.3): p+p at √s = 200 GeV, SoftQCD:inelastic, seeded, vertex-smeared.

One :class:`PythiaDriver` is initialised once per process (≈ 1.6 s) with a seed that depends only on the
dataset seed, so every worker holds the same initialised state; each block of events then re-seeds the
random engine with its own seed (``rndm.init``). Event content thus depends on (dataset seed, block)
only, never on which worker made it or what it made before.
"""

from __future__ import annotations

import math

import numpy as np

from fm4npp.errors import ConfigError

PYTHIA_SEED_MAX = 900_000_000  # SPEC §3.1: Random:seed must stay below 900,000,000
VERTEX_SIGMA_CM = (0.012, 0.012, 10.0)  # SPEC §2.1: p+p vertex σx = σy = 120 µm, σz = 10 cm
MIN_DECAY_LENGTH_CM = 1.0  # SPEC §3.2: decayed charged hadrons flying > 1 cm leave a track stub
PRIMARY_MAX_R_CM = 0.1  # production within 1 mm of the collision counts as primary
# Photons kept for conversions (SPEC §3.2): pT > 10 MeV/c and |pz| < 2.13·pT (|η| < 1.5). Softer or more
# forward photons cannot give e± reaching the pad rows (from the material) at any useful rate.
PHOTON_MIN_PT_GEV = 0.01
PHOTON_MAX_COT = 2.13
# Minimum-bias trigger (SPEC has no statement on TPCpp-10M's event selection; sPHENIX records p+p with the
# MBD, whose two arms cover 3.51 < |η| < 4.61): ≥ 1 final charged particle in each arm. In pz/pT:
# sinh(3.51) = 16.71 and sinh(4.61) = 50.24.
MBD_ETA_RANGE = (3.51, 4.61)
TRIGGERS = ("mbd", "none")

BASE_SETTINGS = (
    "Beams:idA = 2212",
    "Beams:idB = 2212",
    "Beams:eCM = 200.",
    "SoftQCD:inelastic = on",
    "Random:setSeed = on",
    "Print:quiet = on",
    "Next:numberCount = 0",
)
#: Optional tunes (SPEC §3.1): sPHENIX minimum bias and the Detroit tune reported for TPCpp-10M.
TUNES: dict[str, tuple[str, ...]] = {
    "default": (),
    "sphenix_mb": ("PDF:pSet = 7", "MultipartonInteractions:Kfactor = 0.5"),
    "detroit": (
        "PDF:pSet = 17",
        "MultipartonInteractions:ecmRef = 200",
        "MultipartonInteractions:bProfile = 2",
        "MultipartonInteractions:pT0Ref = 1.40",
        "MultipartonInteractions:ecmPow = 0.135",
        "MultipartonInteractions:coreRadius = 0.56",
        "MultipartonInteractions:coreFraction = 0.78",
        "ColourReconnection:range = 5.4",
    ),
}


def block_seed(seed: int, block: int) -> int:
    """PYTHIA seed of one block: distinct for distinct blocks of one dataset (< 900 M blocks)."""
    return 1 + (seed * 1_000_003 + block) % (PYTHIA_SEED_MAX - 1)


class PythiaDriver:
    """A configured, initialised PYTHIA instance producing particle tables (see fastsim.detector)."""

    def __init__(self, seed: int, tune: str = "default") -> None:
        if tune not in TUNES:
            raise ConfigError(f"pythia tune '{tune}' unknown; allowed: {', '.join(TUNES)}")
        import pythia8mc  # a compiled extension: import only where events are made

        self._pythia = pythia8mc.Pythia("", False)
        for line in (*BASE_SETTINGS, f"Random:seed = {block_seed(seed, 0)}", *TUNES[tune]):
            if not self._pythia.readString(line):
                raise ConfigError(f"PYTHIA rejected setting '{line}'")
        if not self._pythia.init():
            raise ConfigError(f"PYTHIA failed to initialise (tune '{tune}')")
        self.trials = 0  # PYTHIA events made by the last generate() call, accepted or not

    def generate(
        self,
        n_events: int,
        pythia_seed: int,
        rng: np.random.Generator,
        first_event: int = 0,
        trigger: str = "none",
    ) -> dict[str, np.ndarray]:
        """Particle table of ``n_events`` accepted events numbered from ``first_event``; vertices smeared
        with ``rng``. Rows: charged final-state particles, charged hadrons decaying after > 1 cm, and final
        photons (charge 0, pdg 22) in the acceptance for conversions (see fastsim.secondaries).

        ``trigger`` "mbd" keeps only events passing :func:`mbd_fired` (rejected events cost PYTHIA and
        extraction time only); "none" keeps every inelastic event. ``self.trials`` counts the events
        PYTHIA made for this call (accepted + rejected)."""
        if trigger not in TRIGGERS:
            raise ConfigError(f"trigger '{trigger}' unknown; allowed: {', '.join(TRIGGERS)}")
        self._pythia.rndm.init(pythia_seed)
        rows: list[tuple[float, ...]] = []
        n = 0
        self.trials = 0
        while n < n_events:
            if not self._pythia.next():
                continue
            self.trials += 1
            event_rows = _charged_rows(self._pythia.event, first_event + n)
            if trigger == "mbd" and not mbd_fired(event_rows):
                continue
            rows.extend(event_rows)
            n += 1
        arr = np.array(rows, dtype=np.float64).reshape(-1, 12)
        event = arr[:, 0].astype(np.int64)
        vertex = rng.normal(size=(n_events, 3)) * np.array(VERTEX_SIGMA_CM)
        off = vertex[event - first_event]
        r_prod = np.hypot(arr[:, 7], arr[:, 8])
        primary = np.hypot(r_prod, arr[:, 9]) < PRIMARY_MAX_R_CM
        return {
            "event": event,
            "pdg": arr[:, 1].astype(np.int32),
            "charge": arr[:, 2].astype(np.int8),
            "mass": arr[:, 3],
            "px": arr[:, 4],
            "py": arr[:, 5],
            "pz": arr[:, 6],
            "vx": arr[:, 7] + off[:, 0],
            "vy": arr[:, 8] + off[:, 1],
            "vz": arr[:, 9] + off[:, 2],
            "s_max_cm": arr[:, 10],
            "max_turns": np.zeros(len(arr), dtype=np.int64),  # filled by the caller's SimConfig
            "origin": np.where(primary, 0, 1).astype(np.int8),
            "primary": primary,
            "parent": arr[:, 11].astype(np.int64),
        }


def mbd_fired(rows: list[tuple[float, ...]]) -> bool:
    """True when the event's final charged particles (rows of :func:`_charged_rows` with an unlimited
    path) include one with 3.51 < η < 4.61 and one with −4.61 < η < −3.51 (η from the momentum, as seen
    from the vertex)."""
    lo, hi = math.sinh(MBD_ETA_RANGE[0]), math.sinh(MBD_ETA_RANGE[1])
    north = south = False
    for row in rows:
        if row[2] == 0 or row[10] != math.inf:
            continue
        pt = math.hypot(row[4], row[5])
        if lo * pt < row[6] < hi * pt:
            north = True
        elif -hi * pt < row[6] < -lo * pt:
            south = True
        if north and south:
            return True
    return False


def _charged_rows(event: object, event_index: int) -> list[tuple[float, ...]]:
    """(event, pdg, q, m, px, py, pz, vx, vy, vz [cm], s_max [cm], 0) of each kept particle."""
    rows: list[tuple[float, ...]] = []
    for pa in event:  # type: ignore[attr-defined]
        if pa.isFinal():
            if pa.isCharged():
                s_max = math.inf
            elif pa.id() == 22:
                pt = pa.pT()
                if pt > PHOTON_MIN_PT_GEV and abs(pa.pz()) < PHOTON_MAX_COT * pt:
                    rows.append(
                        (event_index, 22, 0, 0.0, pa.px(), pa.py(), pa.pz(),
                         0.1 * pa.xProd(), 0.1 * pa.yProd(), 0.1 * pa.zProd(), math.inf, 0)
                    )  # fmt: skip
                continue
            else:
                continue
        elif pa.isCharged() and pa.isHadron():
            # Charged hyperons (Σ±, Ξ−, Ω−) decay inside PYTHIA: keep their stub up to the decay point,
            # |vDec − vProd| = τ·p/m (mm → cm).
            s_max = 0.1 * pa.tau() * pa.pAbs() / pa.m()
            if s_max < MIN_DECAY_LENGTH_CM:
                continue
        else:
            continue
        rows.append(
            (event_index, pa.id(), round(pa.charge()), pa.m(), pa.px(), pa.py(), pa.pz(),
             0.1 * pa.xProd(), 0.1 * pa.yProd(), 0.1 * pa.zProd(), s_max, 0)
        )  # fmt: skip
    return rows
