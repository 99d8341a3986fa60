"""One owner per run directory: an exclusive claim with a heartbeat, and a fencing check.

``runs/<cell>/owner.lock`` is created with ``O_CREAT | O_EXCL`` and holds JSON: a random ``token``, the
``job_id``, ``host``, ``pid``, ``started`` and ``heartbeat`` (Unix seconds). A background thread renews
the heartbeat every :data:`HEARTBEAT_S`. A second trainer finds the file and refuses to start with a
one-line :class:`ClaimError` naming the owner, unless the claim is *stale*: its heartbeat is older than
:func:`stale_after_s`, or its process is gone (same host, dead pid), or it is an earlier attempt of the
same job (a SLURM requeue). A stale claim is taken over (renamed aside, then created afresh).

Fencing: the writer calls :meth:`Claim.check` before every metrics part, checkpoint and summary write;
when the file no longer holds its token (taken over after its heartbeat stopped, or deleted), it raises
:class:`ClaimLost` and the stale trainer stops without writing. Claims are re-entrant within a process
(the job claims, the trainer inside it reuses the claim).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fm4npp.atomic import write_text
from fm4npp.errors import StoreError

LOCK_NAME = "owner.lock"
HEARTBEAT_S = 10.0  # heartbeat renewal period
STALE_AFTER_S = 300.0  # a claim whose heartbeat is older is stale (long pauses: NFS, checkpoint I/O)
STALE_ENV = "FM4NPP_CLAIM_STALE_S"  # override of STALE_AFTER_S (tests)


class ClaimError(StoreError):
    """The run directory is owned by another live trainer (exit 5)."""


class ClaimLost(ClaimError):
    """This process's claim was taken over or removed: stop writing (fencing)."""


def stale_after_s() -> float:
    return float(os.environ.get(STALE_ENV, STALE_AFTER_S))


def current_job_id() -> str:
    """The scheduler's id of this job (array task included), else ``pid<N>``."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID") or env.get("SUBMITIT_LOCAL_JOB_ID") or f"pid{os.getpid()}"


def lock_path(run_dir: Path) -> Path:
    return Path(run_dir) / LOCK_NAME


def read_owner(run_dir: Path) -> dict[str, Any] | None:
    """The claim's record, None when there is none (or it is unreadable: being written)."""
    try:
        doc = json.loads(lock_path(run_dir).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def process_running(pid: int) -> bool:
    """The process exists and is not a zombie: a killed trainer whose parent has not reaped it yet
    still answers ``kill(pid, 0)``, but owns nothing any more (its claim would otherwise look live
    until the heartbeat goes stale)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): kill(pid, 0) is all there is
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stale_reason(owner: dict[str, Any], job_id: str | None = None, now: float | None = None) -> str:
    """Why a claim is stale ("" when it is live)."""
    now = time.time() if now is None else now
    age = now - float(owner.get("heartbeat", 0) or 0)
    if age > stale_after_s():
        return f"heartbeat {age:.0f} s old"
    if owner.get("host") == socket.gethostname() and not process_running(int(owner.get("pid", 0) or 0)):
        return f"process {owner.get('pid')} is gone"
    if job_id is not None and owner.get("job_id") == job_id and owner.get("pid") != os.getpid():
        return f"earlier attempt of job {job_id}"
    return ""


def describe(owner: dict[str, Any], now: float | None = None) -> str:
    now = time.time() if now is None else now
    age = now - float(owner.get("heartbeat", 0) or 0)
    return (
        f"job {owner.get('job_id')} on {owner.get('host')} (pid {owner.get('pid')}, "
        f"heartbeat {age:.0f} s ago)"
    )


def live_owner(run_dir: Path) -> dict[str, Any] | None:
    """The owner of a run directory when its claim is live (``status``/``submit``: running)."""
    owner = read_owner(run_dir)
    if owner is None or stale_reason(owner):
        return None
    return owner


@dataclass
class Claim:
    run_dir: Path
    token: str
    record: dict[str, Any]
    depth: int = 1
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def path(self) -> Path:
        return lock_path(self.run_dir)

    def check(self) -> None:
        """Fencing: raise :class:`ClaimLost` unless the lock file still holds this claim's token."""
        owner = read_owner(self.run_dir)
        if owner is None or owner.get("token") != self.token:
            now_owner = f"now {describe(owner)}" if owner else "the lock file is gone"
            raise ClaimLost(
                f"{self.run_dir}: this trainer lost its claim ({now_owner}); stopping without writing"
            )

    def heartbeat(self) -> None:
        with _guard(self.run_dir):  # never overwrite a claim that a takeover just created
            owner = read_owner(self.run_dir)
            if owner is None or owner.get("token") != self.token:
                return  # fenced: the next check() stops the writer
            self.record["heartbeat"] = time.time()
            write_text(self.path, json.dumps(self.record))

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                self.heartbeat()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._beat, name=f"claim-{self.run_dir.name}", daemon=True
        )
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        owner = read_owner(self.run_dir)
        if owner is not None and owner.get("token") == self.token:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


