"""The report page (issue 16): the answer on the first screen, figures before tables, long tables collapsed
and written as CSV beside the page, one small stylesheet, a folder that opens from disk with no network.

One function per section (``section_*``), each ``(Analysis, Page) -> html``; :data:`SECTIONS` is their
order, and ``render(..., extra_sections=…)`` slots more in after the downstream section. Tables in
``Analysis.extra_tables`` (e.g. downstream statistics from another module) render in their own section
without further code.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analysis import report_text
from analysis.verdicts import CRITERIA, g3

if TYPE_CHECKING:
    from analysis.report import Analysis

COLLAPSE_ROWS = 12  # tables longer than this go into <details> (and always to CSV)
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1d2430;max-width:1380px;
margin:0 auto;padding:0 12px 40px}
h1{font-size:20px;margin:10px 0 2px}h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid #d5dae1}
h3{font-size:14px;margin:14px 0 6px}.sub{color:#5b6574;font-size:12.5px;margin:0 0 6px}
.law{background:#f3f6fa;border:1px solid #d5dae1;border-radius:6px;padding:6px 10px;margin:4px 0}
.law p{margin:1px 0}.verdicts{border-collapse:collapse;width:100%;font-size:13px;margin:6px 0}
.verdicts td{padding:2px 6px;border-bottom:1px solid #e6e9ee;vertical-align:top}
.verdicts td:nth-child(2){width:30%}.verdicts td:nth-child(3){width:26%}
.badge{display:inline-block;min-width:92px;text-align:center;border-radius:10px;padding:0 6px;
font-size:12px;font-weight:600}.supported{background:#d7f0dd;color:#155724}
.not-supported{background:#f8d7da;color:#721c24}.inconclusive{background:#fff0c2;color:#6b5200}
.partial{background:#fff0c2;border:1px solid #e6c960;border-radius:6px;padding:4px 10px;margin:6px 0}
.row{display:flex;gap:10px;flex-wrap:wrap}.row figure{flex:1 1 600px;margin:0}
figure{margin:8px 0}figure img{max-width:100%;height:auto;display:block}
figcaption{font-size:12px;color:#5b6574}.grid{display:flex;flex-wrap:wrap;gap:10px}
.grid figure{flex:1 1 560px}table.t{border-collapse:collapse;font-size:12.5px;margin:4px 0}
.t td,.t th{border:1px solid #d5dae1;padding:2px 6px;text-align:left}.t th{background:#f3f6fa}
details{margin:6px 0}summary{cursor:pointer;color:#2a5db0}.warn li{margin:2px 0}
"""


def fmt(v: Any) -> str:
    """A table cell: 4 significant digits, intervals as [lo, hi] with 'open' ends."""
    if isinstance(v, tuple):
        return "[" + ", ".join("open" if not np.isfinite(x) else f"{x:.4g}" for x in v) + "]"
    if isinstance(v, (float, np.floating)):
        return "" if np.isnan(v) else f"{v:.4g}"
    return html.escape(str(v))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "table"


