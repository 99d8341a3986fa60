"""Issue 14: one scaling law per model family (``fit-laws --by arch``), saved per family in the catalog,
and the report's overlay of the families' laws; simulate-then-recover on two known laws."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml
from doubles import standin_cell

from analysis.report import build_report
from analysis.simulate import DATA_LADDER, LADDER_N, SURFACES, Design, simulate
from analysis.summary import summarise_groups
from fm4npp.cli.main import main
from fm4npp.errors import FitError
from fm4npp.store import catalog
from fm4npp.sweep.job import CellJob
from fm4npp.sweep.plan import plan_file, record_plan
from fm4npp.sweep.status import study_status

# Two families with different exponents: a test that fitted one pooled law could not pass.
TRUTH = {
    "mamba2": SURFACES["fm4npp"],  # α = 0.35
    "transformer": {"E": 0.12, "A": 6.0, "B": 4.0, "alpha": 0.22, "beta": 0.25},
}


def two_family_cells(sigma: float = 0.005, seeds: int = 2) -> pd.DataFrame:
    """Finished cells shaped like ``catalog.finished_cells``: 5 sizes × 3 D levels per family."""
    frames = []
    for i, (arch, law) in enumerate(TRUTH.items()):
        d = simulate(law, Design(N=LADDER_N[:5], D=DATA_LADDER[::3], seeds=seeds), sigma=sigma,
                     rng=np.random.default_rng(i))  # fmt: skip
        frames.append(pd.DataFrame({
            "cell_id": [f"{arch}-{j:03d}" for j in range(len(d))], "model": "m", "arch": arch,
            "seed": d.seed, "n_params": d.N, "n_events": d.D, "flops": d.C, "final_val_loss": d.L,
            "smoothed_val_loss": d.L, "status": "done", "reason": "",
        }))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def test_grouped_fit_recovers_each_familys_law() -> None:
    results = summarise_groups(two_family_cells(), "arch", ("chinchilla",))
    assert [r["group"] for r in results] == ["arch=mamba2", "arch=transformer"]
    for res in results:
        truth = TRUTH[res["group"].split("=")[1]]
        assert res["params"]["alpha"] == pytest.approx(truth["alpha"], abs=0.03), res["group"]
        lo, hi = res["ci"]["alpha"]
        assert lo < truth["alpha"] < hi
        assert res["n_points"] == 30  # its own cells only
        held = res["holdout"]
        assert held["held_N"] == pytest.approx(LADDER_N[4])
        assert abs(held["mean_signed_rel_err"]) < 0.02
        assert "Held out the largest size" in held["text"]
    # pooled, the two families give one α between theirs: the split is what separates them
    mixed = two_family_cells().assign(arch="mamba2")
    (pooled,) = summarise_groups(mixed, "arch", ("chinchilla",))
    assert abs(pooled["params"]["alpha"] - 0.35) > 0.03


def test_grouped_fit_refuses_what_it_cannot_group() -> None:
    cells = two_family_cells()
    with pytest.raises(FitError, match="cannot group cells by 'model'; allowed: arch"):
        summarise_groups(cells, "model", ("chinchilla",))
    with pytest.raises(FitError, match="lacks column 'arch'"):
        summarise_groups(cells.drop(columns="arch"), "arch", ("chinchilla",))
    few = cells[(cells["arch"] == "mamba2") | (cells.index % 30 < 3)]  # 3 transformer runs
    with pytest.raises(FitError, match=r"\[arch=transformer\].*3 points"):
        summarise_groups(few, "arch", ("chinchilla",))


def test_old_catalog_gains_the_group_column(tmp_path: Path) -> None:
    """A catalog written before ``group_key`` existed: opened read-write, it gains the column (old
    rows NULL) and takes grouped fits; read-only, ``fits`` still has every column."""
    study = tmp_path / "old"
    study.mkdir()
    con = duckdb.connect(str(study / "catalog.duckdb"))
    con.execute("CREATE TABLE fits (fit_id VARCHAR, name VARCHAR, created_at TIMESTAMP, "
                "settings_json VARCHAR, result_json VARCHAR)")  # fmt: skip
    con.execute("INSERT INTO fits VALUES ('f0', 'chinchilla', now(), '{}', '{}')")
    con.close()
    assert catalog.fits(study)["group_key"].isna().all()  # read-only: not migrated, still complete
    catalog.save_fit(study, "chinchilla", {}, {"params": {}}, group_key="arch=transformer")
    rows = catalog.fits(study)
    assert list(rows.columns) == list(catalog.FIT_COLUMNS)
    assert rows["group_key"].isna().tolist() == [True, False]
    assert rows["group_key"].iloc[1] == "arch=transformer"


def _standin_study(tmp_path: Path) -> Path:
    """q1–q4 and tq1–tq4 × 3 tiers, one seed, each cell finished by the job's own code around the
    stand-in trainer with known family laws (in this process: submitit's part is test_submit_local's)."""
    doc = {"study": "ac", "models": ["q1", "q2", "q3", "q4", "tq1", "tq2", "tq3", "tq4"],
           "datasets": ["qd1", "qd2", "qd3"], "seeds": [0], "cluster": "local",
           "results_dir": str(tmp_path / "results")}  # fmt: skip
    sweep = tmp_path / "ac.yaml"
    sweep.write_text(yaml.safe_dump(doc))
    laws = {arch: tuple(law[k] for k in ("E", "A", "alpha", "B", "beta")) for arch, law in TRUTH.items()}
    fns = standin_cell(steps=2, step_s=0.0, checkpoint_every=2, laws=laws)
    plan = plan_file(sweep)
    record_plan(plan)
    for cell in plan.cells:
        rd = catalog.run_dir(plan.study_dir, cell.cell_id)
        rd.ensure()
        rd.write_config(cell.run)
        CellJob(cell.run, str(rd.path), cell_fns=fns)()
    assert [s.state for s in study_status(plan.study_dir)] == ["done"] * 24
    return plan.study_dir


def test_fit_laws_by_arch_on_a_finished_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = _standin_study(tmp_path)
    assert main(["fit-laws", str(study), "--by", "arch", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["group"] for r in out] == ["arch=mamba2", "arch=transformer"]
    for res in out:
        truth = TRUTH[res["group"].split("=")[1]]
        assert res["params"]["alpha"] == pytest.approx(truth["alpha"], rel=0.02), res["group"]
        assert res["n_points"] == 12
        assert res["holdout"]["n_held"] == 3  # the largest size at its three D levels
    fits = catalog.fits(study)
    assert sorted(fits["group_key"]) == ["arch=mamba2", "arch=transformer"]
    for row in fits.itertuples():
        assert json.loads(row.settings_json)["by"] == "arch"
        assert json.loads(row.result_json)["group"] == row.group_key

    assert main(["fit-laws", str(study), "--by", "arch"]) == 0  # the table: one block per family
    text = capsys.readouterr().out
    assert text.index("[arch=mamba2]") < text.index("[arch=transformer]")
    assert text.count("Held out the largest size") == 2
    assert main(["fit-laws", str(study)]) == 0  # without --by: one pooled law, no group
    assert "[arch=" not in capsys.readouterr().out
    assert catalog.fits(study)["group_key"].isna().sum() == 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--by", "archh"], "--by 'archh' unknown (did you mean 'arch'?); allowed: arch"),
        (["--by", "arch", "--input", "points.csv"], "--by arch groups a study's cells"),
    ],
)
def test_fit_laws_by_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    study = [] if "--input" in args else [str(tmp_path)]
    assert main(["fit-laws", *study, *args]) == 8
    err = capsys.readouterr().err.strip()
    assert needle in err
    assert len(err.splitlines()) == 1


def test_report_overlays_the_families(tmp_path: Path) -> None:
    index = build_report(two_family_cells(), tmp_path / "two", n_boot=0)
    text = index.read_text(encoding="utf-8")
    assert "could not be drawn" not in text
    section = text[
        text.index("<h2>Model families (arch: mamba2, transformer)</h2>") : text.index(
            "What to run next"
        )
    ]
    assert 'src="families_loss_vs_n.png"' in section
    assert section.count("Held out the largest size") == 2
    table = pd.read_csv(tmp_path / "two" / "law_parameters_per_model_family_95_intervals.csv")
    assert table["quantity"].tolist() == ["E", "A", "alpha", "B", "beta"] * 2
    alpha = table[table["quantity"] == "alpha"].set_index("arch")["estimate"]
    assert alpha["mamba2"] == pytest.approx(0.35, abs=0.03)
    assert alpha["transformer"] == pytest.approx(0.22, abs=0.03)
    fits = json.loads((tmp_path / "two" / "fits.json").read_text())
    assert set(fits["families"]) == {"mamba2", "transformer"}
    # the figure: one colour per family, each with its points, law and band (labels say which)
    from analysis.families import fit_families
    from analysis.plots import families_vs_n

    ax = families_vs_n(fit_families(two_family_cells(), n_boot=0)).axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sum(re.match(r"(mamba2|transformer) law: α = ", lab) is not None for lab in labels) == 2
    assert sum("95% CI" in lab for lab in labels) == 2
    assert len(ax.collections) == 4  # two scatters, two bands
