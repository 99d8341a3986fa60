"""The study report: one self-contained ``index.html`` plus every figure as PNG and SVG (SCALING.md §8).

The only module of ``analysis`` that writes files. :func:`build_report` works on DataFrames (testable
without a study); :func:`write_report` reads them from the catalog (``fm4npp.store.catalog``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import families, plots, plots_study
from analysis.diagnostics import FitWarning, extrapolation_far
from analysis.fit import FitResult, fit_law
from analysis.inputs import FitData, from_cells
from analysis.report_html import render
from fm4npp.errors import FitError, StoreError

__all__ = ["Analysis", "analyse", "build_report", "fit_card", "interval_table", "render", "write_report"]

OTHER_FORMS = ("kaplan_n", "kaplan_d", "frontier")
PARAMS = ("E", "A", "B", "alpha", "beta")
WALD_RATIO = 1.5  # §3.3: delta interval this much narrower than the profile one → wald_unreliable


@dataclass
class Analysis:
    """Everything the report shows; built by :func:`analyse`, rendered by :func:`render`."""

    data: FitData | None  # None: no finished cell yet
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
    prepared: pd.DataFrame | None = None  # prepare_evals output (long format)
    isoflop: Any = None  # IsoFlopResult (Approach 2 cross-check of a)
    isoflop_sentence: str = ""
    verdicts: list[Any] = field(default_factory=list)  # verdicts.Verdict, one per claim
    next_rungs: pd.DataFrame | None = None
    next_why: str = ""
    design: pd.DataFrame | None = None  # runs ranked by α/β variance reduction per node-hour
    cell_counts: dict[str, int] = field(default_factory=dict)  # done / running / failed / planned
    cell_table: pd.DataFrame | None = None
    comparisons: pd.DataFrame | None = None  # downstream_stats.fm_comparisons (paired event bootstraps)
    event_intervals: pd.DataFrame | None = None  # downstream_stats.bootstrap_table
    extra_tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # hook: tables of other modules
    families: dict[str, Any] = field(default_factory=dict)  # arch → families.FamilyFit (> 1 arch only)


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


DONE = ("finished", "done", "completed")


def _guard(res: Analysis, what: str, fn: Callable[[], Any]) -> Any:
    """Run one analysis step; a failure is listed on the page instead of losing the report."""
    try:
        return fn()
    except (FitError, ValueError, KeyError, IndexError, ZeroDivisionError, np.linalg.LinAlgError) as err:
        res.failures.append((what, f"{type(err).__name__}: {err}" if not isinstance(err, FitError) else str(err)))
        return None


def cell_status(cells: pd.DataFrame) -> tuple[dict[str, int], pd.DataFrame]:
    """Counts of done / running / failed / planned cells and the per-cell status table."""
    if "status" not in cells.columns:
        return {"done": len(cells)}, pd.DataFrame()
    raw = cells["status"].astype(str).str.lower()
    state = raw.where(~raw.isin(DONE), "done")
    state = state.where(~state.isin(("nan", "none", "submitted", "pending", "queued")), "planned")
    order = ["done", "running", "failed", "planned"]
    counts = state.value_counts()
    out = {k: int(counts[k]) for k in order if k in counts}
    out |= {k: int(v) for k, v in counts.items() if k not in order}
    cols = [c for c in ("cell_id", "model", "n_params", "n_events", "seed", "schedule", "branch", "status", "reason",
                        "final_val_loss", "wall_time_s") if c in cells.columns]  # fmt: skip
    return out, cells[cols].assign(status=state.to_numpy())


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
    cost: Callable[[str, float], float] | None = None,
    events: pd.DataFrame | None = None,
) -> Analysis:
    """Fit every form, attach uncertainty, validation, verdicts and next runs, build the figures (no I/O).

    ``cost(model, events) -> node-hours`` prices candidate runs (default: the study's planned node-hours
    per ladder FLOP); ``events`` are the per-event downstream scores (``catalog.eval_events``): event-bootstrap
    intervals of every variant and the paired FM − baseline comparisons the verdicts use.
    """
    from analysis import verdicts

    settings = {"loss": loss, "d_unit": d_unit, "method": method, "n_boot": n_boot, "k": k}
    res = Analysis(None, None, settings=settings)
    res.cell_counts, res.cell_table = cell_status(cells)
    try:
        res.data = from_cells(cells, loss=loss, d_unit=d_unit)
    except FitError as err:
        res.failures.append(("cells", str(err)))
    if res.data is not None:
        res.failures += [(f"cell {c}", why) for c, why in res.data.exclusions]
        _fit_section(res, cells, method, n_boot, scheme, target_c, k, cost)
        if families.has_families(cells):
            _guard(res, "model families", lambda: _families(res, cells, method, n_boot, scheme, k))
        if res.data.seed is not None and len(np.unique(res.data.cell)) < len(res.data):
            f_delta = res.fit.problem.delta if res.fit else None
            res.figures["seed_spread"] = _guard(
                res, "seed spread", lambda: plots_design_seed(res.data, curves, f_delta)
            )
    if curves is not None and len(curves):
        used = _used_points(cells, loss) if d_unit == "events" else None
        res.figures["training_curves"] = _guard(
            res, "training curves", lambda: plots_study.training_curves(curves, used, cells=cells)
        )
    if evals is not None and len(evals):
        _guard(res, "downstream fits", lambda: _downstream(res, evals, cells))
    if events is not None and len(events):
        _guard(res, "downstream intervals", lambda: _event_statistics(res, events))
    if {"node_hours_planned", "wall_time_s"} <= set(cells.columns):
        res.figures["node_hours"] = _guard(res, "node-hours", lambda: plots_study.node_hours(cells))
    codes = [w.code for w in res.warnings]
    extra_n = ""
    if res.holdout is not None and len(res.holdout):
        extra_n = f"largest size held out: {100 * res.holdout['signed_rel_err'].mean():+.1f}% mean error"
    sat = any(mf.saturated for mf in res.metric_fits if mf.task == "tracking")
    res.verdicts = [
        verdicts.power_law(res.intervals if res.fit else None, "N", codes, extra_n, res.holdout),
        verdicts.power_law(res.intervals if res.fit else None, "D", codes),
        *(verdicts.fm_vs_adapter(res.prepared, task, paired=res.comparisons) for task in _tasks(res.prepared)),
        verdicts.bigger_is_better(res.prepared, saturated=sat),
    ]
    res.figures = {n: f for n, f in res.figures.items() if f is not None}
    return res


def _families(
    res: Analysis, cells: pd.DataFrame, method: str, n_boot: int, scheme: str, k: float
) -> None:
    """One law per model family, their overlay figure, and why a family has no law."""
    got = families.fit_families(cells, loss=res.settings["loss"], d_unit=res.settings["d_unit"],
                                method=method, n_boot=n_boot, scheme=scheme, k=k)  # fmt: skip
    res.families = got
    res.failures += [(f"{families.BY}={name} law", f.why) for name, f in got.items() if f.why]
    res.figures["families_loss_vs_n"] = plots.families_vs_n(got)


def plots_design_seed(data: FitData, curves: pd.DataFrame | None, delta: float | None) -> Any:
    from analysis import plots_design

    return plots_design.seed_spread(data, curves, delta)


def _tasks(prepared: pd.DataFrame | None) -> list[str]:
    """The downstream tasks a study evaluated, tracking first (one FM-vs-adapter-only verdict each)."""
    got = set() if prepared is None or prepared.empty else set(prepared["task"].astype(str))
    return ["tracking"] + [t for t in ("pid", "noise") if t in got]


def _floors(prepared: pd.DataFrame | None) -> dict[str, float]:
    """Per point task, the accuracy of always predicting the labelled set's commonest class."""
    if prepared is None or prepared.empty:
        return {}
    rows = prepared[prepared["metric"] == "majority_accuracy"]
    return {str(t): float(g["value"].mean()) for t, g in rows.groupby("task")}


