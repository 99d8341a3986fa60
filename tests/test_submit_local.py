"""submit / status / cancel / logs on submitit's local executor, with the stand-in cell (no torch)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from doubles import standin_cell

from fm4npp.cli.main import main
from fm4npp.store import catalog
from fm4npp.sweep import submit
from fm4npp.sweep.plan import plan_file
from fm4npp.sweep.scheduler import local_pid
from fm4npp.sweep.status import study_status
from fm4npp.sweep.submit import submit_plan

FAST = {"steps": 6, "step_s": 0.01, "checkpoint_every": 2}


def write_sweep(tmp_path: Path, models: list[str], study: str = "s", **extra: object) -> Path:
    doc = {
        "study": study,
        "models": models,
        "datasets": ["qd1"],
        "seeds": [0],
        "cluster": "local",
        "results_dir": str(tmp_path / "results"),
        **extra,
    }
    path = tmp_path / f"{study}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def states(study_dir: Path) -> dict[str, str]:
    return {s.cell_id.split("-")[0]: s.state for s in study_status(study_dir)}


def wait_for(pred, timeout_s: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.2)


def test_array_runs_to_completion_and_reaches_catalog(tmp_path: Path) -> None:
    plan = plan_file(write_sweep(tmp_path, ["q1", "q2", "q3"]))
    seen: list[int] = []
    report = submit_plan(
        plan,
        cell_fns=standin_cell(**FAST),
        max_parallel=2,
        wait=True,
        on_update=lambda s: seen.append(len(s)),
    )
    assert len(report.submitted) == 3
    assert seen
    assert [s.state for s in report.final] == ["done"] * 3
    subs = catalog.submissions(plan.study_dir)
    assert sorted(subs["cell_id"]) == sorted(c.cell_id for c in plan.cells)
    assert set(subs["attempt"]) == {1}
    assert all(local_pid(j) is not None for j in subs["job_id"])
    curves = catalog.loss_curves(plan.study_dir)
    assert len(curves) == 3 * 6
    assert not curves.duplicated(["cell_id", "step"]).any()
    for cell in plan.cells:
        rd = catalog.run_dir(plan.study_dir, cell.cell_id)
        assert rd.config_file.is_file()
        assert rd.read_config() == cell.run
        assert rd.read_record().status == "done"  # type: ignore[union-attr]
        assert list(rd.logs.glob("*.out"))  # per-cell link to submitit's log

    # finished cells are skipped
    again = submit_plan(plan, cell_fns=standin_cell(**FAST), wait=True)
    assert not again.submitted
    assert len(again.skipped_done) == 3
    assert len(catalog.submissions(plan.study_dir)) == 3


def test_failed_cell_is_retried_only_with_retry_failed(tmp_path: Path) -> None:
    plan = plan_file(write_sweep(tmp_path, ["q1", "q2"]))
    report = submit_plan(plan, cell_fns=standin_cell(**FAST, fail_models=("q2",)), wait=True)
    assert states(plan.study_dir) == {"q1": "done", "q2": "failed"}
    failed = next(s for s in report.final if s.state == "failed")
    assert "stand-in failure" in failed.reason

    skip = submit_plan(plan, cell_fns=standin_cell(**FAST), wait=True)
    assert not skip.submitted
    assert len(skip.skipped_failed) == 1

    retry = submit_plan(plan, cell_fns=standin_cell(**FAST), wait=True, retry_failed=True)
    assert list(retry.submitted) == [failed.cell_id]
    assert states(plan.study_dir) == {"q1": "done", "q2": "done"}
    final = {s.cell_id: s for s in study_status(plan.study_dir)}[failed.cell_id]
    assert final.attempts == 2
    summary = catalog.run_dir(plan.study_dir, failed.cell_id).read_record()
    assert summary is not None
    assert summary.training["resumed_from_step"] == 3


def _worker_pids(controller: int) -> list[int]:
    children = Path(f"/proc/{controller}/task/{controller}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


def test_sigkilled_job_is_failed_and_retry_resumes_without_duplicate_steps(tmp_path: Path) -> None:
    plan = plan_file(write_sweep(tmp_path, ["q1"]))
    slow = {"steps": 30, "step_s": 0.1, "checkpoint_every": 5}
    report = submit_plan(plan, cell_fns=standin_cell(**slow), wait=False)
    cell_id, job = next(iter(report.submitted.items()))
    rd = catalog.run_dir(plan.study_dir, cell_id)
    wait_for(lambda: len(list(rd.metrics.glob("part-*.parquet"))) >= 2)
    controller = local_pid(job)
    assert controller is not None
    workers = _worker_pids(controller)
    assert workers
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: states(plan.study_dir)["q1"] == "failed")
    st = study_status(plan.study_dir)[0]
    assert "--retry-failed resumes" in st.reason
    assert st.last_loss is not None

    retry = submit_plan(
        plan, cell_fns=standin_cell(**{**slow, "step_s": 0.01}), wait=True, retry_failed=True
    )
    assert [s.state for s in retry.final] == ["done"]
    summary = rd.read_record()
    assert summary is not None
    assert summary.training["resumed_from_step"] >= 10
    steps = catalog.loss_curves(plan.study_dir)["step"].tolist()
    assert steps == list(range(1, 31))  # every step once: nothing lost, nothing duplicated


def test_cancel_status_json_and_logs_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the CLI submits the real cell functions: swap in the stand-in for this process
    monkeypatch.setattr(submit, "REAL_CELL", standin_cell(steps=200, step_s=0.1))
    sweep = write_sweep(tmp_path, ["q1"])
    assert main(["submit", str(sweep), "--no-wait", "--max-parallel", "1"]) == 0
    study = tmp_path / "results" / "s"
    wait_for(lambda: states(study)["q1"] == "running")
    capsys.readouterr()
    assert main(["status", str(study), "--json"]) == 0
    assert '"state": "running"' in capsys.readouterr().out
    assert main(["logs", str(study), "q1"]) == 0
    assert "Starting with JobEnvironment" in capsys.readouterr().out  # submitit's log, rank 0
    assert main(["cancel", str(study)]) == 0
    assert "cancelled 1 cells" in capsys.readouterr().out
    wait_for(lambda: states(study)["q1"] == "failed")
    assert study_status(study)[0].reason.startswith("cancelled")


def test_dry_run_submits_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = write_sweep(tmp_path, ["q1", "q2"])
    assert main(["submit", str(sweep), "--dry-run"]) == 0
    assert "would submit 2 cells" in capsys.readouterr().out
    assert not (tmp_path / "results" / "s").exists()


@pytest.mark.parametrize(
    ("args", "needle", "code"),
    [
        (["--cluster", "nosuch"], "unknown cluster 'nosuch'", 2),
        (["--cluster", "{bad_key}"], "gpus_per_nod", 2),
        (["--cluster", "{no_account}"], "no account", 2),
        (["--qos", "nosuchq"], "unknown qos 'nosuchq'", 2),
        (["--max-parallel", "0"], "--max-parallel must be > 0", 2),
    ],
)
def test_bad_input_is_one_line_and_submits_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str, code: int
) -> None:
    bad_key = tmp_path / "bad_key.yaml"
    bad_key.write_text("kind: local\ngpus_per_nod: 0\ngpu_type: cpu\npeak_tflops: 1\n")
    no_account = tmp_path / "no_account.yaml"
    no_account.write_text("kind: slurm\ngpus_per_node: 4\ngpu_type: a100\npeak_tflops: 100\n")
    args = [a.format(bad_key=bad_key, no_account=no_account) for a in args]
    sweep = write_sweep(tmp_path, ["q1"])
    assert main(["submit", str(sweep), *args]) == code
    err = capsys.readouterr().err.strip()
    assert needle in err, err
    assert len(err.splitlines()) == 1, err
    assert not (tmp_path / "results" / "s").exists()


def test_missing_sweep_and_missing_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["submit", str(tmp_path / "nope.yaml")]) != 0
    assert main(["status", str(tmp_path / "nope")]) == 5
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert "nope.yaml" in err[0]
    assert "nope" in err[1]


def test_status_imports_neither_torch_nor_submitit(tmp_path: Path) -> None:
    plan = plan_file(write_sweep(tmp_path, ["q1"]))
    from fm4npp.sweep.plan import record_plan

    record_plan(plan)
    code = (
        "import sys; from fm4npp.cli.main import main; rc = main(['status', sys.argv[1]]); "
        "bad = [m for m in ('torch', 'submitit') if m in sys.modules]; sys.exit(rc or len(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(plan.study_dir)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "planned" in out.stdout
