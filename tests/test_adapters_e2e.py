"""Downstream evaluation end to end on CPU: a q1 backbone pretrained for a few steps on 40 gun events,
tracking / PID / noise adapters trained for a few epochs, metrics in ``eval/downstream.parquet``; and the
study baselines (adapter-only, random embedding, Hough) in ``baselines/eval``."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fm4npp.config.schema import DataConfig, EvalConfig, RunConfig, TrainConfig
from fm4npp.data.generate import generate_dataset
from fm4npp.data.gun import GunConfig
from fm4npp.data.prepare import prepare_dataset
from fm4npp.errors import StoreError
from fm4npp.store.rundir import EVAL_COLUMNS
from fm4npp.train import pretrain
from fm4npp.train.downstream import evaluate_baselines, evaluate_cell

N_EVENTS, N_VAL, N_TEST = 40, 6, 6
N_TRAIN = N_EVENTS - N_VAL - N_TEST


def _cfg(data_dir: Path) -> RunConfig:
    data = DataConfig(source="gun", val_events=N_VAL, test_events=N_TEST, hits_per_event=200.0)
    train = TrainConfig(epochs=1.0, batch_events=4, micro_batch_events=4, lr=3e-3, lr_min=3e-4,
                        k_neighbours=4, dropout=0.0, val_every_steps=4, checkpoint_every_steps=4,
                        log_every_steps=2, threads=1)  # fmt: skip
    ev = EvalConfig(labelled_events=(8, 16), seeds=(0, 1), epochs=2, batch_events=4, lr=1e-3,
                    n_queries=16, baselines=("adapter_only", "random_embedding", "hough"))  # fmt: skip
    return RunConfig(study="t", cell_id="cellq1", model="q1", dataset="qd1", n_events=N_TRAIN, seed=0,
                     data_dir=str(data_dir), data=data, train=train, eval=ev)  # fmt: skip


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunConfig]:
    root = tmp_path_factory.mktemp("study")
    data_dir = root / "data"
    generate_dataset(data_dir, N_EVENTS, seed=3, gun=GunConfig(multiplicity=(3, 6)), progress=False)
    cfg = _cfg(data_dir)
    prepare_dataset(data_dir, cfg.data, max_train_events=N_TRAIN)
    pretrain(cfg, root / "runs" / cfg.cell_id)
    return root, cfg


def test_evaluate_cell_writes_every_task(study: tuple[Path, RunConfig]) -> None:
    root, cfg = study
    run_dir = root / "runs" / cfg.cell_id
    summary = evaluate_cell(cfg, run_dir)
    df = pd.read_parquet(run_dir / "eval" / "downstream.parquet")
    assert tuple(df.columns) == EVAL_COLUMNS
    assert set(df["variant"]) == {"fm"}
    assert set(df["cell_id"]) == {"cellq1"}
    assert set(df["task"]) == {"tracking", "pid", "noise", "probe"}  # eval.probe is on by default
    assert set(df["seed"]) == {0, 1}
    assert set(df["n_labelled"]) == {8, 16}
    # one fit per task × size × seed, each with its headline metrics
    for task, metric in (("tracking", "ari"), ("tracking", "efficiency"), ("pid", "accuracy"),
                         ("noise", "recall")):  # fmt: skip
        sel = df[(df["task"] == task) & (df["metric"] == metric)]
        assert len(sel) == 4, (task, metric)
    acc = df[(df["task"] == "pid") & (df["metric"] == "accuracy")]["value"]
    assert ((acc >= 0) & (acc <= 1)).all()
    # the majority-class floor beside each point-head fit, by hand from the labels
    floor = df[df["metric"] == "majority_accuracy"]
    assert set(floor["task"]) == {"pid", "noise"}
    assert len(floor) == 8
    assert ((floor["value"] > 0) & (floor["value"] <= 1)).all()
    ari = df[(df["task"] == "tracking") & (df["metric"] == "ari")]["value"]
    assert np.isfinite(ari).all()
    assert (ari <= 1).all()
    # selection on validation: the chosen epoch is one that ran; steps recorded; threshold in [0, 1)
    best = df[df["metric"] == "best_epoch"]["value"]
    assert ((best >= 1) & (best <= cfg.eval.epochs)).all()
    assert (df[df["metric"] == "steps"]["value"] > 0).all()
    thr = df[(df["task"] == "tracking") & (df["metric"] == "threshold")]["value"]
    assert len(thr) == 4
    assert ((thr >= 0) & (thr < 1)).all()
    # per-event scores (for bootstraps) and training curves beside the metrics
    events = pd.read_parquet(run_dir / "eval" / "events" / "downstream.parquet")
    assert set(events["task"]) == {"tracking", "pid", "noise"}
    assert events["event_id"].nunique() == N_TEST
    curves = pd.read_parquet(run_dir / "eval" / "curves" / "downstream.parquet")
    assert len(curves) == int(df[df["metric"] == "epochs_run"]["value"].sum())
    assert summary["eval_rows"] == len(df)
    assert 0 <= summary["pid.accuracy"] <= 1
    # the test split has gun events: the point heads saw every valid test hit
    n_points = df[(df["task"] == "noise") & (df["metric"] == "n_points")]["value"]
    assert n_points.nunique() == 1
    assert n_points.iloc[0] > 0
    # overwrite=False keeps the table
    again = evaluate_cell(cfg, run_dir, overwrite=False)
    assert again["eval_rows"] == len(df)


def test_evaluate_cell_without_checkpoint_is_a_store_error(
    study: tuple[Path, RunConfig], tmp_path: Path
) -> None:
    _, cfg = study
    with pytest.raises(StoreError, match=r"no best\.pt or last\.pt"):
        evaluate_cell(cfg, tmp_path / "runs" / "nothing")


def test_evaluate_baselines(study: tuple[Path, RunConfig]) -> None:
    root, cfg = study
    cfg = replace(
        cfg, eval=replace(cfg.eval, tasks=("tracking", "noise"), labelled_events=(16,), seeds=(0,))
    )
    evaluate_baselines(root, cfg, ["q1"])
    out = root / "baselines" / "eval"
    assert sorted(p.name for p in out.glob("*.parquet")) == [
        "adapter_only-q1.parquet",
        "hough.parquet",
        "random_embedding.parquet",
    ]
    hough = pd.read_parquet(out / "hough.parquet")
    assert tuple(hough.columns) == EVAL_COLUMNS
    ms = hough[hough["metric"] == "ms_per_event"]["value"]
    assert len(ms) == 1
    assert ms.iloc[0] > 0
    eff = hough[hough["metric"] == "efficiency"]["value"].iloc[0]
    assert eff > 0.5  # clean gun events from the beam line: the classical finder works
    # Hough's per-event scores (label-free: n_labelled 0) pool back to its efficiency, for paired tests
    ev = pd.read_parquet(out / "events" / "hough.parquet")
    assert set(ev["n_labelled"]) == {0}
    assert ev["event_id"].nunique() == N_TEST
    wide = ev.pivot_table(index="event_id", columns="metric", values="value")
    assert np.isclose(wide["n_found"].sum() / wide["n_particles"].sum(), eff)
    ao = pd.read_parquet(out / "adapter_only-q1.parquet")
    assert set(ao["variant"]) == {"adapter_only"}
    assert set(ao["cell_id"]) == {"baseline-adapter_only-q1"}
    assert set(ao["task"]) == {"tracking", "noise", "probe"}
    re = pd.read_parquet(out / "random_embedding.parquet")
    assert set(re["variant"]) == {"random_embedding"}


def test_steps_budget_gives_every_labelled_size_the_same_steps(
    study: tuple[Path, RunConfig], tmp_path: Path
) -> None:
    """eval.budget: steps — 8 labelled events train 2× the epochs of 16 (patience never triggers here),
    so both fits run the same number of optimiser steps; the default (epochs) halves them."""
    root, cfg = study
    steps = {}
    for budget in ("steps", "epochs"):
        ev = replace(cfg.eval, tasks=("noise",), seeds=(0,), probe=False, budget=budget)
        run_dir = tmp_path / budget
        shutil.copytree(root / "runs" / cfg.cell_id, run_dir)
        evaluate_cell(replace(cfg, eval=ev), run_dir)
        df = pd.read_parquet(run_dir / "eval" / "downstream.parquet")
        sel = df[df["metric"] == "steps"].set_index("n_labelled")["value"]
        steps[budget] = (sel[8], sel[16])
    assert steps["steps"][0] == steps["steps"][1] > 0
    assert steps["epochs"][0] * 2 == steps["epochs"][1]


def test_cli_evaluate_cell_and_errors(
    study: tuple[Path, RunConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    from fm4npp.cli.main import main

    root, cfg = study
    assert main(["evaluate", str(root), "--cell", cfg.cell_id]) == 0
    out = capsys.readouterr().out
    assert "tracking.ari" in out
    assert "eval_rows" in out
    assert main(["evaluate", str(root), "--cell", "nope"]) == StoreError.exit_code
    assert "no such run directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --cell and --baselines are exclusive
        main(["evaluate", str(root), "--cell", "x", "--baselines"])
