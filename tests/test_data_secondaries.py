"""Secondaries of the fast simulation (SPEC §3.6) against analytic oracles: pair-energy sharing,
conversion probability of the material, decay-in-flight rate and 2-body kinematics, helix continuity,
and the truth-based return-branch flag of ``data stats``."""

from __future__ import annotations

import numpy as np
import pytest

from fm4npp.data.fastsim import helix, secondaries
from fm4npp.data.fastsim.geometry import R_EXIT_CM, R_PER_GEV_CM, ROW_RADIUS_CM
from fm4npp.data.schema import ORIGIN_CONVERSION, ORIGIN_DECAY_IN_FLIGHT
from fm4npp.data.stats import return_branch


def _table(n: int, pdg: int, charge: int, mass: float, pt: float, eta: float = 0.0, **kw: float) -> dict:
    phi = np.linspace(-np.pi, np.pi, n, endpoint=False)
    return {
        "event": np.arange(n, dtype=np.int64),
        "pdg": np.full(n, pdg, np.int32),
        "charge": np.full(n, charge, np.int8),
        "mass": np.full(n, mass),
        "px": pt * np.cos(phi),
        "py": pt * np.sin(phi),
        "pz": np.full(n, pt * np.sinh(eta)),
        "vx": np.full(n, kw.get("vx", 0.0)),
        "vy": np.full(n, kw.get("vy", 0.0)),
        "vz": np.zeros(n),
        "s_max_cm": np.full(n, np.inf),
        "max_turns": np.full(n, int(kw.get("max_turns", 8)), dtype=np.int64),
        "origin": np.zeros(n, np.int8),
        "primary": np.ones(n, bool),
        "parent": np.zeros(n, np.int64),
    }


def test_pair_energy_fraction_follows_bethe_heitler_screening_limit() -> None:
    x = secondaries.sample_pair_fraction(200_000, np.random.default_rng(0))
    assert x.min() >= 0
    assert x.max() <= 1
    # density (1 − 4/3·x(1 − x)) / (7/9): mass in [0.4, 0.6] and in [0, 0.1] computed by hand
    def mass(a: float, b: float) -> float:
        prim = lambda t: t - 2 / 3 * t**2 + 4 / 9 * t**3
        return (prim(b) - prim(a)) / (7 / 9)

    assert np.mean((x > 0.4) & (x < 0.6)) == pytest.approx(mass(0.4, 0.6), abs=0.004)
    assert np.mean(x < 0.1) == pytest.approx(mass(0.0, 0.1), abs=0.003)
    assert x.mean() == pytest.approx(0.5, abs=0.003)


def test_conversion_rate_equals_material_budget_and_pairs_are_collinear() -> None:
    n = 200_000
    photons = _table(n, 22, 0, 0.0, pt=1.0, eta=0.0)
    pairs = secondaries.convert_photons(photons, np.random.default_rng(1))
    x_over_x0 = sum(x for _, x in secondaries.CONVERSION_LAYERS)
    x_over_x0 += (secondaries.GAS_R_CM[1] - secondaries.GAS_R_CM[0]) / secondaries.GAS_X0_CM
    expected = 1 - np.exp(-7 / 9 * x_over_x0)  # at η = 0 the path is radial
    n_conv = len(pairs["event"]) // 2
    assert n_conv / n == pytest.approx(expected, rel=4 / np.sqrt(expected * n))
    assert (pairs["origin"] == ORIGIN_CONVERSION).all()
    e_minus, e_plus = np.split(np.arange(2 * n_conv), 2)
    assert (pairs["pdg"][e_minus] == 11).all()
    assert (pairs["charge"][e_minus] == -1).all()
    assert (pairs["pdg"][e_plus] == -11).all()
    assert (pairs["charge"][e_plus] == 1).all()
    # momentum conservation and collinearity with the parent photon (pT = 1, direction φ of the event)
    ev = pairs["event"][e_minus]
    np.testing.assert_array_equal(ev, pairs["event"][e_plus])
    psum = np.stack([pairs[c][e_minus] + pairs[c][e_plus] for c in ("px", "py", "pz")], axis=1)
    np.testing.assert_allclose(psum[:, 0], photons["px"][ev], atol=1e-12)
    np.testing.assert_allclose(psum[:, 1], photons["py"][ev], atol=1e-12)
    # conversion points on the layer radii (most of them) or in the gas, on the photon line
    r = np.hypot(pairs["vx"][e_minus], pairs["vy"][e_minus])
    on_layer = np.isin(np.round(r, 6), [round(rr, 6) for rr, _ in secondaries.CONVERSION_LAYERS])
    in_gas = (r > secondaries.GAS_R_CM[0]) & (r < secondaries.GAS_R_CM[1])
    assert (on_layer | in_gas).all()
    assert on_layer.mean() > 0.85
    phi_v = np.arctan2(pairs["vy"][e_minus], pairs["vx"][e_minus])
    np.testing.assert_allclose(np.cos(phi_v - np.arctan2(photons["py"][ev], photons["px"][ev])), 1, atol=1e-9)


