"""The quickstart study: plan → events → submit (local) → baselines → fit-laws → report, idempotently.

Every stage is the same library call as its CLI command; a second run reuses finished cells and
baselines and redoes only the fits and the report. Stage timings are printed and stored in
``<study>/quickstart_timings.json`` (what benchmarks/RESULTS.md quotes).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fm4npp.atomic import write_json
from fm4npp.errors import TrainingError
from fm4npp.store import catalog
from fm4npp.sweep.plan import Plan, check_budget, plan_file, record_plan

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
        say(f"   {record_plan(plan).describe()}; {len(plan.cells)} cells, "
            f"{plan.total_node_hours:.3g} machine-hours planned")  # fmt: skip
    with _stage(result, "data", say):
        prepared = ensure_dataset(plan)
        say(f"   {prepared.n_events_total} events in {plan.cells[0].run.data_dir}")
    baselines = _start_baselines(plan, say)  # in its own process, beside the cells
    with _stage(result, "train+evaluate", say):
        # retry_failed: a rerun after Ctrl-C or a crash resumes interrupted cells from their checkpoints
        report = submit_plan(
            plan, max_parallel=max_parallel, wait=True, retry_failed=True, on_update=on_update
        )
        final = report.final or ()
        result.n_failed = sum(s.state == "failed" for s in final)
        result.n_done = len(report.skipped_done) + sum(s.state == "done" for s in final)
        say(
            f"   {result.n_done} cells done ({len(report.skipped_done)} reused), {result.n_failed} failed"
        )
    if result.n_done == 0:
        raise TrainingError(
            f"{plan.study_dir}: no cell finished; see `fm4npp-sweep status {plan.study_dir}`"
        )
    with _stage(result, "baselines", say):
        _finish_baselines(plan, baselines, say)
    with _stage(result, "fit-laws", say):
        result.fit = _fit(plan.study_dir, n_boot)
        say(f"   {_describe_fit(result.fit)}")
    with _stage(result, "report", say):
        from analysis.report import write_report

        result.report = write_report(plan.study_dir, n_boot=n_boot)
    write_json(plan.study_dir / "quickstart_timings.json", result.timings_s)
    return result


def _start_baselines(plan: Plan, say: Callable[[str], None]) -> subprocess.Popen[bytes] | None:
    """Start ``fm4npp-sweep evaluate --baselines`` (adapter-only, random embedding, Hough) in a
    process of its own while the cells train; None when they exist already or evaluation is off."""
    if not plan.spec.eval.enabled:
        return None
    done = {p.stem for p in catalog.baselines_dir(plan.study_dir).eval.glob("*.parquet")}
    wanted = {b for b in plan.spec.eval.baselines if b != "adapter_only"}
    if "adapter_only" in plan.spec.eval.baselines:
        wanted |= {f"adapter_only-{m}" for m in plan.spec.models}
    if wanted <= done:
        say(f"   reusing {len(done)} baseline tables")
        return None
    log = plan.study_dir / "baselines" / "evaluate.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one core: the cells hold the others
    cmd = [sys.executable, "-m", "fm4npp", "evaluate", "--study", str(plan.study_dir), "--baselines"]
    with log.open("wb") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)


def _finish_baselines(
    plan: Plan, proc: subprocess.Popen[bytes] | None, say: Callable[[str], None]
) -> None:
    if proc is None:
        return
    if proc.wait() != 0:
        log = plan.study_dir / "baselines" / "evaluate.log"
        raise TrainingError(f"{log}: baseline evaluation failed (exit {proc.returncode}); see the log")
    names = sorted(p.stem for p in catalog.baselines_dir(plan.study_dir).eval.glob("*.parquet"))
    say(f"   baselines: {', '.join(names)}")


def _fit(study_dir: Path, n_boot: int) -> dict[str, Any]:
    from analysis.inputs import from_cells
    from analysis.summary import summarise

    data = from_cells(catalog.finished_cells(study_dir), "final", "events", str(study_dir))
    res = summarise(data, ("chinchilla",), "vp", n_boot)[0]
    catalog.save_fit(
        study_dir, "chinchilla", {"form": "chinchilla", "method": "vp", "bootstrap": n_boot}, res
    )
    return dict(res)


def _describe_fit(fit: dict[str, Any]) -> str:
    p, ci = fit.get("params", {}), fit.get("ci", {})

    def one(name: str) -> str:
        lo_hi = ci.get(name)
        band = (
            f" [{lo_hi[0]:.3g}, {lo_hi[1]:.3g}]"
            if isinstance(lo_hi, (list, tuple)) and len(lo_hi) == 2
            else ""
        )
        return f"{name} = {p.get(name, float('nan')):.3g}{band}"

    return "L(N, D) = E + A/N^α + B/D^β: " + ", ".join(one(k) for k in ("E", "alpha", "beta"))
