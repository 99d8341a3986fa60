"""Job states from the scheduler, without submitit: ``sacct`` (with requeue history), ``squeue`` for
jobs accounting does not know (yet, or at all), and process liveness for the local executor.

Job ids are SLURM's (``123``, ``123_4`` for array task 4) or ``local-<pid>`` for the local executor
(the pid of submitit's local controller; its cell holds a slot file naming it while it runs).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fm4npp.store.claim import process_running

LOCAL_PREFIX = "local-"  # job ids of submitit's local executor: local-<pid of its controller>
GONE = "GONE"  # not known to the scheduler (any more): finished long ago, or killed
_ARRAY_RE = re.compile(r"^(?P<main>\d+)_\[(?P<ranges>[\d,\-]+)(%\d+)?\]$")
SCHEDULER_TIMEOUT_S = 30


def local_job_id(pid: str | int) -> str:
    """The job id recorded for a local-executor job (submitit's id is the controller's pid)."""
    return f"{LOCAL_PREFIX}{pid}"


def local_pid(job_id: str) -> int | None:
    """The controller pid of a local job id; None for a SLURM job id."""
    pid = job_id.removeprefix(LOCAL_PREFIX) if job_id.startswith(LOCAL_PREFIX) else ""
    return int(pid) if pid.isdigit() else None


def is_local(job_id: str) -> bool:
    return job_id.startswith(LOCAL_PREFIX)


def submitit_job_id(job_id: str) -> str:
    """The id submitit knows a recorded job by (its log files are named after it)."""
    return job_id.removeprefix(LOCAL_PREFIX)


@dataclass(frozen=True)
class JobInfo:
    state: str  # SLURM state word (PENDING, RUNNING, REQUEUED, COMPLETED, FAILED, …) or GONE
    elapsed_s: float | None = None
    restarts: int = 0  # requeues seen by accounting
    reason: str = ""


def expand_job_id(text: str) -> list[str]:
    """``123_[0-2,5%4]`` → ``123_0 123_1 123_2 123_5``; plain ids unchanged."""
    m = _ARRAY_RE.match(text)
    if not m:
        return [text]
    out = []
    for part in m.group("ranges").split(","):
        lo, _, hi = part.partition("-")
        out += [f"{m.group('main')}_{k}" for k in range(int(lo), int(hi or lo) + 1)]
    return out


def parse_duration_s(text: str) -> float | None:
    """SLURM ``[D-]HH:MM:SS``, ``MM:SS`` or ``SS`` → seconds; None for UNLIMITED, INVALID, empty."""
    text = text.strip()
    if not text or not text[0].isdigit():
        return None
    days, _, clock = text.rpartition("-")
    total = 0.0
    for p in clock.split(":"):
        total = total * 60 + float(p)
    return total + (float(days) * 86400 if days else 0.0)


def _run(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=SCHEDULER_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def _parse(text: str, restarts_from_rows: bool) -> dict[str, JobInfo]:
    rows: dict[str, list[list[str]]] = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 4 or "." in fields[0]:
            continue
        for jid in expand_job_id(fields[0]):
            rows.setdefault(jid, []).append(fields)
    out = {}
    for jid, rs in rows.items():
        _, state, elapsed, reason = rs[-1][:4]
        out[jid] = JobInfo(
            state=state.split()[0].rstrip("+"),  # "CANCELLED by 0" → CANCELLED
            elapsed_s=parse_duration_s(elapsed),
            restarts=len(rs) - 1 if restarts_from_rows else 0,
            reason="" if reason in ("None", "") else reason,
        )
    return out


def slurm_infos(job_ids: list[str]) -> dict[str, JobInfo]:
    """States of SLURM jobs: sacct first, squeue for the ones sacct lacks; GONE for the rest."""
    if not job_ids:
        return {}
    mains = sorted({j.split("_")[0] for j in job_ids})
    sel = ",".join(mains)
    acct = _run(["sacct", "-X", "-D", "-n", "-P", "-o", "JobID,State,Elapsed,Reason", "-j", sel])
    infos = _parse(acct, restarts_from_rows=True) if acct else {}
    missing = [j for j in job_ids if j not in infos]
    if missing:
        queue = _run(["squeue", "-h", "-r", "--states=all", "-o", "%i|%T|%M|%r", "-j", sel])
        if queue:
            infos.update(
                {k: v for k, v in _parse(queue, restarts_from_rows=False).items() if k not in infos}
            )
    return {j: infos.get(j, JobInfo(GONE)) for j in job_ids}


def _local_alive(pid: int) -> bool:
    """The pid is a live (not zombie) submitit local controller."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return process_running(pid) and b"submitit" in cmdline


def local_infos(job_ids: list[str], slots_dir: Path) -> dict[str, JobInfo]:
    holding = set()
    if slots_dir.is_dir():
        for slot in slots_dir.glob("slot-*"):
            try:
                holding.add(slot.read_text().strip())
            except OSError:
                continue
    out = {}
    for jid in job_ids:
        pid = local_pid(jid)
        if pid is None or not _local_alive(pid):
            out[jid] = JobInfo(GONE)
        elif str(pid) in holding:
            out[jid] = JobInfo("RUNNING")
        else:
            out[jid] = JobInfo("PENDING", reason="waiting for a local slot (max_parallel)")
    return out


def job_infos(job_ids: list[str], slots_dir: Path) -> dict[str, JobInfo]:
    local = [j for j in job_ids if is_local(j)]
    slurm = [j for j in job_ids if not is_local(j)]
    return {**local_infos(local, slots_dir), **slurm_infos(slurm)}
