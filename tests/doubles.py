"""Test doubles. :func:`standin_cell`: the cell functions of a job with a pure-Python stand-in for
pretraining, for tests of the submission machinery.

The stand-in behaves like ``fm4npp.train.pretrain.pretrain`` where the job machinery can see it: it
writes immutable metrics parts and an atomic checkpoint, honours ``should_stop`` (checkpoint, then raise
``fm4npp.errors.Interrupted``), resumes from its checkpoint without duplicating steps, and returns the
trainer's result fields. It never imports torch, so a test job starts in a fraction of a second.

submitit pickles the job with these functions by reference (module ``doubles``): conftest puts
``tests/`` on ``PYTHONPATH`` so that the job processes (local executor, SLURM) import it too.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from fm4npp.atomic import write_json
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


def standin_pretrain(
    cfg: RunConfig,
    run_dir: Path,
    *,
    should_stop: Callable[[], bool] | None = None,
    options: StandinOptions | None = None,
) -> dict[str, Any]:
    """Run (or resume) the stand-in training of one cell; rank 0 writes, other ranks only step."""
    opts = options or StandinOptions()
    env = _job_environment()
    rank = env.global_rank if env is not None else 0
    rd = RunDir(run_dir)
    start_step, n_parts = 0, 0
    if rd.last_checkpoint.is_file():
        state = json.loads(rd.last_checkpoint.read_text())
        start_step, n_parts = int(state["step"]), int(state["n_parts"])
    if rank == 0:
        rd.ensure()
        # A kill between a part's rename and the checkpoint's leaves an orphan part: drop it so
        # that no step is logged twice after the resume.
        for part in sorted(rd.metrics.glob("part-*.parquet"))[n_parts:]:
            part.unlink()
    t0 = time.monotonic()
    rows: dict[str, list[Any]] = {k: [] for k in METRIC_COLUMNS}
    events_per_step = cfg.train.batch_events

    def flush(step: int) -> None:
        nonlocal n_parts
        if rank != 0:
            return
        claim.check(rd.path)  # fencing, as the real trainer (fm4npp.store.claim)
        if rows["step"]:
            rd.append_metrics(rows)
            n_parts += 1
            for col in rows.values():
                col.clear()
        write_json(rd.last_checkpoint, {"step": step, "n_parts": n_parts, "kind": "standin"})

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
    final = _loss(opts.steps, cfg.seed) + 0.05
    return {
        "steps": opts.steps,
        "resumed_from_step": start_step,
        "events_seen": opts.steps * events_per_step,
        "hits_seen": opts.steps * events_per_step * cfg.data.hits_per_event,
        "final_val_loss": final,
        "smoothed_val_loss": final,
        "train_wall_time_s": time.monotonic() - t0,
    }
