"""Issue 18: SQL takes paths as escaped literals (apostrophes, glob characters), and one unreadable
file excludes its run with the reason instead of sinking ``fit-laws``, ``report`` and ``status``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.inputs import from_cells, load_points
from fm4npp.cli.main import main
from fm4npp.errors import FitError
from fm4npp.store import catalog
from fm4npp.store.record import RunRecord
from fm4npp.store.rundir import RunDir
from fm4npp.sweep.status import study_status


def _study(results_dir: Path, study: str = "t") -> Path:
    """A planned 3 × 3 study whose every cell has a done summary and a 4-step metrics part."""
    sweep = results_dir.parent / f"{study}-{abs(hash(str(results_dir))) % 10**6}.yaml"
    sweep.write_text(
        json.dumps(
            {
                "study": study,
                "models": ["q1", "q2", "q3"],
                "datasets": ["qd1", "qd2", "qd3"],
                "results_dir": str(results_dir),
            }
        )
    )
    assert main(["plan", str(sweep)]) == 0
    study_dir = results_dir / study
    for row in catalog.planned_cells(study_dir).itertuples():
        rd = catalog.run_dir(study_dir, row.cell_id)
        rd.ensure()
        loss = 1.5 + 400 / row.n_params**0.3 + 30 / row.n_events**0.3
        rd.append_metrics(
            {
                "step": [1, 2, 3, 4],
                "events_seen": [1, 2, 3, 4],
                "hits_seen": [8, 16, 24, 32],
                "lr": [1e-4] * 4,
                "train_loss": [loss + 1, loss + 0.5, loss + 0.2, loss],
                "val_loss": [np.nan, np.nan, np.nan, loss],
                "tokens_per_s": [1.0] * 4,
                "wall_time_s": [1.0, 2.0, 3.0, 4.0],
            }
        )
        rd.write_record(
            RunRecord.from_json(
                {
                    "cell_id": row.cell_id,
                    "status": "done",
                    "evaluated": True,
                    "final_val_loss": loss,
                    "smoothed_val_loss": loss,
                    "wall_time_s": 4.0,
                    "hits_seen": 32,
                    "flops": 1e9,
                }
            )
        )
    return study_dir


@pytest.mark.parametrize("name", ["it's", "res*", "a[b]c", "x'); COPY (SELECT 1) TO 'p.csv"])
def test_paths_with_quotes_and_glob_characters(tmp_path: Path, name: str) -> None:
    study_dir = _study(tmp_path / name)
    curves = catalog.loss_curves(study_dir)
    assert len(curves) == 9 * 4
    assert set(curves["cell_id"]) == set(catalog.planned_cells(study_dir)["cell_id"])


def test_question_mark_in_results_dir_is_refused_at_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"study: t\nmodels: [q1]\ndatasets: [qd1]\nresults_dir: '{tmp_path / 'q?x'}'\n")
    assert main(["plan", str(sweep)]) == 2
    assert "results_dir" in capsys.readouterr().err
    assert not (tmp_path / "q?x").exists()


def test_glob_in_results_dir_does_not_read_a_sibling_study(tmp_path: Path) -> None:
    sibling = _study(tmp_path / "resX")  # same study name and cells: its files would match res*
    RunDir(next((sibling / "runs").iterdir())).append_metrics(
        {
            c: [99.0]
            for c in (
                "step",
                "events_seen",
                "hits_seen",
                "lr",
                "train_loss",
                "val_loss",
                "tokens_per_s",
                "wall_time_s",
            )
        }
    )
    study_dir = _study(tmp_path / "res*")
    curves = catalog.loss_curves(study_dir)
    assert len(curves) == 9 * 4
    assert 99.0 not in set(curves["train_loss"])


def test_crafted_results_dir_runs_no_sql(tmp_path: Path) -> None:
    evil = tmp_path / "x') TO 'pwned.csv'; COPY (SELECT 1) TO 'pwned2.csv'; --"
    study_dir = _study(evil)
    assert len(catalog.loss_curves(study_dir)) == 36
    assert not list(Path.cwd().glob("pwned*"))
    assert not list(tmp_path.rglob("pwned*"))


def _corrupt(study_dir: Path, how: str) -> str:
    cell = sorted(p.name for p in (study_dir / "runs").iterdir())[4]
    rd = catalog.run_dir(study_dir, cell)
    if how == "truncated_part":
        part = next(rd.metrics.glob("part-*.parquet"))
        part.write_bytes(part.read_bytes()[:40])
    elif how == "summary_list":
        rd.summary_file.write_text("[1, 2, 3]")
    elif how == "loss_string":
        doc = json.loads(rd.summary_file.read_text())
        rd.summary_file.write_text(json.dumps({**doc, "final_val_loss": "0.5"}))
    elif how == "summary_binary":
        rd.summary_file.write_bytes(b"\xff\xfe\x00garbage")
    return cell


HOW = ["truncated_part", "summary_list", "loss_string", "summary_binary"]


@pytest.mark.parametrize("how", HOW)
def test_one_unreadable_run_is_excluded_with_its_reason(tmp_path: Path, how: str) -> None:
    study_dir = _study(tmp_path / "res")
    cell = _corrupt(study_dir, how)
    data = from_cells(catalog.finished_cells(study_dir), "final", "events", str(study_dir))
    assert len(data) == 8
    assert [c for c, _ in data.exclusions] == [cell]
    assert "corrupt" in data.exclusions[0][1]
    assert str(catalog.run_dir(study_dir, cell).path) in data.exclusions[0][1]
    assert len(catalog.loss_curves(study_dir)) in (36, 32)  # the readable parts only


@pytest.mark.parametrize("how", HOW)
def test_status_shows_corrupt_with_the_file(tmp_path: Path, how: str) -> None:
    study_dir = _study(tmp_path / "res")
    cell = _corrupt(study_dir, how)
    states = {s.cell_id: s for s in study_status(study_dir)}
    assert states[cell].state == "corrupt"
    assert str(catalog.run_dir(study_dir, cell).path) in states[cell].reason
    assert sum(s.state == "done" for s in states.values()) == 8


@pytest.mark.parametrize("how", ["truncated_part", "summary_list"])
def test_fit_laws_cli_goes_on(tmp_path: Path, how: str, capsys: pytest.CaptureFixture[str]) -> None:
    study_dir = _study(tmp_path / "res")
    cell = _corrupt(study_dir, how)
    code = main(["fit-laws", str(study_dir), "--form", "kaplan-n", "--bootstrap", "0"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert cell in out.out


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"\x00\x01\x02\xff\xfe binary", "cannot read|missing column"),
        (b"", "cannot read|no rows"),
        (b"n_params,n_events,loss\n1e6,1e5,abc\n2e6,1e5,3.0\n", "column 'loss' must be numeric"),
        (b"n_params,n_events,loss\n", "no rows"),
    ],
)
def test_fit_laws_input_garbage_is_one_line(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "points.csv"
    path.write_bytes(content)
    with pytest.raises(FitError, match=match) as err:
        load_points(path)
    assert "\n" not in str(err.value)


def test_fit_laws_input_garbage_parquet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "points.parquet"
    path.write_bytes(b"PAR1 not really")
    assert main(["fit-laws", "--input", str(path)]) == 8
    assert capsys.readouterr().err.count("\n") == 1


def test_summaries_frame_keeps_good_runs(tmp_path: Path) -> None:
    study_dir = _study(tmp_path / "res")
    _corrupt(study_dir, "summary_list")
    frame = catalog.read_summaries(study_dir)
    assert isinstance(frame, pd.DataFrame)
    assert (frame["status"] == "done").sum() == 8


@pytest.mark.slow
@pytest.mark.parametrize("how", ["truncated_part", "loss_string"])
def test_report_on_a_quoted_path_with_one_corrupt_run(
    tmp_path: Path, how: str, capsys: pytest.CaptureFixture[str]
) -> None:
    study_dir = _study(tmp_path / "it's res*")
    cell = _corrupt(study_dir, how)
    assert main(["report", str(study_dir), "--bootstrap", "20"]) == 0, capsys.readouterr().err
    html = (study_dir / "report" / "index.html").read_text()
    assert cell in html  # listed with its reason
