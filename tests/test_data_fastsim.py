"""Physics of the fast TPC simulation (SPEC §3.11): helix geometry, thresholds, acceptance, labels."""

from __future__ import annotations

import numpy as np
import pytest

from fm4npp.data.fastsim import SimConfig, energy, helix, simulate_particles
from fm4npp.data.fastsim.geometry import N_ROWS, R_PER_GEV_CM, ROW_RADIUS_CM, Z_MAX_CM, row_of_radius
from fm4npp.data.gun import MASS_GEV
from fm4npp.data.schema import pid_class

EXACT = SimConfig(scattering=False, hit_efficiency=1.0, curler_mean=0.0, max_turns=4)


def table(pt: float, eta: float = 0.0, pdg: int = 211, phi: float = 0.3, **kw: float) -> dict:
    """A one-particle table from the origin (vertex overridable with vx/vy/vz)."""
    charge = -np.sign(pdg) if abs(pdg) in (11, 13) else np.sign(pdg)
    return {
        "event": np.array([0]),
        "pdg": np.array([pdg], np.int32),
        "charge": np.array([charge], np.int8),
        "mass": np.array([MASS_GEV[abs(pdg)]]),
        "px": np.array([pt * np.cos(phi)]),
        "py": np.array([pt * np.sin(phi)]),
        "pz": np.array([pt * np.sinh(eta)]),
        "vx": np.array([kw.get("vx", 0.0)]),
        "vy": np.array([kw.get("vy", 0.0)]),
        "vz": np.array([kw.get("vz", 0.0)]),
        "s_max_cm": np.array([np.inf]),
        "max_turns": np.array([int(kw.get("max_turns", 4))]),
        "origin": np.array([0], np.int8),
        "primary": np.array([True]),
        "parent": np.array([0]),
    }


def exact_crossings(pt: float, eta: float = 0.0, **kw: float) -> helix.Crossings:
    t = table(pt, eta, **kw)
    hx = helix.make_helices(
        t["vx"], t["vy"], t["vz"], t["px"], t["py"], t["pz"],
        t["charge"].astype(float), t["s_max_cm"], t["max_turns"],
    )  # fmt: skip
    return helix.crossings(hx, ROW_RADIUS_CM)


def test_helix_radius_is_238_3_cm_per_gev() -> None:
    assert pytest.approx(238.3, abs=0.05) == R_PER_GEV_CM
    cr = exact_crossings(1.0)
    # algebraic circle fit through the crossing points
    a = np.c_[cr.x, cr.y, np.ones_like(cr.x)]
    sol, *_ = np.linalg.lstsq(a, cr.x**2 + cr.y**2, rcond=None)
    radius = np.sqrt(sol[2] + (sol[0] / 2) ** 2 + (sol[1] / 2) ** 2)
    assert radius == pytest.approx(238.3, abs=0.5)


def test_one_gev_pion_at_eta0_gives_48_hits_on_the_rows() -> None:
    hits, parts = simulate_particles(table(1.0), EXACT, np.random.default_rng(1))
    assert len(hits["x"]) == N_ROWS
    assert sorted(hits["layer"].tolist()) == list(range(N_ROWS))
    r = np.hypot(hits["x"], hits["y"])
    np.testing.assert_allclose(np.sort(r), ROW_RADIUS_CM, atol=1e-4)
    assert parts["n_hits"][0] == N_ROWS


@pytest.mark.parametrize(("pt", "reaches_first", "reaches_last"), [
    (0.0655, False, False), (0.0665, True, False), (0.157, True, False), (0.1590, True, True),
])  # fmt: skip
def test_looper_thresholds_66_and_158_mev(pt: float, reaches_first: bool, reaches_last: bool) -> None:
    layers = set(exact_crossings(pt).surface.tolist())
    assert (0 in layers) == reaches_first
    assert (N_ROWS - 1 in layers) == reaches_last


