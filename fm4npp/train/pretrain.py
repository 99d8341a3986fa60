"""Pretraining of one cell: the k-NNN regression loop (SPEC §5), read top to bottom.

One call = one cell. The run directory (ARCHITECTURE §4) receives ``checkpoints/last.pt`` every
``checkpoint_every_steps`` and at the end, one immutable ``metrics/part-<k>.parquet`` per checkpoint
(the rows logged since the previous one, so a run killed between checkpoints and resumed never logs a
step twice), ``checkpoints/best.pt`` (weights at the best validation loss, SPEC §5.4 model selection)
and, last, ``pretrain.json`` (the result :func:`pretrain` returns; the job's ``summary.json`` follows
evaluation). A resumed run continues bit-for-bit from ``last.pt``: model, optimizer,
scheduler, RNG states and the sampler position are all restored.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from fm4npp.atomic import atomic_path, write_parquet
from fm4npp.config import RunConfig, load_dataclass, read_yaml
from fm4npp.data.flat import FLAT_DIR, FlatEvents
from fm4npp.data.nested import NestedStream, WsdSegment, branch_checkpoint_name, segment_indices
from fm4npp.data.prepare import load_prepared
from fm4npp.data.torch_dataset import (
    MicroBatchDataset,
    SerializedEvents,
    StepSampler,
    default_loader_workers,
    step_loader,
)
from fm4npp.errors import ConfigError, Interrupted, StoreError, TrainingError
from fm4npp.model import ladder
from fm4npp.store import claim
from fm4npp.store.rundir import METRIC_COLUMNS, RunDir, provenance
from fm4npp.train import distributed as dist
from fm4npp.train.checkpoint import TrainState, load_checkpoint, save_checkpoint, save_weights
from fm4npp.train.objective import masked_error_sum, validation_loss, wrap_phi_for
from fm4npp.train.optim import Schedule, build_optimizer
from fm4npp.train.progress import Progress

SMOOTH_LAST_VALIDATIONS = 3  # smoothed_val_loss = mean of the last 3 validations (less seed noise)
# Extra column of the metrics parts (after METRIC_COLUMNS): the fraction of the step's wall time spent
# waiting for the input pipeline (a starved run shows values near 1).
DATA_WAIT_COLUMN = "data_wait_fraction"


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
    segment: WsdSegment | None = None,
) -> dict[str, Any]:
    """Pretrain cell ``cfg`` in ``run_dir`` (resuming from its last checkpoint) and return the summary.

    ``should_stop`` is polled at every step boundary; when it returns True a checkpoint is written and
    :class:`Interrupted` is raised. ``max_steps`` caps the run's horizon (LR schedule included) for
    smoke tests; the summary then records ``truncated: true``. ``device``: None = CUDA when available
    (one GPU per rank), else CPU; "cpu" forces the CPU. A non-finite loss writes a summary with status
    ``failed`` and raises :class:`TrainingError`. ``segment``: run a WSD trunk or cooldown branch
    (nested data order, WSD schedule; see :mod:`fm4npp.train.wsd`) instead of a cosine cell.
    """
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("pretrain: device 'cuda' requested but torch sees no CUDA device")
    env = dist.init_distributed(prefer_cuda=device != "cpu")
    try:
        # one owner per run directory: rank 0 claims it (a live owner elsewhere → ClaimError)
        with claim.claimed(Path(run_dir)) if env.is_main else nullcontext():
            return _pretrain(cfg, RunDir(Path(run_dir)), env, should_stop, max_steps, segment)
    finally:
        dist.shutdown(env)


def _pretrain(
    cfg: RunConfig,
    rd: RunDir,
    env: dist.DistEnv,
    should_stop: Callable[[], bool] | None,
    max_steps: int | None,
    segment: WsdSegment | None = None,
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

    # -- data: the cell's nested tier of the training split, and the study's fixed validation split,
    # read from the memory-mapped flat layout (resident memory independent of the tier size)
    prepared = load_prepared(Path(cfg.data_dir), cfg.data, tc.mode)
    flat = FlatEvents(Path(cfg.data_dir) / FLAT_DIR)
    tier = prepared.tier(cfg.n_events)
    val_set = SerializedEvents(
        flat, prepared.splits.val, prepared.edges, order=tc.order, mode=tc.mode, k=tc.k_neighbours
    )
    val_set.preload()  # fixed size (data.val_events), serialized once; also compiles the kNN kernel

    # -- model, optimiser, schedule (all seeded by the cell's seed)
    from fm4npp.model.backbone import FM4NPPModel

    rung = ladder.get_rung(cfg.model, f"{rd.config_file}: run.model")
    torch.manual_seed(cfg.seed)
    model = FM4NPPModel(rung, k=tc.k_neighbours, dropout=tc.dropout, embed_seed=cfg.seed).to(env.device)
    _check_backend(model.backend, env.device, tc.allow_slow_fallback)
    steps_planned = segment.total_steps if segment else total_steps_for(cfg)
    total_steps = min(steps_planned, max_steps) if max_steps and not segment else steps_planned
    schedule = None
    if segment is not None:
        end = segment.decay_start
        schedule = Schedule("wsd", total_steps, segment.warmup_steps, end, segment.shape)
    optimizer, scheduler = build_optimizer(model, tc, total_steps, schedule)
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
    elif segment is not None and segment.init_from:  # a WSD branch starts from its trunk's state
        state = load_checkpoint(Path(segment.init_from), model, optimizer, scheduler)
        state.total_steps = total_steps
    elif any(rd.metrics.glob("part-*.parquet")):
        raise TrainingError(
            f"cell {cfg.cell_id}: {rd.metrics} holds logged steps but {rd.last_checkpoint} is missing; "
            f"restarting at step 0 would log those steps twice. Restore the checkpoint, or delete "
            f"{rd.metrics} and {rd.checkpoints} to train the cell afresh"
        )
    if env.is_main and state.pending_part and not (rd.metrics / state.pending_part).exists():
        claim.check(rd.path)  # fencing: only the run directory's owner writes
        write_parquet(rd.metrics / state.pending_part, state.pending_rows)  # crash after ckpt
    state.pending_part, state.pending_rows = "", _empty_rows()
    order = None
    if segment is not None:  # the nested order d1, d2 \ d1, … capped at this run's tier (data.nested)
        tiers = [prepared.tier(n) for n in segment.tiers]
        order = NestedStream(segment_indices(tiers), tc.epochs, cfg.seed, state.sampler_position)
    sampler = StepSampler(
        flat, tier, seed=cfg.seed, position=state.sampler_position, batch_events=tc.batch_events,
        micro_batch_events=tc.micro_batch_events, rank=env.rank, world_size=env.world_size, order=order,
    )  # fmt: skip
    cuda = env.device.type == "cuda"
    workers = tc.loader_workers if tc.loader_workers >= 0 else default_loader_workers(cuda)
    dataset = MicroBatchDataset(flat, prepared.edges, order=tc.order, mode=tc.mode, k=tc.k_neighbours)
    batches = iter(step_loader(dataset, sampler, workers, pin_memory=cuda))
    final = segment is None or not segment.is_trunk  # a trunk's horizon is no end of training
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
        if env.is_main:
            if state.pending_rows["step"]:
                state.pending_part = rd.next_metrics_part().name
            claim.check(rd.path)  # fencing: a trainer that lost its claim stops before writing
            save_checkpoint(rd.last_checkpoint, model, optimizer, scheduler, state)
            if state.pending_part:
                claim.check(rd.path)
                write_parquet(rd.metrics / state.pending_part, state.pending_rows)
        state.pending_part, state.pending_rows = "", _empty_rows()
        dist.barrier(env)

    flops_per_hit = ladder.flops_per_token(rung, cfg.data.hits_per_event)
    wrap_phi = wrap_phi_for(tc.mode)  # one φ rule for the training and the validation loss
    model.train()
    while state.step < total_steps:
        if segment is not None and segment.stop_at is not None and state.step >= segment.stop_at:
            name = branch_checkpoint_name(state.step)
            if (
                env.is_main
                and state.step in segment.branch_points
                and not (rd.checkpoints / name).is_file()
            ):
                _keep_branch_checkpoint(rd, state.step)  # killed between last.pt and its copy
            progress.close()
            return {"status": "paused", "step": state.step, "cell_id": cfg.cell_id}
        if should_stop is not None and dist.any_rank(should_stop(), env):
            checkpoint()
            progress.close()
            _close_loader(batches)
            raise Interrupted(state.step, rd.last_checkpoint)
        t0 = time.perf_counter()
        lr = scheduler.get_last_lr()[0]
        torch.manual_seed(step_seed(cfg.seed, env.rank, state.step))  # dropout: exact on any resume

        # this step's micro-batches (this rank's share of the global batch, sorted by length: far
        # less padding, the same step), serialized ahead by the loader workers
        t_wait = time.perf_counter()
        micro = [next(batches) for _ in range(per_rank)]
        data_wait = time.perf_counter() - t_wait
        state.sampler_position += tc.batch_events
        micro = [b.to(env.device, non_blocking=True) for b in micro]
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
                targets, mask = batch.neighbour_targets()  # gathered on the device
                err = masked_error_sum(pred, targets, mask, wrap_phi)
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
            _close_loader(batches)
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
        if state.step % tc.val_every_steps == 0 or (final and state.step == total_steps):
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
        end = final and state.step == total_steps
        if state.step % tc.log_every_steps == 0 or not math.isnan(val_loss) or end:
            row = (state.step, state.events_seen, state.hits_seen, lr, loss, val_loss,
                   n_hits / step_time, state.wall_time_s)  # fmt: skip
            for column, value in zip(METRIC_COLUMNS, row, strict=True):
                state.pending_rows[column].append(value)
            state.pending_rows[DATA_WAIT_COLUMN].append(data_wait / step_time)
        progress.update(
            state.step, loss, n_hits / step_time, None if math.isnan(val_loss) else val_loss,
            data_wait=data_wait / step_time,
        )  # fmt: skip
        at_branch = segment is not None and state.step in segment.branch_points
        if state.step % tc.checkpoint_every_steps == 0 or state.step == total_steps or at_branch:
            checkpoint()
        if at_branch and env.is_main:  # the trunk's state where a cooldown branch starts
            _keep_branch_checkpoint(rd, state.step)
    progress.close()
    _close_loader(batches)

    summary = _summary(cfg, state, env, model, rung, flops_per_hit, total_steps, steps_planned)
    if env.is_main:
        rd.write_pretrain(summary)
    return summary


def _empty_rows() -> dict[str, list[Any]]:
    return {c: [] for c in (*METRIC_COLUMNS, DATA_WAIT_COLUMN)}


def _close_loader(batches: Any) -> None:
    """Stop the loader's worker processes now (not whenever the iterator is garbage collected)."""
    shutdown = getattr(batches, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def _keep_branch_checkpoint(rd: RunDir, step: int) -> None:
    """Copy ``last.pt`` (just written at ``step``) and ``best.pt`` to the branch-point files."""
    name = branch_checkpoint_name(step)
    for src, dst in ((rd.last_checkpoint, name), (rd.checkpoints / "best.pt", f"best-{name}")):
        if src.is_file():
            with atomic_path(rd.checkpoints / dst) as tmp:
                shutil.copyfile(src, tmp)


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
    summary = rd.read_pretrain()
    if summary is None:
        return None
    if summary.get("status") == "done":
        return summary
    raise TrainingError(
        f"{rd.pretrain_file}: pretraining ended with status {summary.get('status')!r} "
        f"({summary.get('reason', 'no reason recorded')}); delete pretrain.json to retry"
    )


def _check_backend(backend: str, device: torch.device, allow_slow: bool) -> None:
    """SPEC §7.2: a CUDA run on the pure-PyTorch path is an error unless explicitly allowed."""
    if device.type == "cuda" and backend.startswith("torch") and not allow_slow:
        raise TrainingError(
            f"model backend is '{backend}' on CUDA (mamba_ssm kernels not importable); install the "
            "'cuda' extra or set train.allow_slow_fallback: true"
        )


def _fail(cfg: RunConfig, rd: RunDir, env: dist.DistEnv, state: TrainState, reason: str) -> None:
    """Record a failed pretraining (so that the sweep does not retry it blindly) and raise."""
    if env.is_main:
        rd.write_pretrain(
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
