"""Where every cell of a study stands, derived from artefacts and the scheduler (ARCHITECTURE §4).

Nothing here is hand-kept: a cell is ``done``/``failed`` by its run record (``RunDir.phase``); otherwise
its latest submission (catalog) is looked up in the scheduler (``sacct``; ``squeue`` when accounting is absent;
process liveness for the local executor). Watchdog: a job that left the queue without a summary is
``failed``. Imports neither torch nor submitit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fm4npp.errors import StoreError, SubmitError, allowed_list
from fm4npp.store import catalog, claim
from fm4npp.store.integrity import run_problem
from fm4npp.store.record import ACTIVE, CellState
from fm4npp.store.rundir import RunDir
from fm4npp.sweep.scheduler import GONE, JobInfo, is_local, job_infos, local_pid, submitit_job_id

VISIBILITY_GRACE_S = 60.0  # a job submitted this recently may not be visible in sacct/squeue yet
_PENDING = {"PENDING", "CONFIGURING", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED"}
_FINAL = (CellState.DONE, CellState.FAILED)
_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"}
_REQUEUED = {"REQUEUED", "PREEMPTED"}


@dataclass(frozen=True)
class CellStatus:
    cell_id: str
    state: CellState  # planned | pending | running | done | failed | preempted-requeued | corrupt
    reason: str
    attempts: int  # submissions + scheduler requeues
    elapsed_s: float | None
    last_loss: float | None
    log_path: str | None
    job_id: str | None

    def row(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state.value}


def _last_loss(rd: RunDir) -> float | None:
    parts = sorted(rd.metrics.glob("part-*.parquet")) if rd.metrics.is_dir() else []
    if not parts:
        return None
    import pyarrow.parquet as pq

    try:
        col = pq.read_table(parts[-1], columns=["train_loss"]).column("train_loss")
    except (OSError, KeyError, ValueError):
        return None
    return float(col[len(col) - 1].as_py()) if len(col) else None


def log_files(sub: dict[str, Any]) -> list[Path]:
    """submitit's stdout/stderr of a submission row (rank 0)."""
    jid = submitit_job_id(str(sub["job_id"]))
    folder = Path(str(sub["log_dir"]))
    return [folder / f"{jid}_0_log.out", folder / f"{jid}_0_log.err"]


def _latest_submissions(study_dir: Path) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    subs = catalog.submissions(study_dir)
    latest: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    for row in subs.to_dict("records"):
        latest[row["cell_id"]] = row
        counts[row["cell_id"]] = counts.get(row["cell_id"], 0) + 1
    return latest, counts


def cell_statuses(study_dir: Path, cell_ids: list[str]) -> list[CellStatus]:
    """Status of the given cells of a study (they need not be in the catalog's ``cells`` yet)."""
    latest, counts = _latest_submissions(study_dir)
    active_jobs = [
        str(latest[c]["job_id"])
        for c in cell_ids
        if c in latest and catalog.run_dir(study_dir, c).phase() not in _FINAL
    ]
    infos = job_infos(active_jobs, Path(study_dir) / ".slots")
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    return [_derive(c, Path(study_dir), latest.get(c), counts.get(c, 0), infos, now) for c in cell_ids]


def _derive(
    cell_id: str,
    study_dir: Path,
    sub: dict[str, Any] | None,
    n_subs: int,
    infos: dict[str, JobInfo],
    now: datetime,
) -> CellStatus:
    rd = catalog.run_dir(study_dir, cell_id)
    phase = rd.phase()
    info = infos.get(str(sub["job_id"])) if sub else None
    attempts = n_subs + (info.restarts if info else 0)
    log_path = str(log_files(sub)[0]) if sub else None
    job_id = str(sub["job_id"]) if sub else None

    def make(state: CellState, reason: str, elapsed: float | None) -> CellStatus:
        return CellStatus(cell_id, state, reason, attempts, elapsed, _last_loss(rd), log_path, job_id)

    # corrupt: the record is unreadable (phase CORRUPT) or a metrics part is; the reason names the file
    problem = run_problem(rd)
    if phase is CellState.CORRUPT or problem is not None:
        return make(CellState.CORRUPT, problem or "summary.json unreadable", None)
    if phase in _FINAL:
        record = rd.read_record()
        if record is None:  # the trainer's own failure record (``fm4npp-sweep train``)
            return make(CellState.FAILED, str((rd.read_pretrain() or {}).get("reason") or ""), None)
        # the job counts its own requeues (record "attempt"); earlier submissions add theirs
        attempts = max(attempts, n_subs - 1 + (record.attempt or 1))
        return make(phase, record.reason or "", record.wall_time_s)
    if phase is CellState.EVALUATING and info is not None and info.state in ("RUNNING", "COMPLETING"):
        return make(CellState.RUNNING, "downstream evaluation", info.elapsed_s)
    owner = claim.live_owner(rd.path)
    if owner is not None:  # a live trainer holds the run directory, whatever the scheduler says
        return make(CellState.RUNNING, f"owned by {claim.describe(owner)}", info.elapsed_s if info else None)
    if sub is None:
        return make(CellState.PLANNED, "", None)
    age_s = (
        (now - sub["submitted_at"].to_pydatetime()).total_seconds()
        if sub.get("submitted_at") is not None
        else 1e9
    )
    if info is None or info.state == GONE:
        local = is_local(str(sub["job_id"]))  # a local job is visible at once
        if age_s < VISIBILITY_GRACE_S and not local and sub.get("state") != "CANCELLED":
            return make(CellState.PENDING, "submitted", None)
        why = "cancelled" if sub.get("state") == "CANCELLED" else "job left the queue without a summary"
        return make(CellState.FAILED, why + _resumable(rd), None)
    if info.state in _RUNNING:
        return make(CellState.RUNNING, f"attempt {attempts}" if attempts > 1 else "", info.elapsed_s)
    if info.state in _REQUEUED or (info.state in _PENDING and info.restarts > 0):
        return make(CellState.REQUEUED, info.reason or info.state.lower(), info.elapsed_s)
    if info.state in _PENDING:
        return make(CellState.PENDING, info.reason, None)
    why = f"{info.state.lower()} without a summary"
    return make(CellState.FAILED, why + _resumable(rd), info.elapsed_s)


