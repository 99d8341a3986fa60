"""Test doubles. :func:`standin_cell`: the cell functions of a job with a pure-Python stand-in for
pretraining, for tests of the submission machinery.

The stand-in behaves like ``fm4npp.train.pretrain.pretrain`` where the job machinery can see it: it
writes an atomic checkpoint, then the immutable metrics part it names (a kill in between is repaired on
resume), behind the run-directory claim's fencing check; refuses to restart when metrics exist without a
checkpoint; honours ``should_stop`` (checkpoint, then raise ``fm4npp.errors.Interrupted``), resumes from
its checkpoint without duplicating steps, and returns the trainer's result fields. It never imports torch, so a test job starts in a fraction of a second.

submitit pickles the job with these functions by reference (module ``doubles``): conftest puts
``tests/`` on ``PYTHONPATH`` so that the job processes (local executor, SLURM) import it too.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from fm4npp.atomic import write_json, write_parquet
from fm4npp.config import RunConfig
from fm4npp.errors import Interrupted, TrainingError
from fm4npp.store import claim
from fm4npp.store.rundir import METRIC_COLUMNS, RunDir
from fm4npp.sweep.job import CellFunctions, _job_environment


@dataclass(frozen=True)
class StandinOptions:
    steps: int = 20  # optimiser steps of the whole cell
    step_s: float = 0.02  # sleep per step (stands in for compute)
    checkpoint_every: int = 5  # steps between (metrics part + checkpoint)
    fail_models: tuple[str, ...] = ()  # cells of these rungs raise TrainingError ...
    fail_at: int = 3  # ... at this step
    # arch → (E, A, alpha, B, beta): the final validation loss follows that family's law at the
    # cell's N and D (× (1 + 0.002·seed)), so a finished study has known laws to recover
    laws: dict[str, tuple[float, float, float, float, float]] = field(default_factory=dict)


def standin_cell(**options: Any) -> CellFunctions:
    """What a job runs with the stand-in: no data preparation, no evaluation (options: StandinOptions)."""
    opts = StandinOptions(**options)
    return CellFunctions(
        pretrain=partial(standin_pretrain, options=opts), evaluate=no_evaluation, needs_data=False
    )


def no_evaluation(cfg: RunConfig, run_dir: Path) -> None:
    """The stand-in cells have no evaluation step."""
    return


def _loss(step: int, seed: int) -> float:
    """A smooth, seed-dependent decreasing curve: 1 + 3/√(step+1) + 0.01·seed."""
    return 1.0 + 3.0 / math.sqrt(step + 1) + 0.01 * seed


def _final_loss(cfg: RunConfig, opts: StandinOptions) -> float:
    """The end of the curve, or the cell's family law at (N, D) when ``opts.laws`` names its arch."""
    from fm4npp.model.ladder import get_rung, n_params

    rung = get_rung(cfg.model)
    if rung.arch not in opts.laws:
        return _loss(opts.steps, cfg.seed) + 0.05
    e, a, alpha, b, beta = opts.laws[rung.arch]
    law = e + a / n_params(rung) ** alpha + b / cfg.events_seen**beta
    return law * (1 + 0.002 * cfg.seed)


def standin_pretrain(
    cfg: RunConfig,
    run_dir: Path,
    *,
    should_stop: Callable[[], bool] | None = None,
    options: StandinOptions | None = None,
) -> dict[str, Any]:
    """Run (or resume) the stand-in training of one cell; rank 0 claims the run directory (as the real
    trainer: re-entrant inside a job, ClaimError when a live trainer elsewhere owns it) and writes,
    other ranks only step."""
    opts = options or StandinOptions()
    env = _job_environment()
    rank = env.global_rank if env is not None else 0
    with claim.claimed(Path(run_dir)) if rank == 0 else contextlib.nullcontext():
        return _train(cfg, RunDir(Path(run_dir)), rank, should_stop, opts)


def _train(
    cfg: RunConfig,
    rd: RunDir,
    rank: int,
    should_stop: Callable[[], bool] | None,
    opts: StandinOptions,
) -> dict[str, Any]:
    start_step = 0
    if rd.last_checkpoint.is_file():
        state = json.loads(rd.last_checkpoint.read_text())
        start_step = int(state["step"])
        pending = state.get("pending_part")
        if rank == 0 and pending and not (rd.metrics / pending).exists():  # killed after the ckpt
            claim.check(rd.path)
            write_parquet(rd.metrics / pending, state["pending_rows"])
    elif any(rd.metrics.glob("part-*.parquet")):  # as the real trainer: never log steps twice
        raise TrainingError(
            f"cell {cfg.cell_id}: {rd.metrics} holds logged steps but {rd.last_checkpoint} is missing; "
            f"restarting at step 0 would log those steps twice. Restore the checkpoint, or delete "
            f"{rd.metrics} and {rd.checkpoints} to train the cell afresh"
        )
    if rank == 0:
        rd.ensure()
    t0 = time.monotonic()
    rows: dict[str, list[Any]] = {k: [] for k in METRIC_COLUMNS}
    events_per_step = cfg.train.batch_events

    def flush(step: int) -> None:
        """As the real trainer: the checkpoint first (naming its metrics part and carrying its rows),
        then the part, each behind the claim's fencing check."""
        if rank != 0:
            return
        part = rd.next_metrics_part() if rows["step"] else None
        claim.check(rd.path)  # fencing, as the real trainer (fm4npp.store.claim)
        write_json(
            rd.last_checkpoint,
            {"step": step, "kind": "standin", "pending_part": part.name if part else "",
             "pending_rows": rows if part else {}},
        )  # fmt: skip
        if part is not None:
            claim.check(rd.path)
            write_parquet(part, {c: rows[c] for c in METRIC_COLUMNS})
        for col in rows.values():
            col.clear()

    step = start_step
    while step < opts.steps:
        if should_stop is not None and should_stop():
            flush(step)
            raise Interrupted(step, rd.last_checkpoint)
        if opts.fail_models and cfg.model in opts.fail_models and step >= opts.fail_at:
            flush(step)
            raise TrainingError(f"stand-in failure injected at step {step} (fail_models={cfg.model})")
        time.sleep(opts.step_s)
        step += 1
        loss = _loss(step, cfg.seed)
        rows["step"].append(step)
        rows["events_seen"].append(step * events_per_step)
        rows["hits_seen"].append(step * events_per_step * cfg.data.hits_per_event)
        rows["lr"].append(cfg.train.lr)
        rows["train_loss"].append(loss)
        rows["val_loss"].append(loss + 0.05)
        rows["tokens_per_s"].append(events_per_step * cfg.data.hits_per_event / max(opts.step_s, 1e-6))
        rows["wall_time_s"].append(time.monotonic() - t0)
        if step % opts.checkpoint_every == 0 or step == opts.steps:
            flush(step)
    final = _final_loss(cfg, opts)
    return {
        "steps": opts.steps,
        "resumed_from_step": start_step,
        "events_seen": opts.steps * events_per_step,
        "hits_seen": opts.steps * events_per_step * cfg.data.hits_per_event,
        "final_val_loss": final,
        "smoothed_val_loss": final,
        "train_wall_time_s": time.monotonic() - t0,
    }
