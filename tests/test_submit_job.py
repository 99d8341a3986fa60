"""The job callable and the scheduler parsing, in-process (no executor)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from doubles import standin_cell

from fm4npp.config import RunConfig
from fm4npp.errors import Interrupted
from fm4npp.store.record import CellState, RunRecord
from fm4npp.store.rundir import RunDir
from fm4npp.sweep import job as jobmod
from fm4npp.sweep.job import CellJob, _Signals
from fm4npp.sweep.scheduler import _parse, expand_job_id, parse_duration_s


def cfg() -> RunConfig:
    return RunConfig(
        study="s",
        cell_id="q1-qd1-s0-x",
        model="q1",
        dataset="qd1",
        n_events=250,
        seed=0,
        data_dir="data",
    )


def test_durations_and_array_ids() -> None:
    assert parse_duration_s("1-02:03:04") == 86400 + 2 * 3600 + 3 * 60 + 4
    assert parse_duration_s("05:30") == 330
    assert parse_duration_s("UNLIMITED") is None
    assert expand_job_id("12_[0-2,5%4]") == ["12_0", "12_1", "12_2", "12_5"]
    info = _parse("7_1|REQUEUED|00:00:03|None\n7_1|PENDING|00:00:00|BeginTime\n7.batch|x|y|z\n", True)
    assert info["7_1"].state == "PENDING"
    assert info["7_1"].restarts == 1
    assert _parse("8|CANCELLED by 0|00:01:00|None", True)["8"].state == "CANCELLED"


@pytest.mark.parametrize(
    ("since_start_s", "time_left_s", "stops"),
    [
        (1.0, 3600.0, False),  # right after a (re)start with an hour left: the SLURM 22.05 quirk
        (1.0, 50.0, True),  # early but the limit is near: a real signal
        (1.0, None, True),  # outside SLURM (local executor): always real
        (120.0, 3600.0, True),  # late: real (e.g. preemption)
    ],
)
def test_early_signal_tolerance(
    monkeypatch: pytest.MonkeyPatch, since_start_s: float, time_left_s: float | None, stops: bool
) -> None:
    monkeypatch.setattr(jobmod, "slurm_time_left_s", lambda: time_left_s)
    now = time.monotonic()
    sig = _Signals(started=now - since_start_s, signal_delay_s=30)
    assert not sig.should_stop()
    sig.flag_at = now
    assert sig.should_stop() is stops
    if not stops:
        assert sig.flag_at is None  # forgotten: a later real signal still counts


def test_job_runs_in_process_and_checkpoint_requeues_itself(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "c"
    job = CellJob(cfg=cfg(), run_dir=str(run), cell_fns=standin_cell(steps=4, step_s=0))
    record = job()
    assert isinstance(record, RunRecord)
    assert record.status == "done"
    assert record.evaluated is False
    assert record.training["steps"] == 4
    assert RunDir(run).read_record() == record
    assert RunDir(run).phase() is CellState.DONE
    assert job() == record  # finished: returns at once
    delayed = job.checkpoint()
    nxt = delayed.function
    assert isinstance(nxt, CellJob)
    assert nxt.attempt == 2
    assert nxt.pretrain_result == job.pretrain_result


def test_interrupted_outside_submitit_propagates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobmod._Signals, "should_stop", lambda self: True)
    job = CellJob(cfg=cfg(), run_dir=str(tmp_path / "c"), cell_fns=standin_cell(steps=4, step_s=0))
    with pytest.raises(Interrupted):
        job()
    assert RunDir(tmp_path / "c").last_checkpoint.is_file()
    assert RunDir(tmp_path / "c").read_record() is None
    assert RunDir(tmp_path / "c").phase() is CellState.PLANNED


def _steps(run_dir: Path) -> list[int]:
    import pyarrow.parquet as pq

    return [s for p in sorted(RunDir(run_dir).metrics.glob("part-*.parquet"))
            for s in pq.read_table(p).column("step").to_pylist()]  # fmt: skip


def test_standin_writes_like_the_trainer(tmp_path: Path) -> None:
    """The stand-in keeps the trainer's write rules that the safety tests rely on: checkpoint before
    its metrics part (a kill in between is repaired on resume), no restart over logged steps without a
    checkpoint, a claim of the run directory, and fencing before every write."""
    import json
    import os
    import socket

    from fm4npp.errors import TrainingError
    from fm4npp.store import claim

    pretrain = standin_cell(steps=4, step_s=0, checkpoint_every=2).pretrain
    run = tmp_path / "c"
    pretrain(cfg(), run)
    assert _steps(run) == [1, 2, 3, 4]
    assert not claim.lock_path(run).exists()  # claimed while training, released after
    last = max(RunDir(run).metrics.glob("part-*.parquet"))
    last.unlink()  # killed after the step-4 checkpoint, before its part
    pretrain(cfg(), run)
    assert _steps(run) == [1, 2, 3, 4]  # the part is restored from the checkpoint, nothing twice
    RunDir(run).last_checkpoint.unlink()
    with pytest.raises(TrainingError, match=r"last\.pt is missing"):
        pretrain(cfg(), run)
    assert _steps(run) == [1, 2, 3, 4]

    owner = {"token": "foreign", "job_id": "9999", "host": socket.gethostname(), "pid": os.getpid(),
             "started": time.time(), "heartbeat": time.time()}  # fmt: skip
    fresh = tmp_path / "d"
    fresh.mkdir()
    claim.lock_path(fresh).write_text(json.dumps(owner))
    with pytest.raises(claim.ClaimError, match="owned by job 9999"):
        pretrain(cfg(), fresh)
    assert not list(fresh.rglob("*.parquet"))

    taken = tmp_path / "e"
    polls = iter(range(100))

    def taken_over_at_step_3() -> bool:
        if next(polls) == 3:
            claim.lock_path(taken).write_text(json.dumps(owner))
        return False

    with pytest.raises(claim.ClaimLost):
        pretrain(cfg(), taken, should_stop=taken_over_at_step_3)
    assert _steps(taken) == [1, 2]  # the step-4 checkpoint and part were never written
    assert json.loads(RunDir(taken).last_checkpoint.read_text())["step"] == 2
