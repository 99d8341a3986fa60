"""``fm4npp-sweep plan SWEEP``: the grid with N, D, C, GPUs and node-hours, checked against the budget."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from fm4npp.store.catalog import PlanDiff
    from fm4npp.sweep.plan import Plan


from fm4npp.cli.render import add_overrides


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("plan", help="enumerate the model × dataset grid and estimate its cost")
    p.add_argument("sweep", type=Path, help="sweep file (YAML)")
    p.add_argument("--cluster", help="cluster profile name or path (default: the sweep's)")
    p.add_argument("--qos", help="QOS of the profile (default: the sweep's, else the profile's)")
    add_overrides(p)
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    out.add_argument("--csv", metavar="FILE", help="write the cells as CSV ('-' for stdout)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--allow-over-budget", action="store_true", help="plan even when over budget")
    budget.add_argument(
        "--fit-budget",
        action="store_true",
        help="drop the most expensive cells (keeping ≥ 3 sizes per axis) to fit the budget",
    )
    p.add_argument("--no-catalog", action="store_true", help="do not record the cells in the catalog")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fm4npp.sweep.plan import check_budget, fit_budget, plan_file, record_plan

    plan = plan_file(args.sweep, args.cluster, args.qos, args.overrides)
    if args.fit_budget:
        plan = fit_budget(plan)
    elif not args.allow_over_budget:
        check_budget(plan)
    diff = None if args.no_catalog else record_plan(plan)
    rows = [c.row() for c in plan.cells]
    if args.json:
        print(
            json.dumps(
                {
                    "study": plan.spec.study,
                    "cluster": plan.cluster.name,
                    "qos": plan.qos,
                    "cells": rows,
                    "dropped": [c.cell_id for c in plan.dropped],
                    "totals": {
                        "n_cells": len(rows),
                        "flops": plan.total_flops,
                        "gpu_hours": plan.total_gpu_hours,
                        "node_hours": plan.total_node_hours,
                        "max_node_hours": plan.spec.budget.max_node_hours,
                    },
                },
                indent=2,
            )
        )
        return 0
    if args.csv:
        if args.csv == "-":
            _write_csv(sys.stdout, rows)
        else:
            with Path(args.csv).open("w", newline="") as fh:
                _write_csv(fh, rows)
        return 0
    _print_table(plan, diff)
    return 0


def _write_csv(fh: TextIO, rows: list[dict[str, object]]) -> None:
    writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)


def _print_table(plan: Plan, diff: PlanDiff | None) -> None:
    from fm4npp.cli.render import console, hours, si, table

    cols = ["cell", "model", "N", "events", "tokens", "LR", "batch [hits]", "C [FLOP]", "GPUs", "wall", "node-h",
            "fits QOS"]  # fmt: skip
    rows = [
        [
            c.cell_id,
            c.model,
            si(c.cost.n_params),
            si(c.cost.events_seen),
            si(c.cost.n_hits),
            f"{c.run.train.lr:.3g}",
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
        f"{plan.total_flops:.3g}",
        "",
        "",
        f"{plan.total_node_hours:.4g}",
        f"budget {budget:g}" if budget else "no budget",
    ]
    con = console()
    title = f"{plan.spec.study}: {plan.cluster.name}/{plan.qos} ({plan.cells[0].cost.cost_source})"
    con.print(table(title, cols, rows, footer))
    recipes = sorted({c.recipe for c in plan.cells if c.recipe not in ("none", "file")})
    if recipes:
        con.print(f"LR, warm-up and batch from the run recipe: {'; '.join(recipes)} (train: keys win)")
    if plan.over_budget:
        con.print(f"[yellow]over budget: {plan.total_node_hours:.4g} > {budget:g} node-hours[/]")
    for c in plan.dropped:
        con.print(f"dropped to fit the budget: {c.cell_id} ({c.cost.node_hours:.4g} node-hours)")
    if diff is not None:
        con.print(f"{diff.describe()}: {plan.study_dir / 'catalog.duckdb'}")
