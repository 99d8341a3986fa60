"""Uncertainty: cluster bootstrap, profile likelihood, delta method, coverage by simulation (SCALING §3)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA

from analysis.bootstrap import cr2_residuals
from analysis.fit import fit_law
from analysis.laws import EPOCH_REFIT_CI95, HOFFMANN_ROUNDED
from analysis.simulate import DATA_LADDER, LADDER_N, SURFACES, Design, coverage, simulate
from analysis.uncertainty import (
    bootstrap,
    compare_to,
    delta_interval,
    log_prediction_band,
    profile_interval,
    resample_indices,
)

EPOCH_CSV = SHARED_DATA / "chinchilla_svg_extracted_data.csv"
EPOCH_CI = EPOCH_REFIT_CI95  # SCALING §9.1


@pytest.fixture(scope="module")
def epoch_fit():
    if not EPOCH_CSV.is_file():
        pytest.skip(f"Epoch fixture absent: {EPOCH_CSV}")
    df = pd.read_csv(EPOCH_CSV).sort_values("loss", kind="stable").iloc[:-5]
    n = df["Model Size"].to_numpy(float)
    return fit_law((n, df["Training FLOP"].to_numpy(float) / (6 * n), df["loss"].to_numpy(float)))


def test_bootstrap_matches_epoch_intervals(epoch_fit) -> None:
    boot = bootstrap(epoch_fit, n_boot=150, seed=1, vp_restart=False)
    assert boot.failed_fraction == 0.0
    for name, (lo, hi) in EPOCH_CI.items():
        blo, bhi = boot.ci(name)
        width = hi - lo
        # 150 draws instead of 4000: allow 25% of the width (the benchmark checks 1000 draws at 10%).
        assert abs(blo - lo) < 0.25 * width, (name, blo)
        assert abs(bhi - hi) < 0.25 * width, (name, bhi)
    lo, hi = boot.ci("N_opt", C=np.array([1e21, 1e23]))
    assert np.all(lo < hi)
    assert lo.shape == (2,)


def test_profile_intervals_close_and_bracket(epoch_fit) -> None:
    for name in ("alpha", "beta", "E"):
        p = profile_interval(epoch_fit, name)
        assert p.closed
        assert p.lo < p.estimate < p.hi
        lo, hi = EPOCH_CI[name]
        assert p.lo < hi
        assert p.hi > lo
        _, dlo, dhi = delta_interval(epoch_fit, name)
        assert dlo[0] < p.estimate < dhi[0]


def test_open_profile_interval_on_flat_ridge() -> None:
    """Two D levels and no floor in sight: E is not identified from above, so its interval stays open."""
    rng = np.random.default_rng(3)
    data = simulate(
        SURFACES["fm4npp"], Design(N=(3e5, 1e6, 3e6), D=(1e5, 2e5), seeds=2), sigma=0.03, rng=rng
    )
    fit = fit_law(data, check_order=False)
    p = profile_interval(fit, "E")
    assert not p.closed


def test_compare_to_rejects_hoffmann_on_epoch(epoch_fit) -> None:
    stat, pval = compare_to(epoch_fit, HOFFMANN_ROUNDED)
    assert stat > 100
    assert pval < 1e-10
    stat0, p0 = compare_to(epoch_fit, epoch_fit.params)
    assert stat0 == pytest.approx(0.0, abs=1e-9)
    assert p0 == pytest.approx(1.0)


def test_prediction_band_wider_than_confidence_band() -> None:
    data = simulate(SURFACES["fm4npp"], Design(seeds=3), sigma=0.01, rng=np.random.default_rng(0))
    fit = fit_law(data, check_order=False)
    n, d = np.array([1e8]), np.array([1e7])
    clo, chi = log_prediction_band(fit, {"N": n, "D": d})
    plo, phi = log_prediction_band(fit, {"N": n, "D": d}, prediction=True)
    assert plo[0] < clo[0] < fit.predict(N=n, D=d)[0] < chi[0] < phi[0]


def test_single_seed_prediction_band_covers_runs_at_their_noise_level() -> None:
    """Known law, one seed, log-normal noise σ = 0.05: the band's run term must be ≈ σ (residual mean
    square over n − p), and 95% bands must cover about 95% of fresh runs; a median-based scale
    collapses when the law fits several points almost exactly and covers less."""
    from analysis.uncertainty import residual_variance

    sigma, covered, total, scales = 0.05, 0, 0, []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        data = simulate(SURFACES["fm4npp"], Design(seeds=1), sigma=sigma, rng=rng)
        fit = fit_law(data, check_order=False)
        scales.append(np.sqrt(residual_variance(fit)))
        fresh = simulate(SURFACES["fm4npp"], Design(seeds=1), sigma=sigma, rng=rng)
        lo, hi = log_prediction_band(fit, {"N": fresh.N, "D": fresh.D}, prediction=True)
        covered += int(((lo <= fresh.L) & (hi >= fresh.L)).sum())
        total += len(fresh.L)
    assert 0.85 * sigma < np.median(scales) < 1.2 * sigma  # measured 0.95σ (the median scale: 0.75σ)
    assert covered / total > 0.9  # measured 0.95 (the median scale: 0.86)


def test_cluster_resampling_moves_runs_together() -> None:
    cells = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    runs = np.array([0, 0, 1, 1, 0, 1, 0, 0])  # cell 0: two runs with two checkpoints each
    rng = np.random.default_rng(0)
    for _ in range(20):  # default: one level, a drawn cell brings every run and checkpoint
        idx = resample_indices(cells, runs, rng)
        drawn = cells[idx]
        for c in np.unique(drawn):
            assert (drawn == c).sum() % (cells == c).sum() == 0
    idx = resample_indices(cells, runs, np.random.default_rng(0), two_level=True)
    picked = [(int(cells[i]), int(runs[i])) for i in idx]
    for c, r in set(picked):
        n_rows = int(((cells == c) & (runs == r)).sum())
        assert picked.count((c, r)) % n_rows == 0  # every draw of a run brings all of its rows


def test_bootstrap_scheme_choice_and_wild_intervals() -> None:
    """< 15 cells: the wild cluster bootstrap (Webb weights, CR2, t tails with G − 1 df)."""
    small = simulate(SURFACES["fm4npp"], Design(N=LADDER_N[1:4], D=DATA_LADDER[::3], seeds=2),
                     sigma=0.01, rng=np.random.default_rng(4))  # fmt: skip
    fit = fit_law(small, check_order=False)
    boot = bootstrap(fit, 60, seed=2)
    assert boot.scheme == "wild"
    assert boot.t_df == 8  # 9 cells
    assert boot.failed_fraction < 0.1
    assert len(np.unique(boot.thetas[:, 3])) > 30  # draws differ
    for name in ("alpha", "beta", "E"):
        lo, hi = boot.ci(name)
        est = fit.params[name]
        assert lo < est < hi
        if name == "E":  # positive: symmetric on the log scale
            assert np.log(est) - np.log(lo) == pytest.approx(np.log(hi) - np.log(est), rel=1e-6)
    # CR2 inflates residuals: every cell's corrected residual norm is at least the raw one.
    cells = fit.data.cell_ids()
    raw, cor = -fit.residuals(), cr2_residuals(fit, cells)
    for c in np.unique(cells):
        assert np.linalg.norm(cor[cells == c]) >= np.linalg.norm(raw[cells == c]) - 1e-12
    big = fit_law(simulate(SURFACES["fm4npp"], Design(seeds=2), sigma=0.01), check_order=False)
    assert bootstrap(big, 3, vp_restart=False).scheme == "cell"
    assert bootstrap(big, 3, vp_restart=False, scheme="cell_seed").label.endswith("and seed")
    with pytest.raises(ValueError, match="allowed: auto, cell, cell_seed, wild"):
        bootstrap(big, 1, scheme="pairs")


@pytest.mark.slow
def test_coverage_by_simulation() -> None:
    """§3.5: nominal 95% intervals cover the truth 90–98% of the time on our design (100 replicas).

    ``bootstrap`` is the default scheme, one-level by cell on this 30-cell design; the wild cluster
    bootstrap (the default below 15 cells) is checked on the same replicas. The two-level scheme
    (cells then seeds) is not: it counts seed variance twice and covers ~100%.
    """
    cov = coverage(SURFACES["fm4npp"], Design(), n_rep=100, sigma=0.01, n_boot=100,
                   methods=("delta", "profile", "bootstrap", "bootstrap_wild"))  # fmt: skip
    assert set(cov["method"]) == {"delta", "profile", "bootstrap", "bootstrap_wild"}
    assert cov["coverage"].between(0.88, 0.99).all(), cov
