"""The pretraining loop end to end on CPU: loss falls, exact resume, no duplicated metrics, NaN → failed.

A tiny rung (q1: d = 16, 2 layers) on 40 particle-gun events; every run is a few seconds.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from fm4npp.config.schema import DataConfig, RunConfig, TrainConfig
from fm4npp.data.generate import generate_dataset
from fm4npp.data.gun import GunConfig
from fm4npp.data.prepare import load_prepared, prepare_dataset
from fm4npp.errors import DataError, TrainingError
from fm4npp.store.record import CellState
from fm4npp.store.rundir import RunDir
from fm4npp.train import Interrupted, pretrain

N_EVENTS, N_VAL, N_TEST = 40, 6, 4
N_TRAIN = N_EVENTS - N_VAL - N_TEST
STEPS = 12
# the module (``fm4npp.train.pretrain`` the attribute is the function)
pretrain_module = importlib.import_module("fm4npp.train.pretrain")


class _Killed(Exception):
    """Stands in for SIGKILL: leaves the loop without a checkpoint."""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train") / "shards"
    gun = GunConfig(multiplicity=(3, 6))
    generate_dataset(out, N_EVENTS, seed=5, gun=gun, progress=False)
    prepare_dataset(out, _data_cfg(), max_train_events=N_TRAIN)
    return out


def _data_cfg() -> DataConfig:
    return DataConfig(source="gun", val_events=N_VAL, test_events=N_TEST, hits_per_event=200.0)


def _cfg(data_dir: Path, **train: Any) -> RunConfig:
    base = TrainConfig(
        epochs=STEPS * 6 / N_TRAIN,  # 12 steps of 6 events
        batch_events=6,
        micro_batch_events=3,  # 2 accumulation steps
        lr=1e-2,
        lr_min=1e-3,
        warmup_fraction=0.1,
        k_neighbours=8,
        dropout=0.1,  # dropout on: the resume test must restore the torch RNG
        val_every_steps=4,
        checkpoint_every_steps=5,
        log_every_steps=1,
        threads=1,
        loader_workers=0,  # serialize in the training process (the reference); workers: own test
    )
    return RunConfig(
        study="t", cell_id="cell0", model="q1", dataset="qd1", n_events=N_TRAIN, seed=1,
        data_dir=str(data_dir), data=_data_cfg(), train=replace(base, **train),
    )  # fmt: skip


def _metrics(run_dir: Path) -> pd.DataFrame:
    parts = sorted((run_dir / "metrics").glob("part-*.parquet"))
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


@pytest.fixture(scope="module")
def reference(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One uninterrupted run."""
    run_dir = tmp_path_factory.mktemp("ref") / "cell0"
    return run_dir, pretrain(_cfg(data_dir), run_dir, device="cpu")


def test_pretrain_loss_falls_and_writes_the_run_directory(
    reference: tuple[Path, dict[str, Any]],
) -> None:
    run_dir, summary = reference
    m = _metrics(run_dir)
    assert m["step"].tolist() == list(range(1, STEPS + 1))  # log_every_steps = 1
    assert m["train_loss"].iloc[-3:].mean() < 0.7 * m["train_loss"].iloc[:2].mean()
    val = m["val_loss"].dropna()
    assert m.loc[val.index, "step"].tolist() == [4, 8, 12]  # every 4 steps; the end coincides
    assert val.iloc[-1] < val.iloc[0]
    assert summary["status"] == "done"
    assert summary["steps"] == STEPS
    assert summary["events_seen"] == STEPS * 6
    assert summary["final_val_loss"] == pytest.approx(val.iloc[-1])
    assert summary["best_val_loss"] == pytest.approx(val.min())
    assert summary["smoothed_val_loss"] == pytest.approx(val.iloc[-3:].mean())
    assert summary["hits_seen"] == m["hits_seen"].iloc[-1] > 0
    assert summary["flops"] >= summary["flops_useful"] > 0  # padding is computed too
    assert summary["world_size"] == 1
    assert summary["device"] == "cpu"
    for key in ("cell_id", "n_params", "n_params_total", "wall_time_s", "backend", "seed", "git_commit"):
        assert key in summary
    assert json.loads((run_dir / "pretrain.json").read_text())["status"] == "done"
    assert not (run_dir / "summary.json").exists()  # the job writes the final record, after evaluation
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    assert (run_dir / "config.yaml").is_file()
    # three checkpoints (steps 5, 10, 12) → three immutable metrics parts
    assert len(list((run_dir / "metrics").glob("part-*.parquet"))) == 3
    # a finished cell is not trained again
    assert (
        pretrain(_cfg(Path(summary_data_dir(run_dir))), run_dir)["wall_time_s"] == summary["wall_time_s"]
    )


