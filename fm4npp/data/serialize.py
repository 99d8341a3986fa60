"""Event → token sequence: normalised features, voxel bin edges, sweep orders, k-NNN targets.

Torch-free. SPEC §2.3 (normalisation), §4 (serialization), §5.1 (targets). Two modes (SPEC design
rule): ``fixed`` (default; SPEC §4.4) and ``compat`` (faithful to [R] ``dataset.py``, §4.2).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from fm4npp.data.knn import _HAVE_NUMBA, knn_targets, knn_targets_ref
from fm4npp.data.knn import _KEY_BITS as KEY_BITS
from fm4npp.data.schema import Event
from fm4npp.errors import ConfigError, DataError, allowed_list

if _HAVE_NUMBA:
    from fm4npp.data import knn_numba, serialize_numba

Mode = Literal["fixed", "compat"]

# SPEC §2.3, [R] dataset.py::apply_norm: exact constants of the released models.
ENERGY_MEAN, ENERGY_STD = 253.0982, 268.7093
ETA_MIN, ETA_MAX = -2.0, 2.0
R_MIN_CM, R_MAX_CM = 31.371997833251953, 75.38493347167969  # first/last row centre ± 0.2 mm
# SPEC §4.4 fixed mode: the φ seam of bins and curve keys sits in a sector gap. Sectors are centred
# at multiples of 2π/12 (fastsim geometry; real offset unverified, SPEC §3.7), so φ = −π + π/12 is a
# gap centre: φ_n = 1/24.
PHI_SEAM_FIXED = 1.0 / 24.0
# SPEC §2.1: module gaps (R1 ends 40.249, R2 starts 41.153; R2 ends 57.475, R3 starts 58.367 cm).
MODULE_GAPS_CM = (40.701, 57.921)
N_ETA_BINS, N_PHI_BINS, N_R_BINS = 8, 8, 6  # SPEC §4.1 [T1][P]
MAX_FIT_EVENTS = 10_000  # SPEC §4.1: edges from ≤ 10,000 training events
CURVE_SCALE = 1.0e4  # SPEC §4.3: curve keys on (η, r, φ) × 10⁴ as integers, depth 16
CURVE_BITS = 16

#: Raster sweep orders, major → minor (SPEC §4.3); [R] letter strings list minor → major.
RASTER_ORDERS: dict[str, tuple[str, str, str]] = {
    "EPR": ("r", "phi", "eta"),
    "RPE": ("eta", "phi", "r"),
    "REP": ("phi", "eta", "r"),
    "PER": ("r", "eta", "phi"),
}
ORDERS = (*RASTER_ORDERS, "r", "zorder", "hilbert")


def eta_phi_r(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, z) cm → (η, φ, r) float64, seen from the origin (SPEC §2.3). (n,) each."""
    x64, y64, z64 = (np.asarray(a, dtype=np.float64) for a in (x, y, z))
    r = np.hypot(x64, y64)
    if np.any(r <= 0):
        raise DataError("serialize: a hit lies on the beam line (r = 0); η is undefined")
    return np.arcsinh(z64 / r), np.arctan2(y64, x64), r


def normalized_features(event: Event) -> np.ndarray:
    """Model input per hit, in event order: (n, 4) float32 [E_n, η_n, φ_n, r_n] (SPEC §2.3)."""
    h = event.hits
    eta, phi, r = eta_phi_r(h["x"], h["y"], h["z"])
    e = (np.asarray(h["energy"], dtype=np.float64) - ENERGY_MEAN) / ENERGY_STD
    eta_n = (eta - ETA_MIN) / (ETA_MAX - ETA_MIN)
    phi_n = (phi + math.pi) / (2 * math.pi)
    r_n = (r - R_MIN_CM) / (R_MAX_CM - R_MIN_CM)
    return np.stack([e, eta_n, phi_n, r_n], axis=1).astype(np.float32)


def _phi_binned(phi_n: np.ndarray, offset: float) -> np.ndarray:
    """φ_n seen from the seam at ``offset`` (fixed mode) or unchanged (offset 0, compat)."""
    if offset == 0.0:
        return phi_n.astype(np.float64)
    return np.mod(phi_n.astype(np.float64) - offset, 1.0)


