"""Typed configuration of one cell: data, pretraining and downstream evaluation.

A sweep file (``fm4npp.sweep.spec``) composes these; a planned cell resolves them into one
:class:`RunConfig`, which is what a job receives and what ``runs/<cell_id>/config.yaml`` stores.
Every field carries its unit in the name or in the comment; defaults cite their source.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Literal

from fm4npp.errors import ConfigError

MAX_SPLIT_EVENTS = 10_000_000  # validation/test events: the whole of TPCpp-10M at most
MAX_SEED = 2**31 - 1  # seeds are INTEGER columns of the catalog and seed numpy/torch generators


def _check_finite(prefix: str, obj: object, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{prefix}.{name} must be a finite number, got {value}")


def _check_range(prefix: str, name: str, value: float, lo: float, hi: float, rule: str) -> None:
    """``rule``: '[]' '[)' '(]' '()' — which ends are included."""
    ok_lo = value >= lo if rule[0] == "[" else value > lo
    ok_hi = value <= hi if rule[1] == "]" else value < hi
    if not (ok_lo and ok_hi):
        raise ConfigError(f"{prefix}.{name} must be in {rule[0]}{lo:g}, {hi:g}{rule[1]}, got {value}")


def check_seeds(prefix: str, seeds: tuple[int, ...]) -> None:
    """Seeds: non-empty, unique, each in [0, 2^31)."""
    if not seeds:
        raise ConfigError(f"{prefix} must list at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{prefix}: duplicate entries in {list(seeds)}")
    for s in seeds:
        if not 0 <= s <= MAX_SEED:
            raise ConfigError(f"{prefix}: seed {s} must be in [0, {MAX_SEED}]")


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
    # TPCpp-10M (issue 13): the converted labelled set (`data convert-tpcpp ROOT` → ROOT-out/labelled);
    # labelled subsets, adapter validation and the test split come from it, pretraining tiers and the
    # validation split from ``path``. None: everything from ``path``.
    labelled_path: str | None = None
    # fastsim event selection (fm4npp.data.pythia): "mbd" = minimum-bias trigger, ≥ 1 final charged
    # particle in each MBD arm 3.51 < |η| < 4.61 (sPHENIX MBD; SPEC has no selection statement); "none"
    trigger: str = "mbd"

    def __post_init__(self) -> None:
        for name in ("val_events", "test_events", "max_hits"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"data.{name} must be > 0, got {getattr(self, name)}")
        _check_finite("data", self, ("hits_per_event",))
        if self.hits_per_event <= 0:
            raise ConfigError(f"data.hits_per_event must be > 0, got {self.hits_per_event}")
        for name in ("val_events", "test_events"):
            if getattr(self, name) > MAX_SPLIT_EVENTS:
                raise ConfigError(f"data.{name} must be ≤ {MAX_SPLIT_EVENTS}, got {getattr(self, name)}")
        if self.max_hits > 1_000_000:
            raise ConfigError(f"data.max_hits must be ≤ 1000000, got {self.max_hits}")
        if not 0 <= self.split_seed <= MAX_SEED:
            raise ConfigError(f"data.split_seed must be in [0, {MAX_SEED}], got {self.split_seed}")
        if not 1 <= self.workers <= 4096:
            raise ConfigError(f"data.workers must be in [1, 4096], got {self.workers}")
        if self.trigger not in ("mbd", "none"):
            raise ConfigError(f"data.trigger '{self.trigger}' unknown; allowed: mbd, none")


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
    # input pipeline (issue 13): serializing worker processes per rank; -1 = auto: SLURM_CPUS_PER_TASK
    # minus one (outside SLURM: the CPUs per local rank minus one on a GPU, none on the CPU); 0 = in the
    # training process
    loader_workers: int = -1
    # LR schedule: cosine to lr_min over each cell's horizon (one run per cell), or WSD: one trunk per
    # (model, seed) at peak LR along the nested tiers, a cooldown branch per tier (fm4npp.train.wsd)
    schedule: Literal["cosine", "wsd"] = "cosine"
    cooldown_fraction: float = 0.2  # wsd: decay over this fraction of each branch's steps
    decay_shape: Literal["1-sqrt", "linear"] = "1-sqrt"  # wsd cooldown shape (Hägele et al. 2024)
    wsd_tiers: tuple[int, ...] = ()  # wsd: the trunk's nested tier sizes (events); set by the planner
    # run recipe per rung (fm4npp.model.recipe): "ladder" fills lr, lr_min, warmup_fraction and the
    # batch from the rung's recipe at plan time, except the keys the sweep file sets; "none" = off
    recipe: Literal["none", "ladder"] = "none"

    def __post_init__(self) -> None:
        _check_finite(
            "train", self,
            ("epochs", "lr", "lr_min", "warmup_fraction", "weight_decay", "beta1", "beta2",
             "clip_grad_norm", "dropout"),
        )  # fmt: skip
        if self.epochs <= 0:
            raise ConfigError(f"train.epochs must be > 0, got {self.epochs}")
        if self.epochs > 1e6:
            raise ConfigError(f"train.epochs must be ≤ 1e6, got {self.epochs}")
        _check_range("train", "beta1", self.beta1, 0, 1, "[)")
        _check_range("train", "beta2", self.beta2, 0, 1, "[)")
        _check_range("train", "dropout", self.dropout, 0, 1, "[)")
        _check_range("train", "weight_decay", self.weight_decay, 0, math.inf, "[)")
        _check_range("train", "clip_grad_norm", self.clip_grad_norm, 0, math.inf, "[)")
        if self.threads < 0:
            raise ConfigError(f"train.threads must be ≥ 0 (0 = torch's default), got {self.threads}")
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
        if self.loader_workers < -1:
            raise ConfigError(f"train.loader_workers must be ≥ -1 (-1: auto), got {self.loader_workers}")
        for name in ("val_every_steps", "checkpoint_every_steps", "log_every_steps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"train.{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.cooldown_fraction <= 1:
            raise ConfigError(f"train.cooldown_fraction must be in (0, 1], got {self.cooldown_fraction}")
        if self.schedule == "wsd" and self.warmup_fraction + self.cooldown_fraction > 1:
            raise ConfigError(
                f"train.warmup_fraction + train.cooldown_fraction must be <= 1 with schedule wsd, got "
                f"{self.warmup_fraction} + {self.cooldown_fraction}"
            )
        tiers = self.wsd_tiers
        if any(n <= 0 for n in tiers) or any(a >= b for a, b in itertools.pairwise(tiers)):
            raise ConfigError(
                f"train.wsd_tiers must be increasing positive event counts, got {list(tiers)}"
            )


@dataclass(frozen=True)
class EvalConfig:
    """Downstream evaluation of a frozen backbone (SPEC §8–9)."""

    enabled: bool = True
    # which cells run the downstream evaluation after pretraining: every cell; one per model size
    # (largest dataset, first seed: downstream metrics vs N at fixed D); or only the largest size's
    # (CPU quickstart). Baselines of one size (adapter_only) follow the evaluated sizes.
    scope: Literal["all", "per_model", "largest"] = "all"
    tasks: tuple[Literal["tracking", "pid", "noise"], ...] = ("tracking", "pid", "noise")
    labelled_events: tuple[int, ...] = (1000,)  # data-efficiency ladder of labelled events
    seeds: tuple[int, ...] = (0,)  # adapter seeds
    epochs: int = 10  # maximum epochs; training stops early (patience) on the validation loss
    batch_events: int = 16
    lr: float = 1e-3
    n_queries: int = 150  # MaskFormer queries (SPEC §8)
    head_width: int = 256  # adapter width (SPEC §8); 64 keeps CPU quickstarts fast
    min_hits: int = 5  # particles/tracks counted by the tracking metrics (SPEC §9)
    # validation events of the adapters (early stopping, decoding threshold): the first N of the
    # study's validation split; 0 = all of it
    val_events: int = 0
    # random_embedding = FM4NPP's adapter-only baseline (SPEC §8, the headline comparison);
    # adapter_only = the same adapters on a randomly initialised frozen backbone of each size
    baselines: tuple[Literal["adapter_only", "random_embedding", "hough"], ...] = (
        "random_embedding",
        "adapter_only",
        "hough",
    )
    patience: int = 5  # early stop after this many epochs without a better validation loss
    min_epochs: int = 0  # ... but never before this many epochs (SPEC §8: 60 tracking, 20 point heads)
    # epochs: every labelled-set size trains up to ``epochs`` (FM4NPP: fewer labels, fewer steps);
    # steps: every size gets the optimiser steps of the largest (epochs, min_epochs and patience × the
    # ratio of the sizes), so a comparison at few labels is not one between two shorter fits
    budget: Literal["epochs", "steps"] = "epochs"
    probe: bool = True  # also run the fast edge probe (fm4npp.eval.probe) on every evaluated backbone

    def __post_init__(self) -> None:
        if any(n <= 0 for n in self.labelled_events) or not self.labelled_events:
            raise ConfigError("eval.labelled_events must be a non-empty list of positive event counts")
        if not self.seeds:
            raise ConfigError("eval.seeds must not be empty")
        check_seeds("eval.seeds", self.seeds)
        if not self.tasks:
            raise ConfigError("eval.tasks must list at least one of: noise, pid, tracking")
        if len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"eval.tasks: duplicate entries in {list(self.tasks)}")
        _check_finite("eval", self, ("lr",))
        if self.lr <= 0:
            raise ConfigError(f"eval.lr must be > 0, got {self.lr}")
        if self.val_events < 0:
            raise ConfigError(
                f"eval.val_events must be ≥ 0 (0 = the whole validation split), got {self.val_events}"
            )
        for name in ("epochs", "batch_events", "n_queries", "head_width", "min_hits"):
            if getattr(self, name) < 1:
                raise ConfigError(f"eval.{name} must be ≥ 1, got {getattr(self, name)}")
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
