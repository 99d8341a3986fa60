"""Process-group set-up from the environment (ARCHITECTURE §5): torchrun or SLURM/submitit variables.

One task per GPU. World size 1 never creates a process group, so a single-process run has no
``torch.distributed`` state at all. Only rank 0 writes to the run directory (ARCHITECTURE §4).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from fm4npp.errors import TrainingError


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: global rank, rank on its node, number of processes, device."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes checkpoints, metrics and the summary."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """True when a process group exists (world size > 1)."""
        return self.world_size > 1


def _env_int(*names: str) -> int | None:
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            return int(value)
    return None


def _from_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's variables, else SLURM's, else (0, 0, 1)."""
    world = _env_int("WORLD_SIZE")
    if world is not None:
        return _env_int("RANK") or 0, _env_int("LOCAL_RANK") or 0, world
    world = _env_int("SLURM_NTASKS")
    if world is not None and world > 1:
        if "MASTER_ADDR" not in os.environ:
            # submitit knows the node list and picks the master address and port.
            from submitit.helpers import TorchDistributedEnvironment

            env = TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
            return env.rank, env.local_rank, env.world_size
        return _env_int("SLURM_PROCID") or 0, _env_int("SLURM_LOCALID") or 0, world
    return 0, 0, 1


def init_distributed(prefer_cuda: bool = True) -> DistEnv:
    """Read the environment; with world size > 1 start a process group (NCCL on CUDA, gloo on CPU)."""
    rank, local_rank, world = _from_env()
    use_cuda = prefer_cuda and torch.cuda.is_available()
    if use_cuda:
        if world > 1 and torch.cuda.device_count() <= local_rank:
            raise TrainingError(
                f"rank {rank}: LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} GPUs visible"
            )
        device = torch.device("cuda", local_rank if world > 1 else torch.cuda.current_device())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
            raise TrainingError(
                f"world size {world} but MASTER_ADDR/MASTER_PORT are not set "
                "(launch with torchrun or through submitit)"
            )
        backend = "nccl" if use_cuda else "gloo"
        device_id = device if use_cuda else None
        dist.init_process_group(backend=backend, rank=rank, world_size=world, device_id=device_id)
    return DistEnv(rank, local_rank, world, device)


def all_reduce_sum(values: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum a small float64 tensor over ranks (identity in a single process)."""
    if env.active:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def any_rank(flag: bool, env: DistEnv) -> bool:
    """True on every rank if ``flag`` is True on any rank (agreeing on stop/fail decisions)."""
    if not env.active:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=env.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(env: DistEnv) -> None:
    if env.active:
        dist.barrier()


def shutdown(env: DistEnv) -> None:
    """Destroy the process group this module created (no-op for world size 1)."""
    if env.active and dist.is_initialized():
        dist.destroy_process_group()
