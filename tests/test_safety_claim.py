"""Issue 18: one owner per run directory (fm4npp.store.claim), and submit never launches what it cannot
record nor resubmits what finished. Real processes: a second trainer in another process, the local
executor with the stand-in cell, DuckDB held by a reader in another process."""

# ruff: noqa: F811  (the data_dir fixture of test_train_pretrain is imported, then requested)
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from doubles import standin_cell
from test_train_pretrain import _cfg, _Killed, _metrics, data_dir  # noqa: F401  (a fixture)

from fm4npp.errors import SubmitError, TrainingError
from fm4npp.store import catalog, claim
from fm4npp.sweep.plan import plan_file
from fm4npp.sweep.status import study_status
from fm4npp.sweep.submit import submit_plan
from fm4npp.train import pretrain

REPO = Path(__file__).resolve().parents[1]
PY = [sys.executable, "-c"]
CLI_WITH_STANDIN = [sys.executable, str(REPO / "tests" / "cli_with_standin.py")]  # + options JSON, argv


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _foreign_owner(run_dir: Path, pid: int, heartbeat: float | None = None, job: str = "9999") -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    now = time.time()
    doc = {"token": "foreign", "job_id": job, "host": socket.gethostname(), "pid": pid,
           "started": now, "heartbeat": now if heartbeat is None else heartbeat}  # fmt: skip
    claim.lock_path(run_dir).write_text(json.dumps(doc))


@pytest.fixture
def sleeper() -> object:
    proc = subprocess.Popen(["sleep", "120"])
    yield proc
    proc.kill()
    proc.wait()


# -- the claim itself ----------------------------------------------------------------------------------


