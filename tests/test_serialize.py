"""Serialization: normalisation constants, bin edges artefact, sweep orders, fixed and compat modes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from fm4npp.data.fastsim.geometry import ROW_RADIUS_CM
from fm4npp.data.knn import knn_later_ref
from fm4npp.data.schema import Event, make_hits
from fm4npp.data.serialize import (
    ORDERS,
    PHI_SEAM_FIXED,
    Mode,
    VoxelEdges,
    fit_edges,
    hilbert_key,
    leakage_fraction,
    morton_key,
    normalized_features,
    order_key,
    serialize_event,
)
from fm4npp.errors import ConfigError, DataError


def _event(seed: int, n: int = 300) -> Event:
    """Hits on the 48 pad rows, uniform in φ and |η| < 1.1, with track ids 0..9."""
    rng = np.random.default_rng(seed)
    r = ROW_RADIUS_CM[rng.integers(0, 48, n)]
    phi = rng.uniform(-math.pi, math.pi, n)
    eta = rng.uniform(-1.1, 1.1, n)
    hits = make_hits(
        x=r * np.cos(phi),
        y=r * np.sin(phi),
        z=r * np.sinh(eta),
        energy=rng.uniform(0, 600, n),
        track_id=rng.integers(0, 10, n),
        pid=rng.integers(0, 5, n),
        noise=rng.random(n) < 0.1,
    )
    return Event(seed, hits)


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return [_event(s) for s in range(6)]


@pytest.fixture(scope="module")
def edges(events: list[Event]) -> VoxelEdges:
    return fit_edges(events, mode="fixed")


def test_normalisation_constants() -> None:
    hits = make_hits(
        x=np.array([31.371997833251953, 0.0]),
        y=np.array([0.0, -75.38493347167969]),
        z=np.array([0.0, 0.0]),
        energy=np.array([253.0982, 253.0982 + 268.7093]),
    )
    f = normalized_features(Event(0, hits))
    np.testing.assert_allclose(f[:, 0], [0.0, 1.0], atol=1e-6)  # (E − 253.0982) / 268.7093
    np.testing.assert_allclose(f[:, 1], [0.5, 0.5], atol=1e-7)  # (η + 2) / 4
    np.testing.assert_allclose(f[:, 2], [0.5, 0.25], atol=1e-7)  # (φ + π) / 2π
    np.testing.assert_allclose(f[:, 3], [0.0, 1.0], atol=1e-6)  # first / last row centre ± 0.2 mm
    assert f.dtype == np.float32


def test_edges_shape_and_module_splits(edges: VoxelEdges) -> None:
    assert (len(edges.eta), len(edges.phi), len(edges.r)) == (9, 9, 7)
    assert edges.eta[0] == edges.phi[0] == edges.r[0] == 0.0
    assert edges.eta[-1] == edges.r[-1] == 1.0
    to_cm = [31.371997833251953 + v * 44.012935638427734 for v in edges.r]
    assert ROW_RADIUS_CM[15] < to_cm[2] < ROW_RADIUS_CM[16]  # split between modules R1 | R2
    assert ROW_RADIUS_CM[31] < to_cm[4] < ROW_RADIUS_CM[32]  # R2 | R3
    assert edges.phi_offset == PHI_SEAM_FIXED


def test_edges_round_trip_and_errors(edges: VoxelEdges, tmp_path: Path) -> None:
    p = tmp_path / "edges.json"
    edges.save(p)
    assert VoxelEdges.load(p) == edges
    with pytest.raises(DataError, match="missing"):
        VoxelEdges.load(tmp_path / "nope.json")
    doc = json.loads(p.read_text())
    doc["eta"][3] += 0.01
    p.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="hash"):
        VoxelEdges.load(p)
    p.write_text("{not json")
    with pytest.raises(DataError, match="unreadable"):
        VoxelEdges.load(p)


@pytest.mark.parametrize("order", ORDERS)
def test_fixed_mode_contract(events: list[Event], edges: VoxelEdges, order: str) -> None:
    ev = events[0]
    s = serialize_event(ev, edges, order=order, mode="fixed", k=7)
    n = ev.n_hits
    assert sorted(s.perm.tolist()) == list(range(n))
    np.testing.assert_array_equal(s.feats, normalized_features(ev)[s.perm])
    np.testing.assert_array_equal(s.track_id, ev.hits["track_id"][s.perm])
    np.testing.assert_array_equal(s.noise, ev.hits["noise"][s.perm])
    assert s.targets.shape == (n, 7, 3)
    assert s.target_mask.shape == (n, 7)
    rows, cols = np.nonzero(s.target_mask)
    j = s.nbr[rows, cols]
    assert np.all(j > rows)
    assert np.all(s.feats[j, 3] > s.feats[rows, 3])
    np.testing.assert_array_equal(s.targets[rows, cols], s.feats[j, 1:])
    assert np.all(s.targets[~s.target_mask] == 0)
    assert leakage_fraction(s) == 0.0
    # targets = the k nearest later hits in the final sequence (wrapped φ), against the dense ref
    ref, _ = knn_later_ref(s.feats[:, 1:].astype(np.float64), np.arange(n), 7)
    np.testing.assert_array_equal(np.where(s.target_mask, s.nbr, -1), ref)


@pytest.mark.parametrize("mode", ["fixed", "compat"])
def test_fast_serialization_equals_the_dense_reference(events: list[Event], mode: str) -> None:
    """The fused numba targets equal the dense search + numpy assembly, field by field."""
    e = fit_edges(events, mode=mode)  # type: ignore[arg-type]
    for ev in events[:3]:
        fast = serialize_event(ev, e, mode=mode, k=12)  # type: ignore[arg-type]
        ref = serialize_event(ev, e, mode=mode, k=12, reference=True)  # type: ignore[arg-type]
        for name in ("feats", "perm", "targets", "target_mask", "nbr", "track_id", "pid", "noise"):
            np.testing.assert_array_equal(getattr(fast, name), getattr(ref, name), err_msg=name)
        assert fast.target_mask.any()


def test_fixed_mode_is_independent_of_hit_order(events: list[Event], edges: VoxelEdges) -> None:
    ev = events[1]
    shuffle = np.random.default_rng(0).permutation(ev.n_hits)
    ev2 = Event(ev.event_id, {k: v[shuffle] for k, v in ev.hits.items()})
    a, b = serialize_event(ev, edges), serialize_event(ev2, edges)
    np.testing.assert_array_equal(a.feats, b.feats)
    np.testing.assert_array_equal(a.targets, b.targets)
    np.testing.assert_array_equal(shuffle[b.perm], a.perm)


def test_epr_raster_rank(edges: VoxelEdges) -> None:
    # EPR: rank = q·64 + p·8 + e with (e, p, q) the η, φ, r bins (SPEC §4.2)
    mid = lambda e, i: 0.5 * (e[i] + e[i + 1])
    phi = (mid(edges.phi, 5) + edges.phi_offset) % 1.0
    c = np.array([[mid(edges.eta, 2), phi, mid(edges.r, 4)]])
    assert order_key(c, edges, "EPR")[0] == 4 * 64 + 5 * 8 + 2
    assert order_key(c, edges, "RPE")[0] == 2 * 48 + 5 * 6 + 4
    with pytest.raises(ConfigError, match="unknown order"):
        order_key(c, edges, "XYZ")


def test_compat_mode_matches_released_pipeline(events: list[Event]) -> None:
    ev = events[2]
    e = fit_edges(events, mode="compat")
    s = serialize_event(ev, e, order="EPR", mode="compat", k=5)
    f = normalized_features(ev)
    # [R]: r sort, targets = nearest later in the r-sorted list (no φ wrap), stable cell sort
    rs = np.argsort(f[:, 3], kind="quicksort")
    ref_nb, _ = knn_later_ref(
        f[rs, 1:].astype(np.float64), np.arange(len(f)), 5, strict_r=False, wrap_phi=False
    )
    key = order_key(f[rs, 1:].astype(np.float64), e, "EPR")
    seq = np.argsort(key, kind="stable")
    np.testing.assert_array_equal(s.perm, rs[seq])
    want = np.where(
        ref_nb[seq] >= 0, f[rs[np.maximum(ref_nb[seq], 0)], 1:].transpose(2, 0, 1), 0
    ).transpose(1, 2, 0)
    np.testing.assert_array_equal(s.targets, want.astype(np.float32))
    assert leakage_fraction(s) > 0.05  # the defect of SPEC §4.4, logged
    with pytest.raises(ConfigError, match="compat"):
        serialize_event(ev, fit_edges(events, mode="fixed"), mode="compat")


def test_space_filling_curves() -> None:
    g = np.stack(np.meshgrid(*(np.arange(4),) * 3, indexing="ij"), -1).reshape(-1, 3)
    for fn in (hilbert_key, morton_key):
        assert sorted(fn(g, 2).tolist()) == list(range(64))  # bijective on the 4³ grid
    walk = g[np.argsort(hilbert_key(g, 2))]
    assert np.all(np.abs(np.diff(walk, axis=0)).sum(1) == 1)  # Hilbert: unit steps only
    assert morton_key(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]]), 1).tolist() == [4, 2, 1]


def _edge_events(ev: Event) -> list[Event]:
    """Empty, one hit, fewer hits than k, every hit twice (exact ties), hits on the φ seam of
    either mode (φ = ±π and the fixed-mode seam φ_n = 1/24) at equal radii."""
    h = ev.hits

    def take(idx: np.ndarray) -> Event:
        return Event(ev.event_id, {name: col[idx] for name, col in h.items()})

    r = np.repeat(ROW_RADIUS_CM[[3, 3, 20, 40]], 6)
    phi = np.tile(
        [-math.pi, math.pi, -math.pi + 2 * math.pi / 24, 0.0, 1e-7 - math.pi, -1e-7 + math.pi], 4
    )
    seam = make_hits(
        x=r * np.cos(phi), y=r * np.sin(phi), z=np.tile([0.0, 5.0, -5.0, 0.0, 1.0, 1.0], 4),
        energy=np.full(24, 200.0), track_id=np.arange(24), pid=np.zeros(24), noise=np.zeros(24, bool),
    )  # fmt: skip
    return [
        take(np.arange(0)),
        take(np.arange(1)),
        take(np.arange(5)),
        take(np.concatenate([np.arange(ev.n_hits), np.arange(ev.n_hits)])),
        Event(99, seam),
    ]


def _edges_through_hits(ev: Event, mode: Mode) -> VoxelEdges:
    """Bin edges equal to coordinates of hits of ``ev`` (hits exactly on edges: side='left')."""
    f = normalized_features(ev)[:, 1:].astype(np.float64)
    offset = PHI_SEAM_FIXED if mode == "fixed" else 0.0
    phi = np.mod(f[:, 1] - offset, 1.0) if offset else f[:, 1]

    def pick(v: np.ndarray, nb: int) -> tuple[float, ...]:
        inner = np.sort(v)[np.linspace(0, len(v) - 1, nb + 1).astype(int)[1:-1]]
        return (0.0, *inner.tolist(), 1.0)

    return VoxelEdges(pick(f[:, 0], 8), pick(phi, 8), pick(f[:, 2], 6), offset, 1)


@pytest.mark.parametrize("mode", ["fixed", "compat"])
@pytest.mark.parametrize("order", ["EPR", "RPE", "r", "hilbert"])
def test_fast_serialization_edge_cases(events: list[Event], mode: Mode, order: str) -> None:
    """The numba path equals the numpy + dense path on events that stress ties, the seam and
    hits on bin edges."""
    e = fit_edges(events, mode=mode)
    for ev in [*_edge_events(events[0]), events[0]]:
        if ev is events[0]:
            e = _edges_through_hits(ev, mode)
        for k in (1, 12):
            fast = serialize_event(ev, e, order=order, mode=mode, k=k)
            ref = serialize_event(ev, e, order=order, mode=mode, k=k, reference=True)
            for name in ("feats", "perm", "targets", "target_mask", "nbr", "track_id", "pid"):
                np.testing.assert_array_equal(getattr(fast, name), getattr(ref, name), err_msg=name)
            np.testing.assert_array_equal(fast.noise, ref.noise)
            assert fast.targets.shape == (ev.n_hits, k, 3)
