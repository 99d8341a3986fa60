"""One law per model family (issue 14: Mamba2 vs transformer in one study): the report's overlay.

A study whose cells span more than one ``arch`` answers "which family scales better?" only with one
Chinchilla law per family, each with its own intervals and held-out-largest-size check; the joint law
of the whole report pools the families and is no answer to that question. Pure: DataFrames in,
fits and tables out (the figure is ``analysis.plots.families_vs_n``, the page section
``analysis.report_html.section_families``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analysis.fit import fit_law
from analysis.inputs import from_cells, split_cells
from fm4npp.errors import FitError

if TYPE_CHECKING:
    from analysis.bootstrap import BootstrapResult
    from analysis.fit import FitResult
    from analysis.inputs import FitData

BY = "arch"  # the column that names a cell's model family (mamba2, transformer, …)
PARAM_ORDER = ("E", "A", "alpha", "B", "beta")


@dataclass
class FamilyFit:
    """The law of one family; ``fit`` is None (and ``why`` says why) when it could not be fitted."""

    name: str
    data: FitData | None = None
    fit: FitResult | None = None
    boot: BootstrapResult | None = None
    intervals: pd.DataFrame | None = None  # analysis.report.interval_table rows
    holdout: pd.DataFrame | None = None  # analysis.validation.hold_out_largest along N
    why: str = ""  # why there is no fit
    holdout_why: str = ""  # why there is no hold-out check


def has_families(cells: pd.DataFrame) -> bool:
    """True when the cells span more than one model family (a one-family study renders as before)."""
    return BY in cells.columns and cells[BY].dropna().astype(str).nunique() > 1


def fit_families(
    cells: pd.DataFrame,
    *,
    loss: str = "final",
    d_unit: str = "events",
    method: str = "vp",
    n_boot: int = 0,
    scheme: str = "auto",
    target_c: float | None = None,
    k: float = 6.0,
) -> dict[str, FamilyFit]:
    """Fit the Chinchilla law to each family's finished cells, with the report's intervals (delta,
    bootstrap with ``n_boot`` > 0, profile) and the held-out-largest-size check; a family that cannot
    be fitted keeps its reason in ``why``. ``target_c`` (default: 10× the family's largest C) is where
    the interval table states D/N."""
    from analysis.bootstrap import bootstrap
    from analysis.report import interval_table
    from analysis.validation import hold_out_largest

    out: dict[str, FamilyFit] = {}
    for name, group in split_cells(cells, BY).items():
        fam = out[name] = FamilyFit(name)
        try:
            fam.data = from_cells(group, loss=loss, d_unit=d_unit, source=f"{BY}={name}")
            fam.fit = fit_law(fam.data, "chinchilla", method)
        except FitError as err:
            fam.why = str(err)
            continue
        if n_boot > 0:
            fam.boot = bootstrap(fam.fit, n_boot, scheme=scheme)
        c_obs = fam.data.C if fam.data.C is not None else k * fam.data.N * fam.data.D
        fam.intervals = interval_table(fam.fit, fam.boot, target_c or float(c_obs.max() * 10), k)[0]
        try:
            fam.holdout = hold_out_largest(fam.data, "N", method)
        except FitError as err:
            fam.holdout_why = str(err)
    return out


def parameter_table(families: dict[str, FamilyFit]) -> pd.DataFrame:
    """E, A, α, B, β per family with every 95% interval computed (open ends stay NaN)."""
    rows: list[dict[str, Any]] = []
    for name, fam in families.items():
        if fam.intervals is None:
            continue
        iv = fam.intervals.set_index("quantity")
        for q in PARAM_ORDER:
            row = iv.loc[q]
            rows.append({BY: name, "quantity": q, "estimate": float(row["estimate"]),
                         **{m: row[m] for m in ("delta", "bootstrap", "profile") if m in iv.columns}})  # fmt: skip
    return pd.DataFrame(rows)


def largest_d(fam: FamilyFit) -> float:
    """The family's largest D level (the slice the overlay plots)."""
    assert fam.data is not None
    return float(np.max(fam.data.D))
