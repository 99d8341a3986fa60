"""The grid planner: sweep spec × cluster profile → cells with N, D, C and node-hours; budgets.

Pure apart from reading the sweep and profile files: :func:`make_plan` returns a :class:`Plan`; the CLI
prints it and records it in the catalog (``fm4npp.store.catalog.record_plan``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from fm4npp.config import RunConfig, TrainConfig, to_dict
from fm4npp.data.nested import branch_points, wsd_warmup_steps
from fm4npp.errors import BudgetError
from fm4npp.model.ladder import get_dataset, get_rung, n_params_total
from fm4npp.model.recipe import recipe_for, resolve_train
from fm4npp.store.catalog import PlanDiff, record_cells
from fm4npp.sweep.clusters import ClusterProfile, load_cluster
from fm4npp.sweep.cost import CellCost, cell_cost, wsd_billed_events, wsd_branch_cost
from fm4npp.sweep.spec import SweepSpec, load_sweep

MIN_LEVELS = 3  # --fit-budget keeps at least this many sizes on each axis (SCALING §4.3)


@dataclass(frozen=True)
class PlannedCell:
    cell_id: str
    run: RunConfig
    arch: str
    n_params_total: int
    cost: CellCost
    recipe: str = "none"  # where the cell's LR and batch come from: "none", "file" or the recipe source

    @property
    def model(self) -> str:
        return self.run.model

    @property
    def dataset(self) -> str:
        return self.run.dataset

    def row(self) -> dict[str, object]:
        """Flat record for tables, JSON, CSV and the catalog."""
        c = self.cost
        return {
            "cell_id": self.cell_id,
            "model": self.model,
            "arch": self.arch,
            "dataset": self.dataset,
            "seed": self.run.seed,
            "n_params": c.n_params,
            "n_params_total": self.n_params_total,
            "n_events": self.run.n_events,
            "events_seen": c.events_seen,
            "n_hits": c.n_hits,
            "flops": c.flops,
            "flops_6nd": c.flops_6nd,
            "gpus": c.gpus,
            "nodes": c.nodes,
            "gpu_hours": c.gpu_hours,
            "wall_time_h": c.wall_time_h,
            "node_hours": c.node_hours,
            "node_hours_cosine": c.cosine_node_hours,
            "fits_qos": c.fits_qos,
            "n_slots": c.n_slots,
            "cost_source": c.cost_source,
            "bound": c.bound,
            "lr": self.run.train.lr,
            "warmup_fraction": self.run.train.warmup_fraction,
            "batch_events": self.run.train.batch_events,
            "batch_hits": self.run.train.batch_events * self.run.data.hits_per_event,
            "recipe": self.recipe,
        }


@dataclass(frozen=True)
class Plan:
    spec: SweepSpec
    cluster: ClusterProfile
    qos: str
    cells: tuple[PlannedCell, ...]
    dropped: tuple[PlannedCell, ...] = ()

    @property
    def study_dir(self) -> Path:
        return self.spec.study_dir

    @property
    def total_node_hours(self) -> float:
        return sum(c.cost.node_hours for c in self.cells)

    @property
    def cosine_node_hours(self) -> float:
        """Node-hours of one cosine run per cell (= total_node_hours unless the plan uses WSD)."""
        return sum(c.cost.node_hours if c.cost.cosine_node_hours is None else c.cost.cosine_node_hours
                   for c in self.cells)  # fmt: skip

    @property
    def total_gpu_hours(self) -> float:
        return sum(c.cost.gpu_hours for c in self.cells)

    @property
    def total_flops(self) -> float:
        return sum(c.cost.flops for c in self.cells)

    @property
    def over_budget(self) -> bool:
        budget = self.spec.budget.max_node_hours
        return budget is not None and self.total_node_hours > budget

    def wsd_saving(self) -> str:
        """One line: node-hours with WSD cooldown branches against one cosine run per cell."""
        wsd, cosine = self.total_node_hours, self.cosine_node_hours
        t = self.spec.train
        return (
            f"WSD cooldown branches (cooldown {t.cooldown_fraction:g} of each branch's steps): "
            f"{wsd:.4g} node-hours against {cosine:.4g} for one cosine run per cell; saves "
            f"{cosine - wsd:.4g} node-hours ({(cosine - wsd) / cosine:.0%})"
        )

    def cell(self, cell_id: str) -> PlannedCell | None:
        return next((c for c in self.cells if c.cell_id == cell_id), None)


def cell_id_for(run: RunConfig) -> str:
    """Readable, content-addressed id: ``<model>-<dataset>-s<seed>-<hash of the resolved config>``."""
    payload = json.dumps(to_dict(replace(run, cell_id="")), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(payload.encode()).hexdigest()[:10]
    return f"{run.model}-{run.dataset}-s{run.seed}-{digest}"


def make_plan(spec: SweepSpec, cluster: ClusterProfile | None = None, qos: str | None = None) -> Plan:
    """Enumerate models × datasets × seeds and cost every cell on ``cluster`` (default: the spec's)."""
    cluster = cluster or load_cluster(spec.cluster)
    qname, qcfg = cluster.get_qos(qos or spec.qos)
    data_dir = spec.data.path or str(spec.study_dir / "data")
    largest = max(spec.datasets, key=get_dataset)
    largest_model = max(spec.models, key=lambda m: n_params_total(get_rung(m)))
    tiers = tuple(sorted({get_dataset(d) for d in spec.datasets}))
    cells = []
    for model in spec.models:
        rung = get_rung(model)
        train = resolve_train(spec.train, model, spec.data.hits_per_event, spec.train_set)
        billed_events: dict[int, int] = {}
        if train.schedule == "wsd":  # one trunk per (model, seed), a cooldown branch per tier
            train = replace(train, wsd_tiers=tiers)
            f = train.cooldown_fraction
            points = branch_points(tiers, train.epochs, train.batch_events, f)
            wsd_warmup_steps(points, train.warmup_fraction)  # ConfigError when a cooldown cuts warm-up
            billed_events = wsd_billed_events(tiers, train.epochs, train.batch_events, f)
        recipe = _recipe_label(spec, model)
        for dataset in spec.datasets:
            n_events = get_dataset(dataset)
            for seed, mult in itertools.product(spec.seeds, spec.lr_multipliers):
                evaluate = spec.eval.enabled and (
                    spec.eval.scope == "all"
                    or (
                        dataset == largest
                        and seed == spec.seeds[0]
                        and (spec.eval.scope == "per_model" or model == largest_model)
                    )
                )
                run = RunConfig(
                    study=spec.study,
                    cell_id="",
                    model=model,
                    dataset=dataset,
                    n_events=n_events,
                    seed=seed,
                    data_dir=data_dir,
                    data=spec.data,
                    train=_scaled_lr(train, mult),
                    eval=replace(spec.eval, enabled=evaluate),
                )
                run = replace(run, cell_id=cell_id_for(run))
                gpus = spec.gpus.get(model, rung.gpus) if cluster.kind == "slurm" else 1
                cost = cell_cost(rung, run.events_seen, spec.data.hits_per_event, gpus, cluster, qcfg)
                if billed_events:
                    billed = billed_events[n_events]
                    cost = wsd_branch_cost(
                        cost, cell_cost(rung, billed, spec.data.hits_per_event, gpus, cluster, qcfg)
                    )
                cells.append(
                    PlannedCell(run.cell_id, run, rung.arch, n_params_total(rung), cost, recipe)
                )
    return Plan(spec=spec, cluster=cluster, qos=qname, cells=tuple(cells))


def _scaled_lr(train: TrainConfig, mult: float) -> TrainConfig:
    """One point of the LR axis: peak and floor LR × ``mult`` (1 = the cell's own)."""
    return train if mult == 1 else replace(train, lr=train.lr * mult, lr_min=train.lr_min * mult)


def _recipe_label(spec: SweepSpec, model: str) -> str:
    """Where a rung's LR and batch come from: "none" (recipe off), "file" (the file sets both) or
    the source of the rung's recipe (fm4npp.model.recipe)."""
    if spec.train.recipe == "none":
        return "none"
    if {"lr", "batch_events"} <= set(spec.train_set):
        return "file"
    return recipe_for(model).source


def fit_budget(plan: Plan) -> Plan:
    """Drop the most expensive cells until the plan fits its budget, keeping ≥ 3 levels per axis.

    Raises BudgetError when no such subset exists.
    """
    budget = plan.spec.budget.max_node_hours
    if budget is None or not plan.over_budget:
        return plan
    kept = list(plan.cells)
    dropped: list[PlannedCell] = []
    for cell in sorted(plan.cells, key=lambda c: c.cost.node_hours, reverse=True):
        if sum(c.cost.node_hours for c in kept) <= budget:
            break
        rest = [c for c in kept if c is not cell]
        if _levels(rest, "model") >= min(MIN_LEVELS, _levels(plan.cells, "model")) and _levels(
            rest, "dataset"
        ) >= min(MIN_LEVELS, _levels(plan.cells, "dataset")):
            kept = rest
            dropped.append(cell)
    total = sum(c.cost.node_hours for c in kept)
    if total > budget:
        raise BudgetError(
            f"no subset with ≥ {MIN_LEVELS} sizes on each axis fits budget.max_node_hours = {budget:g} "
            f"(smallest found: {total:.4g} node-hours)"
        )
    return replace(plan, cells=tuple(kept), dropped=tuple(dropped))


def _levels(cells: tuple[PlannedCell, ...] | list[PlannedCell], axis: str) -> int:
    return len({getattr(c, axis) for c in cells})


def check_budget(plan: Plan) -> None:
    """Raise BudgetError (exit 3) when the plan is over its budget."""
    if plan.over_budget:
        raise BudgetError(
            f"plan needs {plan.total_node_hours:.4g} node-hours on {plan.cluster.name}/{plan.qos}, over "
            f"budget.max_node_hours = {plan.spec.budget.max_node_hours:g}; use --fit-budget to drop "
            f"the most expensive cells or --allow-over-budget"
        )


def record_plan(plan: Plan) -> PlanDiff:
    """Record the plan's cells in the study catalog (table ``cells``); returns what changed."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    rows = [
        {
            **c.row(),
            "cluster": plan.cluster.name,
            "qos": plan.qos,
            "config_json": json.dumps(to_dict(c.run)),
            "planned_at": now,
        }
        for c in plan.cells
    ]
    return record_cells(plan.study_dir, rows)


def plan_file(
    path: Path, cluster: str | None = None, qos: str | None = None, overrides: list[str] | None = None
) -> Plan:
    """Load a sweep file and plan it (the library call behind ``fm4npp-sweep plan``)."""
    spec = load_sweep(path, overrides)
    return make_plan(spec, load_cluster(cluster) if cluster else None, qos)