def test_two_body_boost_returns_rest_frame_momentum() -> None:
    rng = np.random.default_rng(2)
    parent = rng.normal(size=(500, 3))
    m_k = secondaries.KAON_MASS_GEV
    p_star = secondaries.two_body_momentum(m_k, secondaries.MUON_MASS_GEV, 0.0)
    assert p_star == pytest.approx(0.2355, abs=5e-4)  # PDG: K → μν, p* = 235.5 MeV/c
    assert secondaries.two_body_momentum(secondaries.PION_MASS_GEV, secondaries.MUON_MASS_GEV, 0) == (
        pytest.approx(0.02979, abs=5e-5)
    )
    m_mu = secondaries.MUON_MASS_GEV
    d = secondaries.boost_two_body(parent, np.full(500, m_k), np.full(500, p_star), np.full(500, m_mu), rng)
    p = np.linalg.norm(parent, axis=1)
    e = np.sqrt(p**2 + m_k**2)
    n_hat = parent / p[:, None]
    e_d = np.sqrt((d**2).sum(axis=1) + m_mu**2)
    e_star = (e * e_d - p * (d * n_hat).sum(axis=1)) / m_k  # daughter energy in the parent frame
    np.testing.assert_allclose(e_star, np.sqrt(p_star**2 + m_mu**2), rtol=1e-9)


def test_decay_in_flight_rate_point_and_daughters() -> None:
    n, pt = 40_000, 0.3
    mass = secondaries.PION_MASS_GEV
    tab = _table(n, 211, 1, mass, pt)
    s_max, d = secondaries.decay_in_flight(tab, np.random.default_rng(3))
    # path to the first crossing of the EMCal face (r = 90 cm) on a circle through the origin
    radius = pt * R_PER_GEV_CM
    path = radius * 2 * np.arcsin(R_EXIT_CM / (2 * radius))
    expected = 1 - np.exp(-path / (pt / mass * secondaries.CTAU_CM[211]))
    decayed = np.isfinite(s_max)
    assert decayed.mean() == pytest.approx(expected, rel=4 / np.sqrt(expected * n))
    assert len(d["event"]) == decayed.sum()
    assert (d["origin"] == ORIGIN_DECAY_IN_FLIGHT).all()
    assert (d["pdg"] == -13).all()
    assert (d["charge"] == 1).all()
    assert (d["mass"] == secondaries.MUON_MASS_GEV).all()
    # the daughter starts on the parent's helix at the decay path length
    par = d["event"]
    hx = helix.make_helices(
        tab["vx"][par], tab["vy"][par], tab["vz"][par], tab["px"][par], tab["py"][par], tab["pz"][par],
        np.ones(len(par)), np.full(len(par), np.inf), tab["max_turns"][par],
    )  # fmt: skip
    t = s_max[par] / hx.radius
    psi = hx.psi0 - hx.h * t
    np.testing.assert_allclose(d["vx"], hx.cx + hx.radius * np.cos(psi), atol=1e-9)
    np.testing.assert_allclose(d["vy"], hx.cy + hx.radius * np.sin(psi), atol=1e-9)
    assert np.hypot(d["vx"], d["vy"]).max() < R_EXIT_CM
    # the muon keeps the pion's direction within the 2-body opening angle
    p_d = np.sqrt(d["px"] ** 2 + d["py"] ** 2 + d["pz"] ** 2)
    assert np.median(p_d) == pytest.approx(0.3 * (1 + (0.1057 / 0.1396) ** 2) / 2, rel=0.1)


def test_kaon_branching_ratios_and_stable_kinds() -> None:
    n = 60_000
    tab = _table(n, -321, -1, secondaries.KAON_MASS_GEV, 0.2)  # slow K−: most decay inside the TPC
    s_max, d = secondaries.decay_in_flight(tab, np.random.default_rng(4))
    n_dec = np.isfinite(s_max).sum()
    mu = (d["pdg"] == 13).sum()  # μ− is PDG 13
    pi = (d["pdg"] == -211).sum()
    assert mu / n_dec == pytest.approx(secondaries.KAON_MUNU_BR, abs=0.01)
    assert pi / n_dec == pytest.approx(secondaries.KAON_PIPI0_BR, abs=0.01)
    assert mu + pi == len(d["event"])
    protons = _table(100, 2212, 1, 0.938, 0.2)
    s_p, d_p = secondaries.decay_in_flight(protons, np.random.default_rng(4))
    assert np.isinf(s_p).all()
    assert len(d_p["event"]) == 0


def test_add_secondaries_drops_photons_and_fills_turns() -> None:
    tab = _table(3, 211, 1, secondaries.PION_MASS_GEV, 0.5)
    ph = _table(1000, 22, 0, 0.0, 1.0)
    both = {k: np.concatenate([tab[k], ph[k]]) for k in tab}
    both["max_turns"][:] = 0
    out = secondaries.add_secondaries(both, np.random.default_rng(5), max_turns=6)
    assert not (out["pdg"] == 22).any()
    assert (out["max_turns"] == 6).all()
    assert (out["origin"] == ORIGIN_CONVERSION).sum() > 20


@pytest.mark.parametrize("charge", [1, -1])
@pytest.mark.parametrize("vx", [0.0, 12.0])
def test_return_branch_from_truth_matches_helix_direction(charge: int, vx: float) -> None:
    pt, phi = 0.12, 0.7  # a looper: outgoing and return crossings over 3 turns
    hx = helix.make_helices(
        np.array([vx]), np.array([0.0]), np.array([0.0]), np.array([pt * np.cos(phi)]),
        np.array([pt * np.sin(phi)]), np.array([0.01]), np.array([float(charge)]),
        np.array([np.inf]), np.array([3]),
    )  # fmt: skip
    cr = helix.crossings(hx, ROW_RADIUS_CM)
    assert (cr.cos_beta < 0).any()
    assert (cr.cos_beta > 0).any()
    m = len(cr.x)
    flag = return_branch(
        cr.x, cr.y, np.full(m, pt), np.full(m, phi), np.full(m, charge), np.full(m, vx), np.zeros(m)
    )
    clear = np.abs(cr.cos_beta) > 1e-6
    np.testing.assert_array_equal(flag[clear], cr.cos_beta[clear] < 0)
