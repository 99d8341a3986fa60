"""Training of one downstream adapter on cached features, model selection on the validation split,
prediction and metrics (SPEC §8–9, §11 #8).

One fit = one task × one labelled set × one adapter seed. AdamW (weight decay 1e-4, grad-norm clip
1.0), linear warm-up then cosine to lr/10 per optimiser step (SPEC §8 uses 1e-4 → 1e-5 for the track
head and 1e-3 → 1e-4 for the point heads over 200 epochs; the epoch budget and peak LR come from
``eval`` in the run config). After every epoch the validation loss is computed; the weights of the best
epoch are kept, and training stops early after ``patience`` stagnant epochs past ``min_epochs``
(SPEC §8: 15 past 60 of 200 epochs for tracking, 5 past 20 for the point heads). The test split is
never looked at here.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fm4npp.data.schema import PID_CLASSES
from fm4npp.eval.metrics_classify import noise_metrics, pid_metrics
from fm4npp.eval.metrics_tracking import (
    MatchConfig,
    TrackingEvent,
    adjusted_rand_score,
    evaluate_tracking,
    event_counts,
)
from fm4npp.model.adapters import adapter_for, decode_tracks, n_trainable, track_scores
from fm4npp.train.features import EventSet, FeatureBatch
from fm4npp.train.matching import track_loss

TASKS = ("tracking", "pid", "noise")
BUCKET_BATCHES = 8  # length bucketing: sort each window of 8 batches by length (less padding)


@dataclass(frozen=True)
class FitSettings:
    """Hyper-parameters of one adapter fit."""

    task: str
    epochs: int
    batch_events: int
    lr: float
    seed: int
    n_queries: int = 64  # track head queries: ≥ the largest number of instances per event
    head_width: int = 256  # SPEC §8; smaller on CPU (see the report of the downstream issue)
    mode: str = "fixed"  # fixed: noise is not an instance; compat: one noise instance (SPEC §8)
    weight_decay: float = 1e-4  # SPEC §8
    clip_grad_norm: float = 1.0  # SPEC §8
    lr_min_ratio: float = 0.1  # SPEC §8: cosine to a tenth of the peak
    warmup_fraction: float = 0.1  # SPEC §8: 20 of 200 epochs
    patience_fraction: float = 0.075  # SPEC §8: 15 of 200 epochs
    min_epochs_fraction: float = 0.3  # SPEC §8: 60 of 200 epochs
    patience_epochs: int | None = None  # absolute patience; overrides patience_fraction
    min_epochs_abs: int | None = None  # absolute minimum epochs; overrides min_epochs_fraction

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task '{self.task}': allowed {', '.join(TASKS)}")

    @property
    def patience(self) -> int:
        if self.patience_epochs is not None:
            return max(1, self.patience_epochs)
        return max(2, math.ceil(self.patience_fraction * self.epochs))

    @property
    def min_epochs(self) -> int:
        if self.min_epochs_abs is not None:
            return self.min_epochs_abs
        return math.ceil(self.min_epochs_fraction * self.epochs)


@dataclass(frozen=True)
class FitLog:
    """What a fit did: best epoch (1-based), its validation loss, epochs run, optimiser steps run and
    up to the best epoch, wall time, size, the decoding threshold chosen on validation (tracking;
    0 otherwise) and the training curve: one (epoch, step, train_loss, val_loss, lr) per epoch."""

    best_epoch: int
    best_val_loss: float
    epochs_run: int
    train_time_s: float
    n_trainable: int
    s_per_epoch: float
    steps: int = 0
    best_step: int = 0
    threshold: float = 0.0
    curve: tuple[tuple[int, int, float, float, float], ...] = ()


def task_loss(task: str, model: nn.Module, batch: FeatureBatch, mode: str) -> torch.Tensor:
    """Training loss of one batch: deep-supervised set loss (tracking) or cross-entropy over valid hits."""
    if task == "tracking":
        return track_loss(model(batch.feats, batch.valid), batch.track_id, batch.valid, mode)
    logits = model(batch.feats, batch.valid)
    target = batch.pid if task == "pid" else batch.noise
    return F.cross_entropy(logits[batch.valid], target[batch.valid])


def epoch_batches(sizes: np.ndarray, batch_events: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of event indices; within windows of :data:`BUCKET_BATCHES` batches events are
    sorted by length, so a batch pads little (and its events still differ from epoch to epoch)."""
    perm = rng.permutation(len(sizes))
    window = batch_events * BUCKET_BATCHES
    batches = []
    for start in range(0, len(perm), window):
        chunk = perm[start : start + window]
        chunk = chunk[np.argsort(sizes[chunk], kind="stable")]
        batches += [chunk[i : i + batch_events] for i in range(0, len(chunk), batch_events)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _schedule(step: int, total: int, s: FitSettings) -> float:
    """LR multiplier: linear warm-up from lr_min_ratio, then cosine to lr_min_ratio."""
    warm = max(1, round(s.warmup_fraction * total))
    if step < warm:
        return s.lr_min_ratio + (1 - s.lr_min_ratio) * step / warm
    t = min(1.0, (step - warm) / max(1, total - warm))
    return s.lr_min_ratio + (1 - s.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


@torch.no_grad()
def validation_loss(
    task: str, model: nn.Module, data: EventSet, s: FitSettings, device: torch.device
) -> float:
    """Mean batch loss over ``data`` (eval mode); batches in length order, deterministic."""
    model.eval()
    order = np.argsort(data.n_hits, kind="stable")
    losses, weights = [], []
    for i in range(0, len(order), s.batch_events):
        idx = order[i : i + s.batch_events]
        losses.append(float(task_loss(task, model, data.batch(idx, device), s.mode)))
        weights.append(len(idx))
    return float(np.average(losses, weights=weights)) if losses else float("nan")


def fit_adapter(
    train: EventSet, val: EventSet, s: FitSettings, device: torch.device | str = "cpu"
) -> tuple[nn.Module, FitLog]:
    """Train a fresh adapter for ``s.task`` on ``train``; return the best-validation weights.

    Training runs to early stopping on the validation loss (at most ``s.epochs``). For tracking in
    fixed mode the decoding threshold is then chosen on the validation split (:func:`choose_threshold`).
    """
    device = torch.device(device)
    torch.manual_seed(s.seed)
    model = adapter_for(s.task, train.n_sets, train.d_model, s.n_queries, s.head_width, s.mode).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    rng = np.random.default_rng(np.random.SeedSequence((s.seed, 0xADA)))
    steps_per_epoch = math.ceil(len(train) / s.batch_events)
    total = s.epochs * steps_per_epoch
    best = (float("inf"), 0, 0)
    best_state = copy.deepcopy(model.state_dict())
    curve: list[tuple[int, int, float, float, float]] = []
    step, epoch, t0 = 0, 0, time.perf_counter()
    for epoch in range(1, s.epochs + 1):
        model.train()
        losses, lr = [], s.lr
        for idx in epoch_batches(train.n_hits, s.batch_events, rng):
            lr = s.lr * _schedule(step, total, s)
            for group in opt.param_groups:
                group["lr"] = lr
            loss = task_loss(s.task, model, train.batch(idx, device), s.mode)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if s.clip_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), s.clip_grad_norm)
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
        val_loss = validation_loss(s.task, model, val, s, device)
        curve.append((epoch, step, float(np.mean(losses)) if losses else float("nan"), val_loss, lr))
        if val_loss < best[0]:
            best = (val_loss, epoch, step)
            best_state = copy.deepcopy(model.state_dict())
        elif epoch >= s.min_epochs and epoch - best[1] >= s.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    threshold = 0.0
    if s.task == "tracking" and s.mode == "fixed":
        threshold = choose_threshold(model, val, s.batch_events, device)
    elapsed = time.perf_counter() - t0
    log = FitLog(best[1], best[0], epoch, elapsed, n_trainable(model), elapsed / max(epoch, 1),
                 steps=step, best_step=best[2], threshold=threshold, curve=tuple(curve))  # fmt: skip
    return model, log