@dataclass(frozen=True)
class VoxelEdges:
    """Bin edges in normalised coordinates (SPEC §4.1): 9 η, 9 φ and 7 r edges, first 0, last 1.

    ``phi_offset`` is the φ_n of the seam: φ edges apply to (φ_n − phi_offset) mod 1 (0 in compat).
    """

    eta: tuple[float, ...]
    phi: tuple[float, ...]
    r: tuple[float, ...]
    phi_offset: float
    n_events: int
    version: int = 1

    def __post_init__(self) -> None:
        for name, edges, nb in (
            ("eta", self.eta, N_ETA_BINS),
            ("phi", self.phi, N_PHI_BINS),
            ("r", self.r, N_R_BINS),
        ):
            if len(edges) != nb + 1 or any(b < a for a, b in itertools.pairwise(edges)):
                raise DataError(f"voxel edges: '{name}' must be {nb + 1} non-decreasing values")

    @property
    def content_hash(self) -> str:
        """sha256 of the edges and seam (what determines the serialization), hex."""
        payload = {"eta": self.eta, "phi": self.phi, "r": self.r, "phi_offset": self.phi_offset}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def save(self, path: str | Path) -> None:
        """Write JSON with the content hash (the versioned artefact of SPEC §4.1)."""
        doc = {**asdict(self), "sha256": self.content_hash}
        Path(path).write_text(json.dumps(doc, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> VoxelEdges:
        """Read edges; a missing, unreadable or tampered file is a DataError (never recomputed)."""
        p = Path(path)
        try:
            doc = json.loads(p.read_text())
            sha = doc.pop("sha256")
            edges = cls(
                eta=tuple(float(v) for v in doc["eta"]),
                phi=tuple(float(v) for v in doc["phi"]),
                r=tuple(float(v) for v in doc["r"]),
                phi_offset=float(doc["phi_offset"]),
                n_events=int(doc["n_events"]),
                version=int(doc["version"]),
            )
        except FileNotFoundError:
            raise DataError(
                f"{p}: voxel edges file missing (fit it with fit_edges on the training split)"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{p}: voxel edges file unreadable ({exc})") from None
        if sha != edges.content_hash:
            raise DataError(
                f"{p}: voxel edges hash mismatch (file {sha[:12]}, content {edges.content_hash[:12]})"
            )
        return edges


def fit_edges(
    events: Iterable[Event], mode: Mode = "fixed", max_events: int = MAX_FIT_EVENTS
) -> VoxelEdges:
    """Fit bin edges on (the first ``max_events`` of) training events; pass a random subset.

    η, φ: 8 equal-population bins (quantiles), first edge 0, last 1. r: the three modules, split
    half-way between the nearest observed radii around each module gap, each cut at its median."""
    _check_mode(mode)
    offset = PHI_SEAM_FIXED if mode == "fixed" else 0.0
    feats, n_events = [], 0
    for ev in events:
        if n_events >= max_events:
            break
        if ev.n_hits:
            feats.append(normalized_features(ev)[:, 1:])
        n_events += 1
    if not feats:
        raise DataError("fit_edges: no hits in the given events")
    f = np.concatenate(feats).astype(np.float64)
    inner = np.arange(1, N_ETA_BINS) / N_ETA_BINS
    eta = (0.0, *np.quantile(f[:, 0], inner).tolist(), 1.0)
    inner = np.arange(1, N_PHI_BINS) / N_PHI_BINS
    phi = (0.0, *np.quantile(_phi_binned(f[:, 1], offset), inner).tolist(), 1.0)
    r = f[:, 2]
    splits = []
    for gap_cm in MODULE_GAPS_CM:
        gap = (gap_cm - R_MIN_CM) / (R_MAX_CM - R_MIN_CM)
        below, above = r[r < gap], r[r >= gap]
        lo = below.max() if len(below) else gap
        hi = above.min() if len(above) else gap
        splits.append(0.5 * (lo + hi))
    bounds = [0.0, splits[0], splits[1], 1.0]
    r_edges = [0.0]
    for a, b in itertools.pairwise(bounds):
        sect = r[(r >= a) & (r < b)] if b < 1.0 else r[r >= a]
        r_edges += [float(np.median(sect)) if len(sect) else 0.5 * (a + b), b]
    return VoxelEdges(eta=eta, phi=phi, r=tuple(r_edges), phi_offset=offset, n_events=n_events)


def _bin(values: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """0-based right-closed bin index, clipped into range (SPEC §4.2 step 4, §4.4). (n,) int64."""
    e = np.asarray(edges, dtype=np.float64)
    return np.clip(np.searchsorted(e, values, side="left") - 1, 0, len(e) - 2).astype(np.int64)


def order_key(coords: np.ndarray, edges: VoxelEdges, order: str) -> np.ndarray:
    """Primary sort key of each hit for a sweep order. coords (n, 3) normalised (η, φ, r) → (n,) int64.

    Raster orders: cell rank, e.g. EPR = q·64 + p·8 + e (0-based). Curves: Morton / Hilbert key of
    (η, r, φ) × 10⁴ (depth 16). ``r``: zeros (the tie-break sorts by r)."""
    if order not in ORDERS:
        raise ConfigError(f"serialize: unknown order '{order}'; allowed: {allowed_list(ORDERS)}")
    eta, r = coords[:, 0].astype(np.float64), coords[:, 2].astype(np.float64)
    phi = _phi_binned(coords[:, 1], edges.phi_offset)
    if order in RASTER_ORDERS:
        bins = {
            "eta": (_bin(eta, edges.eta), N_ETA_BINS),
            "phi": (_bin(phi, edges.phi), N_PHI_BINS),
            "r": (_bin(r, edges.r), N_R_BINS),
        }
        key = np.zeros(len(coords), dtype=np.int64)
        for dim in RASTER_ORDERS[order]:
            b, nb = bins[dim]
            key = key * nb + b
        return key
    if order == "r":
        return np.zeros(len(coords), dtype=np.int64)
    grid = np.stack([eta, r, phi], axis=1)  # SPEC §4.3 / [R] swap_dim: (η, r, φ)
    ints = np.clip(np.floor(grid * CURVE_SCALE), 0, (1 << CURVE_BITS) - 1).astype(np.int64)
    return morton_key(ints, CURVE_BITS) if order == "zorder" else hilbert_key(ints, CURVE_BITS)


def morton_key(ints: np.ndarray, bits: int = CURVE_BITS) -> np.ndarray:
    """Z-order key of non-negative integer coords (n, 3) → (n,) int64; bit b of column 0 is the most
    significant of each 3-bit group (convention unverified against [R], SPEC §4.3)."""
    key = np.zeros(len(ints), dtype=np.int64)
    for b in range(bits - 1, -1, -1):
        for d in range(3):
            key = (key << 1) | ((ints[:, d] >> b) & 1)
    return key


def hilbert_key(ints: np.ndarray, bits: int = CURVE_BITS) -> np.ndarray:
    """Hilbert key of non-negative integer coords (n, 3) → (n,) int64 (Skilling 2004, "Programming
    the Hilbert curve": axes → transposed index, then interleaved as in :func:`morton_key`)."""
    x = [ints[:, d].astype(np.int64).copy() for d in range(3)]
    q = 1 << (bits - 1)
    while q > 1:  # inverse undo excess work
        p = q - 1
        for i in range(3):
            hit = (x[i] & q) != 0
            t = (x[0] ^ x[i]) & p
            x0 = np.where(hit, x[0] ^ p, x[0] ^ t)
            if i:
                x[i] = np.where(hit, x[i], x[i] ^ t)
            x[0] = x0
        q >>= 1
    for i in range(1, 3):  # Gray encode
        x[i] ^= x[i - 1]
    t = np.zeros_like(x[0])
    q = 1 << (bits - 1)
    while q > 1:
        t = np.where((x[2] & q) != 0, t ^ (q - 1), t)
        q >>= 1
    return morton_key(np.stack([xi ^ t for xi in x], axis=1), bits)


@dataclass(frozen=True)
class SerializedEvent:
    """One event as the model reads it; every per-hit array is in sequence order.

    feats (n, 4) float32 [E_n, η_n, φ_n, r_n]; perm (n,) int64 indices into the event's hits;
    nbr (n, k) int64 sequence positions of the k nearest later neighbours, nearest first, -1 where
    missing; track_id (n,) int64 (0 = noise); pid (n,) int8; noise (n,) bool.

    The k-NNN targets are not stored: a neighbour's target is its own (η_n, φ_n, r_n), i.e.
    ``feats[nbr, 1:4]`` (:attr:`targets`, :attr:`target_mask`), so the arrays an event carries (and
    a micro-batch ships from a loader worker) are ``nbr`` alone. The torch side gathers the same
    rule on the training device (``fm4npp.data.torch_dataset.Batch.neighbour_targets``)."""

    feats: np.ndarray
    perm: np.ndarray
    nbr: np.ndarray
    track_id: np.ndarray
    pid: np.ndarray
    noise: np.ndarray

    @property
    def n_hits(self) -> int:
        return len(self.perm)

    @property
    def target_mask(self) -> np.ndarray:
        """(n, k) bool: the neighbour exists."""
        return self.nbr >= 0

    @property
    def targets(self) -> np.ndarray:
        """(n, k, 3) float32 neighbour (η_n, φ_n, r_n), 0 where missing (SPEC §5.1)."""
        mask = self.target_mask
        gathered = self.feats[np.where(mask, self.nbr, 0), 1:4]
        return np.where(mask[..., None], gathered, np.float32(0))


def leakage_fraction(ser: SerializedEvent) -> float:
    """Fraction of target neighbours the model has already read (earlier in the sequence, SPEC §4.4);
    0 by construction in fixed mode, logged for compat."""
    n_valid = int(ser.target_mask.sum())
    if n_valid == 0:
        return 0.0
    earlier = ser.target_mask & (ser.nbr < np.arange(ser.n_hits)[:, None])
    return float(earlier.sum()) / n_valid


def _check_mode(mode: str) -> None:
    if mode not in ("fixed", "compat"):
        raise ConfigError(f"serialize: unknown mode '{mode}'; allowed: compat, fixed")


def serialize_event(
    event: Event,
    edges: VoxelEdges,
    order: str = "EPR",
    mode: Mode = "fixed",
    k: int = 30,
    *,
    reference: bool = False,
) -> SerializedEvent:
    """Serialize one event (SPEC §4.2 compat, §4.4 fixed) and find its k-NNN targets (§5.1).

    Numba does the normalisation, cell ranks and sequence sort (:mod:`fm4npp.data.serialize_numba`)
    and the k-NNN search (:mod:`fm4npp.data.knn_numba`), which returns only the neighbour positions
    ``nbr``; ``reference=True`` runs the numpy pipeline with the dense search and the dense target
    assembly instead (identical output, field by field; tests and benchmarks)."""
    _check_mode(mode)
    if k <= 0:
        raise ConfigError(f"serialize: k must be > 0, got {k}")
    if mode == "compat" and edges.phi_offset != 0.0:
        raise ConfigError("serialize: compat mode needs edges fitted in compat mode (phi_offset 0)")
    if order not in ORDERS:
        raise ConfigError(f"serialize: unknown order '{order}'; allowed: {allowed_list(ORDERS)}")
    h = event.hits
    if reference or not _HAVE_NUMBA or event.n_hits >= 1 << KEY_BITS:
        feats, perm, _, _, nbr = _serialize_numpy(event, edges, order, mode, k, reference)
    else:
        feats, perm, nbr = _serialize_numba(event, edges, order, mode, k)
    return SerializedEvent(
        feats=feats[perm],
        perm=perm,
        nbr=nbr,
        track_id=np.asarray(h["track_id"], dtype=np.int64)[perm],
        pid=np.asarray(h["pid"], dtype=np.int8)[perm],
        noise=np.asarray(h["noise"], dtype=bool)[perm],
    )


_Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
# normalized_features' (offset, scale) per feature, evaluated as it evaluates them (φ: + π)
_NORM = np.array(
    [
        ENERGY_MEAN, ENERGY_STD, ETA_MIN, ETA_MAX - ETA_MIN,
        math.pi, 2 * math.pi, R_MIN_CM, R_MAX_CM - R_MIN_CM,
    ]
)  # fmt: skip
_AXES = {"eta": 0, "phi": 1, "r": 2}
_NO_KEY = np.zeros(0, np.int64)
_NO_TGT = np.zeros((0, 3), np.float32)  # knn_numba.search: neighbour positions only, no targets


@functools.lru_cache(maxsize=16)
def _raster_args(edges: VoxelEdges, order: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bin edges (3, 9) of η, φ, r; their counts (3,); axes major → minor, empty for a curve or
    the ``r`` order) for ``serialize_numba.raster_key``."""
    axes = (edges.eta, edges.phi, edges.r)
    table = np.zeros((3, max(len(e) for e in axes)))
    for d, e in enumerate(axes):
        table[d, : len(e)] = e
    counts = np.array([len(e) for e in axes], dtype=np.int64)
    dims = np.array([_AXES[d] for d in RASTER_ORDERS.get(order, ())], dtype=np.int64)
    return table, counts, dims


def _serialize_numba(
    event: Event, edges: VoxelEdges, order: str, mode: Mode, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(feats in hit order, perm, nbr) through :mod:`fm4npp.data.serialize_numba`."""
    h = event.hits
    eta, phi, r = eta_phi_r(h["x"], h["y"], h["z"])
    feats = serialize_numba.features(eta, phi, r, np.asarray(h["energy"], dtype=np.float64), _NORM)
    table, counts, dims = _raster_args(edges, order)
    # raster cell ranks are computed in numba (empty key here); curve keys in numpy
    key = _NO_KEY if len(dims) else order_key(feats[:, 1:].astype(np.float64), edges, order)
    fixed = mode == "fixed"
    # compat ([R]): numpy's non-stable r sort defines the order of equal radii
    rsort = _NO_KEY if fixed else np.argsort(feats[:, 3], kind="quicksort")
    perm, inv, knn_pos, coords = serialize_numba.sequence(
        feats, edges.phi_offset, table, counts, dims, key, rsort, fixed
    )
    _, _, _, _, nbr = knn_numba.search(coords, knn_pos, k, fixed, fixed, inv, _NO_TGT)
    return feats, perm, nbr


def _serialize_numpy(
    event: Event, edges: VoxelEdges, order: str, mode: Mode, k: int, reference: bool
) -> _Arrays:
    """(feats in hit order, perm, targets, mask, nbr) in numpy: the reference (also the path without
    numba). ``targets``/``mask`` are the dense assembly by hit index (``knn.assemble_targets``), which
    the tests compare with :attr:`SerializedEvent.targets` derived from ``nbr``."""
    feats = normalized_features(event)
    n = len(feats)
    coords = feats[:, 1:].astype(np.float64)
    key = order_key(coords, edges, order)
    if mode == "compat":
        # [R]: non-stable r sort; targets on the r-sorted list (candidates = later in that list);
        # then a stable sort by cell rank / curve key keeps the r order inside each cell.
        rsort = np.argsort(feats[:, 3], kind="quicksort")
        knn_pos = np.empty(n, dtype=np.int64)
        knn_pos[rsort] = np.arange(n)
        perm = rsort[np.argsort(key[rsort], kind="stable")]
    else:
        # Deterministic ties: (key, r, φ, η, original index); targets after serialization with
        # candidates strictly outward and later in the final sequence.
        phi = _phi_binned(coords[:, 1], edges.phi_offset)
        perm = np.lexsort((np.arange(n), coords[:, 0], phi, coords[:, 2], key))
    perm = perm.astype(np.int64)
    inv = np.empty(n, dtype=np.int64)
    inv[perm] = np.arange(n)  # hit → sequence position
    if mode == "fixed":
        knn_pos = inv
    fixed = mode == "fixed"
    targets_fn = knn_targets_ref if reference else knn_targets
    targets, mask, nbr = targets_fn(
        coords, knn_pos, k, inv, feats[:, 1:], strict_r=fixed, wrap_phi=fixed
    )
    return feats, perm, targets, mask, nbr
