"""The study report: one self-contained ``index.html`` plus every figure as PNG and SVG (SCALING.md §8).

The only module of ``analysis`` that writes files. :func:`build_report` works on DataFrames (testable
without a study); :func:`write_report` reads them from the catalog (``fm4npp.store.catalog``).
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import plots, plots_study, report_text
from analysis.diagnostics import FitWarning, extrapolation_far
from analysis.fit import FitResult, fit_law
from analysis.inputs import FitData, from_cells
from fm4npp.errors import FitError, StoreError

OTHER_FORMS = ("kaplan_n", "kaplan_d", "frontier")
PARAMS = ("E", "A", "B", "alpha", "beta")
WALD_RATIO = 1.5  # §3.3: delta interval this much narrower than the profile one → wald_unreliable


@dataclass
class Analysis:
    """Everything the report shows; built by :func:`analyse`, rendered by :func:`render`."""

    data: FitData
    fit: FitResult | None
    others: dict[str, FitResult] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (what, why)
    intervals: pd.DataFrame | None = None
    warnings: list[FitWarning] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    validation: pd.DataFrame | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    holdout: pd.DataFrame | None = None  # hold_out_largest along N (§4.1 headline)
    holdout_why: str = ""  # why there is no hold-out check
    downstream: pd.DataFrame | None = None  # downstream_table of the prepared eval rows
    metric_fits: list[Any] = field(default_factory=list)


def interval_table(
    fit: FitResult, boot: Any, target_c: float, k: float
) -> tuple[pd.DataFrame, list[FitWarning], list[Any]]:
    """Delta, bootstrap and profile intervals side by side (§3.3), plus wald_unreliable/weakly_identified."""
    from analysis.derived import quantity
    from analysis.uncertainty import delta_interval, profile_interval

    rows, warns, profs = [], [], []
    for name in (*PARAMS, "a", "ratio"):
        c = target_c if name == "ratio" else None
        est = float(np.squeeze(quantity(fit.law, fit.theta, name, c, k)))
        _, dlo, dhi = (float(np.squeeze(v)) for v in delta_interval(fit, name, C=c, k=k))
        row = {
            "quantity": name if c is None else f"D/N at C = {c:.3g}",
            "estimate": est,
            "delta": (dlo, dhi),
        }
        if boot is not None:
            row["bootstrap"] = tuple(float(np.squeeze(v)) for v in boot.ci(name, C=c, k=k))
        if name in PARAMS:
            p = profile_interval(fit, name)
            profs.append(p)
            row["profile"] = (p.lo, p.hi)
            if not p.closed:
                warns.append(FitWarning("weakly_identified", f"profile interval of {name} is open"))
            elif (dhi - dlo) * WALD_RATIO < (p.hi - p.lo):
                warns.append(
                    FitWarning(
                        "wald_unreliable",
                        f"delta interval of {name} is > {WALD_RATIO}x narrower than the profile",
                    )
                )
        rows.append(row)
    return pd.DataFrame(rows), warns, profs


def analyse(
    cells: pd.DataFrame,
    curves: pd.DataFrame | None = None,
    evals: pd.DataFrame | None = None,
    *,
    loss: str = "final",
    d_unit: str = "events",
    method: str = "vp",
    n_boot: int = 1000,
    scheme: str = "auto",
    target_c: float | None = None,
    k: float = 6.0,
) -> Analysis:
    """Fit every form, attach uncertainty and validation, and build the figures (no I/O)."""
    from analysis import plots_design, validation
    from analysis.downstream import downstream_table, fit_eval_metrics, prepare_evals
    from analysis.uncertainty import bootstrap

    data = from_cells(cells, loss=loss, d_unit=d_unit)
    settings = {"loss": loss, "d_unit": d_unit, "method": method, "n_boot": n_boot, "k": k}
    res = Analysis(data, None, settings=settings)
    res.failures += [(f"cell {c}", why) for c, why in data.exclusions]
    try:
        res.fit = fit_law(data, "chinchilla", method)
    except FitError as err:
        res.failures.append(("chinchilla fit", str(err)))
    for form in OTHER_FORMS:
        try:
            res.others[form] = fit_law(data, form, method)
        except FitError as err:
            res.failures.append((f"{form} fit", str(err)))
    fit = res.fit
    f = res.figures
    if fit is not None:
        res.warnings += list(fit.warnings)
        c_obs = data.C if data.C is not None else k * data.N * data.D
        target = target_c or float(c_obs.max() * 10)
        res.warnings += extrapolation_far(float(c_obs.max()), target, "C")
        boot = bootstrap(fit, n_boot, scheme=scheme) if n_boot > 0 else None
        if boot is not None:
            settings["bootstrap"] = f"{boot.label}, {n_boot} resamples"
        res.intervals, iw, profs = interval_table(fit, boot, target, k)
        res.warnings += iw
        f["loss_vs_n"] = plots.loss_vs_n(fit, boot)
        f["loss_vs_d"] = plots.loss_vs_d(fit, boot)
        f["design_map"] = plots_design.design_map(fit, cells, d_unit, k)
        try:
            res.holdout = validation.hold_out_largest(data, "N", method)
        except FitError as err:
            res.holdout_why = str(err)
        f["isoflop"] = plots.isoflop(fit, k)
        f["allocation"] = plots.allocation_vs_compute(fit, boot, target, k)
        f["residuals"] = plots.residuals(fit)
        f["profiles"] = plots_study.profiles(profs)
        held = None
        try:
            pts, drift = validation.rollout(data, "N", method)
            res.validation = pts
            f["rollout"] = plots_study.rollout_errors(pts)
            f["drift"] = plots_study.exponent_drift(drift, "N")
            last = pts[pts["cutoff_k"] == pts["cutoff_k"].max()]
            held = (last["L"].to_numpy(), last["pred"].to_numpy())
        except FitError as err:
            res.failures.append(("rollout along N", str(err)))
        f["parity"] = plots.parity(fit, held)
        if "frontier" in res.others:
            f["frontier"] = plots.frontier(res.others["frontier"], fit, k)
    else:
        res.holdout_why = "the joint fit failed"
    if data.seed is not None and len(np.unique(data.cell)) < len(data):
        f["seed_spread"] = plots_design.seed_spread(data, curves, fit.problem.delta if fit else None)
    if curves is not None and len(curves):
        used = None
        if d_unit == "events":
            used = _used_points(cells, loss)
        f["training_curves"] = plots_study.training_curves(curves, used, cells=cells)
    if evals is not None and len(evals):
        try:
            prepared = prepare_evals(evals, cells)
            res.metric_fits = fit_eval_metrics(prepared)
            res.downstream = downstream_table(prepared)
            f["downstream"] = plots_study.downstream(res.metric_fits, prepared)
        except FitError as err:
            res.failures.append(("downstream fits", str(err)))
    if {"node_hours_planned", "wall_time_s"} <= set(cells.columns):
        f["node_hours"] = plots_study.node_hours(cells)
    return res


def _used_points(cells: pd.DataFrame, loss: str) -> pd.DataFrame:
    """cell_id, n_events (events seen when known) and loss of every cell the fit used (plot 12 markers)."""
    from analysis.inputs import CATALOG_LOSS

    col = CATALOG_LOSS[loss]
    ok = pd.to_numeric(cells[col], errors="coerce").gt(0)
    if "status" in cells.columns:
        ok &= cells["status"].astype(str).isin(("finished", "done", "completed"))
    df = cells[ok]
    d = df["n_events"].astype(float)
    if "events_seen" in df.columns:
        seen = pd.to_numeric(df["events_seen"], errors="coerce")
        d = seen.where(seen > 0, d)
    return pd.DataFrame({"cell_id": df["cell_id"], "n_events": d, "loss": df[col].astype(float)})


# ----------------------------------------------------------------------------------------------------
# Rendering


def _fmt(v: Any) -> str:
    if isinstance(v, tuple):
        return "(" + ", ".join("open" if not np.isfinite(x) else f"{x:.4g}" for x in v) + ")"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>"
        for row in df.itertuples(index=False)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def fit_card(fit: FitResult, data: FitData, bootstrap: str = "cluster bootstrap") -> pd.DataFrame:
    """The (Mis)Fitting checklist (Li et al. 2025) as a two-column table."""
    s = fit.settings
    rows = [
        ("form", "L = E + A/N^alpha + B/D^beta (chinchilla)"),
        ("N", "non-embedding backbone parameters"),
        ("D", f"pretraining {data.d_unit} seen"),
        ("C", "stored flops column" if data.C is not None else "6·N·D (no flops column)"),
        ("loss", f"validation loss, {s.get('source')}"),
        ("points / cells", f"{fit.n_points} / {len(np.unique(data.cell))}"),
        ("exclusions", f"{len(data.exclusions)} (listed below)"),
        (
            "seeds",
            "replicates present" if "single_seed" not in fit.warning_codes else "one run per cell",
        ),
        ("objective", s["objective"]),
        ("optimiser", s["optimizer"]),
        ("initialisation", f"{s['method']}: {s['init']}, {s['n_starts_polished']} starts polished"),
        ("intervals", f"delta (Huber sandwich), {bootstrap}, profile (robust LR)"),
        ("unrounded parameters", json.dumps(fit.params)),
        (
            "residual MAD vs delta",
            f"{fit.diagnostics.get('residual_mad', float('nan')):.3g} vs {fit.problem.delta:g}",
        ),
        ("status", f"{fit.status.value}: {fit.message}"),
        ("warnings", ", ".join(fit.warning_codes) or "none"),
    ]
    return pd.DataFrame(rows, columns=["item", "value"])


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def render(res: Analysis, out_dir: Path, title: str) -> Path:
    """Write ``index.html`` and ``<figure>.png``/``.svg`` into ``out_dir``; return the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [f"<h1>{html.escape(title)}</h1>"]
    codes = sorted({w.code for w in res.warnings})
    if res.fit is not None:
        lines = report_text.headline(res.data, res.intervals, res.holdout, res.holdout_why, codes)
        parts.append(
            "<h2>Summary</h2>" + "".join(f"<p class='headline'>{html.escape(t)}</p>" for t in lines)
        )
        parts.append("<h2>Fitted exponents (95% intervals)</h2>"
                     + _table(report_text.exponent_table(res.intervals)))  # fmt: skip
    parts.append("<h2>Warnings</h2><ul>" + "".join(
        f"<li><b>{html.escape(w.code)}</b>: {html.escape(w.detail)}</li>" for w in res.warnings
    ) + "</ul>" if codes else "<h2>Warnings</h2><p>none</p>")  # fmt: skip
    if res.fit is not None:
        parts.append(
            "<h2>Fit card</h2>"
            + _table(fit_card(res.fit, res.data, res.settings.get("bootstrap", "no bootstrap")))
        )
        parts.append(
            "<h2>Parameters and intervals (95%)</h2>"
            + _table(res.intervals if res.intervals is not None else pd.DataFrame())
        )
    if res.others:
        rows = [{"form": n, "params": json.dumps({k: float(f"{v:.4g}") for k, v in f.params.items()}),
                 "n_points": f.n_points, "warnings": ", ".join(f.warning_codes)} for n, f in res.others.items()]  # fmt: skip
        parts.append("<h2>Other forms</h2>" + _table(pd.DataFrame(rows)))
    fails = pd.DataFrame(res.failures, columns=["what", "why"])
    parts.append("<h2>Failed or excluded</h2>" + (_table(fails) if len(fails) else "<p>none</p>"))
    if res.validation is not None:
        agg = (
            res.validation.groupby("cutoff_k")[["signed_rel_err", "distance_decades"]]
            .agg(["mean", "max"])
            .reset_index()
        )
        agg.columns = [" ".join(c).strip() for c in agg.columns]
        parts.append("<h2>Rollout (hold out the largest sizes)</h2>" + _table(agg))
    if res.holdout is not None:
        cols = ["N", "D", "L", "pred", "pred_lo", "pred_hi", "signed_rel_err", "distance_decades"]
        parts.append("<h2>Held-out largest size</h2>" + _table(res.holdout[cols]))
    if res.metric_fits:
        parts.append("<h2>Downstream fits</h2>" + _table(report_text.metric_fit_table(res.metric_fits)))
    if res.downstream is not None:
        parts.append("<h2>Downstream metrics (mean, seed sd)</h2>" + _table(res.downstream))
    parts.append("<h2>Figures</h2>")
    for name, fig in res.figures.items():
        png = _png(fig)
        (out_dir / f"{name}.png").write_bytes(png)
        fig.savefig(out_dir / f"{name}.svg", format="svg", bbox_inches="tight")
        b64 = base64.b64encode(png).decode("ascii")
        parts.append(f'<figure><img alt="{name}" src="data:image/png;base64,{b64}"/>'
                     f'<figcaption>{name} (<a href="{name}.svg">SVG</a>)</figcaption></figure>')  # fmt: skip
    if res.fit is not None:
        payload = {"chinchilla": res.fit.to_dict()} | {n: f.to_dict() for n, f in res.others.items()}
        (out_dir / "fits.json").write_text(json.dumps(payload, indent=1, default=str))
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 6px}img{max-width:100%}")  # fmt: skip
    doc = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body>"
    index = out_dir / "index.html"
    index.write_text(doc + "\n".join(parts) + "</body></html>", encoding="utf-8")
    return index


def build_report(
    cells: pd.DataFrame,
    out_dir: Path,
    curves: pd.DataFrame | None = None,
    evals: pd.DataFrame | None = None,
    title: str = "fm4npp-sweep scaling report",
    **kwargs: Any,
) -> Path:
    """Analyse DataFrames and write the report; ``kwargs`` go to :func:`analyse`."""
    return render(analyse(cells, curves, evals, **kwargs), Path(out_dir), title)


def write_report(study_dir: Path, out: Path | None = None, **kwargs: Any) -> Path:
    """Read the study's catalog and write ``<study>/report/index.html`` (or into ``out``)."""
    study = Path(study_dir)
    if not study.is_dir():
        raise StoreError(f"{study}: no such study directory")
    from fm4npp.store import catalog

    cells = catalog.finished_cells(study)
    curves = catalog.loss_curves(study)
    evals = catalog.eval_metrics(study)
    return build_report(
        cells, out or study / "report", curves, evals, title=f"Scaling report: {study.name}", **kwargs
    )
