"""Secondary particles (SPEC §3.6): photon conversions in the material and π±/K± decays in flight.

Both act on a *particle table* (see :mod:`fm4npp.data.fastsim.detector`) before transport and return new
rows, so the daughters are transported, measured and labelled like any other particle:

- **Conversions.** Each photon flies straight from its production vertex through the material of
  :data:`CONVERSION_LAYERS` (beam pipe, MVTX, INTT, TPC inner field cage: the x/X0 of SPEC §3.5) and
  the TPC gas (X0 = 142.6 m, r 20–78 cm). A thin layer converts it with probability
  1 − exp(−(7/9)·(x/X0)/sin θ); the gas converts it uniformly along its path. The e+e− pair is collinear
  with the photon, the electron taking the energy fraction x ~ dσ/dx ∝ 1 − (4/3)·x(1 − x) (complete
  screening). A photon converts at most once. Origin code 2.
- **Decays in flight.** Every π± and K± gets an exponential proper decay length (cτ = 780.45 / 371.2 cm);
  when its helix reaches that path length before it leaves the TPC (or ranges out after ``max_turns``),
  its path is capped there and a charged daughter starts at that helix point: π → μν; K → μν (63.56 %),
  K → π±π0 (20.67 %). The daughter momentum is the isotropic 2-body momentum p* boosted along the
  parent. K± modes with ≥ 3 bodies (15.8 %) end the kaon without a simulated daughter, the π0 of
  K → π±π0 is not followed, and daughters do not decay again (one generation: the muon cτ is 659 m).
  Origin code 3.

Weak decays of K0S, Λ, Σ, Ξ, Ω are done by PYTHIA with its displaced vertices (origin code 1, see
:mod:`fm4npp.data.pythia`).
"""

from __future__ import annotations

import numpy as np

from fm4npp.data.fastsim import helix
from fm4npp.data.fastsim.geometry import Z_MAX_CM
from fm4npp.data.fastsim.scattering import MATERIAL
from fm4npp.data.schema import ORIGIN_CONVERSION, ORIGIN_DECAY_IN_FLIGHT

ELECTRON_MASS_GEV = 0.000510999
MUON_MASS_GEV = 0.1056584
PION_MASS_GEV = 0.13957039
PI0_MASS_GEV = 0.1349768
KAON_MASS_GEV = 0.493677
CTAU_CM = {211: 780.45, 321: 371.2}  # SPEC §3.6 (PDG)
KAON_MUNU_BR = 0.6356  # SPEC §3.6
KAON_PIPI0_BR = 0.2067  # SPEC §3.6
#: (radius cm, x/X0) of the thin layers in front of the TPC gas, shared with multiple scattering.
CONVERSION_LAYERS = MATERIAL
GAS_R_CM = (20.0, 78.0)  # SPEC §2.1 envelope: gas between the inner and the outer field cage
GAS_X0_CM = 14260.0  # SPEC §3.5: Ne:CF4 50:50, X0 ≈ 142.6 m
CONVERSION_FACTOR = 7.0 / 9.0  # pair-production mean free path = (9/7)·X0
MIN_PHOTON_GEV = 2 * ELECTRON_MASS_GEV


def two_body_momentum(m_parent: float, m1: float, m2: float) -> float:
    """Daughter momentum (GeV/c) in the rest frame of a 2-body decay."""
    return float(np.sqrt((m_parent**2 - (m1 + m2) ** 2) * (m_parent**2 - (m1 - m2) ** 2)) / (2 * m_parent))


def sample_pair_fraction(n: int, rng: np.random.Generator) -> np.ndarray:
    """Energy fraction x of the electron, dσ/dx ∝ 1 − (4/3)·x(1 − x) on [0, 1], by rejection. (n,)."""
    out = np.empty(0)
    while len(out) < n:
        m = 2 * (n - len(out)) + 8
        x = rng.random(m)
        keep = rng.random(m) < 1 - (4 / 3) * x * (1 - x)  # the density's maximum is 1 (x = 0, 1)
        out = np.r_[out, x[keep]]
    return out[:n]


def _radial_path(x0: np.ndarray, y0: np.ndarray, ux: np.ndarray, uy: np.ndarray, r: float) -> np.ndarray:
    """Transverse distance s ≥ 0 along the unit direction (ux, uy) from (x0, y0) to the outward crossing
    of radius r (nan where the start lies outside r). (P,)."""
    b = x0 * ux + y0 * uy
    c = x0**2 + y0**2 - r**2
    with np.errstate(invalid="ignore"):
        s = -b + np.sqrt(b**2 - c)
    return np.where(c <= 0, s, np.nan)