class Page:
    """Writes figures (PNG + SVG) and tables (CSV) into the report folder and returns their HTML."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.images: list[str] = []

    def figure(self, name: str, fig: Any, caption: str = "", elem_id: str = "") -> str:
        if fig is None:
            return ""
        fig.savefig(self.out_dir / f"{name}.png", format="png", dpi=110)
        fig.savefig(self.out_dir / f"{name}.svg", format="svg")
        self.images.append(name)
        ident = f' id="{elem_id}"' if elem_id else ""
        cap = html.escape(caption or name.replace("_", " "))
        return (f'<figure{ident}><img alt="{name}" src="{name}.png"/>'
                f'<figcaption>{cap} (<a href="{name}.svg">SVG</a>)</figcaption></figure>')  # fmt: skip

    def table(self, df: pd.DataFrame | None, title: str, csv: bool = True, collapse: bool | None = None) -> str:
        """An HTML table; written as ``<slug>.csv`` beside the page and collapsed when long."""
        if df is None or df.empty:
            return f"<p class='sub'>{html.escape(title)}: none</p>"
        link = ""
        if csv:
            name = _slug(title) + ".csv"
            flat = df.map(lambda v: f"{v[0]!r};{v[1]!r}" if isinstance(v, tuple) else v)
            flat.to_csv(self.out_dir / name, index=False)
            link = f' · <a href="{name}">CSV</a>'
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{fmt(v)}</td>" for v in row) + "</tr>" for row in df.itertuples(index=False)
        )
        tab = f"<table class='t'><tr>{head}</tr>{body}</table>"
        if collapse if collapse is not None else len(df) > COLLAPSE_ROWS:
            return (f"<details><summary>{html.escape(title)} ({len(df)} rows){link}</summary>{tab}"
                    "</details>")  # fmt: skip
        return f"<h3>{html.escape(title)}<span class='sub'>{link}</span></h3>{tab}"


def _badge(status: str) -> str:
    return f"<span class='badge {status.replace(' ', '-')}'>{html.escape(status)}</span>"


def _iv(res: Analysis, name: str) -> str:
    from analysis.verdicts import best_interval

    est, lo, hi, method = best_interval(res.intervals, name)
    return f"{g3(est)} [{g3(lo)}, {g3(hi)}]" + (f" <span class='sub'>({method})</span>" if method else "")


def law_html(res: Analysis) -> str:
    """The fitted law in symbols and in words, with 95% intervals, the cross-checks in one line each."""
    if res.fit is None:
        why = "; ".join(f"{w}: {y}" for w, y in res.failures if "chinchilla" in w or w == "cells")
        return f"<div class='law'><p><b>No joint law yet.</b> {html.escape(why)}</p></div>"
    p = res.fit.params
    sym = (
        "<p title='N = non-embedding backbone parameters; D = pretraining "
        f"{html.escape(res.data.d_unit if res.data else '')} seen'>"
        "<b>L(N, D) = E + A/N<sup>α</sup> + B/D<sup>β</sup></b>: "
        f"α = {_iv(res, 'alpha')}, β = {_iv(res, 'beta')}, E = {_iv(res, 'E')}</p>"
    )
    iso = ""
    if res.isoflop is not None and res.isoflop.ok:
        i = res.isoflop
        iso = f" (IsoFLOP cross-check: {i.a:.3g}" + (f" [{i.lo:.3g}, {i.hi:.3g}]" if i.closed else "") + ")"
    words = (
        f"<p>In words: loss falls like N<sup>−{p['alpha']:.2g}</sup> with model size and "
        f"D<sup>−{p['beta']:.2g}</sup> with data, toward a floor of {p['E']:.3g}; the compute-optimal size "
        f"grows as C<sup>a</sup>, a = β/(α+β) = {_iv(res, 'a')}{iso}.</p>"
    )
    extra = report_text.holdout_short(res.holdout, res.holdout_why)
    if res.isoflop is not None and not res.isoflop.ok:
        extra += f" IsoFLOP cross-check of a not possible: {res.isoflop.why}."
    return f"<div class='law'>{sym}{words}<p class='sub'>{html.escape(extra)}</p></div>"


def _status_line(res: Analysis) -> str:
    counts = res.cell_counts
    if not counts:
        return ""
    total = sum(counts.values())
    done = counts.get("done", 0)
    parts = ", ".join(f"{v} {k}" for k, v in counts.items() if k != "done")
    design = report_text.describe_design(res.data) if res.data is not None else "no finished runs"
    line = f"{done} of {total} cells finished" + (f" ({parts})" if parts else "") + f" · {design}"
    if counts.get("running", 0) + counts.get("planned", 0):
        return (f"<div class='partial'><b>Partial study:</b> {html.escape(line)}. Everything below uses the "
                "finished cells only; the rest are listed under Study status.</div>")  # fmt: skip
    return f"<p class='sub'>{html.escape(line)}</p>"


def section_answer(res: Analysis, page: Page) -> str:
    """First screen: status, the law with intervals, one verdict per claim, the two headline figures."""
    rows = "".join(
        f"<tr><td>{_badge(v.status)}</td><td><b>{html.escape(v.claim)}</b></td>"
        f"<td>{html.escape(v.interval)}</td><td class='sub'>{html.escape(v.evidence)}</td></tr>"
        for v in res.verdicts
    )
    figs = page.figure("headline_loss", res.figures.get("headline_loss"),
                       "Loss vs N: joint law with 95% band, held-out largest size and next rungs", "headline")
    caption = ("Downstream vs labelled events: FM and baselines, 95% event-bootstrap intervals"
               if res.settings.get("headline_downstream") == "labels"
               else "Primary downstream metric vs N with baselines")  # fmt: skip
    figs += page.figure("headline_downstream", res.figures.get("headline_downstream"), caption, "headline-downstream")
    if not figs:
        figs = "<p class='sub'>No figure yet: the joint fit needs finished cells.</p>"
    return (_status_line(res) + law_html(res) + f"<table class='verdicts' id='verdict'>{rows}</table>"
            + f"<div class='row'>{figs}</div>")  # fmt: skip


def section_families(res: Analysis, page: Page) -> str:
    """A study of more than one model family: each family's law overlaid, its parameters and its
    held-out check (empty for a one-family study, whose page is unchanged)."""
    if not res.families:
        return ""
    from analysis.families import BY, parameter_table

    names = ", ".join(res.families)
    note = "One Chinchilla law per family. The joint law above pools the families; compare them here."
    out = [f"<h2>Model families ({BY}: {html.escape(names)})</h2>", f"<p class='sub'>{note}</p>",
           page.figure("families_loss_vs_n", res.figures.get("families_loss_vs_n"),
                       "Loss vs N at the largest D: each family's law with its 95% band", "families")]  # fmt: skip
    lines = []
    for name, fam in res.families.items():
        if fam.fit is None:
            lines.append(f"<p><b>{html.escape(name)}</b>: no law ({html.escape(fam.why)})</p>")
            continue
        p = fam.fit.params
        check = report_text.holdout_short(fam.holdout, fam.holdout_why)
        lines.append(f"<p><b>{html.escape(name)}</b>: α = {g3(p['alpha'])}, β = {g3(p['beta'])}, "
                     f"E = {g3(p['E'])} ({fam.fit.n_points} runs; warnings: "
                     f"{html.escape(', '.join(fam.fit.warning_codes) or 'none')}). {html.escape(check)}</p>")  # fmt: skip
    out.append("<div class='law'>" + "".join(lines) + "</div>")
    out.append(page.table(parameter_table(res.families), "Law parameters per model family (95% intervals)",
                          collapse=False))  # fmt: skip
    return "".join(out)


def section_next(res: Analysis, page: Page) -> str:
    out = ["<h2>What to run next</h2>"]
    if res.fit is None:
        return out[0] + "<p>Finish more cells first: there is no joint fit to extrapolate.</p>"
    if res.next_rungs is not None and len(res.next_rungs):
        best = res.next_rungs.iloc[0]
        lo, hi = best["95% PI"]
        nh = best["node-hours"]
        out.append(
            f"<p>Next rung <b>{html.escape(str(best['model']))}</b> (N = {best['N']:.3g}) at D = "
            f"{best['D (events)']:.3g}: predicted L = {best['predicted L']:.3g} [{lo:.3g}, {hi:.3g}] (95% PI)"
            + (f", about {nh:.2g} node-hours" if np.isfinite(nh) else "") + ".</p>"
        )
        out.append(page.table(res.next_rungs, "Next rungs: predicted loss and cost", collapse=False))
    else:
        out.append(f"<p class='sub'>No next rung: {html.escape(res.next_why or 'the ladder has none')}.</p>")
    if res.design is not None and len(res.design):
        from analysis.next_runs import CRITERION

        top = res.design.iloc[0]
        out.append(
            f"<p>Best buy for the exponents: one more run of <b>{html.escape(str(top['model']))}</b> at D = "
            f"{top['D (events)']:.3g} narrows the α interval by {100 * top['α width shrink']:.2g}% and β by "
            f"{100 * top['β width shrink']:.2g}% for {top['node-hours']:.2g} node-hours.</p>"
        )
        out.append(page.table(res.design, "Runs that would most narrow α and β per node-hour", collapse=False))
        out.append(f"<p class='sub'>Criterion: {html.escape(CRITERION)}.</p>")
    return "".join(out)


LAW_FIGURES = ("loss_vs_n", "loss_vs_d", "design_map", "isoflop_nopt", "isoflop", "allocation", "parity",
               "residuals", "profiles", "rollout", "drift", "frontier")  # fmt: skip


def section_law(res: Analysis, page: Page) -> str:
    out = ["<h2>Scaling law</h2><div class='grid'>"]
    out += [page.figure(n, res.figures[n]) for n in LAW_FIGURES if n in res.figures]
    out.append("</div>")
    if res.fit is None:
        return "".join(out)
    out.append(page.table(report_text.exponent_table(res.intervals), "Fitted exponents (95% intervals)",
                          collapse=False))  # fmt: skip
    if res.isoflop is not None and not res.isoflop.budgets.empty:
        out.append(page.table(res.isoflop.budgets, "IsoFLOP minima per budget (Approach 2)", collapse=True))
    out.append(page.table(res.intervals, "Parameters and intervals (95%)", collapse=True))
    if res.holdout is not None:
        cols = ["N", "D", "L", "pred", "pred_lo", "pred_hi", "signed_rel_err", "distance_decades"]
        out.append(page.table(res.holdout[cols], "Held-out largest size", collapse=True))
    if res.validation is not None:
        agg = (res.validation.groupby("cutoff_k")[["signed_rel_err", "distance_decades"]]
               .agg(["mean", "max"]).reset_index())  # fmt: skip
        agg.columns = [" ".join(c).strip() for c in agg.columns]
        out.append(page.table(agg, "Rollout (hold out the largest sizes)", collapse=True))
    if res.others:
        rows = [{"form": n, **f.params, "n_points": f.n_points,
                 "warnings": ", ".join(f.warning_codes)} for n, f in res.others.items()]  # fmt: skip
        out.append(page.table(pd.DataFrame(rows), "Other forms", collapse=True))
    from analysis.report import fit_card

    card = fit_card(res.fit, res.data, res.settings.get("bootstrap", "no bootstrap"))
    out.append(page.table(card, "Fit card ((Mis)Fitting checklist)", csv=False, collapse=True))
    return "".join(out)


def section_downstream(res: Analysis, page: Page) -> str:
    if "downstream" not in res.figures and res.downstream is None:
        return ""
    out = ["<h2>Downstream</h2>", page.figure("downstream", res.figures.get("downstream")),
           page.figure("label_efficiency", res.figures.get("label_efficiency"),
                       "Downstream vs labelled events, 95% event-bootstrap intervals")]  # fmt: skip
    if res.metric_fits:
        out.append(page.table(report_text.metric_fit_table(res.metric_fits), "Downstream fits", collapse=False))
    if res.comparisons is not None and len(res.comparisons):
        out.append(page.table(report_text.comparison_table(res.comparisons),
                              "FM vs baselines on the same test events (paired event bootstrap, 95%)", collapse=False))  # fmt: skip
    if res.event_intervals is not None and len(res.event_intervals):
        out.append(page.table(report_text.event_interval_table(res.event_intervals),
                              "Downstream metrics with 95% event-bootstrap intervals", collapse=True))  # fmt: skip
    out.append(page.table(res.downstream, "Downstream metrics (mean, seed sd)", collapse=True))
    return "".join(out)


def section_extra_tables(res: Analysis, page: Page) -> str:
    if not res.extra_tables:
        return ""
    return "<h2>Downstream statistics</h2>" + "".join(page.table(df, t) for t, df in res.extra_tables.items())


def section_study(res: Analysis, page: Page) -> str:
    out = ["<h2>Study status</h2><div class='grid'>"]
    out += [page.figure(n, res.figures[n]) for n in ("training_curves", "node_hours", "seed_spread")
            if n in res.figures]  # fmt: skip
    out.append("</div>")
    out.append(page.table(res.cell_table, "Cells", collapse=True))
    fails = pd.DataFrame(res.failures, columns=["what", "why"])
    out.append(page.table(fails, "Failed or excluded", collapse=len(fails) > COLLAPSE_ROWS))
    return "".join(out)


def section_warnings(res: Analysis, page: Page) -> str:
    if not res.warnings:
        return "<h2>Warnings</h2><p>none</p>"
    items = "".join(f"<li><b>{html.escape(w.code)}</b>: {html.escape(w.detail)}</li>" for w in res.warnings)
    return f"<h2>Warnings</h2><ul class='warn'>{items}</ul><p class='sub'>Verdict criteria: {html.escape(CRITERIA)}</p>"


Section = Callable[["Analysis", Page], str]
SECTIONS: tuple[Section, ...] = (section_answer, section_families, section_next, section_law, section_downstream,
                                 section_extra_tables, section_study, section_warnings)  # fmt: skip


def render(res: Analysis, out_dir: Path, title: str, extra_sections: Sequence[Section] = ()) -> Path:
    """Write ``index.html``, every figure as PNG and SVG, and every table as CSV into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    page = Page(out_dir)
    order = list(SECTIONS)
    at = order.index(section_extra_tables)
    order[at:at] = list(extra_sections)
    parts = [f"<h1>{html.escape(title)}</h1>"]
    for section in order:
        try:
            parts.append(section(res, page))
        except Exception as err:  # noqa: BLE001 - one broken section must not lose the page
            name = section.__name__.removeprefix("section_")
            res.failures.append((f"report section {name}", f"{type(err).__name__}: {err}"))
            parts.append(f"<p class='partial'>Section {html.escape(name)} could not be drawn: "
                         f"{html.escape(type(err).__name__)}: {html.escape(str(err))}</p>")  # fmt: skip
    for name, fig in res.figures.items():  # any figure no section placed still ships in the folder
        if name not in page.images:
            parts.append(page.figure(name, fig))
    if res.fit is not None:
        payload = {"chinchilla": res.fit.to_dict()} | {n: f.to_dict() for n, f in res.others.items()}
        if res.families:  # a study of several model families: each family's law as well
            payload["families"] = {
                n: f.fit.to_dict() for n, f in res.families.items() if f.fit is not None
            }
        (out_dir / "fits.json").write_text(json.dumps(payload, indent=1, default=str))
    doc = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<meta name='viewport' content='width=device-width'><style>{STYLE}</style></head><body>")  # fmt: skip
    index = out_dir / "index.html"
    index.write_text(doc + "\n".join(p for p in parts if p) + "</body></html>", encoding="utf-8")
    return index
