"""Fit summaries for the CLI and the catalog: forms → JSON-safe dicts with parameters and intervals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from analysis.choices import ALL_FORMS
from analysis.fit import fit_law
from analysis.inputs import FitData

__all__ = ["ALL_FORMS", "format_summary", "summarise"]  # ALL_FORMS: analysis.choices, re-exported
ISOFLOP_BOOT = 100  # seed-noise bootstrap draws of the IsoFLOP (Approach 2) cross-check of a = β/(α+β)


def summarise(
    data: FitData,
    forms: Sequence[str],
    method: str = "vp",
    n_boot: int = 0,
    seed: int = 0,
    scheme: str = "auto",
) -> list[dict[str, Any]]:
    """Fit each form; intervals from the ``scheme`` bootstrap with ``n_boot`` > 0, else delta method.

    Each dict: form, params, ci {name: [lo, hi]}, ci_method, n_points, warnings (codes), fit (full record);
    chinchilla also ``isoflop``: the Approach-2 cross-check of a (``analysis.isoflop.summary``).
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


def format_summary(s: dict[str, Any]) -> str:
    """Human-readable block: parameters to 4 significant figures with their intervals, then warnings."""
    lines = [f"{s['form']}  ({s['n_points']} points; intervals: {s['ci_method']})"]
    for name, v in s["params"].items():
        lo, hi = s["ci"].get(name, [float("nan")] * 2)
        lines.append(f"  {name:>6} = {v:.4g}   [{lo:.4g}, {hi:.4g}]")
    if "a" in s["ci"]:
        lo, hi = s["ci"]["a"]
        a = s["params"]["beta"] / (s["params"]["alpha"] + s["params"]["beta"])
        lines.append(f"  {'a':>6} = {a:.4g}   [{lo:.4g}, {hi:.4g}]   (N_opt ∝ C^a)")
    if "isoflop" in s:
        lines.append(f"  {s['isoflop']['text']}")
    lines.append("  warnings: " + (", ".join(s["warnings"]) or "none"))
    return "\n".join(lines)
