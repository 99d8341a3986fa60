"""Downstream evaluation of a cell's frozen backbone and of the study's baselines (SPEC §8–10, §11 #8, #10).

``evaluate_cell`` loads the cell's backbone (``checkpoints/best.pt``, selected on the validation loss,
else ``last.pt``), computes its features once for the labelled train / validation / test events, trains
the adapters of every task × labelled-set size × adapter seed with model selection on the validation
split, evaluates each final adapter once on the fixed test split and writes ``eval/downstream.parquet``
(variant ``fm``). ``evaluate_baselines`` writes ``<study>/baselines/eval/*.parquet``: ``adapter_only``
(same adapters on a randomly initialised frozen backbone of each size), ``random_embedding`` (the head
on each hit's fixed random NeRF embedding, as in FM4NPP's adapter-only code) and ``hough`` (classical
finder, with ``ms_per_event``). Every variant uses the same events, seeds and tuning budget (§11 #10).

Labelled subsets are seeded nested subsets of the training split, drawn from their own random stream
(independent of the pretraining tiers) and shared by every cell, so comparisons across cells are
paired. Rows follow :data:`fm4npp.store.rundir.EVAL_COLUMNS` (long format, one row per metric value).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fm4npp.atomic import write_parquet
from fm4npp.config import RunConfig
from fm4npp.data.prepare import labelled_source, load_prepared
from fm4npp.data.schema import Event
from fm4npp.data.serialize import SerializedEvent, serialize_event
from fm4npp.data.shards import ShardSet
from fm4npp.data.tiers import Splits, nested_subset
from fm4npp.errors import StoreError
from fm4npp.eval.hough import find_tracks_event
from fm4npp.eval.metrics_tracking import MatchConfig, TrackingEvent, evaluate_tracking, event_counts
from fm4npp.model import ladder
from fm4npp.store.catalog import baselines_dir
from fm4npp.store.rundir import EVAL_COLUMNS, EVENT_COLUMNS, RunDir
from fm4npp.train.adapter_fit import (
    FitLog,
    FitSettings,
    event_scores,
    fit_adapter,
    predict,
    task_metrics,
)
from fm4npp.train.features import (
    PARTICLE_KEYS,
    EventSet,
    FeatureFn,
    backbone_feature_fn,
    build_event_set,
    embedding_feature_fn,
    load_weights,
)

log = logging.getLogger(__name__)

LABEL_SEED_OFFSET = 0x1AB  # labelled subsets use their own stream of the study's split seed
HEADLINE = {"tracking": ("ari", "efficiency", "purity"), "pid": ("accuracy", "precision", "recall"),
            "noise": ("accuracy", "precision", "recall"), "probe": ("ari", "efficiency")}  # fmt: skip
Rows = dict[str, list[Any]]


@dataclass(frozen=True)
class LabelledEvents:
    """Raw and serialized events of the labelled pool (largest labelled subset), the validation and
    the test split, and the event ids of every labelled-set size."""

    pool: tuple[list[Event], list[SerializedEvent]]
    val: tuple[list[Event], list[SerializedEvent]]
    test: tuple[list[Event], list[SerializedEvent]]
    subsets: dict[int, np.ndarray]


def load_labelled(cfg: RunConfig) -> LabelledEvents:
    """Read and serialize (order and mode of ``cfg.train``) the events the adapters need."""
    prepared = load_prepared(Path(cfg.data_dir), cfg.data, cfg.train.mode)
    shards, splits = ShardSet(cfg.data_dir), prepared.splits
    if cfg.data.labelled_path:  # TPCpp-10M: published labelled splits, pretraining edges (issue 13)
        shards, splits = labelled_source(cfg.data.labelled_path)
        val = nested_subset(splits.val, min(cfg.data.val_events, len(splits.val)), cfg.data.split_seed)
        splits = Splits(train=splits.train, val=val, test=splits.test)
    if cfg.eval.val_events:
        splits = Splits(train=splits.train, val=splits.val[: cfg.eval.val_events], test=splits.test)
    seed = cfg.data.split_seed + LABEL_SEED_OFFSET
    subsets = {n: nested_subset(splits.train, n, seed) for n in sorted(set(cfg.eval.labelled_events))}

    def read(ids: np.ndarray) -> tuple[list[Event], list[SerializedEvent]]:
        events = shards.read_events(ids)
        # k = 1: the adapters never read k-NNN targets, and the order does not depend on k
        ser = [
            serialize_event(e, prepared.edges, order=cfg.train.order, mode=cfg.train.mode, k=1)
            for e in events
        ]
        return events, ser

    pool = subsets[max(subsets)]
    return LabelledEvents(read(pool), read(splits.val), read(splits.test), subsets)


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def feature_sets(data: LabelledEvents, fn: FeatureFn, device: torch.device) -> dict[str, EventSet]:
    """Cached features of the labelled pool, the validation and the test events."""
    parts = {"pool": data.pool, "val": data.val, "test": data.test}
    return {name: build_event_set(events, ser, fn, device) for name, (events, ser) in parts.items()}


def _empty_rows() -> Rows:
    return {c: [] for c in EVAL_COLUMNS}


#: ``eval/curves/<name>.parquet``: one row per adapter epoch (training curves for the report).
CURVE_COLUMNS = ("cell_id", "variant", "task", "n_labelled", "seed", "epoch", "step", "train_loss",
                 "val_loss", "lr")  # fmt: skip


@dataclass
class Tables:
    """The three tables of one evaluated variant: metrics (EVAL_COLUMNS), per-event scores
    (:data:`EVENT_COLUMNS`) and training curves (:data:`CURVE_COLUMNS`)."""

    metrics: Rows = field(default_factory=_empty_rows)
    events: Rows = field(default_factory=lambda: {c: [] for c in EVENT_COLUMNS})
    curves: Rows = field(default_factory=lambda: {c: [] for c in CURVE_COLUMNS})

    def write(self, rd: RunDir, name: str) -> None:
        """``eval/<name>.parquet``, ``eval/events/<name>.parquet``, ``eval/curves/<name>.parquet``
        (sub-folders, so the catalog's ``evals`` view over ``eval/*.parquet`` reads metrics only)."""
        rd.eval.mkdir(parents=True, exist_ok=True)
        rd.write_eval(name, self.metrics)
        for sub, rows in (("events", self.events), ("curves", self.curves)):
            if rows[next(iter(rows))]:
                (rd.eval / sub).mkdir(exist_ok=True)
                write_parquet(rd.eval / sub / f"{name}.parquet", rows)


def _add(
    rows: Rows, cell_id: str, variant: str, task: str, metrics: dict[str, float], seed: int, n: int
) -> None:
    for metric, value in metrics.items():
        for col, v in zip(
            EVAL_COLUMNS, (cell_id, variant, task, metric, float(value), int(seed), int(n)), strict=True
        ):
            rows[col].append(v)


def _add_events(rows: Rows, key: tuple[str, str, str, int, int], scores: dict[str, np.ndarray]) -> None:
    ids = scores["event_id"]
    for metric, values in scores.items():
        if metric == "event_id":
            continue
        for col, v in zip(EVENT_COLUMNS[:5], key, strict=True):
            rows[col] += [v] * len(ids)
        rows["event_id"] += ids.tolist()
        rows["metric"] += [metric] * len(ids)
        rows["value"] += values.tolist()


def _add_curve(rows: Rows, key: tuple[str, str, str, int, int], fit: FitLog) -> None:
    for point in fit.curve:
        for col, v in zip(CURVE_COLUMNS, (*key, *point), strict=True):
            rows[col].append(v)


def fit_settings(
    cfg: RunConfig, task: str, seed: int, head_width: int | None = None, scale: float = 1.0
) -> FitSettings:
    """One recipe for every variant (SPEC §11 #10): ``cfg.eval``'s budget, early stopping and head;
    ``scale`` multiplies the epoch counts (:func:`epoch_scale`)."""
    ec = cfg.eval

    def scaled(epochs: int) -> int:
        return math.ceil(epochs * scale)

    return FitSettings(task=task, epochs=scaled(ec.epochs), batch_events=ec.batch_events, lr=ec.lr, seed=seed,
                       n_queries=ec.n_queries, head_width=head_width or ec.head_width, mode=cfg.train.mode,
                       patience_epochs=scaled(ec.patience), min_epochs_abs=scaled(ec.min_epochs))  # fmt: skip


def epoch_scale(cfg: RunConfig, n_train: int, subsets: dict[int, np.ndarray]) -> float:
    """``eval.budget: steps``: a labelled set of ``n_train`` events trains for as many optimiser steps as
    the largest set (epochs × largest / n_train); ``epochs``: 1 (the same epochs for every size)."""
    if cfg.eval.budget != "steps" or n_train <= 0:
        return 1.0
    return max(len(ids) for ids in subsets.values()) / n_train


def majority_accuracy(task: str, train: EventSet, test: EventSet) -> float:
    """Test accuracy of always predicting ``train``'s most common class of ``task`` ('pid' or 'noise'):
    the accuracy a head reaches without learning anything from the features."""
    labels = train.pid if task == "pid" else train.noise
    truth = test.pid if task == "pid" else test.noise
    if not len(labels) or not len(truth):
        return float("nan")
    return float(np.mean(truth == np.bincount(labels).argmax()))


def run_adapter_tables(cfg: RunConfig, sets: dict[str, EventSet], subsets: dict[int, np.ndarray], cell_id: str,
                       variant: str, device: torch.device, head_width: int | None = None) -> Tables:  # fmt: skip
    """Fit and test every task × labelled size × adapter seed on cached features (same recipe for
    every variant, to early stopping on the validation split); metrics, per-event scores, curves."""
    ec = cfg.eval
    out = Tables()
    for task in ec.tasks:
        for n, ids in sorted(subsets.items()):
            train = sets["pool"] if len(ids) == len(sets["pool"]) else sets["pool"].select(ids)
            for seed in ec.seeds:
                s = fit_settings(cfg, task, seed, head_width, epoch_scale(cfg, len(train), subsets))
                model, fit = fit_adapter(train, sets["val"], s, device)
                preds = predict(task, model, sets["test"], ec.batch_events, device, fit.threshold)
                metrics = task_metrics(task, sets["test"], preds, ec.min_hits)
                if task != "tracking":  # the floor a classifier must beat: the labelled set's commonest class
                    metrics["majority_accuracy"] = majority_accuracy(task, train, sets["test"])
                metrics.update(best_epoch=fit.best_epoch, val_loss=fit.best_val_loss, epochs_run=fit.epochs_run,
                               train_time_s=fit.train_time_s, s_per_epoch=fit.s_per_epoch,
                               n_trainable=fit.n_trainable, steps=fit.steps, best_step=fit.best_step,
                               threshold=fit.threshold)  # fmt: skip
                _add(out.metrics, cell_id, variant, task, metrics, seed, n)
                key = (cell_id, variant, task, int(n), int(seed))
                _add_events(out.events, key, event_scores(task, sets["test"], preds, ec.min_hits))
                _add_curve(out.curves, key, fit)
                log.info("%s %s %s n=%d seed=%d: %s (%.1f s, %d steps)", cell_id, variant, task, n, seed,
                         ", ".join(f"{k}={metrics[k]:.4f}" for k in HEADLINE[task]), fit.train_time_s,
                         fit.steps)  # fmt: skip
    return out


def add_probe(tables: Tables, cfg: RunConfig, sets: dict[str, EventSet], subsets: dict[int, np.ndarray],
              cell_id: str, variant: str) -> None:  # fmt: skip
    """Edge-probe metrics (task ``probe``, seed 0) per labelled-set size, when ``cfg.eval.probe``."""
    from fm4npp.eval.probe import run_probe

    if not cfg.eval.probe:
        return
    for n, ids in sorted(subsets.items()):
        train = sets["pool"] if len(ids) == len(sets["pool"]) else sets["pool"].select(ids)
        metrics = run_probe(train, sets["val"], sets["test"], min_hits=cfg.eval.min_hits)
        _add(tables.metrics, cell_id, variant, "probe", metrics, 0, n)
        log.info("%s %s probe n=%d: ari=%.4f efficiency=%.4f (%.1f s)", cell_id, variant, n, metrics["ari"],
                 metrics["efficiency"], metrics["probe_time_s"])  # fmt: skip


def run_adapters(cfg: RunConfig, sets: dict[str, EventSet], subsets: dict[int, np.ndarray], cell_id: str,
                 variant: str, device: torch.device, head_width: int | None = None) -> Rows:  # fmt: skip
    """Metric rows of :func:`run_adapter_tables`."""
    return run_adapter_tables(cfg, sets, subsets, cell_id, variant, device, head_width).metrics


def headline(rows: Rows) -> dict[str, float]:
    """Mean over adapter seeds, at the largest labelled size, of each task's headline metrics
    (non-finite values left out)."""
    out: dict[str, float] = {}
    if not rows["metric"]:
        return out
    n_max = max(rows["n_labelled"])
    for task, names in HEADLINE.items():
        for name in names:
            vals = [v for t, m, v, n in zip(rows["task"], rows["metric"], rows["value"], rows["n_labelled"], strict=True)
                    if t == task and m == name and n == n_max]  # fmt: skip
            finite = [v for v in vals if np.isfinite(v)]
            if finite:  # summary.json is JSON: no NaN
                out[f"{task}.{name}"] = float(np.mean(finite))
    return out


def _set_threads(cfg: RunConfig) -> None:
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)