def test_looper_0_12_gev_stays_below_2r_and_returns() -> None:
    cr = exact_crossings(0.12)
    two_r = 2 * 0.12 * R_PER_GEV_CM
    assert two_r == pytest.approx(57.2, abs=0.05)
    assert np.hypot(cr.x, cr.y).max() < two_r
    assert (cr.cos_beta < 0).any(), "a looper must have return-branch crossings"
    assert (cr.cos_beta > 0).any()
    # more turns give more crossings, each turn repeating the rows
    more = exact_crossings(0.12, max_turns=8)
    assert len(more.t) > len(cr.t)
    assert cr.t.max() < 4 * 2 * np.pi


def test_z_acceptance_105_5_cm() -> None:
    hits, _ = simulate_particles(table(1.0, eta=1.3), EXACT, np.random.default_rng(0))
    assert 0 < len(hits["z"]) < N_ROWS
    assert np.abs(hits["z"]).max() < Z_MAX_CM + 0.01
    hits, _ = simulate_particles(table(1.0, eta=0.5, vz=200.0), EXACT, np.random.default_rng(0))
    assert len(hits["z"]) == 0


def test_noise_iff_pt_below_60_mev_and_labels() -> None:
    rows = [
        table(0.05, pdg=11, vx=50.0),
        table(0.5, pdg=321),
        table(0.8, pdg=-2212),
        table(2.0, pdg=-11),
    ]
    tab = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    hits, parts = simulate_particles(tab, EXACT, np.random.default_rng(3))
    assert parts["particle_id"].tolist() == [1, 2, 3, 4]
    noisy = hits["particle_id"] == 1
    assert noisy.any()
    assert hits["noise"][noisy].all()
    assert not hits["noise"][~noisy].any()
    assert (hits["track_id"][noisy] == 0).all()
    np.testing.assert_array_equal(hits["track_id"][~noisy], hits["particle_id"][~noisy])
    expected = {1: 4, 2: 2, 3: 3, 4: 4}
    for pid, cls in expected.items():
        assert (hits["pid"][hits["particle_id"] == pid] == cls).all()
    assert pid_class(np.array([13, 3222, 22])).tolist() == [0, 0, 0]


def test_sector_gaps_remove_hits_and_merging_combines_neighbours() -> None:
    cfg = SimConfig(scattering=False, hit_efficiency=1.0, curler_mean=0.0, merge=False)
    # φ = 0 sits on a sector centre; φ = π/12 on a sector boundary (dead gap)
    hits, _ = simulate_particles(table(50.0, phi=np.pi / 12), cfg, np.random.default_rng(0))
    assert len(hits["x"]) < N_ROWS
    two = [table(5.0, phi=0.2), table(5.0, phi=0.2 + 1e-4)]
    tab = {k: np.concatenate([r[k] for r in two]) for k in two[0]}
    unmerged, _ = simulate_particles(tab, cfg, np.random.default_rng(0))
    merged, _ = simulate_particles(tab, EXACT, np.random.default_rng(0))
    assert len(unmerged["x"]) == 2 * N_ROWS
    assert len(merged["x"]) == N_ROWS
    assert merged["energy"].sum() == pytest.approx(unmerged["energy"].sum(), rel=0.05)


def test_energy_bethe_bloch_and_moyal() -> None:
    bg = np.geomspace(0.3, 1e4, 400)
    f = energy.aleph_bethe_bloch(bg)
    assert f.min() > 0
    assert energy.mean_dedx_kev_per_cm(np.array([0.5]), np.array([0.13957]))[0] == pytest.approx(
        energy.MIP_KEV_PER_CM, rel=0.1
    )
    # a slow proton ionises far more than a MIP
    assert energy.mean_dedx_kev_per_cm(np.array([0.3]), np.array([0.938]))[0] > 3 * energy.MIP_KEV_PER_CM
    x = energy.moyal(200_000, 0.24, np.random.default_rng(0))
    assert x.mean() == pytest.approx(1.0, abs=0.01)


def test_row_of_radius_round_trip() -> None:
    assert row_of_radius(ROW_RADIUS_CM).tolist() == list(range(N_ROWS))
    assert row_of_radius(np.array([10.0, 80.0])).tolist() == [-1, -1]