# decoding thresholds tried: fine near 0, where noise hits' best scores sit once the masks are learned
THRESHOLD_GRID = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, *np.round(np.arange(0.1, 0.91, 0.05), 2).tolist())


@torch.no_grad()
def hit_scores(
    model: nn.Module, data: EventSet, batch_events: int, device: torch.device | str = "cpu"
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per event: each hit's best score and best query (:func:`~fm4npp.model.adapters.track_scores`)."""
    model.eval()
    best: list[np.ndarray] = [np.zeros(0)] * len(data)
    arg: list[np.ndarray] = [np.zeros(0, np.int64)] * len(data)
    order = np.argsort(data.n_hits, kind="stable")
    for i in range(0, len(order), batch_events):
        idx = order[i : i + batch_events]
        b = data.batch(idx, device)
        score, query = (t.cpu().numpy() for t in track_scores(model(b.feats, b.valid)))
        for j, e in enumerate(idx):
            n = data.n_hits[e]
            best[e], arg[e] = score[j, :n].astype(np.float64), query[j, :n].astype(np.int64)
    return best, arg


def choose_threshold(
    model: nn.Module, val: EventSet, batch_events: int, device: torch.device | str = "cpu",
    grid: tuple[float, ...] = THRESHOLD_GRID,
) -> float:  # fmt: skip
    """The decoding threshold of :func:`~fm4npp.model.adapters.decode_tracks` with the highest mean
    per-event ARI (ARI_all, SPEC §9) on the validation split; ties → the smaller threshold."""
    if len(val) == 0:
        return 0.0
    best, arg = hit_scores(model, val, batch_events, device)
    truth = [val.labels(i)[0] for i in range(len(val))]
    means = []
    for thr in grid:
        aris = [adjusted_rand_score(t, np.where(b > thr, a, -1)) for t, b, a in zip(truth, best, arg, strict=True)]
        means.append(float(np.mean(aris)))
    return float(grid[int(np.argmax(means))])


@torch.no_grad()
def predict(
    task: str, model: nn.Module, data: EventSet, batch_events: int, device: torch.device | str = "cpu",
    threshold: float = 0.0,
) -> list[np.ndarray]:  # fmt: skip
    """Per-event predictions (n_i,) int64 in sequence order: track ids (−1 = unassigned; decoding
    ``threshold`` as chosen by :func:`fit_adapter`) for tracking, class indices for pid/noise."""
    model.eval()
    out: list[np.ndarray] = [np.zeros(0, np.int64)] * len(data)
    order = np.argsort(data.n_hits, kind="stable")
    for i in range(0, len(order), batch_events):
        idx = order[i : i + batch_events]
        b = data.batch(idx, device)
        if task == "tracking":
            labels_BL = decode_tracks(model(b.feats, b.valid), b.valid, threshold)
        else:
            labels_BL = model(b.feats, b.valid).argmax(-1)
        labels = labels_BL.cpu().numpy()
        for j, e in enumerate(idx):
            out[e] = labels[j, : data.n_hits[e]].astype(np.int64)
    return out


def _scalars(metrics: Mapping[str, object]) -> dict[str, float]:
    """Numeric scalar entries (lists such as per-bin curves are left out of the long table)."""
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def task_metrics(task: str, data: EventSet, preds: list[np.ndarray], min_hits: int) -> dict[str, float]:
    """SPEC §9 metrics of ``preds`` on ``data`` (scalars only; PID per-class values by class name)."""
    if task == "tracking":
        events = [
            TrackingEvent(truth=data.labels(i)[0], pred=preds[i], particles=data.particles[i] or None)
            for i in range(len(data))
        ]
        return _scalars(
            evaluate_tracking(events, MatchConfig(min_track_hits=min_hits, min_particle_hits=min_hits))
        )
    pred = np.concatenate(preds) if preds else np.zeros(0, np.int64)
    if task == "pid":
        m = pid_metrics(data.pid, pred)
        out = _scalars(m)
        for name, p, r in zip(PID_CLASSES, m["precision_per_class"], m["recall_per_class"], strict=True):  # type: ignore[call-overload]
            out[f"precision_{name}"], out[f"recall_{name}"] = float(p), float(r)
        return out
    return _scalars(noise_metrics(data.noise, pred))


def event_scores(task: str, data: EventSet, preds: list[np.ndarray], min_hits: int) -> dict[str, np.ndarray]:
    """Per-event scores of ``preds`` (for mean ± sd over seeds, event bootstraps and paired bootstraps):
    ``event_id`` plus, for tracking, the columns of :func:`~fm4npp.eval.metrics_tracking.event_counts`;
    for pid/noise ``n_points`` and ``n_correct`` (accuracy = Σ n_correct / Σ n_points)."""
    cols: dict[str, list[float]] = {}
    cfg = MatchConfig(min_track_hits=min_hits, min_particle_hits=min_hits)
    for i in range(len(data)):
        track_id, pid, noise = data.labels(i)
        if task == "tracking":
            row = event_counts(track_id, preds[i], cfg)
        else:
            truth = pid if task == "pid" else noise
            row = {"n_points": float(len(truth)), "n_correct": float((truth == preds[i]).sum())}
        for k, v in row.items():
            cols.setdefault(k, []).append(v)
    out = {k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}
    out["event_id"] = np.asarray(data.event_ids, dtype=np.int64)
    return out
