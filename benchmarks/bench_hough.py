"""Speed and quality of the classical Hough track finder (SPEC §10.4) on synthetic events.

Particle-gun-like events: 5–15 helices from the beam line (vertex z ~ N(0, 10 cm)), pT log-uniform
0.3–3 GeV, |η| < 1, hits at the 48 pad-row radii with σ_rφ = 150 µm and σ_z = 500 µm, optional
uniform noise hits. With ``--generated`` it also runs on fast-simulation events (fm4npp.data.generate)
with and without curlers when that module is available.

    .venv/bin/python benchmarks/bench_hough.py [--events 200] [--noise 0] [--generated]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fm4npp.eval.hough import CM_PER_GEV, ROW_RADII_CM, find_tracks
from fm4npp.eval.metrics_tracking import TrackingEvent, evaluate_tracking


def gun_event(rng: np.random.Generator, n_noise: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(hits (n, 4) x, y, z, layer; truth (n,) particle ids ≥ 1, 0 = noise)."""
    n_tracks = int(rng.integers(5, 16))
    zv = rng.normal(0.0, 10.0)
    rows: list[np.ndarray] = []
    for pid in range(1, n_tracks + 1):
        pt = float(np.exp(rng.uniform(np.log(0.3), np.log(3.0))))
        radius = CM_PER_GEV * pt
        h = rng.choice([-1.0, 1.0])
        phi0, eta = rng.uniform(-np.pi, np.pi), rng.uniform(-1.0, 1.0)
        r = ROW_RADII_CM
        phi = phi0 + np.arcsin(h * r / (2 * radius)) + rng.normal(0, 0.015, r.size) / r
        z = zv + np.sinh(eta) * 2 * radius * np.arcsin(r / (2 * radius)) + rng.normal(0, 0.05, r.size)
        keep = np.abs(z) < 105.5
        rows.append(
            np.stack([r * np.cos(phi), r * np.sin(phi), z, np.arange(48), np.full(48, pid)], 1)[keep]
        )
    if n_noise:
        layer = rng.integers(0, 48, n_noise)
        phi = rng.uniform(-np.pi, np.pi, n_noise)
        r = ROW_RADII_CM[layer]
        z = rng.uniform(-105.5, 105.5, n_noise)
        rows.append(np.stack([r * np.cos(phi), r * np.sin(phi), z, layer, np.zeros(n_noise)], 1))
    a = np.concatenate(rows)[rng.permutation(sum(len(x) for x in rows))]
    return a[:, :4], a[:, 4].astype(np.int64)


def _run(events: list[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray] | None]]) -> dict[str, float]:
    preds, t0, c0 = [], time.perf_counter(), time.process_time()
    for hits, _, _ in events:
        preds.append(find_tracks(hits[:, 0], hits[:, 1], hits[:, 2], hits[:, 3].astype(np.int64)))
    ms = 1e3 * (time.perf_counter() - t0) / max(len(events), 1)
    cpu_ms = 1e3 * (time.process_time() - c0) / max(len(events), 1)  # robust to a shared machine
    m = evaluate_tracking(
        TrackingEvent(t, p, parts) for (_, t, parts), p in zip(events, preds, strict=True)
    )
    return {
        "ms_per_event": ms,
        "cpu_ms_per_event": cpu_ms,
        **{k: v for k, v in m.items() if isinstance(v, float | int)},
    }


def _generated(
    n_events: int, curlers: bool
) -> list[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
    from fm4npp.data.fastsim import SimConfig  # imported here: PYTHIA is only needed for this row
    from fm4npp.data.generate import simulate_events

    sim = SimConfig(curler_mean=2.0 if curlers else 0.0)  # SPEC §3.9 default vs no curlers
    out = []
    for ev in simulate_events(n_events, seed=1, sim=sim):
        h = ev.hits
        hits = np.stack([h["x"], h["y"], h["z"], h["layer"]], 1).astype(np.float64)
        out.append((hits, h["track_id"].astype(np.int64), ev.particles))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--noise", type=int, default=0, help="uniform noise hits per event")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--generated", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = {}
    gun = [(*gun_event(rng, args.noise), None) for _ in range(args.events)]
    rows[f"gun ({args.noise} noise hits)"] = _run(gun)
    if args.generated:
        for curlers in (False, True):
            rows[f"fastsim curlers={'on' if curlers else 'off'}"] = _run(
                _generated(args.events, curlers)
            )
    keys = (
        "ms_per_event",
        "cpu_ms_per_event",
        "ari",
        "ari_signal",
        "efficiency",
        "efficiency_primary_pt0p2",
        "fake_rate",
    )
    keys += ("duplicate_rate", "hit_efficiency", "hit_purity", "trackml_score", "n_events")
    print(f"{'setting':32s}" + "".join(f"{k[:14]:>15s}" for k in keys))
    for name, row in rows.items():
        print(f"{name:32s}" + "".join(f"{row.get(k, float('nan')):15.4g}" for k in keys))


if __name__ == "__main__":
    main()
