"""``fm4npp-sweep plan SWEEP``: the grid with N, D, C, GPUs and node-hours, checked against the budget."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import TextIO

from fm4npp.cli.args import add_overrides


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
            _json(
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
                        "node_hours_cosine": plan.cosine_node_hours,
                        "max_node_hours": plan.spec.budget.max_node_hours,
                    },
                }
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
    from fm4npp.cli.render import print_plan

    print_plan(plan, diff)
    return 0


def _json(doc: object) -> str:
    """Strict JSON: a non-finite number (never expected after validation) becomes null, never NaN."""

    def clean(v: object) -> object:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(doc), indent=2, allow_nan=False)


def _write_csv(fh: TextIO, rows: list[dict[str, object]]) -> None:
    writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
