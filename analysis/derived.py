"""Named quantities of a fitted θ: parameters and the derived allocation (SCALING.md §1.4, §3.4).

One function maps (form, θ, name[, C]) to a value, so the delta method, the bootstrap and the report all
compute a, N_opt(C), D/N(C), L*(C) the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from analysis.laws import Form, allocation, implied_frontier, theta_to_params

Array = NDArray[np.float64]

DERIVED = ("a", "b", "G", "gamma", "N_opt", "D_opt", "ratio", "L_star")
NEEDS_C = ("N_opt", "D_opt", "ratio", "L_star")


def quantity(
    form: Form, theta: Array, name: str, C: float | Array | None = None, k: float = 6.0
) -> Array | float:
    """A public parameter (``alpha``, ``E``, …) or a derived quantity; C-dependent ones need ``C``."""
    params = theta_to_params(form, theta)
    if name in params:
        return params[name]
    if name not in DERIVED:
        raise KeyError(f"unknown quantity '{name}'; allowed: {sorted(params)} + {list(DERIVED)}")
    if form.name != "chinchilla":
        raise KeyError(f"'{name}' needs the chinchilla form, not {form.name}")
    if name == "gamma":
        return implied_frontier(params, k)["gamma"]
    if name in NEEDS_C and C is None:
        raise KeyError(f"'{name}' needs a compute budget C")
    alloc = allocation(params, 1.0 if C is None else C, k)
    value: Any = {
        "a": alloc.a,
        "b": alloc.b,
        "G": alloc.G,
        "N_opt": alloc.N_opt,
        "D_opt": alloc.D_opt,
        "ratio": alloc.ratio,
        "L_star": alloc.L_star,
    }[name]
    return np.asarray(value, dtype=float) if np.ndim(value) else float(value)
