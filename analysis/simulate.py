"""Simulate-then-recover (SCALING.md §3.5, §9.4): runs drawn from a known law, for testing the procedure.

After kyo-takano/chinchilla's ``Simulator`` and vpnls's named surfaces. Noise is multiplicative log-normal
(σ from the measured seed spread) plus, optionally, one heavy-tailed outlier per ``outlier_every`` runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from analysis.blas import single_blas_thread
from analysis.inputs import FitData, from_arrays
from analysis.laws import FORMS, HOFFMANN_UNROUNDED, predict

Array = NDArray[np.float64]

# Non-embedding N of the m1–m6 ladder (SPEC §6.6: 73.875·d² + 164.625·d); widths as a stand-in until
# fm4npp.model.ladder exposes them.
LADDER_WIDTHS = (64, 128, 256, 512, 1024, 1536)
LADDER_N = tuple(73.875 * d * d + 164.625 * d for d in LADDER_WIDTHS)
# d1–d9: quarter-decade data ladder 0.1M–10M events (SCALING §6.3).
DATA_LADDER = tuple(1e5 * 10 ** (0.25 * i) for i in range(9))

SURFACES: dict[str, dict[str, float]] = {
    "chinchilla": dict(HOFFMANN_UNROUNDED),
    "epoch": {"E": 1.8172181, "A": 477.82588, "B": 2143.4173, "alpha": 0.3473105, "beta": 0.36717243},
    # α ≠ β, E near the m6 loss: L(m1, d1) ≈ 0.62, L(m6, d9) ≈ 0.20 (a k-NNN MSE scale).
    "fm4npp": {"E": 0.1, "A": 25.0, "B": 4.0, "alpha": 0.35, "beta": 0.25},
}


@dataclass(frozen=True)
class Design:
    """A grid of sizes × data levels × seeds."""

    N: tuple[float, ...] = LADDER_N
    D: tuple[float, ...] = DATA_LADDER[::2]
    seeds: int = 3

    def points(self) -> tuple[Array, Array, Array]:
        """(N, D, seed) arrays for every run, shape (len(N)·len(D)·seeds,)."""
        n, d, s = np.meshgrid(self.N, self.D, np.arange(self.seeds), indexing="ij")
        return n.ravel().astype(float), d.ravel().astype(float), s.ravel()


def simulate(
    truth: Mapping[str, float],
    design: Design,
    sigma: float = 0.01,
    outlier_every: int = 0,
    rng: np.random.Generator | None = None,
    flops_per_param_token: float = 6.0,
) -> FitData:
    """Noisy Chinchilla-form losses on ``design``; ``sigma`` = 0 gives noise-free data."""
    rng = rng or np.random.default_rng(0)
    n, d, s = design.points()
    loss = predict(FORMS["chinchilla"], truth, N=n, D=d)
    noise = rng.normal(0.0, sigma, len(loss)) if sigma > 0 else np.zeros(len(loss))
    if outlier_every and sigma > 0:
        n_out = max(1, len(loss) // outlier_every)
        hit = rng.choice(len(loss), n_out, replace=False)
        noise[hit] += sigma * rng.standard_t(2, n_out) * 5  # heavy-tailed (t₂), a diverged-ish run
    cell = [f"{a:.6g}|{b:.6g}" for a, b in zip(n, d, strict=True)]
    return from_arrays(
        n, d, loss * np.exp(noise), flops_per_param_token * n * d, s, cell, source="<simulated>"
    )


@single_blas_thread
def coverage(
    truth: Mapping[str, float],
    design: Design,
    n_rep: int = 100,
    sigma: float = 0.01,
    methods: Sequence[str] = ("delta", "profile", "bootstrap"),
    names: Sequence[str] = ("alpha", "beta", "E", "a"),
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
    outlier_every: int = 50,
) -> pd.DataFrame:
    """Fraction of replicas whose nominal ``level`` interval covers the truth, per method and quantity.

    Methods: ``delta``, ``profile``, ``bootstrap`` (the ``auto`` scheme) and ``bootstrap_<scheme>`` for
    the schemes of :mod:`analysis.bootstrap` (``cell``, ``cell_seed``, ``wild``). The profile interval is
    only defined for parameters, so ``a`` is skipped for it. Each row also carries the mean interval
    width relative to the truth.
    """
    from analysis.bootstrap import bootstrap
    from analysis.derived import quantity
    from analysis.fit import fit_law
    from analysis.laws import params_to_theta
    from analysis.uncertainty import delta_interval, profile_interval

    law = FORMS["chinchilla"]
    true_theta = params_to_theta(law, truth)
    truth_v = {nm: float(quantity(law, true_theta, nm)) for nm in names}
    rng = np.random.default_rng(seed)
    hits: dict[tuple[str, str], list[tuple[bool, float]]] = {}
    for _ in range(n_rep):
        data = simulate(truth, design, sigma, outlier_every, rng)
        fit = fit_law(data, method="vp", check_order=False)
        boot_seed = int(rng.integers(1 << 31))
        boots = {
            m: bootstrap(fit, n_boot, boot_seed, vp_restart=False, scheme=m.partition("_")[2] or "auto")
            for m in methods
            if m.startswith("bootstrap")
        }
        for nm in names:
            for m in methods:
                if m == "delta":
                    _, lo, hi = (float(np.squeeze(v)) for v in delta_interval(fit, nm, level))
                elif m == "profile":
                    if nm not in law.param_names:
                        continue
                    p = profile_interval(fit, nm, level)
                    lo = -np.inf if p.open_lo else p.lo
                    hi = np.inf if p.open_hi else p.hi
                else:
                    lo, hi = (float(np.squeeze(v)) for v in boots[m].ci(nm, level))
                hit = lo <= truth_v[nm] <= hi
                hits.setdefault((m, nm), []).append((hit, (hi - lo) / abs(truth_v[nm])))
    rows = [
        {"method": m, "quantity": nm, "coverage": float(np.mean([h for h, _ in v])),
         "rel_width": float(np.median([w for _, w in v])), "n_rep": len(v)}
        for (m, nm), v in hits.items()
    ]  # fmt: skip
    return pd.DataFrame(rows)
