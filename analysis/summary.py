"""Fit summaries for the CLI and the catalog: forms → JSON-safe dicts with parameters and intervals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.choices import ALL_FORMS
from analysis.fit import fit_law
from analysis.inputs import FitData, from_cells, split_cells
from fm4npp.errors import FitError

# ALL_FORMS: analysis.choices, re-exported
__all__ = ["ALL_FORMS", "format_summary", "holdout_record", "summarise", "summarise_groups"]
ISOFLOP_BOOT = 100  # seed-noise bootstrap draws of the IsoFLOP (Approach 2) cross-check of a = β/(α+β)


def summarise(
    data: FitData,
    forms: Sequence[str],
    method: str = "vp",
    n_boot: int = 0,
    seed: int = 0,
    scheme: str = "auto",
    holdout: bool = False,
) -> list[dict[str, Any]]:
    """Fit each form; intervals from the ``scheme`` bootstrap with ``n_boot`` > 0, else delta method.

    Each dict: form, params, ci {name: [lo, hi]}, ci_method, n_points, warnings (codes), fit (full record);
    chinchilla also ``isoflop``: the Approach-2 cross-check of a (``analysis.isoflop.summary``), and
    with ``holdout`` the held-out-largest-size check (:func:`holdout_record`).
    """
    from analysis.uncertainty import bootstrap, delta_interval

    out = []
    for form in forms:
        fit = fit_law(data, form, method)
        names = list(fit.law.param_names) + (["a"] if form == "chinchilla" else [])
        ci: dict[str, list[float]] = {}
        if n_boot > 0:
            boot = bootstrap(fit, n_boot, seed, scheme=scheme)
            ci_method = f"{boot.label} ({n_boot} resamples, 95%)"
            for name in names:
                ci[name] = [float(np.squeeze(v)) for v in boot.ci(name)]
        else:
            ci_method = "delta method 95%"
            for name in names:
                ci[name] = [float(np.squeeze(v)) for v in delta_interval(fit, name)[1:]]
        extra: dict[str, Any] = {}
        if form == "chinchilla":
            from analysis import isoflop
            from analysis.derived import quantity

            iso = isoflop.estimate_a(data, isoflop.noise_sigma(data, fit.residuals()), ISOFLOP_BOOT)
            a = float(quantity(fit.law, fit.theta, "a"))
            extra["isoflop"] = isoflop.summary(iso, a, *ci["a"])
            if holdout:
                extra["holdout"] = holdout_record(data, method)
        out.append({
            "form": form,
            "params": dict(fit.params),
            "ci": ci,
            "ci_method": ci_method,
            "n_points": fit.n_points,
            "warnings": fit.warning_codes,
            "fit": fit.to_dict(),
            **extra,
        })  # fmt: skip
    return out


def summarise_groups(
    cells: pd.DataFrame,
    by: str,
    forms: Sequence[str],
    method: str = "vp",
    n_boot: int = 0,
    *,
    scheme: str = "auto",
    loss: str = "final",
    d_unit: str = "events",
    source: str = "catalog",
) -> list[dict[str, Any]]:
    """One law per group of the catalog's cells (``by="arch"``: per model family): :func:`summarise`
    of each group's finished cells, with the held-out-largest-size check; every dict also carries
    ``group`` (``arch=mamba2``). A group that cannot be fitted raises :class:`FitError` naming it."""
    out: list[dict[str, Any]] = []
    for value, group in split_cells(cells, by, source).items():
        key = f"{by}={value}"
        data = from_cells(group, loss, d_unit, f"{source} [{key}]")
        found = summarise(data, forms, method, n_boot, scheme=scheme, holdout=True)
        out += [{"group": key, **res} for res in found]
    return out


def holdout_record(data: FitData, method: str = "vp") -> dict[str, Any]:
    """The held-out-largest-size check (``analysis.validation.hold_out_largest`` along N), JSON-safe:
    held and largest fitted N, signed relative errors (> 0: the law over-predicts), how many held-out
    losses fall inside the 95% prediction band, the reduced fit's warnings and one sentence; or
    ``{"error": why}`` when the check is not possible."""
    from analysis.report_text import holdout_short
    from analysis.validation import hold_out_largest

    try:
        df = hold_out_largest(data, "N", method)
    except FitError as err:
        return {"error": str(err), "text": holdout_short(None, str(err))}
    rel = df["signed_rel_err"].to_numpy(float)
    inside = (df["L"] >= df["pred_lo"]) & (df["L"] <= df["pred_hi"])
    return {
        "held_N": df.attrs["held"],
        "train_max_N": df.attrs["train_max"],
        "n_held": len(df),
        "mean_signed_rel_err": float(rel.mean()),
        "min_signed_rel_err": float(rel.min()),
        "max_signed_rel_err": float(rel.max()),
        "inside_band": int(inside.sum()),
        "warnings": list(df.attrs["warnings"]),
        "text": holdout_short(df),
    }


def format_summary(s: dict[str, Any]) -> str:
    """Human-readable block: parameters to 4 significant figures with their intervals, then warnings
    (a grouped fit names its group first; the hold-out check follows when it was run)."""
    lines = [f"{s['form']}  ({s['n_points']} points; intervals: {s['ci_method']})"]
    if "group" in s:
        lines.insert(0, f"[{s['group']}]")
    for name, v in s["params"].items():
        lo, hi = s["ci"].get(name, [float("nan")] * 2)
        lines.append(f"  {name:>6} = {v:.4g}   [{lo:.4g}, {hi:.4g}]")
    if "a" in s["ci"]:
        lo, hi = s["ci"]["a"]
        a = s["params"]["beta"] / (s["params"]["alpha"] + s["params"]["beta"])
        lines.append(f"  {'a':>6} = {a:.4g}   [{lo:.4g}, {hi:.4g}]   (N_opt ∝ C^a)")
    if "isoflop" in s:
        lines.append(f"  {s['isoflop']['text']}")
    if "holdout" in s:
        lines.append(f"  {s['holdout']['text']}")
    lines.append("  warnings: " + (", ".join(s["warnings"]) or "none"))
    return "\n".join(lines)
