"""Classical track finder needing no training (SPEC §10.4): the CPU floor for the learned adapters.

Tracks from the beam line are circles through the origin in the transverse plane: a hit at (r, φ) lies
on the circle of signed curvature κ and initial direction φ0 iff sin(φ − φ0) = κ r / 2. The finder

1. votes every hit into a (κ, φ0) accumulator (φ0 = φ − asin(κ r / 2) for each κ bin) and takes the
   highest 3 × 3 box sum as a seed;
2. takes the hits near that seed curve and votes them in (z0, cot θ) with z = z0 + cot θ · s, s the
   transverse arc length from the origin, keeping the hits near the best line;
3. refits the circle through the origin (linear least squares) and the line z(s), collects every
   still-free hit within tolerance of the helix, keeps one hit per pad row (smallest residual),
   refits and collects once more, now also on later turns and the return branch of loopers;
   a candidate needs hits on at least half of the rows its helix crosses;
4. accepts the track if it has ≥ ``min_hits`` hits, removes them (their votes are subtracted), and
   repeats; a seed that fails is blocked.

Numpy only. Displaced tracks (conversions, V0 daughters) and curlers stay unassigned (−1) or become
fakes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fm4npp.data.schema import Event

B_FIELD_TESLA = 1.4  # SPEC §2.1 uniform approximation of the sPHENIX map
CM_PER_GEV = 100.0 / (0.2998 * B_FIELD_TESLA)  # helix radius per GeV of pT (238.3 cm, SPEC §2.1)


def _row_radii_cm() -> np.ndarray:
    """(48,) pad-row centre radii, r_min + (i + ½)·pitch per module (SPEC §2.1)."""
    modules = ((31.105, 0.5715), (41.153, 1.0201), (58.367, 1.0965))
    return np.array([r0 + (i + 0.5) * pitch for r0, pitch in modules for i in range(16)])


ROW_RADII_CM = _row_radii_cm()


@dataclass(frozen=True)
class HoughConfig:
    """Binning and tolerances. Defaults suit sPHENIX TPC events (σ_rφ 150 µm, σ_z 500 µm plus
    multiple scattering of 0.2 GeV tracks, SPEC §2.1, §3)."""

    pt_min_gev: float = 0.15  # below ~0.158 GeV a track does not reach the last row (SPEC §2.1)
    n_kappa: int = 64
    n_phi: int = 256
    z0_max_cm: float = 40.0  # 4 σ of the p+p vertex spread σz = 10 cm (SPEC §2.1)
    n_z0: int = 80
    cot_max: float = 3.0  # forward tracks leaving through the end cap reach |η| ≈ 1.8
    n_cot: int = 240
    tol_xy_cm: float = 0.5
    tol_z_cm: float = 1.0
    min_hits: int = 5
    min_row_fraction: float = 0.5  # hits on ≥ half the rows the helix crosses (sector gaps ≈ 4 %)
    looper_diameter_cm: float = 90.0  # 2R below the EMCal face (SPEC §3.4): the track turns back
    max_turns: int = 8  # turns searched either way from the seed segment (SPEC §3.4 simulates 4)
    max_failures: int = 3  # failed seeds after which a hit stops voting
    max_seeds: int = 200


def _wrap(a: np.ndarray) -> np.ndarray:
    return (a + np.pi) % (2.0 * np.pi) - np.pi


def _box3(acc: np.ndarray) -> np.ndarray:
    """3 × 3 box sum, periodic in φ0 (axis 1), zero-padded in κ (axis 0)."""
    s = acc + np.roll(acc, 1, axis=1) + np.roll(acc, -1, axis=1)
    out = s.copy()
    out[1:] += s[:-1]
    out[:-1] += s[1:]
    return out


def _fit_circle_origin(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """Centre (cx, cy) of the circle through the origin closest to the points: x² + y² = 2 cx x + 2 cy y."""
    a = np.stack([2.0 * x, 2.0 * y], axis=1)
    sol, _, rank, _ = np.linalg.lstsq(a, x * x + y * y, rcond=None)
    return (float(sol[0]), float(sol[1])) if rank == 2 else None


def _arc_length(r: np.ndarray, radius: float) -> np.ndarray:
    """Transverse arc length from the origin to radius r on the outgoing branch (cm)."""
    return 2.0 * radius * np.arcsin(np.clip(r / (2.0 * radius), 0.0, 1.0))


def _fit_line(s: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    """(z0, cot θ) of z = z0 + cot θ · s by least squares (a flat line for a single point)."""
    if len(s) < 2 or np.ptp(s) < 1e-6:
        return float(np.mean(z)), 0.0
    cot, z0 = np.polyfit(s, z, 1)
    return float(z0), float(cot)


class _Finder:
    """State of one event: hit coordinates, active mask, (κ, φ0) votes and accumulator."""

    def __init__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, layer: np.ndarray, cfg: HoughConfig):
        self.cfg = cfg
        self.x, self.y, self.z, self.layer = x, y, z, layer
        self.r = np.hypot(x, y)
        self.phi = np.arctan2(y, x)
        kmax = 1.0 / (cfg.pt_min_gev * CM_PER_GEV)
        self.kappa = np.linspace(-kmax, kmax, cfg.n_kappa)
        self.dkappa = self.kappa[1] - self.kappa[0]
        self.dphi = 2.0 * np.pi / cfg.n_phi
        arg = np.outer(self.r, self.kappa) / 2.0  # (n_hits, n_kappa)
        ok = np.abs(arg) < 1.0
        phi0 = self.phi[:, None] - np.arcsin(np.clip(arg, -1.0, 1.0))
        pbin = np.floor((phi0 + np.pi) / self.dphi).astype(np.int64) % cfg.n_phi
        codes = np.arange(cfg.n_kappa)[None, :] * cfg.n_phi + pbin
        self.codes = np.where(ok, codes, -1)  # (n_hits, n_kappa), −1 = no vote
        self.active = np.ones(len(x), dtype=bool)  # not yet on a track
        self.voting = np.ones(len(x), dtype=bool)  # still in the accumulator
        self.failures = np.zeros(len(x), dtype=np.int64)
        self.acc = self._votes(self.active).reshape(cfg.n_kappa, cfg.n_phi)
        self.blocked = np.zeros_like(self.acc, dtype=bool)
        self.smoothed = _box3(self.acc)  # recomputed only when hits are removed

    def _votes(self, mask: np.ndarray) -> np.ndarray:
        c = self.codes[mask].ravel()
        return np.bincount(c[c >= 0], minlength=self.cfg.n_kappa * self.cfg.n_phi)

    def seed(self) -> tuple[int, int] | None:
        flat = int(np.argmax(self.smoothed))
        if self.smoothed.flat[flat] < self.cfg.min_hits:
            return None
        return divmod(flat, self.cfg.n_phi)

    def block(self, k: int, p: int, hits: np.ndarray) -> None:
        """A seed failed: block its bins; hits of ``max_failures`` failed seeds stop voting (curler
        blobs: dense stacks of hits that seed many circles) but can still join a track."""
        self.failures[hits] += 1
        self._unvote(hits[self.failures[hits] >= self.cfg.max_failures])
        ks = slice(max(k - 1, 0), k + 2)
        for dp in (-1, 0, 1):
            self.blocked[ks, (p + dp) % self.cfg.n_phi] = True
        self.smoothed[self.blocked] = -1

    def remove(self, hits: np.ndarray) -> None:
        """Assign ``hits``: they leave the accumulator and the pool of free hits."""
        self._unvote(hits)
        self.active[hits] = False

    def _unvote(self, hits: np.ndarray) -> None:
        mask = np.zeros(len(self.active), dtype=bool)
        mask[hits] = True
        mask &= self.voting
        if not mask.any():
            return
        self.acc -= self._votes(mask).reshape(self.acc.shape)
        self.voting[mask] = False
        self.smoothed = _box3(self.acc)
        self.smoothed[self.blocked] = -1

    def seed_hits(self, k: int, p: int) -> np.ndarray:
        """Indices of free hits near the seed curve of bin (k, p)."""
        idx = np.flatnonzero(self.active)
        arg = self.kappa[k] * self.r[idx] / 2.0
        ok = np.abs(arg) < 1.0
        idx, arg = idx[ok], arg[ok]
        phi0 = -np.pi + (p + 0.5) * self.dphi
        res = np.abs(_wrap(self.phi[idx] - np.arcsin(arg) - phi0))
        tol = 1.5 * self.dphi + self.dkappa * self.r[idx] / 2.0  # the 3 × 3 window of the seed
        return idx[res < tol]

    def z_hough(self, idx: np.ndarray, kappa: float) -> np.ndarray:
        """Subset of ``idx`` on the best (z0, cot θ) line."""
        cfg = self.cfg
        radius = 1.0 / max(abs(kappa), 1e-9)
        s = _arc_length(self.r[idx], radius)
        z0 = np.linspace(-cfg.z0_max_cm, cfg.z0_max_cm, cfg.n_z0)
        cot = (self.z[idx][:, None] - z0[None, :]) / np.maximum(s, 1.0)[:, None]  # (n, n_z0)
        dcot = 2.0 * cfg.cot_max / cfg.n_cot
        cbin = np.floor((cot + cfg.cot_max) / dcot).astype(np.int64)
        ok = (cbin >= 0) & (cbin < cfg.n_cot)
        codes = (np.arange(cfg.n_z0)[None, :] * cfg.n_cot + cbin)[ok]
        acc = np.bincount(codes, minlength=cfg.n_z0 * cfg.n_cot).reshape(cfg.n_z0, cfg.n_cot)
        acc = acc + np.pad(acc[:, :-1], ((0, 0), (1, 0))) + np.pad(acc[:, 1:], ((0, 0), (0, 1)))
        zb, cb = divmod(int(np.argmax(acc)), cfg.n_cot)
        best_cot = -cfg.cot_max + (cb + 0.5) * dcot
        tol = cfg.tol_z_cm + 1.5 * dcot * s + (z0[1] - z0[0])
        sel = np.abs(self.z[idx] - z0[zb] - best_cot * s) < tol
        for scale in (2.0, 1.0):  # refine the line on its own hits: crossing tracks drop out
            if sel.sum() < 2:
                break
            line_z0, line_cot = _fit_line(s[sel], self.z[idx][sel])
            sel = np.abs(self.z[idx] - line_z0 - line_cot * s) < scale * cfg.tol_z_cm
        return idx[sel]

    def _robust_circle(self, idx: np.ndarray) -> tuple[float, float] | None:
        """Circle through the origin fitted to ``idx``, refitted twice without the hits beyond the
        tolerance (or the worst 30 %), so a few hits of a crossing track do not pull it."""
        centre = _fit_circle_origin(self.x[idx], self.y[idx])
        for _ in range(2):
            if centre is None:
                return None
            res = np.abs(np.hypot(self.x[idx] - centre[0], self.y[idx] - centre[1]) - np.hypot(*centre))
            cut = max(self.cfg.tol_xy_cm, float(np.quantile(res, 0.7)))
            if (res <= self.cfg.tol_xy_cm).all() or (res <= cut).sum() < 3:
                break
            idx = idx[res <= cut]
            centre = _fit_circle_origin(self.x[idx], self.y[idx])
        return centre

    def collect(self, idx: np.ndarray, extend: bool = False) -> np.ndarray:
        """Refit a helix to ``idx`` and return the free hits near it, one per pad row and turn.

        With ``extend`` and a helix that turns back inside the TPC (2R < ``looper_diameter_cm``), hits
        on later turns and on the return branch count too: z = z0 + cot θ · R · (t + 2πk), t the
        turning angle on the circle, |k| ≤ ``max_turns``. An empty result means the fit failed or
        too few of the rows the helix crosses carry a hit.
        """
        cfg = self.cfg
        centre = self._robust_circle(idx)
        if centre is None:
            return idx[:0]
        cx, cy = centre
        radius = float(np.hypot(cx, cy))
        z0, cot = _fit_line(_arc_length(self.r[idx], radius), self.z[idx])
        free = np.flatnonzero(self.active & (self.r <= 2.0 * radius + cfg.tol_xy_cm))
        res_xy = np.abs(np.hypot(self.x[free] - cx, self.y[free] - cy) - radius)
        free, res_xy = free[res_xy < cfg.tol_xy_cm], res_xy[res_xy < cfg.tol_xy_cm]
        # turning angle t ∈ [0, 2π) from the origin, sense of rotation taken from the fitted hits
        a0 = np.arctan2(-cy, -cx)
        sense = (
            1.0 if np.median(_wrap(np.arctan2(self.y[idx] - cy, self.x[idx] - cx) - a0)) >= 0 else -1.0
        )
        t = np.mod(sense * (np.arctan2(self.y[free] - cy, self.x[free] - cx) - a0), 2.0 * np.pi)
        looper = extend and 2.0 * radius < cfg.looper_diameter_cm
        turns = np.arange(-cfg.max_turns, cfg.max_turns + 1) if looper else np.zeros(1)
        dz = self.z[free][:, None] - z0 - cot * radius * (t[:, None] + 2.0 * np.pi * turns[None, :])
        k = np.abs(dz).argmin(axis=1)
        res_z = np.abs(dz[np.arange(len(free)), k])
        outgoing = t < np.pi
        ok = (res_z < cfg.tol_z_cm) & (outgoing | looper)
        free, res_xy, res_z, k, outgoing = free[ok], res_xy[ok], res_z[ok], k[ok], outgoing[ok]
        score = (res_xy / cfg.tol_xy_cm) ** 2 + (res_z / cfg.tol_z_cm) ** 2
        key = (self.layer[free] * len(turns) + k) * 2 + outgoing  # one hit per row, turn and branch
        order = np.lexsort((score, key))
        keep = free[order[np.unique(key[order], return_index=True)[1]]]
        # rows the outgoing branch crosses inside the drift volume (SPEC §2.1: |z| < 105.5 cm)
        radii = ROW_RADII_CM
        rows = radii[radii <= 2.0 * radius]
        crossed = int((np.abs(z0 + cot * _arc_length(rows, radius)) < 105.5).sum())
        n_rows = len(np.unique(self.layer[keep]))
        return keep if n_rows >= cfg.min_row_fraction * crossed else keep[:0]


def find_tracks(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    layer: np.ndarray | None = None,
    config: HoughConfig = HoughConfig(),
) -> np.ndarray:
    """Track id per hit, shape (n_hits,), ids 0, 1, … in order of finding, −1 = unassigned.

    ``x``, ``y``, ``z`` (n_hits,) in cm; ``layer`` (n_hits,) pad row, derived from r (nearest row
    centre, SPEC §2.1) when ``None``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    labels = np.full(len(x), -1, dtype=np.int64)
    if len(x) < config.min_hits:
        return labels
    if layer is None:
        layer = np.abs(np.hypot(x, y)[:, None] - ROW_RADII_CM[None, :]).argmin(axis=1)
    f = _Finder(x, y, z, np.asarray(layer, dtype=np.int64), config)
    n_tracks = 0
    for _ in range(config.max_seeds):
        seed = f.seed()
        if seed is None:
            break
        k, p = seed
        hits = seeded = f.seed_hits(k, p)
        if len(hits) >= config.min_hits:
            hits = f.z_hough(hits, float(f.kappa[k]))
        if len(hits) >= max(config.min_hits, 3):
            hits = f.collect(hits)
        if len(hits) >= config.min_hits:
            hits = f.collect(hits, extend=True)  # refined helix, later turns of loopers
        if len(hits) < config.min_hits:
            f.block(k, p, seeded)
            continue
        labels[hits] = n_tracks
        n_tracks += 1
        f.remove(hits)
    return labels


def find_tracks_event(event: Event, config: HoughConfig = HoughConfig()) -> np.ndarray:
    """:func:`find_tracks` on an :class:`~fm4npp.data.schema.Event` (uses its ``layer`` when known)."""
    layer = event.hits["layer"]
    known = layer.astype(np.int64) if (len(layer) and (layer >= 0).all()) else None
    return find_tracks(event.hits["x"], event.hits["y"], event.hits["z"], known, config)