def build_backbone(cfg: RunConfig, model_name: str, seed: int) -> torch.nn.Module:
    """A freshly initialised backbone of ``model_name`` (seeded; dropout 0), e.g. to load weights into."""
    from fm4npp.model.backbone import FM4NPPModel

    rung = ladder.get_rung(model_name, "run.model")
    torch.manual_seed(seed)
    return FM4NPPModel(rung, k=cfg.train.k_neighbours, dropout=0.0, embed_seed=seed)


def evaluate_cell(cfg: RunConfig, run_dir: Path, *, overwrite: bool = True) -> dict[str, Any]:
    """Evaluate the adapters of one trained cell; writes ``<run_dir>/eval/downstream.parquet``.

    Returns the headline metrics (``"<task>.<metric>"``: mean over seeds at the largest labelled size),
    ``eval_rows`` and ``eval_wall_time_s``. With ``overwrite=False`` an existing table is kept and
    only summarised.
    """
    rd = RunDir(Path(run_dir))
    out_path = rd.eval / "downstream.parquet"
    if not cfg.eval.enabled:
        return {}
    if out_path.is_file() and not overwrite:
        import pandas as pd

        df = pd.read_parquet(out_path)
        return {**headline({c: df[c].tolist() for c in EVAL_COLUMNS}), "eval_rows": len(df)}
    ckpt = rd.checkpoints / "best.pt"
    if not ckpt.is_file():
        ckpt = rd.last_checkpoint
    if not ckpt.is_file():
        raise StoreError(f"{rd.checkpoints}: no best.pt or last.pt; pretrain cell {cfg.cell_id} first")
    t0 = time.perf_counter()
    _set_threads(cfg)
    device = _device()
    model = build_backbone(cfg, cfg.model, cfg.seed)
    load_weights(ckpt, model)
    data = load_labelled(cfg)
    sets = feature_sets(data, backbone_feature_fn(model.to(device)), device)
    tables = run_adapter_tables(cfg, sets, data.subsets, cfg.cell_id, "fm", device)
    add_probe(tables, cfg, sets, data.subsets, cfg.cell_id, "fm")
    tables.write(rd, "downstream")
    rows = tables.metrics
    return {
        **headline(rows),
        "eval_rows": len(rows["metric"]),
        "eval_wall_time_s": time.perf_counter() - t0,
    }


