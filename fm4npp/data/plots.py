"""Validation figures of an event set (matplotlib, Agg). Each function returns a Figure; the CLI saves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fm4npp.data.schema import Event

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _figure(size: tuple[float, float] = (5.0, 4.0)) -> Figure:
    from matplotlib.figure import Figure  # Agg canvas, no pyplot state, no display needed

    return Figure(figsize=size, layout="constrained")


def hits_per_event(events: Sequence[Event], max_hits: int = 3200) -> Figure:
    """Histogram of points per event with the 3,200 filter marked."""
    fig = _figure()
    ax = fig.add_subplot()
    n = np.array([e.n_hits for e in events])
    ax.hist(n, bins=60, histtype="step")
    ax.axvline(max_hits, ls="--", color="k", lw=0.8, label=f"filter ({max_hits})")
    ax.set_xlabel("points per event")
    ax.set_ylabel("events")
    ax.set_title(f"mean {n.mean():.0f}, median {np.median(n):.0f}" if len(n) else "no events")
    ax.legend()
    return fig


def _primaries(events: Sequence[Event]) -> tuple[np.ndarray, np.ndarray]:
    pt, eta = [], []
    for e in events:
        p = e.particles
        sel = p["primary"] & (p["charge"] != 0)
        pt.append(p["pt"][sel])
        eta.append(p["eta"][sel])
    return np.concatenate(pt or [np.zeros(0)]), np.concatenate(eta or [np.zeros(0)])


def pt_spectrum(events: Sequence[Event]) -> Figure:
    """pT of charged primaries (GeV/c), log scale, with the noise and looper thresholds."""
    fig = _figure()
    ax = fig.add_subplot()
    pt, _ = _primaries(events)
    ax.hist(pt, bins=np.geomspace(0.01, 20, 60).tolist(), histtype="step")
    for x, lab in ((0.06, "noise cut"), (0.066, "row 1"), (0.158, "row 48")):
        ax.axvline(x, ls=":", lw=0.8, color="grey")
        ax.text(x, 1, lab, rotation=90, va="bottom", fontsize=7, transform=ax.get_xaxis_transform())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("$p_T$ [GeV/c]")
    ax.set_ylabel("charged primaries")
    return fig


def eta_distribution(events: Sequence[Event]) -> Figure:
    """dN/dη of charged primaries per event."""
    fig = _figure()
    ax = fig.add_subplot()
    _, eta = _primaries(events)
    bins = np.linspace(-4, 4, 41)
    counts, _ = np.histogram(eta, bins)
    ax.stairs(counts / max(len(events), 1) / np.diff(bins), bins)
    ax.axvspan(-1.1, 1.1, alpha=0.1, color="C1", label="TPC |η| < 1.1")
    ax.set_xlabel("η")
    ax.set_ylabel("dN/dη per event")
    ax.legend()
    return fig


def event_display(event: Event) -> Figure:
    """x–y and r–z views of one event, hits coloured by particle, noise in grey."""
    fig = _figure((10.0, 4.5))
    ax_xy, ax_rz = fig.subplots(1, 2)
    h = event.hits
    noise = h["noise"]
    colour = np.remainder(h["particle_id"], 20)
    r = np.hypot(h["x"], h["y"])
    for ax, a, b in ((ax_xy, h["x"], h["y"]), (ax_rz, h["z"], r)):
        ax.scatter(a[noise], b[noise], s=1, c="0.7", label="noise")
        ax.scatter(a[~noise], b[~noise], s=1.5, c=colour[~noise], cmap="tab20", vmin=0, vmax=19)
    ax_xy.set_aspect("equal")
    ax_xy.set_xlabel("x [cm]")
    ax_xy.set_ylabel("y [cm]")
    ax_rz.set_xlabel("z [cm]")
    ax_rz.set_ylabel("r [cm]")
    ax_xy.set_title(f"event {event.event_id}: {event.n_hits} points")
    ax_rz.legend(loc="lower right", markerscale=5)
    return fig


def all_figures(events: Sequence[Event]) -> dict[str, Figure]:
    """Every validation figure by file stem."""
    figs = {"hits_per_event": hits_per_event(events)}
    if any(len(e.particles["particle_id"]) for e in events):
        figs["pt"] = pt_spectrum(events)
        figs["eta"] = eta_distribution(events)
    if events:
        # a typical event: point count near the median, and among those the one with most signal
        # tracks (a median-sized event can be all curler noise, a diffractive event with no tracks)
        n = np.array([e.n_hits for e in events])
        near = np.argsort(np.abs(n - np.median(n)))[: max(1, len(events) // 10)]
        tracks = [
            len(np.unique(events[i].hits["track_id"][events[i].hits["track_id"] > 0])) for i in near
        ]
        figs["event_display"] = event_display(events[int(near[int(np.argmax(tracks))])])
    return figs


def write_figures(events: Sequence[Event], out_dir: str | Path) -> list[Path]:
    """Save :func:`all_figures` as PNG files in ``out_dir`` (created); returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, fig in all_figures(events).items():
        path = out / f"{stem}.png"
        fig.savefig(path, dpi=110)
        paths.append(path)
    return paths
