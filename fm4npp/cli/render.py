"""Everything the CLI draws: number formatting, the one console, and every table (plan, cell status
with its live view, track scores, key/value listings). Command modules pass data in and print what
comes back; rich is imported here only."""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from fm4npp.store.catalog import PlanDiff
    from fm4npp.sweep.plan import Plan
    from fm4npp.sweep.status import CellStatus

WIDTH = 180  # columns of every table (rich shrinks a table to its content)
STATE_STYLE = {
    "done": "green",
    "running": "cyan",
    "pending": "yellow",
    "preempted-requeued": "magenta",
    "failed": "red",
    "corrupt": "red",
    "planned": "dim",
}


def console() -> Console:
    return Console(width=WIDTH)


# -- numbers ------------------------------------------------------------------------------------------
def si(x: float, digits: int = 3) -> str:
    """1.23M, 4.5e+16 style: SI prefixes up to T, scientific above."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    ax = abs(x)
    for value, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if ax >= value:
            if ax >= 1e15:
                return f"{x:.{digits - 1}e}"
            return f"{x / value:.{digits}g}{suffix}"
    return f"{x:.{digits}g}"


def hours(h: float) -> str:
    if h < 1 / 60:
        return f"{h * 3600:.0f} s"
    if h < 1:
        return f"{h * 60:.1f} min"
    return f"{h:.1f} h"


def elapsed(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


# -- tables -------------------------------------------------------------------------------------------
def table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    footer: Sequence[str] | None = None,
    *,
    left: Iterable[str] = (),
    caption: str | None = None,
) -> Table:
    """The one table style: bold header, first column (and ``left``) left-aligned, numbers right."""
    left = set(left)
    t = Table(title=title, caption=caption, show_footer=footer is not None, header_style="bold")
    for i, col in enumerate(columns):
        just = "left" if i == 0 or col in left else "right"
        t.add_column(col, footer=footer[i] if footer else "", justify=just)
    for row in rows:
        t.add_row(*row)
    return t


def plan_table(plan: Plan) -> Table:
    cols = ["cell", "model", "N", "events", "tokens", "LR", "warm-up", "batch [hits]", "C [FLOP]", "GPUs", "wall",
            "node-h", "fits QOS"]  # fmt: skip
    rows = [
        [
            c.cell_id,
            c.model,
            si(c.cost.n_params),
            si(c.cost.events_seen),
            si(c.cost.n_hits),
            f"{c.run.train.lr:.3g}",
            f"{c.run.train.warmup_fraction:.0%}",
            si(c.run.train.batch_events * c.run.data.hits_per_event),
            f"{c.cost.flops:.3g}",
            str(c.cost.gpus),
            hours(c.cost.wall_time_h),
            f"{c.cost.node_hours:.4g}",
            "yes" if c.cost.fits_qos else f"no ({c.cost.n_slots} slots)",
        ]
        for c in plan.cells
    ]
    budget = plan.spec.budget.max_node_hours
    footer = [
        "total",
        f"{len(rows)} cells",
        "",
        "",
        "",
        "",
        "",
        "",
        f"{plan.total_flops:.3g}",
        "",
        "",
        f"{plan.total_node_hours:.4g}",
        f"budget {budget:g}" if budget else "no budget",
    ]
    title = f"{plan.spec.study}: {plan.cluster.name}/{plan.qos} ({plan.cells[0].cost.cost_source})"
    return table(title, cols, rows, footer)


def print_plan(plan: Plan, diff: PlanDiff | None) -> None:
    con = console()
    con.print(plan_table(plan))
    n_input = sum(c.cost.bound == "input" for c in plan.cells)
    rate = plan.cluster.input_events_per_s
    if n_input:
        con.print(f"input-bound: {n_input} of {len(plan.cells)} cells train at the loader rate "
                  f"({rate:g} events/s per GPU), below their GPU rate")  # fmt: skip
    elif rate > 0:
        con.print(f"GPU-bound: every cell's GPU rate is below the loader rate ({rate:g} events/s per GPU)")
    recipes = sorted({c.recipe for c in plan.cells if c.recipe not in ("none", "file")})
    if recipes:
        con.print(f"LR, warm-up and batch from the run recipe: {'; '.join(recipes)} (train: keys win)")
    if plan.spec.train.schedule == "wsd":
        con.print(plan.wsd_saving())
    budget = plan.spec.budget.max_node_hours
    if plan.over_budget:
        con.print(f"[yellow]over budget: {plan.total_node_hours:.4g} > {budget:g} node-hours[/]")
    for c in plan.dropped:
        con.print(f"dropped to fit the budget: {c.cell_id} ({c.cost.node_hours:.4g} node-hours)")
    if diff is not None:
        con.print(f"{diff.describe()}: {plan.study_dir / 'catalog.duckdb'}")


def status_title(prefix: str, statuses: Sequence[CellStatus]) -> str:
    counts = Counter(str(s.state) for s in statuses)
    return f"{prefix}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))


def status_table(statuses: Sequence[CellStatus], title: str) -> Table:
    cols = ("cell", "state", "attempts", "elapsed", "last loss", "job", "reason")
    rows = []
    for s in statuses:
        style = STATE_STYLE.get(s.state, "")
        rows.append(
            [
                s.cell_id,
                f"[{style}]{s.state}[/]" if style else str(s.state),
                str(s.attempts),
                elapsed(s.elapsed_s),
                f"{s.last_loss:.4g}" if s.last_loss is not None else "–",
                s.job_id or "–",
                s.reason,
            ]
        )
    return table(title, cols, rows, left=("state", "job", "reason"))


class LiveStatus:
    """The cells being waited on: a rich Live table on a terminal (started at the first update), one
    plain line whenever the counts change otherwise (batch logs)."""

    def __init__(self, title: str = "waiting for the cells") -> None:
        self._title = title
        self._live: Any = None
        self._last_counts = ""

    def update(self, statuses: list[CellStatus]) -> None:
        if not sys.stdout.isatty():
            counts = Counter(str(s.state) for s in statuses)
            line = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
            if line != self._last_counts:
                print(f"   cells: {line}", flush=True)
                self._last_counts = line
            return
        from rich.live import Live

        if self._live is None:
            self._live = Live(status_table(statuses, self._title), refresh_per_second=2)
            self._live.start()
        else:
            self._live.update(status_table(statuses, self._title))

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


_SCORE_ROWS = (
    ("ari", "ARI (per-event mean; noise one cluster)"),
    ("ari_signal", "ARI, signal points only"),
    ("ari_singleton", "ARI, noise/unassigned as singletons"),
    ("ari_pooled", "ARI pooled over events"),
    ("efficiency", "efficiency"),
    ("efficiency_pt1", "efficiency, pT > 1 GeV"),
    ("purity", "track purity"),
    ("fake_rate", "fake rate"),
    ("duplicate_rate", "duplicate rate"),
    ("efficiency_geq", "efficiency (≥ 50% matching)"),
    ("duplicate_rate_geq", "duplicate rate (≥ 50% matching)"),
    ("hit_efficiency", "hit efficiency"),
    ("hit_purity", "hit purity"),
    ("trackml_score", "TrackML score"),
    ("trackml_score_uniform", "TrackML score, uniform weights"),
    ("n_events", "events"),
    ("n_particles", "selected particles"),
    ("n_tracks", "candidate tracks"),
)


def score_table(metrics: dict[str, Any]) -> Table:
    """``score-tracks``: one row per metric the scorer returned."""
    rows = []
    for key, label in _SCORE_ROWS:
        value = metrics.get(key)
        if isinstance(value, int):
            rows.append([label, str(value)])
        elif isinstance(value, float):
            rows.append([label, "n/a" if not math.isfinite(value) else f"{value:.4f}"])
    caption = (
        f"particles with ≥ {metrics['min_particle_hits']} hits, tracks with ≥ "
        f"{metrics['min_track_hits']} hits, strict > 50% double majority unless noted"
    )
    return table("score-tracks", ("metric", "value"), rows, caption=caption)


def key_values(items: dict[str, Any], width: int = 24, float_format: str = ".4g") -> str:
    """Plain ``key value`` lines (floats in ``float_format``; nested dicts inline)."""
    lines = []
    for key, value in items.items():
        if isinstance(value, float):
            value = format(value, float_format)
        elif isinstance(value, dict):
            value = ", ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items()
            )
        lines.append(f"{key:{width}s} {value}")
    return "\n".join(lines)