def convert_photons(photons: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """e+e− rows (particle-table columns) of the photons in ``photons`` that convert (SPEC §3.6)."""
    n = len(photons["event"])
    px, py, pz = photons["px"], photons["py"], photons["pz"]
    pt = np.hypot(px, py)
    p = np.sqrt(pt**2 + pz**2)
    ok = (pt > 0) & (p > MIN_PHOTON_GEV)
    ux, uy = np.where(ok, px / np.maximum(pt, 1e-12), 1.0), np.where(ok, py / np.maximum(pt, 1e-12), 0.0)
    cot = pz / np.maximum(pt, 1e-12)
    path_per_s = p / np.maximum(pt, 1e-12)  # 3D path per unit transverse distance = 1 / sin θ
    x0, y0, z0 = photons["vx"], photons["vy"], photons["vz"]
    s_conv = np.full(n, np.nan)
    for r, x_over_x0 in CONVERSION_LAYERS:
        s = _radial_path(x0, y0, ux, uy, r)
        prob = 1 - np.exp(-CONVERSION_FACTOR * x_over_x0 * path_per_s)
        new = ok & np.isnan(s_conv) & np.isfinite(s) & (rng.random(n) < prob)
        s_conv = np.where(new, s, s_conv)
    s_in = np.nan_to_num(_radial_path(x0, y0, ux, uy, GAS_R_CM[0]), nan=0.0)
    s_out = _radial_path(x0, y0, ux, uy, GAS_R_CM[1])
    gas_len = np.nan_to_num(s_out - s_in, nan=0.0).clip(0, None) * path_per_s
    prob = 1 - np.exp(-CONVERSION_FACTOR * gas_len / GAS_X0_CM)
    u = rng.random(n)
    new = ok & np.isnan(s_conv) & (u < prob)
    # Uniform along the path (the survival factor varies by < 0.4 % across the gas).
    s_conv = np.where(new, s_in + rng.random(n) * (np.nan_to_num(s_out) - s_in), s_conv)
    zc = z0 + s_conv * cot
    conv = np.flatnonzero(np.isfinite(s_conv) & (np.abs(zc) < Z_MAX_CM))
    frac = sample_pair_fraction(len(conv), rng)
    rows = []
    for pdg, f in ((11, frac), (-11, 1 - frac)):
        rows.append(
            _rows(
                photons, conv, pdg, -np.sign(pdg), ELECTRON_MASS_GEV,
                px[conv] * f, py[conv] * f, pz[conv] * f,
                x0[conv] + s_conv[conv] * ux[conv], y0[conv] + s_conv[conv] * uy[conv], zc[conv],
                ORIGIN_CONVERSION,
            )
        )  # fmt: skip
    electrons, positrons = rows
    return {k: np.concatenate([electrons[k], positrons[k]]) for k in electrons}


def decay_in_flight(
    table: dict[str, np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Decays of the π±/K± of ``table`` inside the TPC (SPEC §3.6).

    Returns the new path caps (P,) for ``table['s_max_cm']`` and the daughter rows. ``table`` must carry
    its final ``max_turns`` (the parent may range out first)."""
    apdg = np.abs(table["pdg"])
    cand = np.flatnonzero(np.isin(apdg, (211, 321)) & (table["charge"] != 0) & np.isinf(table["s_max_cm"]))
    s_max = table["s_max_cm"].copy()
    sub = {k: v[cand] for k, v in table.items()}
    pt = np.hypot(sub["px"], sub["py"])
    p = np.sqrt(pt**2 + sub["pz"] ** 2)
    mass = np.where(np.abs(sub["pdg"]) == 211, PION_MASS_GEV, KAON_MASS_GEV)
    ctau = np.where(np.abs(sub["pdg"]) == 211, CTAU_CM[211], CTAU_CM[321])
    length = p / mass * ctau * rng.exponential(size=len(cand))
    hx = helix.make_helices(
        sub["vx"], sub["vy"], sub["vz"], sub["px"], sub["py"], sub["pz"],
        sub["charge"].astype(np.float64), np.full(len(cand), np.inf), sub["max_turns"],
    )  # fmt: skip
    t_dec = length / (hx.radius * np.sqrt(1 + hx.lam**2))
    # The kaon's channel is drawn for every candidate so the random stream does not depend on geometry.
    u_mode = rng.random(len(cand))
    decays = (t_dec < hx.t_lim) & (pt > 0)
    s_max[cand[decays]] = length[decays]
    is_k = np.abs(sub["pdg"]) == 321
    to_mu = decays & (~is_k | (u_mode < KAON_MUNU_BR))
    to_pi = decays & is_k & (u_mode >= KAON_MUNU_BR) & (u_mode < KAON_MUNU_BR + KAON_PIPI0_BR)
    k = np.flatnonzero(to_mu | to_pi)
    t = t_dec[k]
    psi = hx.psi0[k] - hx.h[k] * t
    xd = hx.cx[k] + hx.radius[k] * np.cos(psi)
    yd = hx.cy[k] + hx.radius[k] * np.sin(psi)
    zd = hx.z0[k] + hx.radius[k] * t * hx.lam[k]
    phi = hx.phi0[k] - hx.h[k] * t
    parent_p = np.stack([pt[k] * np.cos(phi), pt[k] * np.sin(phi), sub["pz"][k]], axis=1)
    kaon = is_k[k]
    mu = to_mu[k]
    m_d = np.where(mu, MUON_MASS_GEV, PION_MASS_GEV)
    p_star = np.where(
        mu,
        np.where(kaon, two_body_momentum(KAON_MASS_GEV, MUON_MASS_GEV, 0.0),
                 two_body_momentum(PION_MASS_GEV, MUON_MASS_GEV, 0.0)),
        two_body_momentum(KAON_MASS_GEV, PION_MASS_GEV, PI0_MASS_GEV),
    )  # fmt: skip
    pd = boost_two_body(parent_p, mass[k], p_star, m_d, rng)
    sign = np.sign(sub["charge"][k]).astype(np.int64)
    pdg = np.where(mu, -13 * sign, 211 * sign)  # μ+ is PDG −13; K+ → π+
    rows = _rows(
        sub, k, 0, sign, 0.0, pd[:, 0], pd[:, 1], pd[:, 2], xd, yd, zd, ORIGIN_DECAY_IN_FLIGHT
    )
    rows["pdg"] = pdg.astype(np.int32)
    rows["mass"] = m_d
    return s_max, rows


def boost_two_body(
    parent_p: np.ndarray, parent_m: np.ndarray, p_star: np.ndarray, m_d: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Lab momenta (n, 3) of one daughter of n 2-body decays, emitted isotropically in the parent frame
    with momentum ``p_star`` and mass ``m_d``; parents (n, 3) of mass ``parent_m``. All (n,) or (n, 3)."""
    n = len(parent_p)
    p = np.linalg.norm(parent_p, axis=1)
    e = np.sqrt(p**2 + parent_m**2)
    beta, gamma = p / e, e / parent_m
    cos_t = rng.uniform(-1, 1, size=n)
    sin_t = np.sqrt(1 - cos_t**2)
    phi = rng.uniform(0, 2 * np.pi, size=n)
    e_star = np.sqrt(p_star**2 + m_d**2)
    p_par = gamma * (p_star * cos_t + beta * e_star)
    p_perp = p_star * sin_t
    n_hat = parent_p / np.maximum(p, 1e-12)[:, None]
    # an orthonormal pair ⊥ n_hat: cross with the axis least aligned with n_hat
    ref = np.where((np.abs(n_hat[:, 2]) < 0.9)[:, None], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0])
    e1 = np.cross(n_hat, ref)
    e1 /= np.linalg.norm(e1, axis=1)[:, None]
    e2 = np.cross(n_hat, e1)
    return (
        p_par[:, None] * n_hat
        + (p_perp * np.cos(phi))[:, None] * e1
        + (p_perp * np.sin(phi))[:, None] * e2
    )


def _rows(
    src: dict[str, np.ndarray],
    idx: np.ndarray,
    pdg: int,
    charge: np.ndarray | int,
    mass: float,
    px: np.ndarray,
    py: np.ndarray,
    pz: np.ndarray,
    vx: np.ndarray,
    vy: np.ndarray,
    vz: np.ndarray,
    origin: int,
) -> dict[str, np.ndarray]:
    """Particle-table rows of len(idx) daughters of the rows ``idx`` of ``src``."""
    n = len(idx)
    return {
        "event": src["event"][idx].astype(np.int64),
        "pdg": np.full(n, pdg, dtype=np.int32),
        "charge": np.broadcast_to(np.asarray(charge), (n,)).astype(np.int8),
        "mass": np.full(n, mass),
        "px": np.asarray(px, dtype=np.float64),
        "py": np.asarray(py, dtype=np.float64),
        "pz": np.asarray(pz, dtype=np.float64),
        "vx": np.asarray(vx, dtype=np.float64),
        "vy": np.asarray(vy, dtype=np.float64),
        "vz": np.asarray(vz, dtype=np.float64),
        "s_max_cm": np.full(n, np.inf),
        "max_turns": np.zeros(n, dtype=np.int64),  # filled by the caller's SimConfig
        "origin": np.full(n, origin, dtype=np.int8),
        "primary": np.zeros(n, dtype=bool),
        "parent": np.zeros(n, dtype=np.int64),  # not exported (PARTICLE_COLUMNS has no parent)
    }


def add_secondaries(
    table: dict[str, np.ndarray],
    rng: np.random.Generator,
    max_turns: int,
    conversions: bool = True,
    decays: bool = True,
) -> dict[str, np.ndarray]:
    """``table`` without its photons (pdg 22, charge 0), with π±/K± paths capped at their decay points,
    plus conversion and decay-in-flight daughters (``max_turns`` filled where 0)."""
    photon = (table["pdg"] == 22) & (table["charge"] == 0)
    photons = {k: v[photon] for k, v in table.items()}
    out = {k: v[~photon] for k, v in table.items()}
    out["max_turns"] = np.where(out["max_turns"] > 0, out["max_turns"], max_turns)
    parts = [out]
    if conversions:
        parts.append(convert_photons(photons, rng))
    if decays:
        s_max, daughters = decay_in_flight(out, rng)
        out["s_max_cm"] = s_max
        parts.append(daughters)
    merged = {k: np.concatenate([p[k] for p in parts]) for k in out}
    merged["max_turns"] = np.where(merged["max_turns"] > 0, merged["max_turns"], max_turns)
    return merged
