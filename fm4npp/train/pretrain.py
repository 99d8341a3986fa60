"""Pretraining of one cell: the k-NNN regression loop (SPEC §5), read top to bottom.

One call = one cell. The run directory (ARCHITECTURE §4) receives ``checkpoints/last.pt`` every
``checkpoint_every_steps`` and at the end, one immutable ``metrics/part-<k>.parquet`` per checkpoint
(the rows logged since the previous one, so a run killed between checkpoints and resumed never logs a
step twice), ``checkpoints/best.pt`` (weights at the best validation loss, SPEC §5.4 model selection)
and, last, ``summary.json``. A resumed run continues bit-for-bit from ``last.pt``: model, optimizer,
scheduler, RNG states and the sampler position are all restored.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from fm4npp.atomic import write_parquet
from fm4npp.config import RunConfig, load_dataclass, read_yaml
from fm4npp.data.prepare import load_prepared
from fm4npp.data.shards import ShardSet
from fm4npp.data.torch_dataset import EventOrderSampler, SerializedEvents, collate
from fm4npp.errors import ConfigError, StoreError, TrainingError
from fm4npp.model import ladder
from fm4npp.store.rundir import METRIC_COLUMNS, RunDir, provenance
from fm4npp.train import distributed as dist
from fm4npp.train.checkpoint import TrainState, load_checkpoint, save_checkpoint, save_weights
from fm4npp.train.objective import masked_error_sum, validation_loss, wrap_phi_for
from fm4npp.train.optim import build_optimizer
from fm4npp.train.progress import Progress

SMOOTH_LAST_VALIDATIONS = 3  # smoothed_val_loss = mean of the last 3 validations (less seed noise)
# Serialize-once cache limit per process: a serialized event costs ≈ 21·k bytes per hit (float32
# targets 12k, int64 neighbour indices 8k, mask k), so a 2,000-event quickstart tier needs ≈ 1 GB
# and a 10M-event tier could never fit; above the limit events are re-serialized on every use.
CACHE_MAX_BYTES = 8 * 2**30
CACHE_BYTES_PER_HIT_PER_K = 21


class Interrupted(Exception):
    """``should_stop()`` asked to stop: a checkpoint (and the pending metrics) was written at ``step``;
    calling :func:`pretrain` again resumes from it."""

    def __init__(self, step: int, checkpoint: Path) -> None:
        super().__init__(f"stopped at step {step}; resume from {checkpoint}")
        self.step, self.checkpoint = step, checkpoint


def read_run_config(path: Path) -> RunConfig:
    """A resolved RunConfig from a file: a run directory's ``config.yaml`` (``run:`` + ``provenance:``)
    or a bare RunConfig mapping."""
    doc = read_yaml(Path(path))
    if "run" in doc:
        return load_dataclass(RunConfig, doc["run"], str(path), "run")
    return load_dataclass(RunConfig, doc, str(path))


def step_seed(seed: int, rank: int, step: int) -> int:
    """Torch seed of one optimiser step on one rank: dropout masks depend on (seed, rank, step) only,
    so a resumed run (any world size, any checkpoint) draws exactly the masks of an uninterrupted one."""
    return int(np.random.SeedSequence((seed, rank, step)).generate_state(1, np.uint64)[0] >> 1)


def total_steps_for(cfg: RunConfig) -> int:
    """Optimiser steps of the cell: ceil(events_seen / batch_events) full global batches."""
    return math.ceil(cfg.events_seen / cfg.train.batch_events)


def pretrain(
    cfg: RunConfig,
    run_dir: Path,
    *,
    should_stop: Callable[[], bool] | None = None,
    max_steps: int | None = None,
    device: Literal["cpu", "cuda"] | None = None,
) -> dict[str, Any]:
    """Pretrain cell ``cfg`` in ``run_dir`` (resuming from its last checkpoint) and return the summary.

    ``should_stop`` is polled at every step boundary; when it returns True a checkpoint is written and
    :class:`Interrupted` is raised. ``max_steps`` caps the run's horizon (LR schedule included) for
    smoke tests; the summary then records ``truncated: true``. ``device``: None = CUDA when available
    (one GPU per rank), else CPU; "cpu" forces the CPU. A non-finite loss writes a summary with status
    ``failed`` and raises :class:`TrainingError`.
    """
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("pretrain: device 'cuda' requested but torch sees no CUDA device")
    env = dist.init_distributed(prefer_cuda=device != "cpu")
    try:
        return _pretrain(cfg, RunDir(Path(run_dir)), env, should_stop, max_steps)
    finally:
        dist.shutdown(env)


def _pretrain(
    cfg: RunConfig,
    rd: RunDir,
    env: dist.DistEnv,
    should_stop: Callable[[], bool] | None,
    max_steps: int | None,
) -> dict[str, Any]:
    tc = cfg.train
    done = _open_run_dir(cfg, rd, env)
    if done is not None:
        return done
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    per_rank, rem = divmod(tc.batch_events, env.world_size * tc.micro_batch_events)
    if rem or not per_rank:
        raise ConfigError(
            f"train.batch_events={tc.batch_events} must be a multiple of world size {env.world_size} "
            f"× train.micro_batch_events={tc.micro_batch_events}"
        )

    # -- data: the cell's nested tier of the training split, and the study's fixed validation split
    prepared = load_prepared(Path(cfg.data_dir), cfg.data, tc.mode)
    shards = ShardSet(cfg.data_dir)
    per_event = cfg.data.hits_per_event * tc.k_neighbours * CACHE_BYTES_PER_HIT_PER_K
    cache = cfg.n_events * per_event <= CACHE_MAX_BYTES

    def serialized(ids: np.ndarray, cache: bool = True) -> SerializedEvents:
        return SerializedEvents(
            shards, ids, prepared.edges, order=tc.order, mode=tc.mode, k=tc.k_neighbours, cache=cache
        )

    train_set = serialized(prepared.tier(cfg.n_events), cache)
    val_set = serialized(prepared.splits.val)
    for dataset in (train_set, val_set) if cache else (val_set,):
        dataset.preload()

    # -- model, optimiser, schedule (all seeded by the cell's seed)
    from fm4npp.model.backbone import FM4NPPModel

    rung = ladder.get_rung(cfg.model, f"{rd.config_file}: run.model")
    torch.manual_seed(cfg.seed)
    model = FM4NPPModel(rung, k=tc.k_neighbours, dropout=tc.dropout, embed_seed=cfg.seed).to(env.device)
    _check_backend(model.backend, env.device, tc.allow_slow_fallback)
    steps_planned = total_steps_for(cfg)
    total_steps = min(steps_planned, max_steps) if max_steps else steps_planned
    optimizer, scheduler = build_optimizer(model, tc, total_steps)
    use_bf16 = tc.precision == "bf16" and env.device.type == "cuda"  # fp32 params, bf16 autocast

    def autocast() -> AbstractContextManager[object]:
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else nullcontext()

    # -- resume
    state = TrainState(total_steps=total_steps)
    if rd.last_checkpoint.is_file():
        state = load_checkpoint(rd.last_checkpoint, model, optimizer, scheduler)
        if state.total_steps != total_steps:
            raise TrainingError(
                f"{rd.last_checkpoint}: checkpoint is for a {state.total_steps}-step run, this run has "
                f"{total_steps} steps (max_steps or the config changed)"
            )
        if env.is_main and state.pending_part and not (rd.metrics / state.pending_part).exists():
            write_parquet(rd.metrics / state.pending_part, state.pending_rows)  # crash after ckpt
    state.pending_part, state.pending_rows = "", {c: [] for c in METRIC_COLUMNS}
    sampler = EventOrderSampler(len(train_set), seed=cfg.seed, position=state.sampler_position)
    net: torch.nn.Module = model
    if env.active:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[env.device] if env.device.type == "cuda" else None
        )
    progress = Progress(total_steps, state.step, tc.log_every_steps, enabled=env.is_main)
    if state.step:
        progress.message(f"resumed {cfg.cell_id} at step {state.step}/{total_steps}")

    def checkpoint() -> None:
        """Checkpoint first, then its metrics part (see module docstring); rank 0 only."""
        state.sampler_position = sampler.position
        if env.is_main:
            if state.pending_rows["step"]:
                state.pending_part = rd.next_metrics_part().name
            save_checkpoint(rd.last_checkpoint, model, optimizer, scheduler, state)
            if state.pending_part:
                write_parquet(rd.metrics / state.pending_part, state.pending_rows)
        state.pending_part, state.pending_rows = "", {c: [] for c in METRIC_COLUMNS}
        dist.barrier(env)

    flops_per_hit = ladder.flops_per_token(rung, cfg.data.hits_per_event)
    wrap_phi = wrap_phi_for(tc.mode)  # one φ rule for the training and the validation loss
    model.train()
    while state.step < total_steps:
        if should_stop is not None and dist.any_rank(should_stop(), env):
            checkpoint()
            progress.close()
            raise Interrupted(state.step, rd.last_checkpoint)
        t0 = time.perf_counter()
        lr = scheduler.get_last_lr()[0]
        torch.manual_seed(step_seed(cfg.seed, env.rank, state.step))  # dropout: exact on any resume

        # fetch this step's global batch; this rank takes every world_size-th event
        events = sampler.take(tc.batch_events)[env.rank :: env.world_size]
        # micro-batches of similar length: far less padding, the same step (the loss is normalised
        # by the whole step's target count); the sort is stable, so a resumed run stays exact
        ordered = sorted(train_set.get_many(events), key=lambda e: e.n_hits)
        micro = [
            collate(ordered[i : i + tc.micro_batch_events]).to(env.device)
            for i in range(0, len(ordered), tc.micro_batch_events)
        ]
        counts = torch.tensor(
            [
                sum(b.n_targets for b in micro),
                sum(b.n_hits for b in micro),
                sum(b.n_hits_padded for b in micro),
            ],
            dtype=torch.float64,
            device=env.device,
        )
        n_targets, n_hits, n_computed = dist.all_reduce_sum(counts, env).tolist()

        # forward/backward with gradient accumulation; every micro-batch is normalised by the
        # step's global Σ mask (× world size: DDP averages gradients over ranks)
        err_sum = torch.zeros((), dtype=torch.float64, device=env.device)
        for i, batch in enumerate(micro):
            sync = not env.active or i == len(micro) - 1
            with nullcontext() if sync else net.no_sync():  # type: ignore[operator]
                with autocast():
                    pred = net(batch.feats)
                err = masked_error_sum(pred, batch.targets, batch.target_mask, wrap_phi)
                (err * (env.world_size / max(n_targets, 1.0))).backward()
            err_sum += err.detach().double()
        loss = float(dist.all_reduce_sum(err_sum, env)) / max(n_targets, 1.0)

        # clip, step, schedule
        grad_norm = 0.0
        if tc.clip_grad_norm > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip_grad_norm))
        if not math.isfinite(loss) or not math.isfinite(grad_norm):
            what = "loss" if not math.isfinite(loss) else "gradient norm"
            reason = f"non-finite {what} at step {state.step + 1} (loss {loss}, grad norm {grad_norm})"
            _fail(cfg, rd, env, state, reason)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.events_seen += tc.batch_events
        state.hits_seen += int(n_hits)
        state.hits_computed += int(n_computed)
        step_time = time.perf_counter() - t0

        # validate on the fixed split every val_every_steps and at the end
        val_loss = float("nan")
        if state.step % tc.val_every_steps == 0 or state.step == total_steps:
            model.eval()
            val_loss = validation_loss(
                model, val_set, tc.micro_batch_events, env, autocast, wrap_phi
            )
            model.train()
            state.val_losses.append(val_loss)
            if val_loss < state.best_val_loss:
                state.best_val_loss = val_loss
                if env.is_main:
                    save_weights(
                        rd.checkpoints / "best.pt", model, {"step": state.step, "val_loss": val_loss}
                    )
        state.wall_time_s += time.perf_counter() - t0

        # log (buffered until the next checkpoint), report, checkpoint
        if state.step % tc.log_every_steps == 0 or not math.isnan(val_loss) or state.step == total_steps:
            row = (state.step, state.events_seen, state.hits_seen, lr, loss, val_loss,
                   n_hits / step_time, state.wall_time_s)  # fmt: skip
            for column, value in zip(METRIC_COLUMNS, row, strict=True):
                state.pending_rows[column].append(value)
        progress.update(state.step, loss, n_hits / step_time, None if math.isnan(val_loss) else val_loss)
        if state.step % tc.checkpoint_every_steps == 0 or state.step == total_steps:
            checkpoint()
    progress.close()

    summary = _summary(cfg, state, env, model, rung, flops_per_hit, total_steps, steps_planned)
    if env.is_main:
        rd.write_summary(summary)
    return summary


def _open_run_dir(cfg: RunConfig, rd: RunDir, env: dist.DistEnv) -> dict[str, Any] | None:
    """Create the run directory, check its config; return the summary of an already finished run."""
    if env.is_main:
        rd.ensure()
        if rd.config_file.is_file():
            if rd.read_config() != cfg:
                raise StoreError(
                    f"{rd.config_file}: the run directory holds a different config (cell "
                    f"{rd.read_config().cell_id}); refusing to mix runs"
                )
        else:
            rd.write_config(cfg)
    dist.barrier(env)
    summary = rd.read_summary()
    if summary is None:
        return None
    if summary.get("status") == "done":
        return summary
    raise TrainingError(
        f"{rd.summary_file}: run ended with status {summary.get('status')!r} "
        f"({summary.get('reason', 'no reason recorded')}); delete summary.json to retry"
    )


def _check_backend(backend: str, device: torch.device, allow_slow: bool) -> None:
    """SPEC §7.2: a CUDA run on the pure-PyTorch path is an error unless explicitly allowed."""
    if device.type == "cuda" and backend.startswith("torch") and not allow_slow:
        raise TrainingError(
            f"model backend is '{backend}' on CUDA (mamba_ssm kernels not importable); install the "
            "'cuda' extra or set train.allow_slow_fallback: true"
        )


def _fail(cfg: RunConfig, rd: RunDir, env: dist.DistEnv, state: TrainState, reason: str) -> None:
    """Record a failed run (summary written, so the sweep does not retry it blindly) and raise."""
    if env.is_main:
        rd.write_summary(
            {
                "cell_id": cfg.cell_id,
                "status": "failed",
                "reason": reason,
                "steps": state.step,
                "events_seen": state.events_seen,
                "seed": cfg.seed,
                **provenance(),
            }
        )
    raise TrainingError(f"cell {cfg.cell_id}: {reason}")


def _summary(
    cfg: RunConfig,
    state: TrainState,
    env: dist.DistEnv,
    model: Any,
    rung: ladder.Rung,
    flops_per_hit: float,
    total_steps: int,
    steps_planned: int,
) -> dict[str, Any]:
    vals = state.val_losses
    device = str(env.device)
    if env.device.type == "cuda":
        device += f" ({torch.cuda.get_device_name(env.device)})"
    return {
        "cell_id": cfg.cell_id,
        "status": "done",
        "model": cfg.model,
        "dataset": cfg.dataset,
        "n_events": cfg.n_events,
        "final_val_loss": vals[-1] if vals else None,
        "best_val_loss": state.best_val_loss if vals else None,
        "smoothed_val_loss": float(np.mean(vals[-SMOOTH_LAST_VALIDATIONS:])) if vals else None,
        "events_seen": state.events_seen,
        "hits_seen": state.hits_seen,
        "hits_computed": state.hits_computed,
        "flops": flops_per_hit * state.hits_computed,  # padding included (SPEC §7.6)
        "flops_useful": flops_per_hit * state.hits_seen,
        "n_params": ladder.n_params(rung),
        "n_params_total": ladder.n_params_total(rung),
        "n_params_instantiated": sum(p.numel() for p in model.parameters()),
        "steps": state.step,
        "steps_planned": steps_planned,
        "truncated": total_steps < steps_planned,
        "wall_time_s": state.wall_time_s,
        "backend": model.backend,
        "precision": "bf16" if cfg.train.precision == "bf16" and env.device.type == "cuda" else "fp32",
        "device": device,
        "world_size": env.world_size,
        "seed": cfg.seed,
        **provenance(),
    }
