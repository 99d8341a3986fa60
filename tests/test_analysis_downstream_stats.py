"""Downstream statistics (analysis/downstream_stats.py): seed summary, event bootstrap, paired bootstrap."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.downstream_stats import (
    bootstrap_table,
    event_bootstrap,
    event_matrix,
    fm_comparisons,
    paired_bootstrap,
    paired_table,
    seed_summary,
    verdict,
)


def _events(variant: str, scores: dict[str, list[float]], seed: int = 0, task: str = "tracking") -> pd.DataFrame:
    n = len(next(iter(scores.values())))
    rows = []
    for metric, values in scores.items():
        for e, v in zip(range(n), values, strict=True):
            rows.append({"cell_id": f"c-{variant}", "variant": variant, "task": task, "n_labelled": 50,
                         "seed": seed, "event_id": 100 + e, "metric": metric, "value": v})  # fmt: skip
    return pd.DataFrame(rows)


def test_pooled_ratio_and_mean_are_computed_by_hand() -> None:
    ev = _events("fm", {"ari": [1.0, 0.5, np.nan], "n_found": [1, 2, 0], "n_particles": [2, 2, 0],
                        "n_matched": [1, 2, 0], "n_tracks": [1, 4, 0]})  # fmt: skip
    mat = event_matrix(ev)
    assert event_bootstrap(mat, "ari", n_boot=50)[0] == 0.75  # NaN event (no points) left out
    assert event_bootstrap(mat, "efficiency", n_boot=50)[0] == 3 / 4  # pooled, not a mean of ratios
    assert event_bootstrap(mat, "purity", n_boot=50)[0] == 3 / 5


def test_seeds_are_combined_per_event() -> None:
    ev = pd.concat([_events("fm", {"n_correct": [1, 3], "n_points": [4, 4]}, seed=0, task="pid"),
                    _events("fm", {"n_correct": [3, 1], "n_points": [4, 4]}, seed=1, task="pid")])  # fmt: skip
    mat = event_matrix(ev)
    assert mat["n_correct"].tolist() == [4, 4]
    value, lo, hi = event_bootstrap(mat, "accuracy", n_boot=200)
    assert value == lo == hi == 0.5  # both events have accuracy 0.5 after combining the seeds


def test_seed_summary() -> None:
    m = pd.DataFrame({"cell_id": "c", "variant": "fm", "task": "pid", "metric": "accuracy",
                      "value": [0.5, 0.7, 0.9], "seed": [0, 1, 2], "n_labelled": 50})  # fmt: skip
    s = seed_summary(m)
    assert np.isclose(s.loc[0, "mean"], 0.7)
    assert np.isclose(s.loc[0, "sd"], 0.2)
    assert s.loc[0, "n_seeds"] == 3


def test_event_bootstrap_interval_covers_the_truth_at_its_level() -> None:
    """Events with ARI ~ N(0.6, 0.2): the 95 % interval of the mean covers 0.6 in ≈ 95 % of studies."""
    rng = np.random.default_rng(0)
    hits = 0
    for study in range(200):
        mat = pd.DataFrame({"ari": rng.normal(0.6, 0.2, 60)})
        _, lo, hi = event_bootstrap(mat, "ari", n_boot=300, seed=study)
        hits += lo <= 0.6 <= hi
    assert 0.88 <= hits / 200 <= 0.99


def test_paired_bootstrap_sees_a_small_consistent_gain_that_unpaired_intervals_miss() -> None:
    """b = a − 0.02 on every event, events vary by ±0.3: unpaired intervals overlap, the paired one
    excludes 0 (the reason for pairing)."""
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.8, 80)
    a = pd.DataFrame({"ari": base + 0.02}, index=np.arange(80))
    b = pd.DataFrame({"ari": base}, index=np.arange(80))
    lo_a = event_bootstrap(a, "ari", n_boot=500)[1]
    hi_b = event_bootstrap(b, "ari", n_boot=500)[2]
    assert lo_a < hi_b  # overlapping marginal intervals
    r = paired_bootstrap(a, b, "ari", n_boot=500)
    assert np.isclose(r["delta"], 0.02)
    assert r["lo"] > 0
    assert verdict(r["lo"], r["hi"]) == "a better"
    same = paired_bootstrap(a, a, "ari", n_boot=100)
    assert same["delta"] == same["lo"] == same["hi"] == 0
    assert verdict(same["lo"], same["hi"]) == "not resolved"


def test_tables_pair_only_common_events_and_sizes() -> None:
    fm = _events("fm", {"ari": [0.9, 0.8, 0.7], "n_found": [1, 1, 1], "n_particles": [1, 1, 1],
                        "n_matched": [1, 1, 1], "n_tracks": [1, 1, 1]})  # fmt: skip
    base = _events("random_embedding", {"ari": [0.5, 0.4], "n_found": [0, 1], "n_particles": [1, 1],
                                        "n_matched": [0, 1], "n_tracks": [1, 1]})  # fmt: skip
    events = pd.concat([fm, base])
    boot = bootstrap_table(events, n_boot=100)
    assert set(boot["variant"]) == {"fm", "random_embedding"}
    assert set(boot["metric"]) == {"ari", "efficiency", "purity"}
    paired = paired_table(events, ("fm", "c-fm"), ("random_embedding", "c-random_embedding"), n_boot=100)
    assert (paired["n_events"] == 2).all()  # event 102 only in fm
    ari = paired[paired["metric"] == "ari"].iloc[0]
    assert np.isclose(ari["delta"], 0.85 - 0.45)
    assert ari["verdict"] == "a better"


def test_fm_comparisons_pair_each_fm_cell_with_its_baselines() -> None:
    """The random embedding and Hough against every FM cell; the random-init backbone only against the
    FM cell of its own size; Hough (label-free, n_labelled 0) at every labelled-set size."""
    track = {"ari": [0.9, 0.8], "n_found": [1, 1], "n_particles": [1, 1], "n_matched": [1, 1], "n_tracks": [1, 1]}
    low = {"ari": [0.5, 0.4], "n_found": [0, 1], "n_particles": [1, 1], "n_matched": [0, 1], "n_tracks": [1, 1]}
    parts = []
    for model in ("q1", "q3"):
        for n in (50, 200):
            parts.append(_events("fm", track).assign(cell_id=f"{model}-cell", n_labelled=n, model=model,
                                                     n_params={"q1": 5e3, "q3": 5e4}[model]))  # fmt: skip
            parts.append(_events("adapter_only", low).assign(cell_id=f"baseline-adapter_only-{model}", n_labelled=n))
            parts.append(_events("random_embedding", low).assign(cell_id="baseline-random_embedding", n_labelled=n))
    parts.append(_events("hough", low).assign(cell_id="baseline-hough", n_labelled=0))
    t = fm_comparisons(pd.concat(parts), n_boot=50)
    ari = t[t["metric"] == "ari"]
    assert len(ari) == 2 * 2 * 3  # 2 FM cells × 2 label counts × 3 baselines
    assert set(ari.loc[ari["b"] == "hough", "n_labelled"]) == {50, 200}
    backbone = ari[ari["b"] == "adapter_only"]
    assert {(m, c.split("/")[1]) for m, c in zip(backbone["model"], backbone["a"], strict=True)} == {
        ("q1", "q1-cell"), ("q3", "q3-cell")}  # fmt: skip
    assert np.allclose(ari["delta"], 0.85 - 0.45)
    assert (ari["n_params"].isin([5e3, 5e4])).all()
    assert fm_comparisons(pd.DataFrame()).empty


def test_label_curve_draws_the_commonest_class_floor_on_accuracy_panels() -> None:
    """The PID panel carries the accuracy of always predicting the commonest class as a dotted line;
    the tracking panel has none (ARI has no such floor)."""
    from analysis.plots_headline import label_efficiency

    rows = [{"task": t, "metric": m, "variant": "fm", "cell_id": "c", "n_labelled": n, "value": v,
             "lo": v - 0.01, "hi": v + 0.01}
            for t, m in (("tracking", "ari"), ("pid", "accuracy")) for n, v in ((50, 0.5), (200, 0.6))]  # fmt: skip
    fig = label_efficiency(pd.DataFrame(rows), floors={"pid": 0.528})
    assert fig is not None
    dotted = {ax.get_title(): [ln.get_ydata()[0] for ln in ax.get_lines() if ln.get_linestyle() == ":"]
              for ax in fig.axes if ax.get_title()}  # fmt: skip
    assert dotted == {"tracking: ari": [], "pid: accuracy": [0.528]}