def baseline_cell_id(variant: str, model: str | None = None) -> str:
    """``cell_id`` of a baseline row: ``baseline-<variant>[-<model>]`` (never a planned cell's hash)."""
    return f"baseline-{variant}" + (f"-{model}" if model else "")


def hough_tables(events: list[Event], min_hits: int) -> Tables:
    """Classical finder on ``events`` (SPEC §10.4): tracking metrics plus ``ms_per_event``, and per-event
    scores (labelled-set size 0: it learns nothing) for paired comparisons with the adapters."""
    tracking, elapsed = [], 0.0
    for e in events:
        t = time.perf_counter()
        pred = find_tracks_event(e)
        elapsed += time.perf_counter() - t
        p = e.particles
        parts: dict[str, np.ndarray] = {k: np.asarray(p[k]) for k in PARTICLE_KEYS if k in p}
        tracking.append(
            TrackingEvent(truth=np.asarray(e.hits["track_id"]), pred=pred, particles=parts or None)
        )
    config = MatchConfig(min_track_hits=min_hits, min_particle_hits=min_hits)
    metrics = evaluate_tracking(tracking, config)
    scalars = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    scalars["ms_per_event"] = 1000.0 * elapsed / max(len(events), 1)
    out, cell = Tables(), baseline_cell_id("hough")
    _add(out.metrics, cell, "hough", "tracking", scalars, 0, 0)
    per_event = [event_counts(ev.truth, ev.pred, config) for ev in tracking]
    scores = {k: np.array([row[k] for row in per_event], np.float64) for k in per_event[0]} if per_event else {}
    scores["event_id"] = np.array([e.event_id for e in events], np.int64)
    _add_events(out.events, (cell, "hough", "tracking", 0, 0), scores)
    return out


