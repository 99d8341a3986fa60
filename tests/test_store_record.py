"""The run-record contract: RunRecord round trip and validation, RunDir.phase for every artefact state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fm4npp.config import RunConfig
from fm4npp.errors import StoreError
from fm4npp.store.record import SCHEMA_VERSION, CellState, RunRecord
from fm4npp.store.rundir import RunDir


def cfg() -> RunConfig:
    return RunConfig(
        study="s",
        cell_id="q1-qd1-s0-x",
        model="q1",
        dataset="qd1",
        n_events=250,
        seed=3,
        data_dir="data",
    )


def test_final_record_merges_trainer_and_round_trips(tmp_path: Path) -> None:
    trainer = {"final_val_loss": 1.5, "hits_seen": 10, "wall_time_s": 7.0, "git_commit": "abc"}
    rec = RunRecord.final(
        cfg(), trainer, "done", None, wall_time_s=9.0, attempt=2, job_id="j", evaluation={"ari": 0.5}
    )
    assert rec.wall_time_s == 7.0  # the trainer's wall time wins over the job's
    assert rec.evaluated is True
    assert rec.metric("final_val_loss") == 1.5
    assert rec.metric("git_commit") is None
    doc = rec.to_json()
    assert doc["schema_version"] == SCHEMA_VERSION
    assert (doc["seed"], doc["hits_seen"], doc["eval"]) == (3, 10, {"ari": 0.5})
    rd = RunDir(tmp_path / "run")
    rd.ensure()
    rd.write_record(rec)
    assert rd.read_record() == rec
    assert rd.phase() is CellState.DONE


def test_legacy_record_without_version_reads() -> None:
    rec = RunRecord.from_json({"cell_id": "c", "status": "done", "final_val_loss": 2.0})
    assert rec.schema_version == 0
    assert rec.evaluated is None
    assert rec.metric("final_val_loss") == 2.0


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"cell_id": "c", "status": "finished"}, "key 'status' is 'finished'; allowed: done, failed"),
        ({"status": "done"}, "key 'cell_id' missing"),
        ({"cell_id": "c", "status": "done", "seed": "0"}, "key 'seed' must be an integer"),
        ({"cell_id": "c", "status": "done", "evaluated": 1}, "key 'evaluated' must be true or false"),
        ({"cell_id": "c", "status": "done", "schema_version": 99}, "reads up to"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_invalid_records_name_file_and_key(doc: object, needle: str) -> None:
    with pytest.raises(StoreError, match=r"summary\.json") as err:
        RunRecord.from_json(doc, "runs/c/summary.json")
    assert needle in str(err.value)


def test_phase_of_every_artefact_state(tmp_path: Path) -> None:
    rd = RunDir(tmp_path / "run")
    rd.ensure()
    assert rd.phase() is CellState.PLANNED
    rd.write_pretrain({"cell_id": "c", "status": "done"})
    assert rd.phase() is CellState.EVALUATING  # pretrained, final record still to come
    rd.write_pretrain({"cell_id": "c", "status": "failed", "reason": "nan"})
    assert rd.phase() is CellState.FAILED  # the trainer's own failure record
    rd.write_record(RunRecord.final(cfg(), None, "failed", "boom", wall_time_s=1.0))
    assert rd.phase() is CellState.FAILED
    rd.set_failure_aside()  # a retry starts afresh: both failure records moved to logs/
    assert rd.phase() is CellState.PLANNED
    assert sorted(p.name.split("-")[0] for p in rd.logs.glob("*.json")) == ["pretrain", "summary"]
    rd.summary_file.write_text("{not json")
    assert rd.phase() is CellState.CORRUPT
    rd.summary_file.write_text(json.dumps({"cell_id": "c", "status": "weird"}))
    assert rd.phase() is CellState.CORRUPT


def test_retry_keeps_a_finished_pretraining(tmp_path: Path) -> None:
    rd = RunDir(tmp_path / "run")
    rd.ensure()
    rd.write_pretrain({"cell_id": "c", "status": "done"})
    rd.write_record(RunRecord.final(cfg(), None, "failed", "evaluation crashed", wall_time_s=1.0))
    rd.set_failure_aside()
    assert rd.phase() is CellState.EVALUATING  # the retry only re-runs the evaluation
