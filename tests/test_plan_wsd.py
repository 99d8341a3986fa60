"""The planner with WSD cooldown branches: tiers in every cell, billed node-hours by hand, the saving."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fm4npp.cli.main import main
from fm4npp.sweep.cost import wsd_billed_events
from fm4npp.sweep.plan import make_plan
from fm4npp.sweep.spec import load_sweep

REPO = Path(__file__).resolve().parents[1]
WSD = "train: {schedule: wsd, batch_events: 4, micro_batch_events: 4, cooldown_fraction: 0.2}\n"


def _sweep(tmp_path: Path, extra: str = WSD) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(
        f"study: s\nmodels: [q1, q2]\ndatasets: [qd1, qd2, qd3]\nseeds: [0, 1]\n"
        f"results_dir: {tmp_path / 'results'}\n{extra}"
    )
    return p


def test_billed_events_by_hand() -> None:
    # tiers 400, 800, 1600 at batch 4: S = 100, 200, 400; cooldown 20 %: c = 80, 160, 320
    # branch i trains c_(i-1) → S_i: 100, 120, 240 steps = 400, 480, 960 events
    assert wsd_billed_events((400, 800, 1600), 1.0, 4, 0.2) == {400: 400, 800: 480, 1600: 960}
    # = (trunk to 320 + cooldowns 20 + 40 + 80) × 4 = 1840 events, against 2800 for cosine


def test_wsd_plan_costs_branches_and_keeps_each_cells_d_and_c(tmp_path: Path) -> None:
    wsd = make_plan(load_sweep(_sweep(tmp_path)))
    cosine = make_plan(load_sweep(_sweep(tmp_path, WSD.replace("wsd", "cosine"))))
    assert len(wsd.cells) == len(cosine.cells) == 12
    billed = {400: 400, 800: 480, 1600: 960}
    for w, c in zip(wsd.cells, cosine.cells, strict=True):
        assert w.run.train.wsd_tiers == (400, 800, 1600)
        assert c.run.train.wsd_tiers == ()
        # N, D and C are the cell's (what the law sees); node-hours are what its branch trains
        assert (w.cost.events_seen, w.cost.flops) == (c.cost.events_seen, c.cost.flops)
        assert w.cost.cosine_node_hours == pytest.approx(c.cost.node_hours)
        ratio = billed[w.run.n_events] / w.run.n_events
        assert w.cost.node_hours == pytest.approx(ratio * c.cost.node_hours)
        assert c.cost.cosine_node_hours is None
    assert wsd.cosine_node_hours == pytest.approx(cosine.total_node_hours)
    assert cosine.cosine_node_hours == cosine.total_node_hours
    q1 = [c for c in wsd.cells if c.model == "q1"]
    per_event = q1[0].cost.node_hours / 400  # cost is linear in events (one rung)
    assert sum(c.cost.node_hours for c in q1) == pytest.approx(2 * 1840 * per_event)  # 2 seeds
    assert "saves" in wsd.wsd_saving()
    assert f"({1 - 1840 / 2800:.0%})" in wsd.wsd_saving()  # 34 %, the same for every rung


def test_cli_prints_the_saving_and_json_totals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(REPO / "sweeps" / "fm4npp-paper.yaml")
    assert main(["plan", path, "--set", "train.schedule=wsd", "--no-catalog"]) == 0
    out = capsys.readouterr().out
    assert "WSD cooldown branches" in out
    assert "saves" in out
    assert main(["plan", path, "--set", "train.schedule=wsd", "--no-catalog", "--json"]) == 0
    totals = json.loads(capsys.readouterr().out)["totals"]
    assert totals["node_hours"] < 0.7 * totals["node_hours_cosine"]


def test_cli_bad_cooldown_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(_sweep(tmp_path))
    assert main(["plan", path, "--set", "train.cooldown_fraction=1.5"]) == 2
    err = capsys.readouterr().err
    assert "train.cooldown_fraction must be in (0, 1]" in err
    assert err.count("\n") == 1
    assert main(["plan", path, "--set", "train.schedule=linear"]) == 2
    assert "cosine" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