def _event_statistics(res: Analysis, events: pd.DataFrame) -> None:
    from analysis import plots_headline
    from analysis.downstream_stats import bootstrap_table, fm_comparisons

    res.comparisons = fm_comparisons(events)
    res.event_intervals = bootstrap_table(events)
    sizes = events.dropna(subset=["n_params"]).drop_duplicates("cell_id").set_index("cell_id")["n_params"]
    fig = plots_headline.label_efficiency(res.event_intervals, sizes.astype(float).to_dict(), _floors(res.prepared))
    fm = res.prepared[res.prepared["variant"] == "fm"] if res.prepared is not None else events[events["variant"] == "fm"]
    if fig is not None and fm["n_params"].nunique() < 2:
        res.figures["headline_downstream"] = fig  # one evaluated size: the label curve says more than vs-N
        res.settings["headline_downstream"] = "labels"
    elif fig is not None:
        res.figures["label_efficiency"] = fig


def _downstream(res: Analysis, evals: pd.DataFrame, cells: pd.DataFrame) -> None:
    from analysis import plots_headline, verdicts
    from analysis.downstream import downstream_table, fit_eval_metrics, prepare_evals

    res.prepared = prepare_evals(evals, cells)
    res.metric_fits = fit_eval_metrics(res.prepared)
    res.downstream = downstream_table(res.prepared)
    res.figures["downstream"] = plots_study.downstream(res.metric_fits, res.prepared)
    tasks = sorted(set(res.prepared["task"].astype(str)))
    primary = {t: m for t in tasks if (m := verdicts.primary_metric(res.prepared, t)) is not None}
    res.figures["headline_downstream"] = plots_headline.headline_downstream(
        res.metric_fits, res.prepared, primary
    )


