"""Run recipes: peak LR, warm-up and global batch (in hits) per ladder rung (issue 12, SPEC §5.4).

OLMo's model ladder keeps three things apart: the ladder (which sizes), the model (architecture per
size) and the run configuration (LR, batch, schedule per size). ``fm4npp.model.ladder`` holds the first
two; this module, torch-free like the ladder, holds the third. One size's training recipe does not fit
every size: the quickstart's single LR (8e-3, tuned on q1 at its smallest D) left the larger rungs
and the shortest runs step-limited, and the fitted law absorbed that as a data term that depends on N.

A :class:`Recipe` is data per rung (:data:`RECIPES`), chosen by a reproducible LR sweep per rung
(``sweeps/lr-sweep-cpu.yaml``, figures in benchmarks/RESULTS.md §10); rungs without an entry get
:func:`lr_for_n`, a power law in N fitted to the same sweep. The batch is a number of *hits* (tokens),
not events: compute and gradient noise are per token, and events differ 10× in size; a cell's
``batch_events`` is the batch in hits divided by the data's mean hits per event, rounded, at least 1.

Precedence, per key of :data:`RECIPE_KEYS` (``TrainConfig.recipe = "ladder"``; ``"none"`` = off):
a key the sweep file sets in its ``train:`` block (or ``--set train.KEY=…``) wins; otherwise the
rung's recipe; otherwise the TrainConfig default. "Unset" therefore means *absent from the file*:
:func:`fm4npp.sweep.spec.load_sweep` records the train keys the file sets (``SweepSpec.train_set``),
because a loaded dataclass cannot tell a default from an explicit value equal to it. The resolved
numbers are what a cell's RunConfig stores (and hashes into its id), so a job never re-resolves.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, replace

from fm4npp.config.schema import TrainConfig
from fm4npp.errors import ConfigError
from fm4npp.model.ladder import RUNGS, get_rung, n_params

#: TrainConfig keys a recipe may set.
RECIPE_KEYS = ("lr", "lr_min", "warmup_fraction", "batch_events", "micro_batch_events")


@dataclass(frozen=True)
class Recipe:
    lr: float  # peak LR (AdamW)
    batch_hits: int  # global batch in hits (tokens)
    warmup_fraction: float = 0.05  # of the optimiser steps
    lr_min_ratio: float = 0.1  # cosine floor = lr × ratio (SPEC §5.4: 2e-5 / 2e-4)
    source: str = ""  # where the numbers come from

    def batch_events(self, hits_per_event: float) -> int:
        """The batch in whole events for data with ``hits_per_event`` mean hits (≥ 1)."""
        return max(1, round(self.batch_hits / hits_per_event))


# SPEC §5.4: 256 events × ≈ 840 hits, 2e-4, warm-up 1,000 of 50,000 steps, cosine to 2e-5.
_PAPER = Recipe(
    lr=2e-4, batch_hits=256 * 840, warmup_fraction=0.02, source="SPEC §5.4 (paper, all sizes)"
)
_SWEEP = "sweeps/lr-sweep-cpu.yaml (RESULTS §10)"

RECIPES: dict[str, Recipe] = {
    **{f"m{i}": _PAPER for i in range(1, 7)},
    **{f"t{i}": _PAPER for i in range(1, 10)},
    # CPU rungs (q*): no table entry, lr_for_n(N) below, fitted to the per-rung LR sweep.
}

# lr_for_n: LR = LR_REF · (N / N_REF)^(−LR_EXPONENT), through the CPU sweep's optima (RESULTS §10:
# q1 and q2 were best at 2× the first guess 8e-3·(N/15,800)^−0.5, so the reference doubled).
LR_REF, N_REF, LR_EXPONENT = 1.6e-2, 15_800.0, 0.5


def lr_for_n(n: int) -> float:
    """Peak LR as a function of N (non-embedding parameters) for rungs without a table entry."""
    return LR_REF * (n / N_REF) ** (-LR_EXPONENT)


CPU_BATCH_HITS = 1660  # ≈ 2 fast-sim events: ≥ 150 optimiser steps at the quickstart's smallest D


def recipe_for(model: str) -> Recipe:
    """The recipe of rung ``model``: its table entry, else :func:`lr_for_n` with a CPU-sized batch."""
    if model in RECIPES:
        return RECIPES[model]
    rung = get_rung(model)
    return Recipe(lr=lr_for_n(n_params(rung)), batch_hits=CPU_BATCH_HITS, source=f"lr_for_n(N), {_SWEEP}")


def resolve_train(
    train: TrainConfig, model: str, hits_per_event: float, explicit: Collection[str] = ()
) -> TrainConfig:
    """``train`` with the recipe of ``model`` filled into every key of :data:`RECIPE_KEYS` not in
    ``explicit`` (the keys the sweep file set). ``train.recipe == "none"`` returns ``train`` as is."""
    if train.recipe == "none":
        return train
    r = recipe_for(model)
    v: dict[str, float | int] = {}
    if "lr" not in explicit:
        v["lr"] = r.lr
    lr = float(v.get("lr", train.lr))
    if "lr_min" not in explicit:
        v["lr_min"] = lr * r.lr_min_ratio
    if "warmup_fraction" not in explicit:
        v["warmup_fraction"] = r.warmup_fraction
    micro = train.micro_batch_events
    if "batch_events" not in explicit:
        batch = r.batch_events(hits_per_event)
        if "micro_batch_events" in explicit:  # keep the file's micro-batch: round the batch up to it
            batch = micro * math.ceil(batch / micro)
        v["batch_events"] = batch
    if "micro_batch_events" not in explicit:
        v["micro_batch_events"] = math.gcd(int(v.get("batch_events", train.batch_events)), micro)
    return replace(train, **v)  # TrainConfig re-validates (e.g. an explicit lr_min above the recipe LR)


def check_table() -> None:
    """Every table entry names a rung of the ladder (tested)."""
    unknown = sorted(set(RECIPES) - set(RUNGS))
    if unknown:
        raise ConfigError(f"recipe table names unknown rungs: {unknown}")
