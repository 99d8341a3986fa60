"""Submit a plan's cells as job arrays through submitit (local executor or SLURM).

For every cell to run: ``runs/<cell>/config.yaml`` is written, cells whose run record says ``done`` are
skipped, ``failed`` ones are resubmitted only with ``retry_failed`` (they resume from their
checkpoint), and a cell that is pending or running (catalog submissions + the scheduler) is never
submitted twice. Submissions are recorded in the catalog by this (the CLI) process only. A scheduler
refusal (bad account or QOS) is a SubmitError carrying sbatch's message; nothing is recorded for it.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fm4npp.errors import ConfigError, StoreError, SubmitError
from fm4npp.store import catalog
from fm4npp.store.record import ACTIVE, CellState
from fm4npp.store.rundir import RunDir
from fm4npp.sweep.clusters import ClusterProfile
from fm4npp.sweep.executors import (
    ArrayGroup,
    array_groups,
    local_parallelism,
    make_executor,
    render_sbatch,
)
from fm4npp.sweep.job import REAL_CELL, CellFunctions, CellJob
from fm4npp.sweep.plan import Plan, PlannedCell, check_budget, record_plan
from fm4npp.sweep.scheduler import local_job_id
from fm4npp.sweep.status import CellStatus, cell_statuses

SUBMIT_LOCK_WAIT_S = 120.0  # a concurrent submit of the same study: wait this long for it
RECORD_RETRY_S = 60.0  # a launched job's record waits this long for a reader to let go of the catalog
POLL_S = 2.0  # --wait: seconds between status refreshes
LOCAL_EXIT_POLL_S = 0.1  # all cells finished: waiting for the local controllers to exit
_DETACHED: list[Any] = []  # jobs submitted without waiting, kept referenced for this process's life


@dataclass(frozen=True)
class SubmitReport:
    study_dir: Path
    cluster: str
    qos: str
    dry_run: bool
    submitted: dict[str, str] = field(default_factory=dict)  # cell_id → job id
    skipped_done: tuple[str, ...] = ()
    skipped_active: tuple[str, ...] = ()
    skipped_failed: tuple[str, ...] = ()  # failed earlier; pass retry_failed to resubmit
    scripts: tuple[str, ...] = ()  # dry run on SLURM: the sbatch script of each array
    final: tuple[CellStatus, ...] = ()  # after waiting: the submitted cells' last status


def _resolve_cluster(plan: Plan, cluster: ClusterProfile | None, account: str | None) -> ClusterProfile:
    prof = cluster or plan.cluster
    if account:
        prof = replace(prof, account=account)
    if prof.kind == "slurm" and not prof.account:
        raise ConfigError(
            f"cluster '{prof.name}': no account; set 'account' in its profile or pass --account"
        )
    return prof


def _select(
    plan: Plan, statuses: dict[str, CellStatus], retry_failed: bool
) -> tuple[list[PlannedCell], dict[str, list[str]]]:
    todo: list[PlannedCell] = []
    skipped: dict[str, list[str]] = {"done": [], "active": [], "failed": []}
    for cell in plan.cells:
        st = statuses.get(cell.cell_id)
        state = st.state if st else CellState.PLANNED
        if state is CellState.DONE:
            skipped["done"].append(cell.cell_id)
        elif state in ACTIVE:
            skipped["active"].append(cell.cell_id)
        elif state in (CellState.FAILED, CellState.CORRUPT) and not retry_failed:
            skipped["failed"].append(cell.cell_id)
        else:
            todo.append(cell)
    return todo, skipped


def _prepare_run_dir(rd: RunDir, cell: PlannedCell) -> None:
    """Write the resolved config; set a failed run's records aside so that the retry is not 'failed'.
    A done run is never touched (the run directory, not the catalog, says what finished)."""
    if rd.phase() is CellState.DONE:
        raise SubmitError(f"{rd.summary_file}: cell already done; refusing to resubmit it")
    rd.ensure()
    rd.write_config(cell.run)
    rd.set_failure_aside()


def submit_plan(
    plan: Plan,
    cluster: ClusterProfile | None = None,
    *,
    dry_run: bool = False,
    retry_failed: bool = False,
    allow_over_budget: bool = False,
    max_parallel: int | None = None,
    wait: bool | None = None,
    account: str | None = None,
    cell_fns: CellFunctions | None = None,
    on_update: Callable[[list[CellStatus]], None] | None = None,
) -> SubmitReport:
    """Submit the plan's runnable cells; ``wait`` (default: local yes, SLURM no) polls until done.
    ``cell_fns``: what each job runs (default :data:`REAL_CELL`; tests inject doubles).

    The budget is enforced exactly as by ``plan`` (BudgetError, exit 3) unless ``allow_over_budget``.
    """
    cell_fns = cell_fns or REAL_CELL
    if not allow_over_budget:
        check_budget(plan)
    prof = _resolve_cluster(plan, cluster, account)
    study_dir = plan.study_dir.resolve()
    if max_parallel is not None and max_parallel <= 0:
        raise ConfigError(f"--max-parallel must be > 0, got {max_parallel}")
    if dry_run:
        return _submit_locked(plan, prof, study_dir, cell_fns, True, retry_failed, max_parallel)[0]
    study_dir.mkdir(parents=True, exist_ok=True)  # a new study needs no prior `plan`
    with submit_lock(study_dir):  # one submit per study at a time: a second sees the first's cells
        report, jobs = _submit_locked(plan, prof, study_dir, cell_fns, False, retry_failed, max_parallel)
    if wait if wait is not None else prof.kind == "local":
        return replace(report, final=tuple(_wait(study_dir, list(report.submitted), jobs, on_update)))
    _DETACHED.extend(jobs)  # local: the controllers outlive this call; keep their Popen handles
    return report


@contextlib.contextmanager
def submit_lock(study_dir: Path, timeout_s: float = SUBMIT_LOCK_WAIT_S) -> Iterator[None]:
    """Exclusive ``<study>/.submit.lock`` (flock) while cells are selected, launched and recorded."""
    import fcntl

    with (study_dir / ".submit.lock").open("a") as fh:
        end = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > end:
                    raise StoreError(
                        f"{study_dir}: another `submit` of this study is still submitting; try again"
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _submit_locked(
    plan: Plan,
    prof: ClusterProfile,
    study_dir: Path,
    cell_fns: CellFunctions,
    dry_run: bool,
    retry_failed: bool,
    max_parallel: int | None,
) -> tuple[SubmitReport, list[Any]]:
    """Select, launch and record (under the study's submit lock); returns the report and the jobs."""
    ids = [c.cell_id for c in plan.cells]
    # always from the run directories (and the catalog when there is one): a lost catalog must not
    # resubmit finished cells
    statuses = {s.cell_id: s for s in cell_statuses(study_dir, ids)}
    todo, skipped = _select(plan, statuses, retry_failed)
    groups = array_groups(todo, prof, prof.get_qos(plan.qos)[1])
    report = SubmitReport(
        study_dir,
        prof.name,
        plan.qos,
        dry_run,
        skipped_done=tuple(skipped["done"]),
        skipped_active=tuple(skipped["active"]),
        skipped_failed=tuple(skipped["failed"]),
    )
    folder = study_dir / "submitit"
    job_name = f"fm4npp-{plan.spec.study}"
    if dry_run:
        scripts = (
            tuple(render_sbatch(g, prof, plan.qos, prof.account, job_name, folder) for g in groups)
            if prof.kind == "slurm"
            else ()
        )
        return replace(report, submitted={c.cell_id: "(dry run)" for c in todo}, scripts=scripts), []
    new_catalog = not catalog.catalog_path(study_dir).is_file()
    if todo:
        # record before launching: a catalog that cannot be written (held by a reader) stops here,
        # exit 5, with no job started
        record_plan(plan)
    if todo and cell_fns.needs_data:
        from fm4npp.sweep.dataset import ensure_dataset

        ensure_dataset(plan)  # events, splits and edges exist before any job starts
    for cell in todo:
        _prepare_run_dir(catalog.run_dir(study_dir, cell.cell_id), cell)
    parallel = local_parallelism(prof, max_parallel)
    submitted: dict[str, str] = {}
    jobs: list[Any] = []
    for i, group in enumerate(groups):
        try:
            rows, group_jobs = _submit_group(
                group, prof, plan.qos, folder, job_name, cell_fns, parallel, study_dir
            )
        except SubmitError:
            if i == 0 and new_catalog:  # the scheduler refused everything: leave no catalog behind
                for path in (
                    catalog.catalog_path(study_dir),
                    Path(f"{catalog.catalog_path(study_dir)}.wal"),
                ):
                    path.unlink(missing_ok=True)
            raise
        _record_submission(study_dir, rows)
        submitted.update({r["cell_id"]: r["job_id"] for r in rows})
        jobs += group_jobs
    return replace(report, submitted=submitted), jobs


def _submit_group(
    group: ArrayGroup,
    prof: ClusterProfile,
    qos: str,
    folder: Path,
    job_name: str,
    cell_fns: CellFunctions,
    parallel: int,
    study_dir: Path,
) -> tuple[list[dict[str, Any]], list[Any]]:
    from submitit.core.utils import FailedJobError

    ex = make_executor(prof, folder, group, qos, prof.account, job_name)
    local = prof.kind == "local"
    callables = [
        CellJob(
            cfg=c.run,
            run_dir=str(catalog.run_dir(study_dir, c.cell_id).path),
            cell_fns=cell_fns,
            signal_delay_s=prof.signal_delay_s,
            slots_dir=str(study_dir / ".slots") if local else None,
            max_parallel=parallel,
        )
        for c in group.cells
    ]
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), ex.batch():
            jobs = [ex.submit(fn) for fn in callables]
    except FailedJobError as err:
        msg = " ".join(str(err).split()) or stderr.getvalue().strip()
        raise SubmitError(
            f"{prof.name}: sbatch refused the submission (account '{prof.account}', qos '{qos}'): {msg}"
        ) from None
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    rows = []
    for cell, job in zip(group.cells, jobs, strict=True):
        jid = str(job.job_id)
        main, _, task = jid.partition("_")
        rows.append(
            {
                "cell_id": cell.cell_id,
                "job_id": local_job_id(jid) if local else jid,
                "array_job_id": main if task else None,
                "array_task": int(task) if task else None,
                "cluster": prof.name,
                "qos": qos,
                "attempt": 1,
                "submitted_at": now,
                "state": "SUBMITTED",
                "log_dir": str(folder),
            }
        )
    return _number_attempts(study_dir, rows), jobs


