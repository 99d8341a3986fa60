"""IsoFLOP (Approach 2) cross-check, claim verdicts and what-to-run-next, each against a known answer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import isoflop, next_runs, verdicts
from analysis.fit import fit_law
from analysis.simulate import DATA_LADDER, LADDER_N, SURFACES, Design, simulate
from fm4npp.model import ladder

FM = SURFACES["fm4npp"]
A_TRUE = FM["beta"] / (FM["alpha"] + FM["beta"])  # 0.4167


def test_isoflop_recovers_the_true_exponent_without_noise() -> None:
    d = simulate(FM, Design(N=LADDER_N, D=DATA_LADDER, seeds=1), sigma=0.0)
    res = isoflop.estimate_a(d, n_boot=0)
    assert res.ok
    assert res.a == pytest.approx(A_TRUE, abs=0.015)
    assert res.budgets["bracketed"].sum() >= isoflop.MIN_BUDGETS


def test_isoflop_interval_covers_the_truth_with_seed_noise() -> None:
    d = simulate(FM, Design(N=LADDER_N[:5], D=DATA_LADDER[::2], seeds=2), sigma=0.01,
                 rng=np.random.default_rng(3))  # fmt: skip
    res = isoflop.estimate_a(d, sigma=0.01, n_boot=40)
    assert res.closed
    assert res.lo < A_TRUE < res.hi
    assert res.hi - res.lo < 0.4


def test_isoflop_says_why_when_the_optimum_is_off_the_ladder() -> None:
    # Epoch's surface puts N_opt far above these sizes: every profile minimum sits at the largest size
    d = simulate(SURFACES["epoch"], Design(N=LADDER_N[:5], D=DATA_LADDER[::2], seeds=1), sigma=0.0)
    res = isoflop.estimate_a(d, n_boot=0)
    assert not res.ok
    assert "outside the ladder" in res.why
    assert "not_bracketed" in res.warnings
    two = simulate(FM, Design(N=LADDER_N[:2], D=DATA_LADDER[::2], seeds=1), sigma=0.0)
    assert "needs ≥ 3 sizes" in isoflop.estimate_a(two, n_boot=0).why


def test_isoflop_compare_flags_disjoint_intervals() -> None:
    iso = isoflop.IsoFlopResult(0.7, 0.65, 0.75)
    text, code = isoflop.compare(iso, 0.4, 0.35, 0.45)
    assert code == "isoflop_law_disagreement"
    assert "disjoint" in text
    assert isoflop.compare(iso, 0.7, 0.6, 0.8)[1] is None


def _intervals(est: float, lo: float, hi: float, name: str = "alpha") -> pd.DataFrame:
    return pd.DataFrame([{"quantity": name, "estimate": est, "profile": (lo, hi), "delta": (lo, hi)}])


def test_power_law_verdicts() -> None:
    assert verdicts.power_law(_intervals(0.3, 0.2, 0.4), "N").status == verdicts.SUPPORTED
    assert verdicts.power_law(_intervals(0.3, -0.1, 0.7), "N").status == verdicts.INCONCLUSIVE
    assert verdicts.power_law(_intervals(0.003, 0.0, 0.005), "N").status == verdicts.NOT_SUPPORTED
    assert verdicts.power_law(_intervals(0.3, 0.2, 0.4), "N", ["alpha_at_bound"]).status == verdicts.INCONCLUSIVE
    open_iv = pd.DataFrame([{"quantity": "beta", "estimate": 0.3, "profile": (0.1, np.nan), "delta": (np.nan, 1.0)}])
    v = verdicts.power_law(open_iv, "D")
    assert v.status == verdicts.INCONCLUSIVE
    assert "open" in v.evidence
    assert verdicts.power_law(None, "N").status == verdicts.INCONCLUSIVE
    held = pd.DataFrame({"L": [1.0, 1.0], "pred": [1.75, 1.7], "pred_lo": [1.5, 1.5], "pred_hi": [2.0, 2.0],
                         "signed_rel_err": [0.75, 0.7]})  # fmt: skip
    v = verdicts.power_law(_intervals(0.3, 0.2, 0.4), "N", holdout=held)
    assert v.status == verdicts.INCONCLUSIVE
    assert "+72%" in v.evidence
    ok = held.assign(pred=1.05, pred_lo=0.95, pred_hi=1.1, signed_rel_err=0.05)
    assert verdicts.power_law(_intervals(0.3, 0.2, 0.4), "N", holdout=ok).status == verdicts.SUPPORTED
    # a cell where the larger size came out worse: the exponent stands, the evidence says which cells
    worse = verdicts.power_law(_intervals(0.3, 0.2, 0.4), "N", ["larger_model_worse"])
    assert worse.status == verdicts.SUPPORTED
    assert "a larger size came out worse in some cells (larger_model_worse" in worse.evidence
    assert "came out worse" not in verdicts.power_law(_intervals(0.3, 0.2, 0.4), "D", ["larger_model_worse"]).evidence


def _evals(gap: float, seeds: int, slope: float = 0.05) -> pd.DataFrame:
    rows = []
    rng = np.random.default_rng(0)
    for s in range(seeds):
        for n in (1e5, 1e6, 1e7):
            v = 0.5 + slope * np.log10(n / 1e5) + rng.normal(0, 0.003)
            rows.append({"task": "tracking", "metric": "ari", "variant": "fm", "n_params": n, "value": v, "seed": s})
            rows.append({"task": "tracking", "metric": "ari", "variant": "adapter_only", "n_params": n,
                         "value": v - gap + rng.normal(0, 0.003), "seed": s})  # fmt: skip
    return pd.DataFrame(rows)


def test_downstream_verdicts() -> None:
    assert verdicts.fm_vs_adapter(_evals(0.1, 3)).status == verdicts.SUPPORTED
    assert verdicts.fm_vs_adapter(_evals(-0.1, 3)).status == verdicts.NOT_SUPPORTED
    one = verdicts.fm_vs_adapter(_evals(0.1, 1))
    assert one.status == verdicts.INCONCLUSIVE  # one seed: no interval, however large the gap
    assert "3 of 3" in one.evidence
    assert verdicts.bigger_is_better(_evals(0.1, 2)).status == verdicts.SUPPORTED
    assert verdicts.bigger_is_better(_evals(0.1, 2, slope=-0.05)).status == verdicts.NOT_SUPPORTED
    assert verdicts.bigger_is_better(_evals(0.1, 2, slope=0.0)).status == verdicts.INCONCLUSIVE
    # paired event bootstraps (analysis.downstream_stats.fm_comparisons): the largest size, the fewest
    # labels, the random embedding before the random-init backbone
    paired = pd.DataFrame({
        "task": "tracking", "metric": "ari", "n_labelled": [50, 800, 50, 50],
        "model": ["q3", "q3", "q1", "q3"], "n_params": [5e4, 5e4, 5e3, 5e4],
        "b": ["random_embedding", "random_embedding", "random_embedding", "adapter_only"],
        "delta": [0.02, -0.01, -0.2, -0.3], "lo": [0.01, -0.03, -0.3, -0.4], "hi": [0.03, 0.01, -0.1, -0.2],
        "n_events": 200})  # fmt: skip
    v = verdicts.fm_vs_adapter(_evals(0.1, 1), paired=paired)
    assert v.status == verdicts.SUPPORTED
    assert v.claim == "FM beats adapter-only (random embedding) (tracking ari)"
    assert "paired" in v.interval
    assert "50 labelled" in v.interval
    assert "q3" in v.evidence
    assert "with 800 labelled events" in v.evidence
    only_backbone = verdicts.fm_vs_adapter(_evals(0.1, 1), paired=paired[paired["b"] == "adapter_only"])
    assert only_backbone.status == verdicts.NOT_SUPPORTED
    assert "random-init backbone" in only_backbone.claim
    assert verdicts.fm_vs_adapter(None).status == verdicts.INCONCLUSIVE


def test_accuracy_verdict_names_the_majority_class_floor() -> None:
    """A PID head at the accuracy of always predicting the commonest class learned nothing: the
    verdict says so beside the paired Δ (the largest size, the most labels the frame holds)."""
    rows = [{"task": "pid", "metric": m, "variant": "fm", "n_params": n, "n_labelled": k, "value": v, "seed": 0}
            for n, k, m, v in [(5e4, 50, "accuracy", 0.545), (5e4, 50, "majority_accuracy", 0.546),
                               (5e4, 200, "accuracy", 0.70), (5e4, 200, "majority_accuracy", 0.546),
                               (5e3, 50, "accuracy", 0.90)]]  # fmt: skip
    evals = pd.DataFrame(rows)
    paired = pd.DataFrame({"task": "pid", "metric": "accuracy", "n_labelled": [50, 200], "model": "q3",
                           "n_params": 5e4, "b": "random_embedding", "delta": [0.014, 0.02],
                           "lo": [0.001, 0.01], "hi": [0.03, 0.03], "n_events": 200})  # fmt: skip
    v = verdicts.fm_vs_adapter(evals, "pid", paired=paired)
    assert v.status == verdicts.SUPPORTED
    assert "FM accuracy with 200 labelled events 0.7 vs 0.546 for always predicting the commonest class" in v.evidence
    no_floor = verdicts.fm_vs_adapter(evals[evals["metric"] == "accuracy"], "pid", paired=paired)
    assert "commonest" not in no_floor.evidence


def quickstart_cells(per_flop: float = 2e-15) -> pd.DataFrame:
    """q1–q3 × three D levels, planned node-hours exactly ``per_flop`` × ladder FLOPs (the oracle)."""
    rows = []
    for m in ("q1", "q2", "q3"):
        r = ladder.get_rung(m)
        for ev in (400, 800, 1600):
            flops = ladder.flops_per_token(r) * 850.0 * ev
            n = ladder.n_params(r)
            rows.append({"cell_id": f"{m}-{ev}", "model": m, "n_params": n, "n_events": ev, "n_hits": 850.0 * ev,
                         "flops": flops, "node_hours_planned": per_flop * flops,
                         "final_val_loss": float(simulate(FM, Design(N=(n,), D=(ev * 100.0,), seeds=1),
                                                          sigma=0.0).L[0]),
                         "seed": 0, "status": "done"})  # fmt: skip
    return pd.DataFrame(rows)


def test_next_rung_and_its_cost_from_the_ladder() -> None:
    cells = quickstart_cells()
    assert [r.name for r in next_runs.next_rungs(cells, 2)] == ["q4"]  # q4 is the top of the CPU ladder
    cost = next_runs.study_cost(cells)
    assert cost is not None
    q4 = ladder.get_rung("q4")
    assert cost("q4", 3200) == pytest.approx(2e-15 * ladder.flops_per_token(q4) * 850.0 * 3200, rel=1e-9)
    m_cells = cells.assign(model=cells["model"].str.replace("q", "m"))
    assert [r.name for r in next_runs.next_rungs(m_cells, 2)] == ["m4", "m5"]


def test_design_criterion_matches_a_direct_refit_of_the_covariance() -> None:
    """Sherman–Morrison (the fast path) against inverting the information matrix with the new row."""
    from analysis.diagnostics import seed_noise
    from analysis.laws import predict_log
    from analysis.uncertainty import _jac, covariance

    d = simulate(FM, Design(N=LADDER_N[:4], D=DATA_LADDER[::2], seeds=2), sigma=0.01,
                 rng=np.random.default_rng(5))  # fmt: skip
    fit = fit_law(d, "chinchilla")
    models = {n: f"m{i + 1}" for i, n in enumerate(LADDER_N[:4])}
    cells = pd.DataFrame({"cell_id": d.cell, "model": [models[n] for n in d.N], "n_params": d.N,
                          "n_events": d.D, "node_hours_planned": d.N * d.D * 1e-14})  # fmt: skip
    table = next_runs.design_table(fit, cells, cost=lambda m, ev: 1.0, top=50)
    assert len(table) == 5 * 6  # 4 sizes + next rung × 5 D levels + 1 above
    assert table["score per node-hour"].is_monotonic_decreasing
    row = table.iloc[0]
    cov = covariance(fit)
    s2 = seed_noise(d) ** 2
    j = _jac(lambda th: predict_log(th, np.log([[row["N"], row["D (events)"]]])), fit.theta)[0]
    direct = np.linalg.inv(np.linalg.inv(cov) + np.outer(j, j) / s2)
    ia, ib = fit.law.theta_names.index("alpha"), fit.law.theta_names.index("beta")
    assert row["α width shrink"] == pytest.approx(1 - np.sqrt(direct[ia, ia] / cov[ia, ia]), rel=1e-5)
    assert row["β width shrink"] == pytest.approx(1 - np.sqrt(direct[ib, ib] / cov[ib, ib]), rel=1e-5)
