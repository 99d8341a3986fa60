"""The quickstart chain end to end (reduced sizes): plan → events → local submit → baselines → fit → report.

Slow tier: this is the README's main job at a fraction of its size, through the same library call.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from fm4npp.cli.main import main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
# The chain fits 5 parameters to 9 tiny cells: numpy may warn on degenerate intervals (the analysis
# unit tests keep warnings as errors); here the chain itself is under test.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_quickstart_chain_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    argv = [
        "quickstart",
        "--bootstrap", "50",
        "--set", f"results_dir={results}",
        "--set", "models=[q1, q2, q3]",
        "--set", "datasets=[td1, td2, td3]",
        "--set", "seeds=[0]",
        "--set", "data.val_events=40",
        "--set", "data.test_events=40",
        "--set", "data.workers=1",
        "--set", "train.val_every_steps=4",
        "--set", "train.checkpoint_every_steps=4",
        "--set", "eval.labelled_events=[48]",
        "--set", "eval.seeds=[0]",
        "--set", "eval.epochs=2",
    ]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    study = results / "quickstart"
    report = study / "report" / "index.html"
    assert f"report: {report}" in out
    html = report.read_text()
    assert "<img" in html
    assert "chinchilla" in html.lower()
    con = duckdb.connect(str(study / "catalog.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM cells").fetchone() == (9,)
    assert con.execute("SELECT count(*) FROM fits").fetchone()[0] >= 1
    con.close()
    done = [json.loads(p.read_text()) for p in study.glob("runs/*/summary.json")]
    assert len(done) == 9
    assert all(s["status"] == "done" for s in done)
    # downstream ran on the largest size's largest tier only (eval.scope: largest), baselines once
    evaluated = list(study.glob("runs/*/eval/downstream.parquet"))
    assert [p.parts[-3].split("-")[:2] for p in evaluated] == [["q3", "td3"]]
    assert {p.stem for p in (study / "baselines" / "eval").glob("*.parquet")} >= {
        "hough",
        "random_embedding",
    }
    # one fit-and-save: `fit-laws` with the same bootstrap stores the same settings and the same fit
    assert main(["fit-laws", str(study), "--bootstrap", "50", "--json"]) == 0
    capsys.readouterr()
    con = duckdb.connect(str(study / "catalog.duckdb"), read_only=True)
    rows = con.execute("SELECT settings_json, result_json FROM fits ORDER BY created_at").fetchall()
    con.close()
    (quick_settings, quick_result), (cli_settings, cli_result) = rows[-2:]
    assert json.loads(quick_settings) == json.loads(cli_settings)
    assert {"loss", "d_unit", "bootstrap_scheme"} <= set(json.loads(quick_settings))
    assert json.loads(quick_result)["params"] == json.loads(cli_result)["params"]
    timings = json.loads((study / "quickstart_timings.json").read_text())
    assert set(timings) == {"plan", "data", "train+evaluate", "baselines", "fit-laws", "report"}

    # idempotent: the second run reuses every cell and baseline, redoing only fit and report
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "9 cells done (9 reused), 0 failed" in out
    assert "reusing" in out
