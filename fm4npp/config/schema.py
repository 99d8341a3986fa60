"""Typed configuration of one cell: data, pretraining and downstream evaluation.

A sweep file (``fm4npp.sweep.spec``) composes these; a planned cell resolves them into one
:class:`RunConfig`, which is what a job receives and what ``runs/<cell_id>/config.yaml`` stores.
Every field carries its unit in the name or in the comment; defaults cite their source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from fm4npp.errors import ConfigError

Order = Literal["EPR", "RPE", "REP", "PER", "r", "zorder", "hilbert"]
Mode = Literal["fixed", "compat"]


@dataclass(frozen=True)
class DataConfig:
    """Where a study's events come from and how they are split."""

    source: Literal["fastsim", "gun", "tpcpp10m", "shards"] = "fastsim"
    path: str | None = None  # shard dir; default <study>/data (generated on first use for fastsim/gun)
    val_events: int = 500  # fixed validation split shared by every cell (SCALING §6.4)
    test_events: int = 500  # downstream test split, evaluated once per final model
    max_hits: int = 3200  # SPEC §2.2 filter
    hits_per_event: float = 840.0  # mean tokens per event for the cost model (TPCpp-10M ≈ 834–856)
    split_seed: int = 0  # seeds the splits and the nested tiers d1 ⊂ d2 ⊂ …
    workers: int = 1  # generation processes

    def __post_init__(self) -> None:
        for name in ("val_events", "test_events", "max_hits"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"data.{name} must be > 0, got {getattr(self, name)}")
        if self.hits_per_event <= 0:
            raise ConfigError(f"data.hits_per_event must be > 0, got {self.hits_per_event}")


@dataclass(frozen=True)
class TrainConfig:
    """Pretraining of one cell (SPEC §5.4; horizon matched to the cell's D, SCALING §6.4)."""

    epochs: float = 1.0  # passes over the cell's tier: events seen D = epochs × n_events
    batch_events: int = 256  # global batch in events (FM4NPP: 256), reached by accumulation
    micro_batch_events: int = 16  # events per forward pass per rank
    lr: float = 2e-4  # peak LR (SPEC §5.4)
    lr_min: float = 2e-5  # cosine floor (SPEC §5.4)
    warmup_fraction: float = 0.05  # of the optimiser steps, linear from lr_min
    weight_decay: float = 0.1  # AdamW; norms, A_log, D, dt_bias exempt in fixed mode (SPEC §11 #11)
    beta1: float = 0.9
    beta2: float = 0.95
    clip_grad_norm: float = 1.0  # 0 disables
    dropout: float = 0.1  # residual-branch dropout in pretraining (SPEC §5.3)
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16 = autocast with fp32 parameters, CUDA only
    k_neighbours: int = 30  # k of the k-NNN objective (SPEC §5.1)
    order: Order = "EPR"  # serialization sweep order (SPEC §4.3)
    mode: Mode = "fixed"  # SPEC design rule: fixed (default) or compat with the released code
    val_every_steps: int = 50
    checkpoint_every_steps: int = 100
    log_every_steps: int = 10
    threads: int = 0  # torch intra-op threads on CPU; 0 = leave torch's default
    allow_slow_fallback: bool = False  # a CUDA run without mamba_ssm kernels is an error unless set

    def __post_init__(self) -> None:
        if self.epochs <= 0:
            raise ConfigError(f"train.epochs must be > 0, got {self.epochs}")
        if self.batch_events <= 0 or self.micro_batch_events <= 0:
            raise ConfigError("train.batch_events and train.micro_batch_events must be > 0")
        if self.batch_events % self.micro_batch_events:
            raise ConfigError(
                f"train.batch_events ({self.batch_events}) must be a multiple of "
                f"train.micro_batch_events ({self.micro_batch_events})"
            )
        if not 0 < self.lr_min <= self.lr:
            raise ConfigError(f"train.lr_min must be in (0, lr={self.lr}], got {self.lr_min}")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"train.warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.k_neighbours <= 0:
            raise ConfigError(f"train.k_neighbours must be > 0, got {self.k_neighbours}")
        for name in ("val_every_steps", "checkpoint_every_steps", "log_every_steps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"train.{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class EvalConfig:
    """Downstream evaluation of a frozen backbone (SPEC §8–9)."""

    enabled: bool = True
    # which cells run the downstream evaluation after pretraining: every cell, or one per model size
    # (largest dataset, first seed: downstream metrics vs N at fixed D, cheaper on CPU)
    scope: Literal["all", "per_model"] = "all"
    tasks: tuple[Literal["tracking", "pid", "noise"], ...] = ("tracking", "pid", "noise")
    labelled_events: tuple[int, ...] = (1000,)  # data-efficiency ladder of labelled events
    seeds: tuple[int, ...] = (0,)  # adapter seeds
    epochs: int = 10  # maximum epochs; training stops early (patience) on the validation loss
    batch_events: int = 16
    lr: float = 1e-3
    n_queries: int = 150  # MaskFormer queries (SPEC §8)
    head_width: int = 256  # adapter width (SPEC §8); 64 keeps CPU quickstarts fast
    min_hits: int = 5  # particles/tracks counted by the tracking metrics (SPEC §9)
    # random_embedding = FM4NPP's adapter-only baseline (SPEC §8, the headline comparison);
    # adapter_only = the same adapters on a randomly initialised frozen backbone of each size
    baselines: tuple[Literal["adapter_only", "random_embedding", "hough"], ...] = (
        "random_embedding",
        "adapter_only",
        "hough",
    )
    patience: int = 5  # early stop after this many epochs without a better validation loss
    min_epochs: int = 0  # ... but never before this many epochs (SPEC §8: 60 tracking, 20 point heads)
    probe: bool = True  # also run the fast edge probe (fm4npp.eval.probe) on every evaluated backbone

    def __post_init__(self) -> None:
        if any(n <= 0 for n in self.labelled_events) or not self.labelled_events:
            raise ConfigError("eval.labelled_events must be a non-empty list of positive event counts")
        if not self.seeds:
            raise ConfigError("eval.seeds must not be empty")
        if self.epochs <= 0 or self.patience <= 0 or self.min_epochs < 0:
            raise ConfigError(
                f"eval.epochs and eval.patience must be > 0 and eval.min_epochs ≥ 0, got "
                f"{self.epochs}, {self.patience}, {self.min_epochs}"
            )


@dataclass(frozen=True)
class RunConfig:
    """One fully resolved cell: what a job runs and what its run directory records."""

    study: str
    cell_id: str
    model: str  # ladder rung name (fm4npp.model.ladder)
    dataset: str  # dataset rung name
    n_events: int  # unique training events in this cell's tier (nested subset of the pool)
    seed: int
    data_dir: str  # shard directory (absolute or relative to the working directory)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def events_seen(self) -> int:
        """D: pretraining events processed, repeats included."""
        return round(self.train.epochs * self.n_events)
