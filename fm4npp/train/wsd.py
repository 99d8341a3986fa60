"""WSD cooldown branches: one trunk per (model, seed) along the nested tiers, one branch per tier.

A cell with ``train.schedule: wsd`` is a *branch*: the cell on tier n_i (its own ``runs/<cell_id>/``
with config, loss curve, summary, downstream, like any cell). The planner sets ``train.wsd_tiers`` to
the sweep's tier ladder n_1 < … < n_K; :mod:`fm4npp.data.nested` gives each branch its horizon S_i
(the cosine cell's) and cooldown start c_i.

The *trunk* is a run directory ``<study>/trunks/<trunk_id>/`` shared by the branches of one (model,
seed) and training config: warm-up, then peak LR forever, along the nested order, to c_K. At every
branch point it keeps ``checkpoints/branch-<c_i>.pt`` (and ``best-branch-<c_i>.pt``). A branch:

1. advances the trunk to c_i if it is not there yet (under a file lock: the branches of one trunk may
   run as separate jobs; trunk steps are never run twice, and the trunk resumes exactly like any run);
2. seeds its run directory with the trunk's metrics parts up to c_i (so its loss curve is whole) and
   best weights, then trains from ``branch-<c_i>.pt`` to S_i with the decay (a resumed branch continues
   from its own ``last.pt``).

Run in tier order inside one job (:func:`pretrain_wsd_group`), a (model, seed) costs the trunk to c_K
plus every cooldown; run as separate jobs, the first branch to need a trunk segment trains it and the
others wait for the lock. Cells with ``schedule: cosine`` go to :func:`fm4npp.train.pretrain.pretrain`
unchanged (:func:`pretrain_cell` dispatches).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from fm4npp.atomic import atomic_path
from fm4npp.config import EvalConfig, RunConfig, to_dict
from fm4npp.data.nested import (
    BranchPoint,
    WsdSegment,
    branch_checkpoint_name,
    branch_points,
    wsd_warmup_steps,
)
from fm4npp.errors import ConfigError, TrainingError
from fm4npp.store.rundir import RunDir
from fm4npp.train.pretrain import SMOOTH_LAST_VALIDATIONS, pretrain

TRUNKS_DIR = "trunks"  # beside runs/ in the study directory


def trunk_id(cfg: RunConfig) -> str:
    """``trunk-<model>-s<seed>-<hash>``: one per model, seed, data and training config (the tier of
    the branch and its evaluation settings excluded)."""
    key = {"model": cfg.model, "seed": cfg.seed, "data_dir": cfg.data_dir,
           "data": to_dict(cfg.data), "train": to_dict(cfg.train), "study": cfg.study}  # fmt: skip
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    return f"trunk-{cfg.model}-s{cfg.seed}-{digest}"


def trunk_config(cfg: RunConfig) -> RunConfig:
    """The trunk's RunConfig: the largest tier, no evaluation."""
    tiers = tiers_of(cfg)
    return replace(
        cfg,
        cell_id=trunk_id(cfg),
        dataset="trunk",
        n_events=tiers[-1],
        eval=EvalConfig(enabled=False),
    )


def trunk_dir_for(run_dir: Path, cfg: RunConfig) -> Path:
    """``<study>/trunks/<trunk_id>`` for a branch in ``<study>/runs/<cell_id>``."""
    return Path(run_dir).resolve().parent.parent / TRUNKS_DIR / trunk_id(cfg)


def tiers_of(cfg: RunConfig) -> tuple[int, ...]:
    """The branch's tier ladder (a lone WSD cell is a trunk with one branch)."""
    tiers = cfg.train.wsd_tiers or (cfg.n_events,)
    if cfg.n_events not in tiers:
        raise ConfigError(
            f"cell {cfg.cell_id}: n_events {cfg.n_events} is not one of train.wsd_tiers {list(tiers)}"
        )
    return tiers


def wsd_points(cfg: RunConfig) -> tuple[list[BranchPoint], int]:
    """(branch points of the cell's ladder, the shared warm-up steps)."""
    tc = cfg.train
    points = branch_points(tiers_of(cfg), tc.epochs, tc.batch_events, tc.cooldown_fraction)
    return points, wsd_warmup_steps(points, tc.warmup_fraction)


def pretrain_cell(cfg: RunConfig, run_dir: Path, **kwargs: Any) -> dict[str, Any]:
    """The job's training step: a WSD branch or a cosine cell, by ``train.schedule``."""
    if cfg.train.schedule == "wsd":
        return pretrain_branch(cfg, run_dir, **kwargs)
    return pretrain(cfg, run_dir, **kwargs)


def pretrain_wsd_group(cells: Sequence[tuple[RunConfig, Path]], **kwargs: Any) -> list[dict[str, Any]]:
    """The branches of one trunk in tier order: trunk segment → branch → next segment → …"""
    ordered = sorted(cells, key=lambda c: c[0].n_events)
    return [pretrain_branch(cfg, run_dir, **kwargs) for cfg, run_dir in ordered]