def summary_data_dir(run_dir: Path) -> str:
    from fm4npp.store.rundir import RunDir

    return RunDir(run_dir).read_config().data_dir


def _assert_same_curve(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert b["step"].is_unique, "a resumed run logged a step twice"
    a, b = a.sort_values("step", ignore_index=True), b.sort_values("step", ignore_index=True)
    for column in ("step", "events_seen", "hits_seen", "lr"):
        assert a[column].tolist() == b[column].tolist()
    # bitwise: same threads, same op order, dropout seeded per step (CPU)
    np.testing.assert_array_equal(b["train_loss"], a["train_loss"])
    np.testing.assert_array_equal(b["val_loss"], a["val_loss"])


def test_interrupted_and_resumed_run_matches_the_uninterrupted_one(
    data_dir: Path, reference: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    ref_dir, ref_summary = reference
    polls = iter(range(100))
    run_dir = tmp_path / "cell0"
    with pytest.raises(Interrupted) as stopped:  # stop between checkpoints (5 and 10)
        pretrain(_cfg(data_dir), run_dir, should_stop=lambda: next(polls) == 7, device="cpu")
    assert stopped.value.step == 7
    assert not (run_dir / "pretrain.json").exists()
    assert _metrics(run_dir)["step"].tolist() == list(range(1, 8))  # flushed with the stop checkpoint
    summary = pretrain(_cfg(data_dir), run_dir, device="cpu")
    _assert_same_curve(_metrics(ref_dir), _metrics(run_dir))
    assert summary["final_val_loss"] == ref_summary["final_val_loss"]
    assert summary["hits_seen"] == ref_summary["hits_seen"]


def test_loader_workers_give_the_same_run_and_resume_exactly(
    data_dir: Path, reference: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """Two serializing worker processes, stopped between checkpoints and resumed: the same curve as
    the in-process reference (batches are a pure function of the sampler position), and the metrics
    record the fraction of each step spent waiting for input."""
    ref_dir, ref_summary = reference
    cfg = _cfg(data_dir, loader_workers=2)
    polls = iter(range(100))
    run_dir = tmp_path / "cell0"
    with pytest.raises(Interrupted):
        pretrain(cfg, run_dir, should_stop=lambda: next(polls) == 7, device="cpu")
    summary = pretrain(cfg, run_dir, device="cpu")
    m = _metrics(run_dir)
    _assert_same_curve(_metrics(ref_dir), m)
    assert summary["final_val_loss"] == ref_summary["final_val_loss"]
    wait = m[pretrain_module.DATA_WAIT_COLUMN]
    assert len(wait) == STEPS
    assert ((wait >= 0) & (wait <= 1)).all()


def test_killed_run_resumes_from_last_checkpoint_without_duplicate_steps(
    data_dir: Path, reference: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    ref_dir, _ = reference
    run_dir = tmp_path / "cell0"
    polls = iter(range(100))

    def kill_at_step_8() -> bool:
        if next(polls) == 8:
            raise _Killed
        return False

    with pytest.raises(_Killed):
        pretrain(_cfg(data_dir), run_dir, should_stop=kill_at_step_8, device="cpu")
    assert _metrics(run_dir)["step"].max() == 5  # steps 6–8 were lost with the process
    pretrain(_cfg(data_dir), run_dir, device="cpu")  # redoes 6–8 from the step-5 checkpoint
    _assert_same_curve(_metrics(ref_dir), _metrics(run_dir))


def test_non_finite_loss_writes_a_failed_summary(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real = pretrain_module.masked_error_sum

    def poisoned(pred: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, wrap: bool) -> torch.Tensor:
        calls["n"] += 1  # 2 micro-batches per step: the 5th call is in step 3
        assert wrap  # fixed mode: the φ error is wrapped (fm4npp.train.objective)
        return real(pred, targets, mask, wrap) * (float("nan") if calls["n"] == 5 else 1.0)

    monkeypatch.setattr(pretrain_module, "masked_error_sum", poisoned)
    run_dir = tmp_path / "cell0"
    with pytest.raises(TrainingError, match="non-finite loss at step 3"):
        pretrain(_cfg(data_dir), run_dir, device="cpu")
    summary = json.loads((run_dir / "pretrain.json").read_text())  # the trainer's failure record
    assert summary["status"] == "failed"
    assert "step 3" in summary["reason"]
    assert RunDir(run_dir).phase() is CellState.FAILED
    with pytest.raises(TrainingError, match="failed"):  # not retried silently
        pretrain(_cfg(data_dir), run_dir, device="cpu")


def test_prepared_splits_are_fixed_and_checked(data_dir: Path, tmp_path: Path) -> None:
    prepared = load_prepared(data_dir, _data_cfg())
    s = prepared.splits
    assert (len(s.train), len(s.val), len(s.test)) == (N_TRAIN, N_VAL, N_TEST)
    assert not set(s.train) & set(s.val)
    assert not set(s.val) & set(s.test)
    assert set(prepared.tier(10)) <= set(prepared.tier(20))  # nested tiers
    again = prepare_dataset(data_dir, _data_cfg(), max_train_events=N_TRAIN)  # verify, not rewrite
    assert again.edges_sha256 == prepared.edges_sha256
    with pytest.raises(DataError, match="split_seed"):
        prepare_dataset(data_dir, replace(_data_cfg(), split_seed=1), max_train_events=N_TRAIN)
    with pytest.raises(DataError, match="training split has"):
        prepare_dataset(data_dir, _data_cfg(), max_train_events=N_TRAIN + 1)
    with pytest.raises(DataError, match=r"splits\.json: missing"):
        load_prepared(tmp_path)


def test_cli_train_runs_a_cell_from_its_study_directory(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fm4npp.cli.main import main
    from fm4npp.store.rundir import RunDir

    run_dir = tmp_path / "study" / "runs" / "cell0"
    run_dir.mkdir(parents=True)
    RunDir(run_dir).write_config(_cfg(data_dir))  # what `submit` writes
    argv = ["train", str(tmp_path / "study"), "--cell", "cell0", "--max-steps", "2", "--device", "cpu"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip().endswith(str(run_dir / "summary.json"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 2
    assert summary["truncated"] is True
    assert (summary["status"], summary["evaluated"]) == ("done", False)  # the final run record
    assert RunDir(run_dir).read_record() is not None
    assert main(["train", str(tmp_path / "study")]) == 2  # ConfigError: --cell missing
    # the deprecated spelling still works for one release, with a note on stderr
    assert main(["train", "--study", str(tmp_path / "study")]) == 2
    assert "--study is deprecated" in capsys.readouterr().err


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow  # two processes: ≈ 10 s on 2 shared cores
def test_two_rank_ddp_matches_a_single_process(data_dir: Path, tmp_path: Path) -> None:
    """gloo on CPU: 2 ranks × 1 micro-batch of 3 events = 1 rank × 2 micro-batches (dropout off)."""
    import os
    import subprocess
    import sys

    from fm4npp.store.rundir import RunDir

    cfg = _cfg(data_dir, dropout=0.0, checkpoint_every_steps=3)
    single = tmp_path / "single"
    pretrain(cfg, single, max_steps=4, device="cpu")
    ddp = tmp_path / "ddp"
    RunDir(ddp).ensure()
    RunDir(ddp).write_config(cfg)
    code = (
        "import sys; from pathlib import Path; from fm4npp.train.pretrain import pretrain, read_run_config;"
        "p = Path(sys.argv[1]); pretrain(read_run_config(p / 'config.yaml'), p, max_steps=4)"
    )
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": "2"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(ddp)],
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r), "CUDA_VISIBLE_DEVICES": ""},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    summary = json.loads((ddp / "pretrain.json").read_text())  # written by rank 0 only
    assert summary["world_size"] == 2
    a, b = _metrics(single), _metrics(ddp)
    assert b["step"].tolist() == a["step"].tolist() == [1, 2, 3, 4]
    assert b["hits_seen"].tolist() == a["hits_seen"].tolist()  # same events, split over ranks
    np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(b["val_loss"], a["val_loss"], rtol=1e-5)


@pytest.mark.gpu
def test_cuda_bf16_run_and_slow_fallback_guard(data_dir: Path, tmp_path: Path) -> None:
    from fm4npp.model.backbone import FM4NPPModel
    from fm4npp.model.ladder import get_rung

    if FM4NPPModel(get_rung("q1")).cuda().backend == "torch":  # no mamba_ssm kernels here
        with pytest.raises(TrainingError, match="allow_slow_fallback"):
            pretrain(_cfg(data_dir), tmp_path / "guard")
    summary = pretrain(_cfg(data_dir, precision="bf16", allow_slow_fallback=True), tmp_path / "gpu")
    assert summary["device"].startswith("cuda")
    assert summary["precision"] == "bf16"
    m = _metrics(tmp_path / "gpu")
    assert m["train_loss"].iloc[-3:].mean() < 0.7 * m["train_loss"].iloc[:2].mean()
