"""WSD: the schedule's shape, branch points, the nested data order, and trunk + branch runs on CPU.

Runs use the tiny rung q1 on 40 particle-gun events (tiers 12 ⊂ 18 ⊂ 30 of the 30 training events).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fm4npp.config.schema import DataConfig, RunConfig, TrainConfig
from fm4npp.data.generate import generate_dataset
from fm4npp.data.gun import GunConfig
from fm4npp.data.nested import (
    NestedStream,
    WsdSegment,
    branch_points,
    segment_indices,
    wsd_total_steps,
    wsd_warmup_steps,
)
from fm4npp.data.prepare import load_prepared, prepare_dataset
from fm4npp.errors import ConfigError
from fm4npp.train import Interrupted, pretrain
from fm4npp.train.optim import Schedule, lr_wsd
from fm4npp.train.wsd import pretrain_branch, pretrain_wsd_group, trunk_dir_for, wsd_points

N_EVENTS, N_VAL, N_TEST = 40, 6, 4
N_TRAIN = N_EVENTS - N_VAL - N_TEST
TIERS = (12, 18, 30)


# -- the schedule --------------------------------------------------------------------------------
def test_wsd_schedule_by_hand() -> None:
    peak, floor = 1.0, 0.1
    # warm-up 4 steps, stable to step 10, decay over 10 → 20
    lin = [lr_wsd(s, peak, floor, 4, 10, 20, "linear") for s in range(25)]
    assert lin[0] == pytest.approx(0.1)
    assert lin[2] == pytest.approx(0.55)
    assert lin[4:11] == pytest.approx([1.0] * 7)  # stable through the decay start
    assert lin[15] == pytest.approx(0.1 + 0.9 * 0.5)  # half-way down, linear
    assert lin[20:] == pytest.approx([0.1] * 5)  # floor at and after the end
    sq = [lr_wsd(s, peak, floor, 4, 10, 20, "1-sqrt") for s in range(25)]
    assert sq[14] == pytest.approx(0.1 + 0.9 * (1 - math.sqrt(0.4)))  # 0.530780...
    assert sq[19] == pytest.approx(0.1 + 0.9 * (1 - math.sqrt(0.9)))
    assert sq[20] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(sq[4:]))  # non-increasing after warm-up
    # a trunk never decays; the Schedule dispatches to cosine or WSD
    assert lr_wsd(10_000, peak, floor, 4, None, 20) == 1.0
    assert Schedule("wsd", 20, 4, 10, "linear").lr(15, peak, floor) == pytest.approx(0.55)
    assert Schedule("cosine", 20, 0).lr(10, peak, floor) == pytest.approx(0.55)


def test_branch_points_and_cost_by_hand() -> None:
    points = branch_points([40, 100, 200], epochs=1.0, batch_events=8, cooldown_fraction=0.2)
    # S = ceil(n / 8) = 5, 13, 25; cooldown = round(0.2 S) = 1, 3, 5 (at least 1)
    assert [(p.steps, p.cooldown_start) for p in points] == [(5, 4), (13, 10), (25, 20)]
    assert wsd_total_steps(points) == 20 + 1 + 3 + 5  # trunk to c_3 + every cooldown = 29
    assert sum(p.steps for p in points) == 43  # one cosine run per cell
    assert wsd_warmup_steps(points, 0.2) == 1  # of the smallest branch
    # epochs scale the horizon; a tiny branch still cools down ≥ 1 step
    assert branch_points([10], 1.5, 4, 0.01)[0] == replace(
        points[0], n_events=10, steps=4, cooldown_start=3
    )
    with pytest.raises(ConfigError, match="before the end of its"):
        wsd_warmup_steps(branch_points([40], 1.0, 8, 0.6), 0.6)


def test_config_validation_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=r"cooldown_fraction must be in \(0, 1\]"):
        TrainConfig(cooldown_fraction=0)
    with pytest.raises(ConfigError, match=r"warmup_fraction \+ train.cooldown_fraction"):
        TrainConfig(schedule="wsd", warmup_fraction=0.5, cooldown_fraction=0.6)
    with pytest.raises(ConfigError, match="wsd_tiers must be increasing"):
        TrainConfig(wsd_tiers=(10, 10))
    TrainConfig(warmup_fraction=0.5, cooldown_fraction=0.6)  # cosine ignores the cooldown


# -- the nested order ------------------------------------------------------------------------------
@pytest.mark.parametrize("epochs", [1.0, 1.5])
def test_branch_stream_reads_exactly_its_tier(data_dir: Path, epochs: float) -> None:
    prepared = load_prepared(data_dir, _data_cfg(), "fixed")
    tiers = [prepared.tier(n) for n in TIERS]
    trunk = NestedStream(segment_indices(tiers), epochs, seed=3).take(round(epochs * TIERS[-1]))
    for i, n in enumerate(TIERS):
        ids = tiers[i]
        branch = NestedStream(segment_indices(tiers[: i + 1]), epochs, seed=3)
        read = ids[branch.take(round(epochs * n))]
        counts = Counter(read.tolist())
        assert set(counts) == set(ids.tolist())  # exactly tier i's events …
        assert sorted(set(counts.values())) == ([1] if epochs == 1 else [1, 2])  # … epochs × n of them
        assert len(read) == round(epochs * n)
        # the trunk reads the same prefix (as event ids)
        np.testing.assert_array_equal(tiers[-1][trunk[: len(read)]], read)
        # past the tier, a branch wraps into its own tier, never into the next one
        assert set(ids[branch.take(2 * n)].tolist()) == set(ids.tolist())


# -- trunk + branch runs ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wsd") / "shards"
    generate_dataset(out, N_EVENTS, seed=5, gun=GunConfig(multiplicity=(3, 6)), progress=False)
    prepare_dataset(out, _data_cfg(), max_train_events=N_TRAIN)
    return out


def _data_cfg() -> DataConfig:
    return DataConfig(source="gun", val_events=N_VAL, test_events=N_TEST, hits_per_event=200.0)


def _cfg(data_dir: Path, n_events: int, **train: Any) -> RunConfig:
    base = TrainConfig(
        epochs=1.0, batch_events=3, micro_batch_events=3, lr=1e-2, lr_min=1e-3, warmup_fraction=0.25,
        k_neighbours=8, dropout=0.1, val_every_steps=2, checkpoint_every_steps=3, log_every_steps=1,
        threads=1, schedule="wsd", cooldown_fraction=0.25, wsd_tiers=TIERS,
    )  # fmt: skip
    return RunConfig(
        study="t", cell_id=f"b{n_events}", model="q1", dataset=f"t{n_events}", n_events=n_events,
        seed=1, data_dir=str(data_dir), data=_data_cfg(), train=replace(base, **train),
    )  # fmt: skip


def _metrics(run_dir: Path) -> pd.DataFrame:
    parts = sorted((run_dir / "metrics").glob("part-*.parquet"))
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


def _cells(data_dir: Path, study: Path) -> list[tuple[RunConfig, Path]]:
    return [(_cfg(data_dir, n), study / "runs" / f"b{n}") for n in TIERS]


@pytest.fixture(scope="module")
def group(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """One uninterrupted trunk + three branches, in tier order."""
    study = tmp_path_factory.mktemp("study")
    return study, pretrain_wsd_group(_cells(data_dir, study), device="cpu")


def test_branches_run_at_the_right_steps_and_read_their_tiers(
    data_dir: Path, group: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    study, summaries = group
    points, warmup = wsd_points(_cfg(data_dir, TIERS[0]))
    # S = 4, 6, 10 steps of 3 events; cooldown round(0.25 S) = 1, 2, 2 → c = 3, 4, 8; warm-up 1
    assert [(p.steps, p.cooldown_start) for p in points] == [(4, 3), (6, 4), (10, 8)]
    assert warmup == 1
    for (cfg, run_dir), s, p in zip(_cells(data_dir, study), summaries, points, strict=True):
        assert s["status"] == "done"
        assert s["steps"] == p.steps
        assert s["cooldown_start"] == p.cooldown_start
        assert s["events_seen"] == cfg.n_events  # one epoch, whole batches: no wrap
        # smoothed over the cooldown's validations only (here just the final one), not the trunk's
        assert s["smoothed_val_loss"] == s["final_val_loss"]
        m = _metrics(run_dir)
        assert m["step"].tolist() == list(range(1, p.steps + 1))  # the trunk's part + the branch's
        lr = dict(zip(m["step"], m["lr"], strict=True))  # lr logged = the LR the step used
        assert lr[p.cooldown_start + 1] == pytest.approx(1e-2)  # stable up to the branch point
        cooldown = [lr[s] for s in range(p.cooldown_start + 1, p.steps + 1)]
        assert all(a > b for a, b in itertools.pairwise(cooldown))  # then decaying
        assert m.loc[m["step"] <= p.cooldown_start, "val_loss"].notna().any()  # trunk validations
    trunk = trunk_dir_for(study / "runs" / "b12", _cfg(data_dir, 12))
    assert sorted(f.name for f in (trunk / "checkpoints").glob("branch-*.pt")) == [
        "branch-00000003.pt", "branch-00000004.pt", "branch-00000008.pt",
    ]  # fmt: skip
    assert _metrics(trunk)["step"].max() == 8  # the trunk ran to the last branch point only
    # oracle: an independent cosine cell on tier 18 reads the same events (its hits agree exactly)
    cosine = pretrain(_cfg(data_dir, 18, schedule="cosine"), tmp_path / "cos18", device="cpu")
    assert cosine["hits_seen"] == summaries[1]["hits_seen"]
    assert cosine["hits_seen"] != summaries[0]["hits_seen"]


def test_branch_from_trunk_equals_the_same_schedule_from_scratch(
    data_dir: Path, group: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """Branching from the trunk's checkpoint is exact: one run with the branch's schedule and
    nested stream, from step 0, gives the same curve bit for bit."""
    study, summaries = group
    cfg = _cfg(data_dir, 18)
    points, warmup = wsd_points(cfg)
    alone = WsdSegment(TIERS[:2], points[1].steps, warmup, points[1].cooldown_start, "1-sqrt")
    summary = pretrain(cfg, tmp_path / "alone", device="cpu", segment=alone)
    _same_curve(_metrics(study / "runs" / "b18"), _metrics(tmp_path / "alone"))
    assert summary["final_val_loss"] == summaries[1]["final_val_loss"]


class _Killed(Exception):
    """Stands in for SIGKILL: leaves the loop without a checkpoint."""


def test_trunk_and_branch_resume_exactly_after_kill_and_stop(
    data_dir: Path, group: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    ref_study, ref = group
    study = tmp_path / "study"
    cells = _cells(data_dir, study)
    polls = iter(range(1000))

    def kill_in_trunk() -> bool:  # polled at trunk steps 4, 5, 6, 7: killed before step 8
        if next(polls) == 3:
            raise _Killed
        return False

    pretrain_branch(*cells[0], device="cpu")
    pretrain_branch(*cells[1], device="cpu")
    with pytest.raises(_Killed):  # branch 30 first advances the trunk 4 → 8; killed, last ckpt at 6
        pretrain_branch(*cells[2], should_stop=kill_in_trunk, device="cpu")
    trunk = trunk_dir_for(cells[2][1], cells[2][0])
    assert _metrics(trunk)["step"].max() == 6
    assert not (cells[2][1] / "config.yaml").exists()
    stops = iter(range(1000))
    with pytest.raises(Interrupted):  # resumes the trunk 6 → 8 (2 polls), stops at branch step 9
        pretrain_branch(*cells[2], should_stop=lambda: next(stops) == 3, device="cpu")
    assert not (cells[2][1] / "summary.json").exists()
    last = pretrain_branch(*cells[2], device="cpu")
    for (_, run_dir), (_, ref_dir) in zip(cells, _cells(data_dir, ref_study), strict=True):
        _same_curve(_metrics(ref_dir), _metrics(run_dir))
    assert last["final_val_loss"] == ref[2]["final_val_loss"]
    assert last["hits_seen"] == ref[2]["hits_seen"]


def _same_curve(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert b["step"].is_unique, "a resumed run logged a step twice"
    a, b = a.sort_values("step", ignore_index=True), b.sort_values("step", ignore_index=True)
    for column in ("step", "events_seen", "hits_seen", "lr"):
        assert a[column].tolist() == b[column].tolist()
    np.testing.assert_array_equal(b["train_loss"], a["train_loss"])
    np.testing.assert_array_equal(b["val_loss"], a["val_loss"])


def test_cell_job_runs_a_wsd_branch_with_its_trunk(data_dir: Path, tmp_path: Path) -> None:
    """The job's "pretrain" cell function dispatches on train.schedule: a WSD cell is a branch."""
    from fm4npp.config.schema import EvalConfig
    from fm4npp.sweep.job import CellJob

    cfg = replace(_cfg(data_dir, 12), eval=EvalConfig(enabled=False))
    run_dir = tmp_path / "study" / "runs" / cfg.cell_id
    record = CellJob(cfg, str(run_dir))()  # the real cell functions
    assert record is not None
    assert record.status == "done"
    assert record.training["schedule"] == "wsd"
    assert record.training["cooldown_start"] == 3
    assert (
        tmp_path / "study" / "trunks" / record.training["trunk"] / "checkpoints" / "branch-00000003.pt"
    ).is_file()
