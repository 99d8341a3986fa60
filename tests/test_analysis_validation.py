"""Validation (rollout, leave-one-group-out), downstream fits and design diagnostics (SCALING §4, §7)."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.downstream import fit_metric_vs_n, fit_sigmoid
from analysis.laws import CostLaw, allocation, fit_cost_law, numerical_allocation
from analysis.simulate import LADDER_N, SURFACES, Design, simulate
from analysis.validation import hold_out_largest, leave_one_group_out, rollout
from fm4npp.errors import FitError


@pytest.fixture(scope="module")
def noisy():
    return simulate(SURFACES["fm4npp"], Design(seeds=2), sigma=0.01, rng=np.random.default_rng(7))


def test_rollout_predicts_larger_sizes(noisy) -> None:
    pts, drift = rollout(noisy, "N")
    assert list(drift["cutoff_k"]) == [3, 4, 5]
    assert (pts["distance_decades"] > 0).all()
    assert pts["signed_rel_err"].abs().median() < 0.05
    assert set(drift.columns) >= {"alpha", "beta", "E", "a"}
    head = hold_out_largest(noisy, "N")
    assert np.allclose(head["N"], max(LADDER_N))
    with pytest.raises(FitError, match="distinct levels"):
        rollout(noisy.subset(noisy.N < 2e6), "N")


def test_leave_one_group_out(noisy) -> None:
    df, rho = leave_one_group_out(noisy, "D")
    assert len(df) == 5
    assert (df["mahalanobis"] >= 0).all()
    assert np.isnan(rho) or -1 <= rho <= 1


def test_metric_vs_n_and_saturation() -> None:
    n = np.repeat(np.array(LADDER_N), 2)
    ari = 1 - (0.05 + 2.0 * n**-0.3)
    mf = fit_metric_vs_n(n, ari, "tracking", "ARI")
    assert mf.fit is not None
    assert mf.fit.params["alpha"] == pytest.approx(0.3, rel=1e-3)
    assert mf.predict(np.array([1e9]))[0] == pytest.approx(1 - (0.05 + 2.0 * 1e9**-0.3), rel=1e-4)
    flat = np.where(n > 5e7, 0.9, 0.8) + np.tile([0.0, 0.02], len(LADDER_N))
    assert fit_metric_vs_n(n, flat, "pid", "acc").saturated


def test_sigmoid_chain() -> None:
    p = np.linspace(0.2, 0.6, 12)
    m = 0.6 / (1 + np.exp(12 * (p - 0.4))) + 0.3
    sf = fit_sigmoid(p, m)
    assert sf(np.array([0.35]))[0] == pytest.approx(0.6 / (1 + np.exp(12 * -0.05)) + 0.3, abs=1e-3)


def test_numerical_allocation_matches_closed_form_for_6nd() -> None:
    params = SURFACES["epoch"]
    c = np.array([1e21, 1e23])
    n_num, d_num = numerical_allocation(params, c, CostLaw(6.0, 1.0, 1.0))
    alloc = allocation(params, c)
    assert n_num == pytest.approx(alloc.N_opt, rel=1e-3)
    assert d_num == pytest.approx(alloc.D_opt, rel=1e-3)
    n, d = (a.ravel() for a in np.meshgrid(np.geomspace(1e6, 1e8, 4), np.geomspace(1e5, 1e7, 3)))
    law = fit_cost_law(n, d, 14.0 * n**0.88 * d)
    assert (law.k, law.p, law.q) == pytest.approx((14.0, 0.88, 1.0), rel=1e-6)