def _fit_section(
    res: Analysis,
    cells: pd.DataFrame,
    method: str,
    n_boot: int,
    scheme: str,
    target_c: float | None,
    k: float,
    cost: Callable[[str, float], float] | None,
) -> None:
    from analysis import isoflop, next_runs, plots_design, plots_headline, validation
    from analysis.uncertainty import bootstrap

    data = res.data
    assert data is not None
    d_unit = res.settings["d_unit"]
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
    if fit is None:
        res.holdout_why = "the joint fit failed"
        return
    res.warnings += list(fit.warnings)
    c_obs = data.C if data.C is not None else k * data.N * data.D
    target = target_c or float(c_obs.max() * 10)
    res.warnings += extrapolation_far(float(c_obs.max()), target, "C")
    boot = _guard(res, "bootstrap", lambda: bootstrap(fit, n_boot, scheme=scheme)) if n_boot > 0 else None
    if boot is not None:
        res.settings["bootstrap"] = f"{boot.label}, {n_boot} resamples"
    got = _guard(res, "intervals", lambda: interval_table(fit, boot, target, k))
    if got is not None:
        res.intervals, iw, profs = got
        res.warnings += iw
        f["profiles"] = _guard(res, "profiles figure", lambda: plots_study.profiles(profs))
    try:
        res.holdout = validation.hold_out_largest(data, "N", method)
    except FitError as err:
        res.holdout_why = str(err)
    if cost is None:
        cost = next_runs.study_cost(cells)
    res.next_rungs = _guard(res, "next rungs", lambda: next_runs.next_rung_table(fit, cells, cost))
    if res.next_rungs is not None and res.next_rungs.empty:
        res.next_why = "the study's models are not on a known ladder, or the largest rung is the top"
    res.design = _guard(res, "design criterion", lambda: next_runs.design_table(fit, cells, cost))
    f["headline_loss"] = _guard(
        res, "headline figure", lambda: plots_headline.headline_loss(fit, boot, res.holdout, res.next_rungs)
    )
    f["loss_vs_n"] = plots.loss_vs_n(fit, boot)
    f["loss_vs_d"] = plots.loss_vs_d(fit, boot)
    f["design_map"] = _guard(res, "design map", lambda: plots_design.design_map(fit, cells, d_unit, k))
    sigma = isoflop.noise_sigma(data, fit.residuals())
    res.isoflop = _guard(res, "IsoFLOP", lambda: isoflop.estimate_a(data, sigma, min(n_boot, 100), k))
    if res.isoflop is not None:
        from analysis.verdicts import best_interval

        _, alo, ahi, _ = best_interval(res.intervals, "a")
        res.isoflop_sentence, code = isoflop.compare(res.isoflop, _a(fit), alo, ahi)
        if code:
            res.warnings.append(FitWarning(code, res.isoflop_sentence))
        if "not_bracketed" in res.isoflop.warnings:
            n_out = int((~res.isoflop.budgets["bracketed"]).sum())
            res.warnings.append(FitWarning("not_bracketed", f"{n_out} of {len(res.isoflop.budgets)} IsoFLOP "
                                           "budgets have their minimum at the edge of the sampled sizes"))  # fmt: skip
        f["isoflop_nopt"] = _guard(res, "IsoFLOP figure", lambda: plots_headline.isoflop_minima(res.isoflop, fit, k))
    f["isoflop"] = plots.isoflop(fit, k)
    f["allocation"] = plots.allocation_vs_compute(fit, boot, target, k)
    f["residuals"] = plots.residuals(fit)
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


def _a(fit: FitResult) -> float:
    from analysis.derived import quantity

    return float(quantity(fit.law, fit.theta, "a"))


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


def write_report(
    study_dir: Path,
    out: Path | None = None,
    extra_tables: dict[str, pd.DataFrame] | None = None,
    **kwargs: Any,
) -> Path:
    """Read the study's catalog and write ``<study>/report/index.html`` (or into ``out``).

    ``extra_tables`` (title → DataFrame, e.g. downstream statistics) get a section of their own; ``kwargs``
    go to :func:`analyse` (``cost=`` the planner's node-hours). Per-event downstream scores, where the
    evaluations wrote them, give the paired FM − baseline comparisons.
    """
    study = Path(study_dir)
    if not study.is_dir():
        raise StoreError(f"{study}: no such study directory")
    from fm4npp.store import catalog

    cells = catalog.finished_cells(study)
    curves = evals = None
    problems = []
    try:
        curves = catalog.loss_curves(study)
    except Exception as err:  # noqa: BLE001 - a partial study's metrics may be unreadable; show the rest
        problems.append(("loss curves", f"{type(err).__name__}: {err}"))
    try:
        evals = catalog.eval_metrics(study)
    except Exception as err:  # noqa: BLE001
        problems.append(("downstream metrics", f"{type(err).__name__}: {err}"))
    events = None
    try:
        events = catalog.eval_events(study)
    except Exception as err:  # noqa: BLE001
        problems.append(("per-event downstream scores", f"{type(err).__name__}: {err}"))
    res = analyse(cells, curves, evals, events=events, **kwargs)
    res.failures += problems
    res.extra_tables.update(extra_tables or {})
    return render(res, Path(out or study / "report"), f"Scaling report: {study.name}")