_HELD: dict[Path, Claim] = {}
_HELD_LOCK = threading.Lock()


def held(run_dir: Path) -> Claim | None:
    """This process's claim on ``run_dir``, if any."""
    return _HELD.get(Path(run_dir).resolve())


def acquire(run_dir: Path, job_id: str | None = None) -> Claim:
    """Claim ``run_dir`` for this process (re-entrant), or raise :class:`ClaimError` naming the owner."""
    key = Path(run_dir).resolve()
    job_id = job_id or current_job_id()
    with _HELD_LOCK:
        mine = _HELD.get(key)
        if mine is not None:
            mine.depth += 1
            return mine
        key.mkdir(parents=True, exist_ok=True)
        now = time.time()
        record = {
            "token": uuid.uuid4().hex,
            "job_id": job_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": now,
            "heartbeat": now,
        }
        for _ in range(3):
            try:
                fd = os.open(lock_path(key), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                _take_over_if_stale(key, job_id)
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(record))
                fh.flush()
                os.fsync(fh.fileno())
            claim = Claim(key, record["token"], record)
            claim.start()
            _HELD[key] = claim
            return claim
        owner = read_owner(key) or {}
        raise ClaimError(f"{key}: could not claim the run directory (owner: {describe(owner)})")


@contextlib.contextmanager
def _guard(run_dir: Path) -> Iterator[None]:
    """Serialise takeovers and heartbeats of one run directory (flock; best effort where unsupported)."""
    import fcntl

    with (Path(run_dir) / f".{LOCK_NAME}.guard").open("a") as fh:
        with contextlib.suppress(OSError):
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        yield


def _take_over_if_stale(run_dir: Path, job_id: str) -> None:
    """Move a stale claim aside (under a guard lock); raise ClaimError when the claim is live."""
    with _guard(run_dir):
        owner = read_owner(run_dir)
        if owner is None:
            if lock_path(run_dir).exists():  # being written this instant, or garbage: judge by age
                age = time.time() - lock_path(run_dir).stat().st_mtime
                if age < stale_after_s():
                    raise ClaimError(f"{run_dir}: run directory is being claimed by another trainer")
            else:
                return
        else:
            why = stale_reason(owner, job_id)
            if not why:
                raise ClaimError(
                    f"{run_dir}: run directory is owned by {describe(owner)}; refusing to start a "
                    f"second trainer (wait for it, or cancel that job)"
                )
        aside = run_dir / f"{LOCK_NAME}.stale-{(owner or {}).get('token', 'x')}"
        with contextlib.suppress(FileNotFoundError):
            lock_path(run_dir).replace(aside)


def release(claim: Claim) -> None:
    with _HELD_LOCK:
        claim.depth -= 1
        if claim.depth > 0:
            return
        _HELD.pop(claim.run_dir, None)
    claim.release()


@contextlib.contextmanager
def claimed(run_dir: Path, job_id: str | None = None) -> Iterator[Claim]:
    """``with claimed(run_dir) as c: ... c.check() before each write ...``"""
    claim = acquire(run_dir, job_id)
    try:
        yield claim
    finally:
        release(claim)


def check(run_dir: Path) -> None:
    """Fencing for a writer that may or may not hold a claim: checks this process's claim if any."""
    claim = held(run_dir)
    if claim is not None:
        claim.check()
