"""Planner, cost model, budgets and idempotent re-planning into the catalog."""

from __future__ import annotations

import json
import math
from pathlib import Path

import duckdb
import pytest

from fm4npp.cli.main import main
from fm4npp.errors import BudgetError
from fm4npp.model import ladder
from fm4npp.sweep.clusters import QosConfig, load_cluster
from fm4npp.sweep.cost import cell_cost
from fm4npp.sweep.plan import fit_budget, make_plan
from fm4npp.sweep.spec import load_sweep

REPO = Path(__file__).resolve().parents[1]


def sweep(
    tmp_path: Path, extra: str = "", models: str = "[q1, q2, q3]", datasets: str = "[qd1, qd2, qd3]"
) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(
        f"study: s\nmodels: {models}\ndatasets: {datasets}\nresults_dir: {tmp_path / 'results'}\n{extra}"
    )
    return p


def test_cost_from_flops_by_hand() -> None:
    cluster = load_cluster("perlmutter")
    rung = ladder.get_rung("m3")
    qos = QosConfig(max_wall_min=60 * 48, charge_factor=1.0)
    c = cell_cost(rung, events_seen=1_000_000, hits_per_event=840, gpus=4, cluster=cluster, qos=qos)
    flops = ladder.flops_per_token(rung, 840) * 840e6
    assert c.flops == pytest.approx(flops)
    gpu_h = flops / (156e12 * 0.03) / 3600  # A100 TF32 peak × the profile MFU (measured, 3 %)
    assert c.gpu_hours == pytest.approx(gpu_h)
    assert c.wall_time_h == pytest.approx(gpu_h / 4)
    assert c.nodes == 1
    assert c.node_hours == pytest.approx(gpu_h / 4)
    assert c.fits_qos
    assert c.n_slots == 1


def test_calibrated_throughput_and_requeue_slots() -> None:
    cluster = load_cluster("perlmutter")
    from dataclasses import replace

    cluster = replace(cluster, throughput_events_per_s={"m6": 10.0})
    qos = QosConfig(max_wall_min=120, charge_factor=0.5)
    c = cell_cost(ladder.get_rung("m6"), 1_000_000, 840, 64, cluster, qos)
    wall_h = 1e6 / (10.0 * 64) / 3600  # 0.434 h
    assert c.cost_source == "calibrated"
    assert c.wall_time_h == pytest.approx(wall_h)
    assert c.nodes == 16
    assert c.node_hours == pytest.approx(16 * wall_h * 0.5)
    c2 = cell_cost(ladder.get_rung("m6"), 20_000_000, 840, 64, cluster, qos)
    usable = 2 - 180 / 3600
    assert c2.n_slots == math.ceil(c2.wall_time_h / usable) > 1
    assert not c2.fits_qos


def test_talk_grid_has_63_cells() -> None:
    plan = make_plan(load_sweep(REPO / "sweeps" / "fm4npp-talk-2025.yaml"))
    assert len(plan.cells) == 63
    assert len({c.cell_id for c in plan.cells}) == 63


def test_cell_ids_are_stable_and_content_addressed(tmp_path: Path) -> None:
    a = make_plan(load_sweep(sweep(tmp_path)))
    b = make_plan(load_sweep(sweep(tmp_path)))
    assert [c.cell_id for c in a.cells] == [c.cell_id for c in b.cells]
    c = make_plan(load_sweep(sweep(tmp_path, "train: {lr: 1.0e-3}\n")))
    assert not {x.cell_id for x in a.cells} & {x.cell_id for x in c.cells}


def test_fit_budget_drops_most_expensive_keeping_three_levels(tmp_path: Path) -> None:
    spec = load_sweep(sweep(tmp_path, models="[q1, q2, q3, q4]", datasets="[qd1, qd2, qd3, qd4]"))
    full = make_plan(spec)
    from dataclasses import replace

    from fm4npp.sweep.spec import BudgetConfig

    budget = full.total_node_hours * 0.5
    plan = replace(full, spec=replace(spec, budget=BudgetConfig(max_node_hours=budget)))
    fitted = fit_budget(plan)
    assert fitted.total_node_hours <= budget
    assert len({c.model for c in fitted.cells}) >= 3
    assert len({c.dataset for c in fitted.cells}) >= 3
    assert fitted.dropped
    # The most expensive cell (largest model, largest data) goes first.
    worst = max(full.cells, key=lambda c: c.cost.node_hours)
    assert worst.cell_id in {c.cell_id for c in fitted.dropped}
    impossible = replace(full, spec=replace(spec, budget=BudgetConfig(max_node_hours=1e-12)))
    with pytest.raises(BudgetError, match="no subset"):
        fit_budget(impossible)