def evaluate_baselines(study_dir: Path, cfg_template: RunConfig, models: list[str]) -> None:
    """Write the study's baselines (``cfg_template.eval.baselines``) to ``<study>/baselines/eval/``.

    ``cfg_template`` is any cell's config of the study (data, serialization and eval settings are
    shared); ``models`` are the model sizes that get an ``adapter_only`` table each.
    """
    from fm4npp.model.embedding import NerfEmbedding

    cfg = cfg_template
    rd = baselines_dir(Path(study_dir))
    rd.eval.mkdir(parents=True, exist_ok=True)
    _set_threads(cfg)
    device = _device()
    data = load_labelled(cfg)
    if "hough" in cfg.eval.baselines:
        hough_tables(data.test[0], cfg.eval.min_hits).write(rd, "hough")
    if "adapter_only" in cfg.eval.baselines:
        for name in models:
            model = build_backbone(cfg, name, cfg.seed).to(device)  # random init, frozen, same size
            sets = feature_sets(data, backbone_feature_fn(model), device)
            cell = baseline_cell_id("adapter_only", name)
            tables = run_adapter_tables(cfg, sets, data.subsets, cell, "adapter_only", device)
            add_probe(tables, cfg, sets, data.subsets, cell, "adapter_only")
            tables.write(rd, f"adapter_only-{name}")
    if "random_embedding" in cfg.eval.baselines and models:
        d = max(ladder.get_rung(m).d_model for m in models)  # the widest size's embedding (FM4NPP: m6's)
        emb = NerfEmbedding(d, seed=cfg.seed).to(device)
        sets = feature_sets(data, embedding_feature_fn(emb), device)
        cell = baseline_cell_id("random_embedding")
        tables = run_adapter_tables(cfg, sets, data.subsets, cell, "random_embedding", device)
        add_probe(tables, cfg, sets, data.subsets, cell, "random_embedding")
        tables.write(rd, "random_embedding")


