"""The quickstart study: plan → events → submit (local) → baselines → fit-laws → report, idempotently.

Every stage is the same library call as its CLI command (the baselines run in a worker process of
their own, beside the cells); a second run reuses finished cells and baselines and redoes only the fits
and the report. Stage timings are printed and stored in ``<study>/quickstart_timings.json`` (what
benchmarks/RESULTS.md quotes).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from fm4npp.atomic import write_json
from fm4npp.errors import TrainingError
from fm4npp.store import catalog
from fm4npp.store.record import CellState
from fm4npp.sweep.plan import Plan, check_budget, plan_file, record_plan
from fm4npp.workflow.fits import FitSettings, fit_study

DEFAULT_SWEEP = Path(__file__).resolve().parents[2] / "sweeps" / "quickstart.yaml"


@dataclass
class QuickstartResult:
    study_dir: Path
    report: Path | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    n_done: int = 0
    n_failed: int = 0
    fit: dict[str, Any] = field(default_factory=dict)


@contextmanager
def _stage(result: QuickstartResult, name: str, say: Callable[[str], None]) -> Iterator[None]:
    say(f"── {name}")
    t0 = time.perf_counter()
    yield
    result.timings_s[name] = round(time.perf_counter() - t0, 2)
    say(f"   {name}: {result.timings_s[name]:.1f} s")


def run_quickstart(
    sweep: Path = DEFAULT_SWEEP,
    *,
    overrides: list[str] | None = None,
    max_parallel: int | None = None,
    n_boot: int = 300,
    on_update: Callable[[list[Any]], None] | None = None,
    say: Callable[[str], None] = print,
) -> QuickstartResult:
    """Run (or finish) the whole study of ``sweep`` on this machine; returns where the report is."""
    from fm4npp.sweep.dataset import ensure_dataset
    from fm4npp.sweep.submit import submit_plan

    plan: Plan = plan_file(sweep, "local", None, overrides)
    result = QuickstartResult(plan.study_dir)
    with _stage(result, "plan", say):
        check_budget(plan)
        say(
            f"   {record_plan(plan).describe()}; {len(plan.cells)} cells, "
            f"{plan.total_node_hours:.3g} machine-hours planned"
        )
    with _stage(result, "data", say):
        prepared = ensure_dataset(plan)
        say(f"   {prepared.n_events_total} events in {plan.cells[0].run.data_dir}")
    baselines = _start_baselines(plan, say)  # in its own process, beside the cells
    try:
        with _stage(result, "train+evaluate", say):
            # retry_failed: a rerun after Ctrl-C or a crash resumes interrupted cells from checkpoints
            report = submit_plan(
                plan, max_parallel=max_parallel, wait=True, retry_failed=True, on_update=on_update
            )
            final = report.final or ()
            result.n_failed = sum(s.state is CellState.FAILED for s in final)
            result.n_done = len(report.skipped_done) + sum(s.state is CellState.DONE for s in final)
            reused = len(report.skipped_done)
            say(f"   {result.n_done} cells done ({reused} reused), {result.n_failed} failed")
        if result.n_done == 0:
            raise TrainingError(
                f"{plan.study_dir}: no cell finished; see `fm4npp-sweep status {plan.study_dir}`"
            )
        with _stage(result, "baselines", say):
            _finish_baselines(plan, baselines, say)
    finally:
        _stop_baselines(baselines)  # a no-op once they finished
    with _stage(result, "fit-laws", say):
        from analysis.summary import format_summary

        result.fit = fit_study(plan.study_dir, FitSettings(bootstrap=n_boot))[0]
        say("   " + format_summary(result.fit).replace("\n", "\n   "))
    with _stage(result, "report", say):
        from analysis.browser import save_first_screen
        from analysis.report import write_report

        result.report = write_report(plan.study_dir, n_boot=n_boot)
        shot = save_first_screen(result.report)  # None without Chromium
        if shot is not None:
            say(f"   first screen: {shot}")
    write_json(plan.study_dir / "quickstart_timings.json", result.timings_s)
    return result


def _start_baselines(plan: Plan, say: Callable[[str], None]) -> BaseProcess | None:
    """Start the study's baselines (adapter-only, random embedding, Hough) in a process of their own
    while the cells train; None when they exist already or evaluation is off."""
    if not plan.spec.eval.enabled:
        return None
    done = {p.stem for p in catalog.baselines_dir(plan.study_dir).eval.glob("*.parquet")}
    wanted = {b for b in plan.spec.eval.baselines if b != "adapter_only"}
    if "adapter_only" in plan.spec.eval.baselines:
        wanted |= {f"adapter_only-{c.run.model}" for c in plan.cells if c.run.eval.enabled}
    if wanted <= done:
        say(f"   reusing {len(done)} baseline tables")
        return None
    log = _baselines_log(plan)
    log.parent.mkdir(parents=True, exist_ok=True)
    # spawn: a fresh interpreter (no threads forked mid-flight), which imports torch itself
    proc = multiprocessing.get_context("spawn").Process(
        target=_evaluate_baselines, args=(plan.study_dir, str(log)), name="fm4npp-baselines"
    )
    proc.start()
    return proc


def _baselines_log(plan: Plan) -> Path:
    return plan.study_dir / "baselines" / "evaluate.log"


def _evaluate_baselines(study_dir: Path, log: str) -> None:
    """The baselines process: one core (the cells hold the others), its output to the log file."""
    os.environ["OMP_NUM_THREADS"] = "1"  # before torch is imported by the evaluation
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    from fm4npp.train.downstream import evaluate_study_baselines

    names = evaluate_study_baselines(study_dir)
    logging.getLogger("fm4npp.baselines").info("baselines written: %s", ", ".join(names))


def _finish_baselines(plan: Plan, proc: BaseProcess | None, say: Callable[[str], None]) -> None:
    if proc is None:
        return
    proc.join()
    if proc.exitcode != 0:
        log = _baselines_log(plan)
        raise TrainingError(f"{log}: baseline evaluation failed (exit {proc.exitcode}); see the log")
    names = sorted(p.stem for p in catalog.baselines_dir(plan.study_dir).eval.glob("*.parquet"))
    say(f"   baselines: {', '.join(names)}")


def _stop_baselines(proc: BaseProcess | None) -> None:
    """The quickstart stopped early (error, Ctrl-C): stop the baselines with it."""
    if proc is not None and proc.is_alive():
        proc.terminate()
        proc.join(timeout=10)
