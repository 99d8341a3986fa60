"""Tracking metrics on hand-built events; every expected number is worked out in the comments."""

from __future__ import annotations

import numpy as np
import pytest

from fm4npp.eval.metrics_tracking import (
    MatchConfig,
    TrackingEvent,
    ari_event,
    evaluate_tracking,
    match_event,
)
from fm4npp.eval.trackml_score import (
    ORDER_MATRIX,
    trackml_event_score,
    trackml_weights,
    uniform_weights,
    weight_pt,
)

GEQ = MatchConfig(strict=False)


def _ev(*groups: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate (truth id, predicted id, count) groups into (truth, pred) arrays."""
    truth = np.concatenate([np.full(n, t) for t, _, n in groups])
    pred = np.concatenate([np.full(n, y) for _, y, n in groups])
    return truth, pred


def test_perfect_tracking() -> None:
    # two particles of 6 hits found exactly, 3 noise hits left unassigned
    truth, pred = _ev((1, 10, 6), (2, 20, 6), (0, -1, 3))
    m = evaluate_tracking([TrackingEvent(truth, pred)])
    assert m["ari"] == pytest.approx(1.0)
    assert m["ari_signal"] == pytest.approx(1.0)
    assert m["ari_singleton"] == pytest.approx(1.0)  # noise singletons ↔ unassigned singletons
    assert (m["efficiency"], m["purity"], m["fake_rate"], m["duplicate_rate"]) == (1.0, 1.0, 0.0, 0.0)
    assert (m["hit_efficiency"], m["hit_purity"]) == (1.0, 1.0)
    assert m["trackml_score"] == pytest.approx(1.0)
    assert (m["n_events"], m["n_particles"], m["n_tracks"]) == (1, 2, 2)


def test_split_track_50_50_differs_between_conventions() -> None:
    # particle 1 (10 hits) split 5/5 into tracks 0 and 1; particle 2 (10 hits) found as track 2.
    truth, pred = _ev((1, 0, 5), (1, 1, 5), (2, 2, 10))
    strict = match_event(truth, pred)
    # strict: 5/10 is not > 0.5 → tracks 0 and 1 unmatched, particle 1 lost
    assert strict.track_matched.tolist() == [False, False, True]
    assert strict.particle_matched.tolist() == [False, True]
    geq = match_event(truth, pred, GEQ)
    # ≥: both halves match particle 1; tie in shared hits → smaller track id 0 is best, 1 is duplicate
    assert geq.track_matched.tolist() == [True, True, True]
    assert geq.track_duplicate.tolist() == [False, True, False]
    m = evaluate_tracking([TrackingEvent(truth, pred)])
    # strict: efficiency 1/2, 1 of 3 candidates matched → purity 1/3, fake 2/3, no duplicates
    assert m["efficiency"] == pytest.approx(0.5)
    assert m["purity"] == pytest.approx(1 / 3)
    assert m["fake_rate"] == pytest.approx(2 / 3)
    assert m["duplicate_rate"] == 0.0
    # ≥: efficiency 1, purity 1, duplicate rate 1/3
    assert m["efficiency_geq"] == 1.0
    assert m["purity_geq"] == 1.0
    assert m["duplicate_rate_geq"] == pytest.approx(1 / 3)


def test_split_track_60_40_fragment_is_fake() -> None:
    # particle 1 (10 hits) split 6/4; candidate tracks need ≥ 3 hits here.
    truth, pred = _ev((1, 0, 6), (1, 1, 4), (2, 2, 10))
    cfg = MatchConfig(min_track_hits=3)
    m = evaluate_tracking([TrackingEvent(truth, pred)], cfg)
    # track 0: 6/6 and 6/10 > 0.5 → matched; track 1: 4/10 → fake; track 2 matched
    assert m["efficiency"] == 1.0
    assert m["fake_rate"] == pytest.approx(1 / 3)
    # hit efficiency: particle 1 → 6/10, particle 2 → 1, mean 0.8; hit purity 1 for both
    assert m["hit_efficiency"] == pytest.approx(0.8)
    assert m["hit_purity"] == 1.0


def test_merged_track() -> None:
    # particles 1 (6 hits) and 2 (5 hits) merged into track 0 (11 hits); particle 3 (5 hits) → track 1
    truth, pred = _ev((1, 0, 6), (2, 0, 5), (3, 1, 5))
    m = evaluate_tracking([TrackingEvent(truth, pred)])
    # track 0: majority 1 with 6/11 > 0.5 and 6/6 → matched to 1; particle 2 lost → efficiency 2/3
    assert m["efficiency"] == pytest.approx(2 / 3)
    assert m["purity"] == 1.0  # both candidates matched
    # hit purity: particle 1 → 6/11, particle 3 → 1; hit efficiency 1 for both
    assert m["hit_purity"] == pytest.approx((6 / 11 + 1) / 2)
    assert m["hit_efficiency"] == 1.0


def test_merged_50_50_tie_goes_to_smaller_particle_id() -> None:
    # particles 2 and 1, 5 hits each, in one track: majority tie → particle 1
    truth, pred = _ev((2, 0, 5), (1, 0, 5))
    strict, geq = match_event(truth, pred), match_event(truth, pred, GEQ)
    assert strict.track_major.tolist() == [1]
    assert geq.track_major.tolist() == [1]
    # strict: 5/10 not > 0.5 → fake; ≥: 5/10 ≥ 0.5 and 5/5 → matched to particle 1
    assert strict.track_matched.tolist() == [False]
    assert geq.track_matched.tolist() == [True]
    assert geq.particle_matched.tolist() == [True, False]


def test_noise_majority_tie_makes_a_fake() -> None:
    # 3 noise hits + 3 hits of particle 4 (its only hits): tie → id 0 (noise) → fake in both conventions
    truth, pred = _ev((0, 0, 3), (4, 0, 3))
    cfg = MatchConfig(min_track_hits=3, min_particle_hits=3)
    for c in (cfg, MatchConfig(3, 3, 0.5, strict=False)):
        assert match_event(truth, pred, c).track_matched.tolist() == [False]


def test_noise_handling_in_ari() -> None:
    # truth [1,1,1,0,0,0], prediction puts one noise hit on the track, two unassigned
    truth = np.array([1, 1, 1, 0, 0, 0])
    pred = np.array([5, 5, 5, 5, -1, -1])
    a = ari_event(truth, pred)
    # all: contingency (1,5)=3, (0,5)=1, (0,-1)=2 → Σ C(n_ij,2)=4; rows C(3,2)+C(3,2)=6; cols C(4,2)+C(2,2)=7;
    # expected 6·7/C(6,2)=2.8; max (6+7)/2=6.5 → (4−2.8)/(6.5−2.8) = 0.324324…
    assert a["all"] == pytest.approx(1.2 / 3.7)
    # signal: noise dropped → [1,1,1] vs [5,5,5] identical partitions → 1
    assert a["signal"] == pytest.approx(1.0)
    # singleton: truth {1,1,1,a,b,c} vs pred {5,5,5,5,x,y}: Σ=3; rows 3; cols C(4,2)=6; expected 3·6/15=1.2;
    # max 4.5 → 1.8/3.3 = 0.545454…
    assert a["singleton"] == pytest.approx(1.8 / 3.3)
    # noise is never a truth particle: no particle to find, and the track's majority is particle 1
    m = match_event(truth, pred, MatchConfig(3, 3))
    assert m.particle_id.tolist() == [1]
    assert m.track_matched.tolist() == [True]  # 3/4 and 3/3


def test_ari_zero_for_one_cluster() -> None:
    # truth {1,1,2,2} vs one predicted cluster: Σ=2, rows 2, cols 6, expected 2·6/6=2, max 4 → 0
    assert ari_event(np.array([1, 1, 2, 2]), np.array([0, 0, 0, 0]))["all"] == pytest.approx(0.0)


def test_unassigned_hits_are_not_a_track() -> None:
    # particle 1: 6 hits on track 7, 4 unassigned; the −1 group must not count as a candidate
    truth, pred = _ev((1, 7, 6), (1, -1, 4))
    m = evaluate_tracking([TrackingEvent(truth, pred)], MatchConfig(min_track_hits=3))
    assert m["n_tracks"] == 1
    assert m["efficiency"] == 1.0  # 6/6 and 6/10 > 0.5
    assert m["hit_efficiency"] == pytest.approx(0.6)
    assert m["fake_rate"] == 0.0


def test_counts_pool_over_events_and_pt_selection() -> None:
    # event A: particle 1 (pT 1.5) found. Event B: particles 1 (pT 0.5) found, 2 (pT 0.5) and 3 (pT 2.5) lost.
    ta, ya = _ev((1, 0, 6))
    tb, yb = _ev((1, 0, 6), (2, -1, 6), (3, -1, 6))
    pa = {"particle_id": np.array([1]), "pt": np.array([1.5]), "eta": np.array([0.0])}
    pb = {"particle_id": np.array([3, 1, 2]), "pt": np.array([2.5, 0.5, 0.5]), "eta": np.zeros(3)}
    m = evaluate_tracking([TrackingEvent(ta, ya, pa), TrackingEvent(tb, yb, pb)])
    assert m["efficiency"] == pytest.approx(2 / 4)  # pooled, not the mean of 1 and 1/3
    assert m["efficiency_pt1"] == pytest.approx(1 / 2)  # pT 1.5 found, pT 2.5 lost
    eff_pt = m["efficiency_vs_pt"]
    assert isinstance(eff_pt, list)
    assert eff_pt[2] == pytest.approx(0.5)  # bin 0.4–0.6 GeV: 1 of 2
    assert eff_pt[7] == 1.0  # bin 1.4–1.6 GeV
    assert eff_pt[12] == 0.0  # bin 2.4–2.6 GeV
    assert np.isnan(eff_pt[0])


def test_order_weight_profile_for_four_hits() -> None:
    # trackml: proposal [10,8,6,5,3,3,3,5,6] stretched over 4 hits → [10, 16/3, 3, 6], sum 73/3
    expected = np.array([10, 16 / 3, 3, 6]) / (73 / 3)
    np.testing.assert_allclose(ORDER_MATRIX[4, :4], expected)
    assert ORDER_MATRIX[20].sum() == pytest.approx(1.0)


def test_pt_weight() -> None:
    # 0 below 0.05 GeV, 0.2 up to 0.5 GeV, linear to 1 at 3 GeV (1.75 GeV → 0.6), 1 above
    np.testing.assert_allclose(weight_pt(np.array([0.01, 0.3, 1.75, 5.0])), [0.0, 0.2, 0.6, 1.0])


def test_trackml_score_weighs_hits_by_pt() -> None:
    # particles 1 (pT 3 → w 1) and 2 (pT 0.5 → w 0.2), 5 hits each; only 1 found → 1 / 1.2
    truth, pred = _ev((1, 0, 5), (2, -1, 5), (0, -1, 2))
    pt = np.where(truth == 1, 3.0, np.where(truth == 2, 0.5, 0.0))
    w = trackml_weights(truth, pt=pt)
    assert w.sum() == pytest.approx(1.0)
    assert (w[truth == 0] == 0).all()
    assert trackml_event_score(truth, pred, w) == pytest.approx(1 / 1.2)
    # uniform weights: each of the 10 signal hits weighs 0.1 → 0.5
    assert trackml_event_score(truth, pred, uniform_weights(truth)) == pytest.approx(0.5)


def test_trackml_ignores_short_particles_and_needs_strict_majority() -> None:
    # particle 3 has 3 hits → weight 0; particle 1 split 5/5 → no good track (strict) → score 0
    truth, pred = _ev((1, 0, 5), (1, 1, 5), (3, 2, 3))
    w = trackml_weights(truth)
    assert (w[truth == 3] == 0).all()
    assert trackml_event_score(truth, pred, w) == 0.0


def test_empty_and_shape_mismatch() -> None:
    m = evaluate_tracking([])
    assert m["n_events"] == 0
    assert np.isnan(m["ari"])
    with pytest.raises(ValueError, match="differ"):
        evaluate_tracking([TrackingEvent(np.zeros(3), np.zeros(2))])


def test_ari_equals_sklearn() -> None:
    from sklearn.metrics import adjusted_rand_score as sk_ari

    from fm4npp.eval.metrics_tracking import adjusted_rand_score

    rng = np.random.default_rng(0)
    cases = [(np.array([3]), np.array([-1])), (np.zeros(5), np.arange(5)), (np.arange(4), np.arange(4))]
    cases += [(np.zeros(6), np.zeros(6)), (np.array([1, 1, 2, 2]), np.array([0, 0, 0, 0]))]
    for _ in range(20):
        n = int(rng.integers(2, 300))
        t = rng.integers(0, int(rng.integers(1, 20)), n)
        cases.append((t, np.where(rng.random(n) < 0.8, t * 7 - 3, rng.integers(-1, 25, n))))
    for t, y in cases:
        assert adjusted_rand_score(t, y) == pytest.approx(sk_ari(t, y), abs=1e-12)


def test_pooled_ari_uses_event_unique_labels() -> None:
    # two events, each perfectly reconstructed with the same ids 1 and 5: pooled ARI is 1 only
    # because labels are made unique per event (otherwise particle 1 of both events would merge)
    t1, y1 = _ev((1, 5, 6), (2, 6, 6))
    m = evaluate_tracking([TrackingEvent(t1, y1), TrackingEvent(t1, y1[::-1].copy())])
    assert m["ari_pooled"] == pytest.approx(1.0)


def test_event_counts_pool_to_the_headline_metrics() -> None:
    """Σ n_found / Σ n_particles, Σ n_matched / Σ n_tracks and the mean per-event ARI over events
    reproduce evaluate_tracking (what the event bootstraps of analysis/downstream_stats.py resample)."""
    from fm4npp.eval.metrics_tracking import event_counts

    rng = np.random.default_rng(3)
    events = []
    for _ in range(6):
        truth = rng.integers(0, 6, 120)
        pred = np.where(rng.random(120) < 0.8, truth, rng.integers(-1, 8, 120))
        events.append(TrackingEvent(truth=truth, pred=pred))
    cfg = MatchConfig(min_track_hits=5, min_particle_hits=5)
    rows = [event_counts(e.truth, e.pred, cfg) for e in events]
    ref = evaluate_tracking(events, cfg)
    assert np.isclose(sum(r["n_found"] for r in rows) / sum(r["n_particles"] for r in rows), ref["efficiency"])
    assert np.isclose(sum(r["n_matched"] for r in rows) / sum(r["n_tracks"] for r in rows), ref["purity"])
    assert np.isclose(np.mean([r["ari"] for r in rows]), ref["ari"])