def test_cli_refuses_over_budget_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = sweep(tmp_path, "budget: {max_node_hours: 1.0e-9}\n")
    assert main(["plan", str(path)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("fm4npp-sweep: error: plan needs")
    assert err.count("\n") == 1
    assert not (tmp_path / "results").exists()
    assert main(["plan", str(path), "--allow-over-budget", "--json"]) == 0


def test_cli_bad_sweep_exit_2_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = sweep(tmp_path, "trian: {}\n")
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'trian'" in err
    assert "Traceback" not in err
    assert not (tmp_path / "results").exists()


def test_replanning_is_idempotent_and_reports_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = sweep(tmp_path)
    assert main(["plan", str(path)]) == 0
    db = tmp_path / "results" / "s" / "catalog.duckdb"
    rows1 = (
        duckdb.connect(str(db), read_only=True)
        .execute("SELECT cell_id FROM cells ORDER BY 1")
        .fetchall()
    )
    capsys.readouterr()
    assert main(["plan", str(path)]) == 0
    assert "catalog unchanged (9 cells)" in capsys.readouterr().out
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT cell_id FROM cells ORDER BY 1").fetchall() == rows1
    con.close()
    path.write_text(path.read_text().replace("[q1, q2, q3]", "[q1, q2, q3, q4]"))
    assert main(["plan", str(path)]) == 0
    assert "3 added, 0 removed, 9 unchanged" in capsys.readouterr().out
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*), count(DISTINCT cell_id) FROM cells").fetchone() == (12, 12)


def test_cli_json_and_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(REPO / "sweeps" / "fm4npp-talk-2025.yaml"), "--json", "--no-catalog"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["cells"]) == 63
    assert {"n_params", "flops", "node_hours"} <= set(doc["cells"][0])
    out = tmp_path / "plan.csv"
    assert main(["plan", str(sweep(tmp_path)), "--csv", str(out), "--no-catalog"]) == 0
    assert out.read_text().count("\n") == 10


def test_input_pipeline_bounds_the_rate() -> None:
    """min(GPU rate, loader rate): a cell whose GPU outruns the loader is priced at the loader rate."""
    from dataclasses import replace

    qos = QosConfig(max_wall_min=60 * 48, charge_factor=1.0)
    cluster = replace(load_cluster("perlmutter"), throughput_events_per_s={"m1": 3745.0, "m3": 1484.0})
    fast = replace(cluster, input_events_per_s=2000.0)
    m1 = cell_cost(ladder.get_rung("m1"), 7_200_000, 840, 1, fast, qos)
    assert m1.bound == "input"
    assert m1.wall_time_h == pytest.approx(7.2e6 / 2000.0 / 3600)
    m3 = cell_cost(ladder.get_rung("m3"), 7_200_000, 840, 1, fast, qos)
    assert m3.bound == "gpu"
    assert m3.wall_time_h == pytest.approx(7.2e6 / 1484.0 / 3600)
    off = replace(fast, input_events_per_s=0.0)
    unbounded = cell_cost(ladder.get_rung("m1"), 7_200_000, 840, 1, off, qos)
    assert unbounded.bound == "gpu"
    assert unbounded.wall_time_h == pytest.approx(7.2e6 / 3745.0 / 3600)


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("all", {(m, d, s) for m in ("q1", "q2") for d in ("qd1", "qd2") for s in (0, 1)}),
        ("per_model", {("q1", "qd2", 0), ("q2", "qd2", 0)}),
        ("largest", {("q2", "qd2", 0)}),
    ],
)
def test_eval_scope_selects_the_evaluated_cells(tmp_path: Path, scope: str, expected: set) -> None:
    p = sweep(tmp_path, f"seeds: [0, 1]\neval:\n  scope: {scope}\n", "[q2, q1]", "[qd2, qd1]")
    plan = make_plan(load_sweep(p))
    got = {(c.model, c.dataset, c.run.seed) for c in plan.cells if c.run.eval.enabled}
    assert got == expected


def test_eval_val_events_must_not_be_negative(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = sweep(tmp_path, "eval:\n  val_events: -1\n")
    assert main(["plan", str(p)]) == 2
    assert "eval.val_events" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
