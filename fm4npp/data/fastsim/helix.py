"""Helix–cylinder crossings in a uniform Bz, vectorised over particles × surfaces × branches × turns.

A particle of charge q starting at (x0, y0, z0) with momentum (px, py, pz) moves on a circle of radius
R = 238.3·pT cm (SPEC §2.1) around the centre C; with h = sign(q·Bz) its position angle about C is
ψ(t) = ψ0 − h·t and z(t) = z0 + R·t·pz/pT, where t ≥ 0 is the turning angle. A cylinder of radius r is
crossed where |C + R(cos ψ, sin ψ)| = r, i.e. cos(ψ − α) = c = (r² − d² − R²)/(2Rd) with d = |C|,
α = arg C: two branches ψ± = α ± arccos c, each repeated every turn (SPEC §3.4). Loopers (66–158 MeV)
therefore give an outgoing and a return branch; daughters born inside the TPC are handled alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fm4npp.data.fastsim.geometry import R_EXIT_CM, R_PER_GEV_CM, Z_MAX_CM

TWO_PI = 2 * np.pi


@dataclass(frozen=True)
class Helices:
    """Per-particle helix parameters, all (P,) float64: centre (cx, cy), radius (cm), ψ0, h = ±1,
    λ = pz/pT, z0, and t_lim = the largest admissible turning angle (exit, |z|, path, turns)."""

    cx: np.ndarray
    cy: np.ndarray
    radius: np.ndarray
    psi0: np.ndarray
    h: np.ndarray
    lam: np.ndarray
    z0: np.ndarray
    phi0: np.ndarray
    t_lim: np.ndarray


def make_helices(
    x0: np.ndarray,
    y0: np.ndarray,
    z0: np.ndarray,
    px: np.ndarray,
    py: np.ndarray,
    pz: np.ndarray,
    charge: np.ndarray,
    s_max_cm: np.ndarray,
    max_turns: np.ndarray,
) -> Helices:
    """Helix parameters of P charged particles and their admissible turning range. All inputs (P,)."""
    pt = np.hypot(px, py)
    radius = np.maximum(pt, 1e-9) * R_PER_GEV_CM / np.abs(charge)
    h = np.sign(charge).astype(np.float64)  # Bz > 0: positive charges turn clockwise
    phi0 = np.arctan2(py, px)
    # The force q·v×B points to the right of v for h = +1, so the centre lies at v rotated by -90°·h.
    cx = x0 + h * radius * np.sin(phi0)
    cy = y0 - h * radius * np.cos(phi0)
    psi0 = np.arctan2(y0 - cy, x0 - cx)
    lam = pz / np.maximum(pt, 1e-12)
    helices = Helices(cx, cy, radius, psi0, h, lam, z0, phi0, np.zeros_like(radius))
    # Turning-angle limits: |z| = Z_MAX, 3D path s_max, max_turns, first crossing of the EMCal face.
    with np.errstate(divide="ignore", invalid="ignore"):
        t_z = np.where(lam != 0, (np.sign(lam) * Z_MAX_CM - z0) / (radius * lam), np.inf)
    t_s = s_max_cm / (radius * np.sqrt(1 + lam**2))
    t_exit = first_crossing(helices, R_EXIT_CM)
    t_lim = np.minimum.reduce([t_z, t_s, TWO_PI * max_turns, t_exit])
    return Helices(cx, cy, radius, psi0, h, lam, z0, phi0, t_lim)


def _branch_angles(hx: Helices, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First-turn turning angles (P, S, 2) of both branches and their existence mask (|c| ≤ 1)."""
    d = np.maximum(np.hypot(hx.cx, hx.cy), 1e-9)[:, None]
    rad = hx.radius[:, None]
    c = (radii[None, :] ** 2 - d**2 - rad**2) / (2 * rad * d)
    ok = np.abs(c) <= 1
    acos = np.arccos(np.clip(c, -1, 1))
    alpha = np.arctan2(hx.cy, hx.cx)[:, None]
    t = np.empty((*c.shape, 2))
    for b, sign in enumerate((1.0, -1.0)):
        psi = alpha + sign * acos
        t[..., b] = np.remainder(hx.h[:, None] * (hx.psi0[:, None] - psi), TWO_PI)
    return t, np.broadcast_to(ok[..., None], t.shape)


def first_crossing(hx: Helices, r: float) -> np.ndarray:
    """Smallest turning angle t > 0 at which each helix crosses radius ``r`` (inf if never). (P,)."""
    t, ok = _branch_angles(hx, np.array([r]))
    t = np.where(ok & (t > 1e-9), t, np.inf)
    return t.min(axis=(1, 2))


@dataclass(frozen=True)
class Crossings:
    """Flat list of M crossings (grouped by particle, unordered in t): particle index, surface index, turning angle,
    position (cm) and cos β, the cosine of the angle between the transverse direction and the radius
    (> 0 outgoing, < 0 return branch)."""

    particle: np.ndarray
    surface: np.ndarray
    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    cos_beta: np.ndarray


def crossings(hx: Helices, radii: np.ndarray) -> Crossings:
    """All crossings of S cylinders ``radii`` with 0 < t < t_lim, over both branches and all turns."""
    t0, ok = _branch_angles(hx, radii)
    t_lim = hx.t_lim[:, None, None]
    ok = ok & (t0 < t_lim)
    p_idx, s_idx, _ = np.nonzero(ok)
    t0 = t0[ok]
    # A crossing at t0 exactly 0 is the starting point itself: move it to the next turn.
    t0 = np.where(t0 < 1e-9, t0 + TWO_PI, t0)
    n_turns = np.ceil((hx.t_lim[p_idx] - t0) / TWO_PI).clip(0, None).astype(np.int64)
    p_idx = np.repeat(p_idx, n_turns)
    s_idx = np.repeat(s_idx, n_turns)
    starts = np.cumsum(n_turns) - n_turns
    k = np.arange(len(p_idx)) - np.repeat(starts, n_turns)
    t = np.repeat(t0, n_turns) + TWO_PI * k
    keep = t < hx.t_lim[p_idx]
    p_idx, s_idx, t = p_idx[keep], s_idx[keep], t[keep]
    psi = hx.psi0[p_idx] - hx.h[p_idx] * t
    rad = hx.radius[p_idx]
    x = hx.cx[p_idx] + rad * np.cos(psi)
    y = hx.cy[p_idx] + rad * np.sin(psi)
    z = hx.z0[p_idx] + rad * t * hx.lam[p_idx]
    phi_mom = hx.phi0[p_idx] - hx.h[p_idx] * t
    cos_beta = np.cos(phi_mom - np.arctan2(y, x))
    return Crossings(p_idx, s_idx, t, x, y, z, cos_beta)
