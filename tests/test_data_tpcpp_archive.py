"""TPCpp-10M end to end (issue 13): the archive's top folder converts file by file into a pretraining
and a labelled shard set; a study pretrains on the unlabelled part and evaluates its adapters on the
published labelled splits."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tpcpp_replica import LABELLED, UNLABELLED_FILES, write_replica

from fm4npp.cli.main import main
from fm4npp.config.schema import DataConfig, EvalConfig, RunConfig, TrainConfig
from fm4npp.data.prepare import labelled_source, prepare_dataset, prepare_labelled
from fm4npp.data.shards import ShardSet
from fm4npp.data.tpcpp_archive import convert_archive
from fm4npp.errors import DataError
from fm4npp.train import pretrain
from fm4npp.train.downstream import evaluate_cell, load_labelled


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("tpcpp") / "TPCpp-10M"
    return root, write_replica(root)


@pytest.fixture(scope="module")
def converted(archive: tuple[Path, dict[str, int]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("conv") / "tpcpp"
    report = convert_archive(archive[0], out)
    assert report.parts["pretrain"].dropped_max_hits == 1  # the 3,300-point event
    assert report.parts["pretrain"].files == len(UNLABELLED_FILES)
    assert report.parts["train"].files == len(LABELLED["train"])
    return out


def test_archive_converts_into_pretraining_and_labelled_sets(
    archive: tuple[Path, dict[str, int]], converted: Path
) -> None:
    _, counts = archive
    pre = ShardSet(converted / "pretrain")
    assert len(pre) == sum(UNLABELLED_FILES)
    assert int(pre.n_hits.sum()) == counts["unlabelled_hits"]
    assert pre.metadata["n_dropped_max_hits"] == 1
    assert pre.metadata["labels"] == []
    lab, splits = labelled_source(converted / "labelled")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (28, 8, 8)
    for name, ids in (("train", splits.train), ("validation", splits.val), ("test", splits.test)):
        n_hits = lab.n_hits[np.searchsorted(lab.event_ids, ids)]
        assert int(n_hits.sum()) == counts[f"{name}_hits"]
    ev = lab.read_events(splits.test[:1])[0]
    assert (ev.hits["track_id"] >= 0).all()
    assert ev.hits["noise"].any() or (ev.hits["track_id"] > 0).all()
    assert set(np.unique(ev.hits["pid"])) <= set(range(5))
    with pytest.raises(DataError, match="not a converted TPCpp-10M labelled set"):
        labelled_source(converted / "pretrain")


def test_cli_converts_the_top_folder_and_reports_dropped(
    archive: tuple[Path, dict[str, int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "convert-tpcpp", str(archive[0]), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "1 dropped (> max hits)" in out
    assert f"labelled_path: {tmp_path / 'o' / 'labelled'}" in out
    assert main(["data", "convert-tpcpp", str(archive[0]), "--out", str(tmp_path / "o")]) != 0
    assert "not empty" in capsys.readouterr().err


def test_labelled_events_must_not_occur_in_the_pretraining_data(tmp_path: Path) -> None:
    write_replica(tmp_path / "dup", duplicate=True)
    convert_archive(tmp_path / "dup", tmp_path / "out")
    data = DataConfig(source="tpcpp10m", val_events=4, test_events=4)
    prepare_dataset(tmp_path / "out" / "pretrain", data, max_train_events=10)
    with pytest.raises(DataError, match="1 labelled events also occur in the pretraining data"):
        prepare_labelled(tmp_path / "out" / "pretrain", tmp_path / "out" / "labelled", 8)
    with pytest.raises(DataError, match=r"eval\.labelled_events needs 100"):
        prepare_labelled(tmp_path / "out" / "pretrain", tmp_path / "out" / "labelled", 100)


def test_study_pretrains_on_unlabelled_and_evaluates_on_the_labelled_splits(
    converted: Path, tmp_path: Path
) -> None:
    data = DataConfig(source="tpcpp10m", path=str(converted / "pretrain"), val_events=6, test_events=4,
                      hits_per_event=200.0, labelled_path=str(converted / "labelled"))  # fmt: skip
    train = TrainConfig(epochs=1.0, batch_events=4, micro_batch_events=4, lr=3e-3, lr_min=3e-4,
                        k_neighbours=4, dropout=0.0, val_every_steps=3, checkpoint_every_steps=3,
                        log_every_steps=1, threads=1, loader_workers=0)  # fmt: skip
    ev = EvalConfig(labelled_events=(8, 28), seeds=(0,), epochs=2, batch_events=4, lr=1e-3, n_queries=16)
    cfg = RunConfig(study="t", cell_id="c", model="q1", dataset="qd1", n_events=12, seed=0,
                    data_dir=str(converted / "pretrain"), data=data, train=train, eval=ev)  # fmt: skip
    prepared = prepare_dataset(converted / "pretrain", data, max_train_events=12)
    prepare_labelled(converted / "pretrain", converted / "labelled", 28)
    summary = pretrain(cfg, tmp_path / "run", device="cpu")
    assert summary["status"] == "done"
    assert summary["steps"] == 3
    # pretraining read only unlabelled events; the adapters read the published labelled splits
    lab = load_labelled(cfg)
    _, splits = labelled_source(converted / "labelled")
    assert [e.event_id for e in lab.test[0]] == splits.test.tolist()
    assert set(lab.subsets[28].tolist()) == set(splits.train.tolist())
    capped = load_labelled(replace(cfg, eval=replace(ev, val_events=2)))  # eval.val_events: first N
    assert [e.event_id for e in capped.val[0]] == [e.event_id for e in lab.val[0]][:2]
    assert not set(prepared.splits.train.tolist()) & set(splits.train.tolist())  # id spaces differ
    evaluate_cell(cfg, tmp_path / "run")
    df = pd.read_parquet(tmp_path / "run" / "eval" / "downstream.parquet")
    assert set(df["task"]) == {"tracking", "pid", "noise", "probe"}  # the edge probe runs beside the adapters
    assert set(df["n_labelled"]) == {8, 28}
    n_points = df[(df["task"] == "noise") & (df["metric"] == "n_points")]["value"]
    test_hits = sum(e.n_hits for e in lab.test[0])
    assert (n_points == test_hits).all()
