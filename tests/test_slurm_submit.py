"""The slurm tier: submit/status/cancel against the real single-node cluster (tests/slurm_cluster.sh up).

Stand-in cells (no torch) keep the tier to a few minutes; cred_expire = 10 s on the test cluster lets
a requeued job start again about 15 s after it stopped.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from doubles import standin_cell

from fm4npp.errors import SubmitError
from fm4npp.store import catalog
from fm4npp.sweep.plan import Plan, plan_file
from fm4npp.sweep.status import study_status
from fm4npp.sweep.submit import submit_plan

pytestmark = pytest.mark.slurm


def make_plan(
    tmp_path: Path, models: list[str], profile: dict[str, object] | None = None, study: str = "s"
) -> Plan:
    base: dict[str, object] = {
        "kind": "slurm",
        "account": "default",
        "partition": "debug",
        "gpus_per_node": 4,
        "gpu_type": "a100-40gb",
        "peak_tflops": 156,
        "cpus_per_task": 1,
        "signal_delay_s": 30,
        "default_qos": "regular",
        "qos": {"regular": {"max_wall_min": 10}},
    }
    base.update(profile or {})
    prof = tmp_path / f"{study}-cluster.yaml"
    prof.write_text(yaml.safe_dump(base))
    sweep = tmp_path / f"{study}.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "study": study,
                "models": models,
                "datasets": ["qd1"],
                "seeds": [0],
                "results_dir": str(tmp_path / "results"),
            }
        )
    )
    return plan_file(sweep, str(prof))


def wait_for(pred: Callable[[], bool], timeout_s: float, what: str) -> None:
    end = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < end, f"timed out waiting for {what}: {study_snapshot}"
        time.sleep(1.0)


study_snapshot: list[object] = []


def states(plan: Plan) -> dict[str, str]:
    statuses = study_status(plan.study_dir)
    study_snapshot[:] = statuses
    return {s.cell_id.split("-")[0]: s.state for s in statuses}


def finished(plan: Plan) -> bool:
    return all(s in ("done", "failed") for s in states(plan).values())


def test_array_completes_failing_cell_fails_alone_and_refusals_leave_catalog(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, ["q1", "q2", "q3"])
    fns = standin_cell(steps=5, step_s=0.1, fail_models=("q2",))
    report = submit_plan(plan, cell_fns=fns, wait=False)
    subs = catalog.submissions(plan.study_dir)
    assert len(subs) == 3
    assert subs["array_job_id"].nunique() == 1
    assert sorted(subs["array_task"]) == [0, 1, 2]
    assert set(report.submitted.values()) == set(subs["job_id"])
    wait_for(lambda: finished(plan), 120, "the array")
    assert states(plan) == {"q1": "done", "q2": "failed", "q3": "done"}
    assert len(catalog.loss_curves(plan.study_dir).query("step == 5")) == 2

    # the scheduler refuses an unknown QOS: one clear error, nothing recorded
    bad = make_plan(
        tmp_path,
        ["q1", "q2", "q3"],
        {"qos": {"nosuchq": {"max_wall_min": 10}}, "default_qos": "nosuchq"},
    )
    with pytest.raises(SubmitError, match="Invalid qos"):
        submit_plan(bad, cell_fns=standin_cell(), retry_failed=True, wait=False)
    assert len(catalog.submissions(plan.study_dir)) == 3


def test_bad_account_is_refused_and_nothing_recorded(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, ["q1"])
    with pytest.raises(SubmitError, match="Invalid account") as err:
        submit_plan(plan, cell_fns=standin_cell(), account="nosuch", wait=False)
    assert "\n" not in str(err.value)
    assert "nosuch" in str(err.value)
    assert not catalog.catalog_path(plan.study_dir).exists()


def test_cancel(tmp_path: Path) -> None:
    from fm4npp.sweep.status import cancel

    plan = make_plan(tmp_path, ["q1"])
    submit_plan(plan, cell_fns=standin_cell(steps=300, step_s=0.2), wait=False)
    wait_for(lambda: states(plan)["q1"] == "running", 60, "the job to start")
    assert [s.cell_id for s in cancel(plan.study_dir)] == [c.cell_id for c in plan.cells]
    wait_for(lambda: states(plan)["q1"] == "failed", 60, "the cancel")
    assert "cancel" in study_status(plan.study_dir)[0].reason


def _assert_resumed(plan: Plan, steps: int) -> None:
    st = study_status(plan.study_dir)[0]
    assert st.state == "done", st
    assert st.attempts >= 2, st
    summary = catalog.run_dir(plan.study_dir, st.cell_id).read_record()
    assert summary is not None
    assert summary.training["resumed_from_step"] > 0
    curve = catalog.loss_curves(plan.study_dir)["step"].tolist()
    assert curve == list(range(1, steps + 1))  # nothing lost, nothing logged twice


def test_time_limit_checkpoints_requeues_and_finishes(tmp_path: Path) -> None:
    # a 1-minute QOS limit and a cell of ~40 s of steps: SIGUSR2 at ~30 s before the limit
    plan = make_plan(tmp_path, ["q1"], {"qos": {"debug": {"max_wall_min": 1}}, "default_qos": "debug"})
    submit_plan(plan, cell_fns=standin_cell(steps=40, step_s=1, checkpoint_every=2), wait=False)
    wait_for(lambda: finished(plan), 240, "time-limit requeues")
    _assert_resumed(plan, 40)


def test_preemption_requeues_and_finishes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM4NPP_EARLY_SIGNAL_S", "2")  # honour the preemption signal from the start
    plan = make_plan(
        tmp_path,
        ["q1"],
        {"qos": {"preempt": {"max_wall_min": 10, "preemptible": True}}, "default_qos": "preempt"},
    )
    submit_plan(plan, cell_fns=standin_cell(steps=20, step_s=0.5, checkpoint_every=2), wait=False)
    rd = catalog.run_dir(plan.study_dir, plan.cells[0].cell_id)
    wait_for(lambda: len(list(rd.metrics.glob("part-*.parquet"))) >= 2, 90, "the victim to train")
    # a premium job that needs the whole node (both cores, all 4 GPUs) preempts the victim
    out = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "-A",
            "default",
            "-q",
            "premium",
            "-c",
            "2",
            "--gres=gpu:4",
            "-t",
            "1",
            "-o",
            "/dev/null",
            "--wrap",
            "sleep 2",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip()
    wait_for(lambda: states(plan)["q1"] in ("preempted-requeued", "done"), 60, "the preemption")
    wait_for(lambda: finished(plan), 120, "the requeued victim")
    _assert_resumed(plan, 20)
