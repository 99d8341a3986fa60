"""Issue 18 on the slurm tier (the lead runs it: tests/slurm_cluster.sh up): two concurrent ``submit``
of one study train every cell once; a retry while a job still runs starts no second trainer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from doubles import standin_cell
from test_slurm_submit import make_plan, wait_for

from fm4npp.store import catalog, claim
from fm4npp.sweep.submit import submit_plan

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parents[1]


def test_two_concurrent_submits_on_slurm_train_each_cell_once(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, ["q1", "q2"])
    sweep, prof = tmp_path / "s.yaml", tmp_path / "s-cluster.yaml"
    # the jobs (sbatch --export=ALL) unpickle doubles.standin_pretrain: tests/ on their PYTHONPATH
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)])}
    options = json.dumps({"steps": 10, "step_s": 0.2})
    runner = [sys.executable, str(REPO / "tests" / "cli_with_standin.py"), options]
    cmd = [*runner, "submit", str(sweep), "--cluster", str(prof), "--no-wait"]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in "ab"
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    subs = catalog.submissions(plan.study_dir)
    assert sorted(subs["cell_id"].value_counts().tolist()) == [1, 1]
    wait_for(
        lambda: all(
            catalog.run_dir(plan.study_dir, c.cell_id).summary_file.is_file() for c in plan.cells
        ),
        300,
        "both cells",
    )
    curves = catalog.loss_curves(plan.study_dir)
    assert len(curves) == 2 * 10
    assert not curves.duplicated(["cell_id", "step"]).any()


def test_retry_while_the_trainer_runs_starts_no_second_trainer(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, ["q1"])
    slow = standin_cell(steps=40, step_s=0.5, checkpoint_every=5)
    report = submit_plan(plan, cell_fns=slow, wait=False)
    cell_id = next(iter(report.submitted))
    rd = catalog.run_dir(plan.study_dir, cell_id)
    wait_for(lambda: claim.read_owner(rd.path) is not None, 180, "the claim")
    owner = claim.read_owner(rd.path)
    assert owner is not None
    assert owner["job_id"].startswith(str(report.submitted[cell_id]).partition("_")[0])
    retry = submit_plan(plan, cell_fns=slow, wait=False, retry_failed=True)
    assert not retry.submitted
    assert retry.skipped_active == (cell_id,)
    wait_for(lambda: rd.summary_file.is_file(), 300, "the cell")
    time.sleep(1)
    assert catalog.loss_curves(plan.study_dir)["step"].tolist() == list(range(1, 41))
    assert not claim.lock_path(rd.path).exists()  # released at the end of the job