def pretrain_branch(
    cfg: RunConfig,
    run_dir: Path,
    *,
    should_stop: Callable[[], bool] | None = None,
    device: Literal["cpu", "cuda"] | None = None,
    trunk_dir: Path | None = None,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """Train WSD branch ``cfg`` in ``run_dir`` (advancing its trunk first when needed); its summary.

    Raises :class:`fm4npp.train.pretrain.Interrupted` when ``should_stop`` fires (in the trunk or in
    the branch); calling again resumes.
    """
    if max_steps is not None:
        raise ConfigError("max_steps (a truncated horizon) is not supported with train.schedule: wsd")
    tc = cfg.train
    tiers = tiers_of(cfg)
    points, warmup = wsd_points(cfg)
    i = tiers.index(cfg.n_events)
    point = points[i]
    rd = RunDir(Path(run_dir))
    tdir = Path(trunk_dir) if trunk_dir is not None else trunk_dir_for(run_dir, cfg)
    src = tdir / "checkpoints" / branch_checkpoint_name(point.cooldown_start)
    started = rd.last_checkpoint.is_file() or rd.pretrain_file.is_file()
    if not started:
        trunk = WsdSegment(
            tiers=tiers,
            total_steps=points[-1].cooldown_start,
            warmup_steps=warmup,
            decay_start=None,
            shape=tc.decay_shape,
            branch_points=tuple(p.cooldown_start for p in points),
            stop_at=point.cooldown_start,
        )
        with _trunk_lock(tdir):
            if not src.is_file():  # else the trunk is already past c_i: no need to load it
                pretrain(trunk_config(cfg), tdir, should_stop=should_stop, device=device, segment=trunk)
        if not src.is_file():
            raise TrainingError(
                f"{src}: the trunk did not keep its state at branch step {point.cooldown_start}"
            )
        if _rank() == 0:
            _seed_branch(rd, tdir, point.cooldown_start)
    branch = WsdSegment(
        tiers=tiers[: i + 1],
        total_steps=point.steps,
        warmup_steps=warmup,
        decay_start=point.cooldown_start,
        shape=tc.decay_shape,
        init_from=str(src),
    )
    summary = pretrain(cfg, run_dir, should_stop=should_stop, device=device, segment=branch)
    extra = {
        "smoothed_val_loss": _cooldown_smoothed(rd, point.cooldown_start, summary),
        "schedule": "wsd",
        "trunk": tdir.name,
        "cooldown_start": point.cooldown_start,
        "cooldown_steps": point.cooldown_steps,
        "warmup_steps": warmup,
    }
    if any(summary.get(k) != v for k, v in extra.items()) and _rank() == 0:
        summary = {**summary, **extra}
        rd.write_pretrain(summary)
    return summary


def _cooldown_smoothed(rd: RunDir, start: int, summary: dict[str, Any]) -> Any:
    """``smoothed_val_loss`` of a branch: the mean of its last validations *inside the cooldown*
    (at most :data:`SMOOTH_LAST_VALIDATIONS`; the final one always is), not of the trunk's
    stable-LR validations before it (SCALING §6.4: only post-cooldown points are valid)."""
    parts = sorted(rd.metrics.glob("part-*.parquet"))
    if not parts or summary.get("status") != "done":
        return summary.get("smoothed_val_loss")
    rows = pa.concat_tables([pq.read_table(p, columns=["step", "val_loss"]) for p in parts]).to_pylist()
    vals = [r["val_loss"] for r in sorted(rows, key=lambda r: r["step"])
            if r["step"] > start and not math.isnan(r["val_loss"])]  # fmt: skip
    return sum(vals[-SMOOTH_LAST_VALIDATIONS:]) / len(vals[-SMOOTH_LAST_VALIDATIONS:]) if vals else None


def _seed_branch(rd: RunDir, tdir: Path, step: int) -> None:
    """Copy the trunk's metrics parts up to ``step`` (parts end at checkpoints, and the trunk
    checkpoints at every branch point) and its best weights at that step into the branch."""
    rd.ensure()
    trunk = RunDir(tdir)
    for part in sorted(trunk.metrics.glob("part-*.parquet")):
        steps = pq.read_table(part, columns=["step"]).column("step").to_pylist()
        if steps and min(steps) <= step and not (rd.metrics / part.name).exists():
            with atomic_path(rd.metrics / part.name) as tmp:
                shutil.copyfile(part, tmp)
    best = trunk.checkpoints / f"best-{branch_checkpoint_name(step)}"
    if best.is_file():
        with atomic_path(rd.checkpoints / "best.pt") as tmp:
            shutil.copyfile(best, tmp)


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


@contextlib.contextmanager
def _trunk_lock(tdir: Path) -> Iterator[None]:
    """One process advances a trunk at a time (rank 0 of each job takes the lock)."""
    if _rank() != 0:
        yield
        return
    tdir.mkdir(parents=True, exist_ok=True)
    with (tdir / ".lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