def _record_submission(study_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Record launched jobs; a reader holding the catalog this instant is waited for (readers are
    short), so that a launched job is never left unrecorded."""
    end = time.monotonic() + RECORD_RETRY_S
    while True:
        try:
            catalog.record_submission(study_dir, rows)
            return
        except StoreError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def _number_attempts(study_dir: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    previous = catalog.submissions(study_dir)
    counts = previous["cell_id"].value_counts().to_dict() if len(previous) else {}
    for r in rows:
        r["attempt"] = int(counts.get(r["cell_id"], 0)) + 1
    return rows


def _wait(
    study_dir: Path,
    cell_ids: list[str],
    jobs: list[Any],
    on_update: Callable[[list[CellStatus]], None] | None,
) -> list[CellStatus]:
    from submitit.local.local import LocalJob

    local = [j for j in jobs if isinstance(j, LocalJob)]
    while True:
        # local: polling reaps the controller processes (a summary is written before they exit)
        running = [j for j in local if not j.done()]
        statuses = cell_statuses(study_dir, cell_ids)
        if on_update is not None:
            on_update(statuses)
        if not running and not any(s.state in ACTIVE for s in statuses):
            return statuses
        time.sleep(POLL_S if any(s.state in ACTIVE for s in statuses) else LOCAL_EXIT_POLL_S)