def _resumable(rd: RunDir) -> str:
    return " (checkpoint kept: --retry-failed resumes)" if rd.last_checkpoint.is_file() else ""


def study_status(study_dir: Path) -> list[CellStatus]:
    """Every planned cell of the study (catalog ``cells``), in plan order."""
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise StoreError(f"{study_dir}: no such study directory")
    if not catalog.catalog_path(study_dir).is_file() and (study_dir / "runs").is_dir():
        # the catalog is gone: the run directories still say what finished
        runs = sorted(p.name for p in (study_dir / "runs").iterdir() if p.is_dir())
        return cell_statuses(study_dir, runs)
    cells = catalog.planned_cells(study_dir)
    return cell_statuses(study_dir, [str(c) for c in cells["cell_id"]])


def _match_cells(
    statuses: list[CellStatus], wanted: list[str] | None, study_dir: Path
) -> list[CellStatus]:
    if not wanted:
        return statuses
    out = []
    for w in wanted:
        hits = [s for s in statuses if s.cell_id == w] or [
            s for s in statuses if s.cell_id.startswith(w)
        ]
        if len(hits) != 1:
            kind = "no cell" if not hits else f"{len(hits)} cells"
            raise StoreError(
                f"{study_dir}: {kind} match '{w}'; cells: {allowed_list(s.cell_id for s in statuses)}"
            )
        out.append(hits[0])
    return out


def cancel(study_dir: Path, cells: list[str] | None = None) -> list[CellStatus]:
    """Cancel the pending/running jobs of the study (or of ``cells``); returns what was cancelled."""
    study_dir = Path(study_dir)
    targets = [
        s
        for s in _match_cells(study_status(study_dir), cells, study_dir)
        if s.state in ACTIVE and s.job_id
    ]
    slurm_ids = [s.job_id for s in targets if s.job_id and not is_local(s.job_id)]
    if slurm_ids:
        out = subprocess.run(
            ["scancel", *slurm_ids], capture_output=True, text=True, timeout=60, check=False
        )
        if out.returncode:
            raise SubmitError(f"scancel {' '.join(slurm_ids)}: {out.stderr.strip()}")
    for s in targets:
        pid = local_pid(s.job_id) if s.job_id else None
        if pid is not None:
            # the submitit controller turns SIGINT into SIGINT + SIGKILL of its tasks
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
    if targets:
        with catalog.open_catalog(study_dir) as con:
            ids = [s.job_id for s in targets]
            con.execute(
                f"UPDATE submissions SET state = 'CANCELLED' WHERE job_id IN "
                f"({', '.join('?' for _ in ids)})",
                ids,
            )
    return targets


def logs(study_dir: Path, cell: str) -> list[Path]:
    """The log files of a cell's latest submission (stdout, stderr), existing ones only."""
    study_dir = Path(study_dir)
    status = _match_cells(study_status(study_dir), [cell], study_dir)[0]
    latest, _ = _latest_submissions(study_dir)
    sub = latest.get(status.cell_id)
    if sub is None:
        raise StoreError(f"{study_dir}: cell '{status.cell_id}' has never been submitted")
    files = [p for p in log_files(sub) if p.is_file()]
    if not files:
        raise StoreError(f"{log_files(sub)[0]}: no log yet for cell '{status.cell_id}' ({status.state})")
    return files