def test_second_process_refuses_naming_the_owner(tmp_path: Path) -> None:
    run_dir = tmp_path / "cell"
    with claim.claimed(run_dir, "job-1") as mine:
        owner = claim.read_owner(run_dir)
        assert owner is not None
        assert (owner["job_id"], owner["pid"], owner["host"]) == (
            "job-1",
            os.getpid(),
            socket.gethostname(),
        )
        code = "from fm4npp.store import claim; import sys; claim.acquire(__import__('pathlib').Path(sys.argv[1]), 'job-2')"
        out = subprocess.run(
            [*PY, code, str(run_dir)],
            env=_env(),
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode != 0
        assert "ClaimError" in out.stderr
        assert "owned by job job-1" in out.stderr
        mine.check()  # still ours
    assert not claim.lock_path(run_dir).exists()  # released


def test_stale_heartbeat_and_dead_process_are_taken_over(tmp_path: Path, sleeper: object) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _foreign_owner(a, sleeper.pid, heartbeat=time.time() - 10 * claim.STALE_AFTER_S)  # type: ignore[attr-defined]
    proc = subprocess.Popen(["true"])
    proc.wait()
    _foreign_owner(b, proc.pid)  # fresh heartbeat, but its process is gone
    for run_dir in (a, b):
        with claim.claimed(run_dir, "job-new"):
            assert claim.read_owner(run_dir)["job_id"] == "job-new"  # type: ignore[index]
        assert list(run_dir.glob("owner.lock.stale-*"))


def test_killed_unreaped_owner_is_not_live(tmp_path: Path) -> None:
    """A trainer killed with SIGKILL whose parent has not reaped it is a zombie: kill(pid, 0) still
    succeeds, but it owns nothing, so ``status`` must not call its cell running (the cancelled
    local cell whose worker the controller killed)."""
    proc = subprocess.Popen(["sleep", "120"])
    try:
        _foreign_owner(tmp_path, proc.pid)
        assert claim.live_owner(tmp_path) is not None
        proc.kill()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(proc.pid, 0)  # the zombie still answers
        assert claim.live_owner(tmp_path) is None
        assert "is gone" in claim.stale_reason(claim.read_owner(tmp_path) or {})
    finally:
        proc.kill()
        proc.wait()


def test_live_foreign_owner_is_refused(tmp_path: Path, sleeper: object) -> None:
    _foreign_owner(tmp_path, sleeper.pid)  # type: ignore[attr-defined]
    with pytest.raises(claim.ClaimError, match="owned by job 9999"):
        claim.acquire(tmp_path, "job-2")
    assert claim.read_owner(tmp_path)["token"] == "foreign"  # type: ignore[index]


def test_fencing_stops_a_writer_that_lost_its_claim(tmp_path: Path) -> None:
    with claim.claimed(tmp_path, "job-1") as mine:
        _foreign_owner(tmp_path, os.getpid(), job="job-2")  # taken over while we were stalled
        with pytest.raises(claim.ClaimLost, match="job-2"):
            mine.check()
        mine.heartbeat()  # must not overwrite the new owner
        assert claim.read_owner(tmp_path)["token"] == "foreign"  # type: ignore[index]
    assert claim.read_owner(tmp_path)["token"] == "foreign"  # release leaves the new owner's lock


# -- the trainer's write points --------------------------------------------------------------------


def test_pretrain_refuses_a_run_dir_owned_by_a_live_trainer(
    data_dir: Path,
    tmp_path: Path,
    sleeper: object,
) -> None:
    run_dir = tmp_path / "cell0"
    _foreign_owner(run_dir, sleeper.pid)  # type: ignore[attr-defined]
    with pytest.raises(claim.ClaimError, match="owned by job 9999"):
        pretrain(_cfg(data_dir), run_dir, device="cpu")
    assert not (run_dir / "config.yaml").exists()
    assert not list(run_dir.rglob("*.parquet"))


def test_pretrain_that_lost_its_claim_stops_before_writing(
    data_dir: Path,
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "cell0"
    polls = iter(range(100))

    def taken_over_at_step_7() -> bool:
        if next(polls) == 7:
            _foreign_owner(run_dir, os.getpid(), job="job-2")
        return False

    with pytest.raises(claim.ClaimLost):
        pretrain(_cfg(data_dir), run_dir, should_stop=taken_over_at_step_7, device="cpu")
    assert _metrics(run_dir)["step"].max() == 5  # the step-10 checkpoint and part were not written
    assert not (run_dir / "summary.json").exists()


def test_missing_checkpoint_with_metrics_is_an_error_not_a_restart(
    data_dir: Path,
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "cell0"
    polls = iter(range(100))

    def kill_at_step_8() -> bool:
        if next(polls) == 8:
            raise _Killed
        return False

    with pytest.raises(_Killed):
        pretrain(_cfg(data_dir), run_dir, should_stop=kill_at_step_8, device="cpu")
    (run_dir / "checkpoints" / "last.pt").unlink()
    with pytest.raises(TrainingError, match=r"cell cell0: .*last\.pt is missing.*delete") as err:
        pretrain(_cfg(data_dir), run_dir, device="cpu")
    assert "\n" not in str(err.value)
    assert _metrics(run_dir)["step"].tolist() == [1, 2, 3, 4, 5]  # nothing re-logged


# -- submit on the local executor ------------------------------------------------------------------

SLOW = {"steps": 30, "step_s": 0.1, "checkpoint_every": 5}


def _sweep(tmp_path: Path, models: list[str]) -> Path:
    doc = {"study": "s", "models": models, "datasets": ["qd1"], "seeds": [0], "cluster": "local",
           "results_dir": str(tmp_path / "results")}  # fmt: skip
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _wait_for(pred, timeout_s: float = 90.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.2)


def test_two_concurrent_submits_train_each_cell_once(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path, ["q1", "q2"])
    options = json.dumps({"steps": 20, "step_s": 0.05, "checkpoint_every": 5})
    cmd = [*CLI_WITH_STANDIN, options, "submit", str(sweep), "--max-parallel", "2"]
    procs = [
        subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in "ab"
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    study = tmp_path / "results" / "s"
    subs = catalog.submissions(study)
    assert sorted(subs["cell_id"].value_counts().tolist()) == [1, 1]  # each cell submitted once
    curves = catalog.loss_curves(study)
    assert len(curves) == 2 * 20
    assert not curves.duplicated(["cell_id", "step"]).any()


def test_killed_controller_leaves_an_owner_and_retry_starts_no_second_trainer(tmp_path: Path) -> None:
    plan = plan_file(_sweep(tmp_path, ["q1"]))
    report = submit_plan(plan, cell_fns=standin_cell(**SLOW), wait=False)
    cell_id, job = next(iter(report.submitted.items()))
    rd = catalog.run_dir(plan.study_dir, cell_id)
    _wait_for(lambda: claim.read_owner(rd.path) is not None and any(rd.metrics.glob("part-*")))
    os.kill(int(job.removeprefix("local-")), signal.SIGKILL)  # the controller; its worker trains on
    time.sleep(0.5)
    st = study_status(plan.study_dir)[0]
    assert st.state == "running", st
    assert "owned by" in st.reason
    retry = submit_plan(plan, cell_fns=standin_cell(**SLOW), wait=False, retry_failed=True)
    assert not retry.submitted
    assert retry.skipped_active == (cell_id,)
    _wait_for(
        lambda: (
            rd.summary_file.is_file() and json.loads(rd.summary_file.read_text()).get("status") == "done"
        )
    )
    steps = catalog.loss_curves(plan.study_dir)["step"].tolist()
    assert steps == list(range(1, 31))


def test_catalog_held_by_a_reader_launches_nothing(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path, ["q1", "q2"])
    plan = plan_file(sweep)
    from fm4npp.sweep.plan import record_plan

    record_plan(plan)
    code = (
        "import duckdb, sys, time; con = duckdb.connect(sys.argv[1], read_only=True); "
        "print('held', flush=True); time.sleep(60)"
    )
    reader = subprocess.Popen(
        [*PY, code, str(catalog.catalog_path(plan.study_dir))], stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline().strip() == "held"
        options = json.dumps({"steps": 4, "step_s": 0.01})
        out = subprocess.run(
            [*CLI_WITH_STANDIN, options, "submit", str(sweep)],
            env=_env(), check=False, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        reader.kill()
        reader.wait()
        if reader.stdout is not None:
            reader.stdout.close()
    assert out.returncode == 5, out.stderr
    assert out.stderr.count("\n") == 1
    assert not (plan.study_dir / "runs").exists()  # no run directory prepared, no job started
    assert not (plan.study_dir / "submitit").exists()
    assert len(catalog.submissions(plan.study_dir)) == 0


def test_lost_catalog_does_not_resubmit_finished_cells(tmp_path: Path) -> None:
    plan = plan_file(_sweep(tmp_path, ["q1", "q2"]))
    fast = standin_cell(steps=4, step_s=0.01, checkpoint_every=2)
    first = submit_plan(plan, cell_fns=fast, wait=True)
    assert [s.state for s in first.final] == ["done", "done"]
    catalog.catalog_path(plan.study_dir).unlink()
    assert [s.state for s in study_status(plan.study_dir)] == ["done", "done"]
    again = submit_plan(plan, cell_fns=fast, wait=True)
    assert not again.submitted
    assert len(again.skipped_done) == 2
    for cell in plan.cells:
        rd = catalog.run_dir(plan.study_dir, cell.cell_id)
        record = rd.read_record()
        assert record is not None
        assert record.status == "done"
        assert not list(rd.logs.glob("summary-failed-*"))


@pytest.mark.skipif(shutil.which("srun") is not None, reason="needs a machine without SLURM")
def test_refused_submission_of_a_new_study_leaves_no_catalog(tmp_path: Path) -> None:
    """Recording before launching must not leave a catalog when nothing could be launched."""
    plan = plan_file(_sweep(tmp_path, ["q1"]), "perlmutter")
    with pytest.raises(SubmitError, match="slurm profile"):
        submit_plan(plan, cell_fns=standin_cell(), wait=False)
    assert not catalog.catalog_path(plan.study_dir).exists()