def evaluate_study_cell(study_dir: Path, cell_id: str) -> dict[str, Any]:
    """:func:`evaluate_cell` of ``<study>/runs/<cell_id>`` with the config stored in its run directory."""
    from fm4npp.store.catalog import run_dir

    rd = run_dir(Path(study_dir), cell_id)
    if not rd.path.is_dir():
        raise StoreError(f"{rd.path}: no such run directory (cell ids: `fm4npp-sweep status`)")
    return evaluate_cell(rd.read_config(), rd.path)


def evaluate_study_baselines(study_dir: Path) -> list[str]:
    """:func:`evaluate_baselines` for the planned cells of a study (the first cell's config as the
    template, every planned model size); returns the written table names."""
    import json

    from fm4npp.config import load_dataclass
    from fm4npp.store.catalog import catalog_path, planned_cells

    cells = planned_cells(Path(study_dir))
    if cells.empty:
        raise StoreError(
            f"{catalog_path(Path(study_dir))}: no planned cells; run `fm4npp-sweep plan` first"
        )
    source = f"{catalog_path(Path(study_dir))}: cells.config_json"
    configs = [load_dataclass(RunConfig, json.loads(c), source, "run") for c in cells["config_json"]]
    template = configs[0]
    # adapter_only: one table per evaluated size (eval.scope)
    evaluated = [c.model for c in configs if c.eval.enabled]
    models = list(dict.fromkeys(evaluated or [c.model for c in configs]))
    evaluate_baselines(Path(study_dir), template, models)
    return sorted(p.stem for p in baselines_dir(Path(study_dir)).eval.glob("*.parquet"))
