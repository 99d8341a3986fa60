"""Hough track finder on particle-gun-like events built here: helices from the beam line."""

from __future__ import annotations

import numpy as np
import pytest

from fm4npp.data.schema import Event, make_hits
from fm4npp.eval.hough import CM_PER_GEV, ROW_RADII_CM, find_tracks, find_tracks_event
from fm4npp.eval.metrics_tracking import TrackingEvent, evaluate_tracking


def _gun(
    rng: np.random.Generator, n_tracks: int, n_noise: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x, y, z (cm), layer, truth id (0 = noise) of one event: pT log-uniform 0.3–3 GeV, |η| < 1,
    vertex z ~ N(0, 10 cm), σ_rφ 150 µm, σ_z 500 µm (SPEC §2.1), one hit per row."""
    zv = rng.normal(0.0, 10.0)
    cols: list[np.ndarray] = []
    r = ROW_RADII_CM
    for pid in range(1, n_tracks + 1):
        radius = CM_PER_GEV * np.exp(rng.uniform(np.log(0.3), np.log(3.0)))
        sign = rng.choice([-1.0, 1.0])
        phi0, eta = rng.uniform(-np.pi, np.pi), rng.uniform(-1.0, 1.0)
        phi = phi0 + np.arcsin(sign * r / (2 * radius)) + rng.normal(0, 0.015, 48) / r
        z = zv + np.sinh(eta) * 2 * radius * np.arcsin(r / (2 * radius)) + rng.normal(0, 0.05, 48)
        cols.append(np.stack([r * np.cos(phi), r * np.sin(phi), z, np.arange(48), np.full(48, pid)], 1))
    if n_noise:
        layer = rng.integers(0, 48, n_noise)
        phi = rng.uniform(-np.pi, np.pi, n_noise)
        rn = ROW_RADII_CM[layer]
        z = rng.uniform(-105.0, 105.0, n_noise)
        cols.append(np.stack([rn * np.cos(phi), rn * np.sin(phi), z, layer, np.zeros(n_noise)], 1))
    a = np.concatenate(cols)
    a = a[rng.permutation(len(a))]
    return a[:, 0], a[:, 1], a[:, 2], a[:, 3].astype(np.int64), a[:, 4].astype(np.int64)


def test_single_track_is_found_whole() -> None:
    rng = np.random.default_rng(3)
    x, y, z, layer, _ = _gun(rng, 1)
    pred = find_tracks(x, y, z, layer)
    assert (pred == 0).all()  # all 48 hits on one track


def test_gun_events_high_efficiency() -> None:
    rng = np.random.default_rng(7)
    events = []
    for _ in range(20):
        x, y, z, layer, truth = _gun(rng, int(rng.integers(5, 16)))
        events.append(TrackingEvent(truth, find_tracks(x, y, z, layer)))
    m = evaluate_tracking(events)
    assert m["efficiency"] >= 0.97
    assert m["ari"] >= 0.95
    assert m["fake_rate"] <= 0.05
    assert m["hit_purity"] >= 0.99


def test_noise_hits_stay_unassigned_and_layers_can_be_derived() -> None:
    rng = np.random.default_rng(11)
    x, y, z, _, truth = _gun(rng, 8, n_noise=150)
    pred = find_tracks(x, y, z)  # layer derived from r
    m = evaluate_tracking([TrackingEvent(truth, pred)])
    assert m["efficiency"] >= 0.85
    assert (pred[truth == 0] == -1).mean() >= 0.95
    assert m["ari_signal"] >= 0.9


def test_event_wrapper_and_tiny_inputs() -> None:
    rng = np.random.default_rng(5)
    x, y, z, layer, truth = _gun(rng, 3)
    event = Event(0, make_hits(x=x, y=y, z=z, layer=layer, track_id=truth))
    pred = find_tracks_event(event)
    assert len(np.unique(pred)) == 3
    assert find_tracks(np.zeros(0), np.zeros(0), np.zeros(0)).shape == (0,)
    assert (find_tracks(x[:3], y[:3], z[:3]) == -1).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_deterministic(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, y, z, layer, _ = _gun(rng, 10, n_noise=50)
    np.testing.assert_array_equal(find_tracks(x, y, z, layer), find_tracks(x, y, z, layer))
