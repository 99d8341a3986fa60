"""Issue 14, done when: a reduced copy of ``sweeps/fm4npp-talk-2025.yaml`` (the talk's transformer
ladder) trains end to end locally. Real training through ``submit --cluster local`` (submitit's local
executor, the real cell functions), not the stand-in: the tiny transformer rung tq1 in place of t1–t9,
one test tier of generated events, a few optimiser steps, no downstream evaluation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from fm4npp.cli.main import main
from fm4npp.model.backbone import FM4NPPModel
from fm4npp.model.ladder import get_rung, n_params
from fm4npp.store import catalog

REPO = Path(__file__).resolve().parents[1]
TALK = REPO / "sweeps" / "fm4npp-talk-2025.yaml"


def reduced_talk_sweep(tmp_path: Path) -> Path:
    """The talk's sweep file with what cannot run on a CPU in a test replaced, everything else kept."""
    doc = yaml.safe_load(TALK.read_text())
    assert {get_rung(m).arch for m in doc["models"]} == {"transformer"}  # the talk's family
    doc.pop("qos")  # Perlmutter's; the local profile has none
    doc.pop("gpus")  # per-rung GPU counts of t1–t9
    doc.update(models=["tq1"], datasets=["td1"], seeds=[0], cluster="local",
               results_dir=str(tmp_path / "results"))  # fmt: skip
    # TPCpp-10M lives on Perlmutter's scratch: particle-gun events of the same format instead
    doc["data"] = {"source": "gun", "val_events": 16, "test_events": 16, "hits_per_event": 200.0}
    doc["train"] |= {"batch_events": 8, "micro_batch_events": 4, "k_neighbours": 8, "threads": 1,
                     "val_every_steps": 3, "checkpoint_every_steps": 3, "log_every_steps": 1}  # fmt: skip
    doc["eval"] = {"enabled": False}
    path = tmp_path / "talk-reduced.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.slow
def test_reduced_talk_sweep_trains_a_transformer_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = reduced_talk_sweep(tmp_path)
    assert main(["submit", str(sweep), "--cluster", "local", "--max-parallel", "1"]) == 0
    assert "finished: 1 done, 0 failed" in capsys.readouterr().out
    study = tmp_path / "results" / "fm4npp-talk-2025"
    cells = catalog.finished_cells(study)
    assert cells["status"].tolist() == ["done"]
    assert cells["arch"].tolist() == ["transformer"]
    (cell_id,) = cells["cell_id"]
    rd = catalog.run_dir(study, cell_id)
    record = rd.read_record()
    assert record is not None
    assert record.status == "done"
    loss = record.metric("final_val_loss")
    assert loss is not None
    assert math.isfinite(loss)
    assert loss > 0
    assert record.training["steps"] == 6  # 48 events / 8 per step, one epoch
    assert record.training["backend"] == "sdpa"  # attention, not a Mamba mixer
    assert record.training["n_params"] == n_params(get_rung("tq1"))
    curves = catalog.loss_curves(study)
    assert curves["train_loss"].map(math.isfinite).all()
    # the checkpoint holds a transformer backbone: attention weights, loadable strictly into tq1
    state = torch.load(rd.last_checkpoint, map_location="cpu", weights_only=False)["model"]
    assert any(".attn.qkv." in key for key in state)
    FM4NPPModel(get_rung("tq1"), k=8).load_state_dict(state, strict=True)
