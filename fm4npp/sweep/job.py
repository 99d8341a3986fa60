"""The job: a checkpointable callable that submitit pickles, and that runs one cell (ARCHITECTURE §5).

``CellJob(cfg, run_dir)()`` = pretrain → evaluate → ``summary.json``. Preemption and time limits:

- submitit installs its SIGUSR2 handler (checkpoint → requeue → exit) before loading us; once running,
  :class:`CellJob` replaces it with a handler that only raises a flag, which the training loop polls
  through ``should_stop``. The loop checkpoints and raises ``Interrupted``; the job then hands over to
  submitit's own handler, which calls :meth:`CellJob.checkpoint` (a ``DelayedSubmission`` of this job,
  attempt + 1), rewrites the job pickle and requeues (``scontrol requeue`` / local exit code 144).
- During evaluation the flag cannot be polled, so a signal goes straight to submitit's handler; the
  requeued job carries the pretraining result and only re-runs evaluation.
- A signal in the first :data:`EARLY_SIGNAL_S` of an attempt while SLURM still reports plenty of time
  left is ignored (SLURM 22.05 backfill may signal a freshly requeued job; requeuing on it would loop).
  A real preemption that early loses nothing: SLURM kills and requeues the job itself.

Rank 0 writes; other ranks never touch the store. Multi-GPU cells get ``MASTER_ADDR``/``RANK``/… from
submitit's ``TorchDistributedEnvironment``; the training entry point initialises the process group.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import IO, Any

from fm4npp.config import RunConfig
from fm4npp.errors import FM4NPPError, Interrupted
from fm4npp.store import claim
from fm4npp.store.record import CellState, RunRecord
from fm4npp.store.rundir import RunDir
from fm4npp.sweep.scheduler import parse_duration_s

log = logging.getLogger("fm4npp.job")

EARLY_SIGNAL_S = 60.0  # a SIGUSR2 this soon after an attempt starts is checked against the time left
EARLY_SIGNAL_ENV = "FM4NPP_EARLY_SIGNAL_S"  # override (tests of the signal path on a real cluster)
SIGNAL_SLACK_S = 60.0  # SLURM may deliver --signal up to 60 s before the requested time (sbatch(1))
SLOT_POLL_S = 0.2  # local executor: how often a waiting cell retries the max_parallel slots

PretrainFn = Callable[..., dict[str, Any]]  # (cfg, run_dir, *, should_stop) -> the trainer's result
EvaluateFn = Callable[[RunConfig, Path], "dict[str, Any] | None"]  # None: no evaluation step ran


def pretrain_cell(
    cfg: RunConfig, run_dir: Path, *, should_stop: Callable[[], bool] | None = None
) -> dict[str, Any]:
    """The real pretraining (imports torch in the job, never in the submitting process): a cosine cell,
    or a WSD cooldown branch with its trunk (``fm4npp.train.wsd`` dispatches on ``train.schedule``)."""
    from fm4npp.train.wsd import pretrain_cell as pretrain

    return pretrain(cfg, run_dir, should_stop=should_stop)


def evaluate_cell(cfg: RunConfig, run_dir: Path) -> dict[str, Any] | None:
    """The real downstream evaluation of a pretrained cell; None when the sweep turned it off."""
    if not cfg.eval.enabled:
        return None
    from fm4npp.train.downstream import evaluate_cell as evaluate

    return evaluate(cfg, run_dir)


@dataclass(frozen=True)
class CellFunctions:
    """What a job runs for one cell, injected into :class:`CellJob` and ``submit_plan`` (tests pass
    doubles). submitit pickles it: the functions must be importable module-level names (or
    ``functools.partial`` of them) in the job's process."""

    pretrain: PretrainFn = pretrain_cell  # should_stop → checkpoint, then raise errors.Interrupted
    evaluate: EvaluateFn = evaluate_cell
    needs_data: bool = True  # submit prepares the study's events before the first job starts


REAL_CELL = CellFunctions()


@dataclass
class _Signals:
    """Per-process signal state (never pickled)."""

    started: float
    signal_delay_s: int
    flag_at: float | None = None
    phase: str = "setup"
    submitit_handler: Any = None

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.phase == "evaluate" and callable(self.submitit_handler):
            self.submitit_handler(signum, frame)  # checkpoint (pretraining done) → requeue → exit
            return
        self.flag_at = time.monotonic()

    def should_stop(self) -> bool:
        if self.flag_at is None:
            return False
        early_s = float(os.environ.get(EARLY_SIGNAL_ENV, EARLY_SIGNAL_S))
        if self.flag_at - self.started < early_s:
            left = slurm_time_left_s()
            if left is not None and left > self.signal_delay_s + SIGNAL_SLACK_S:
                log.warning(
                    "ignoring SIGUSR2 %.0f s after start: %.0f s left", self.flag_at - self.started, left
                )
                self.flag_at = None
                return False
        return True


def slurm_time_left_s() -> float | None:
    """Seconds before this SLURM job's time limit (``squeue %L``), or None outside SLURM."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    try:
        out = subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%L"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_duration_s(out)


def _job_environment() -> Any:
    """submitit's JobEnvironment when running inside a submitit job, else None."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    from submitit import JobEnvironment

    return JobEnvironment()


@contextlib.contextmanager
def local_slot(slots_dir: Path, n_slots: int, job_id: str) -> Iterator[IO[str]]:
    """Hold one of ``n_slots`` flock slots: at most ``max_parallel`` local cells run at once.

    The slot file holds the job id while held, so ``status`` can tell running from waiting.
    A killed process releases its lock with its file descriptors.
    """
    slots_dir.mkdir(parents=True, exist_ok=True)
    while True:
        for i in range(max(1, n_slots)):
            fh = (slots_dir / f"slot-{i}").open("a+")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            fh.seek(0)
            fh.truncate()
            fh.write(job_id)
            fh.flush()
            try:
                yield fh
            finally:
                fh.seek(0)
                fh.truncate()
                fh.close()
            return
        time.sleep(SLOT_POLL_S)


@dataclass
class CellJob:
    """One cell, as submitit pickles it. ``pretrain_result`` and ``attempt`` survive requeues."""

    cfg: RunConfig
    run_dir: str  # absolute path of runs/<cell_id>
    cell_fns: CellFunctions = REAL_CELL
    signal_delay_s: int = 120
    slots_dir: str | None = None  # local executor: flock slots that cap concurrent cells
    max_parallel: int = 0
    attempt: int = 1
    elapsed_before_s: float = 0.0  # wall time of the earlier attempts of this submission
    pretrain_result: dict[str, Any] | None = None
    _started: float = field(
        default=0.0, init=False, repr=False, compare=False
    )  # this attempt (monotonic)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """What submitit requeues: this job, one attempt later (state lives in the run dir)."""
        from submitit.helpers import DelayedSubmission

        ran_s = time.monotonic() - self._started if self._started else 0.0
        return DelayedSubmission(
            replace(self, attempt=self.attempt + 1, elapsed_before_s=self.elapsed_before_s + ran_s)
        )

    def __call__(self) -> RunRecord | None:
        env = _job_environment()
        rank = env.global_rank if env is not None else 0
        if env is not None and env.num_tasks > 1:
            from submitit.helpers import TorchDistributedEnvironment

            # Each rank sees the GPUs SLURM bound to it; the trainer picks cuda:LOCAL_RANK when it
            # sees several, cuda:0 otherwise (gpu-bind=closest gives one per task).
            TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        self._started = time.monotonic()
        # a fresh job process: the adapters' per-fit progress lines go to its log
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(message)s")
        sig = _Signals(started=self._started, signal_delay_s=self.signal_delay_s)
        sig.submitit_handler = signal.getsignal(signal.SIGUSR2)
        signal.signal(signal.SIGUSR2, sig.on_signal)
        job_id = str(env.job_id) if env is not None else f"pid{os.getpid()}"
        with contextlib.ExitStack() as stack:
            if self.slots_dir:
                stack.enter_context(local_slot(Path(self.slots_dir), self.max_parallel, job_id))
            if rank == 0:  # one owner per run directory; a live owner elsewhere → ClaimError, no summary
                stack.enter_context(claim.claimed(Path(self.run_dir), job_id))
            return self._run(RunDir(Path(self.run_dir)), rank, sig, env, job_id)

    def _run(self, rd: RunDir, rank: int, sig: _Signals, env: Any, job_id: str) -> RunRecord | None:
        if rank == 0:
            rd.ensure()
            _link_logs(env, rd, job_id)
            if rd.phase() is CellState.DONE:
                return rd.read_record()
        try:
            if self.pretrain_result is None:
                sig.phase = "pretrain"
                self.pretrain_result = self.cell_fns.pretrain(
                    self.cfg, rd.path, should_stop=sig.should_stop
                )
            if rank != 0:
                return None
            sig.phase = "evaluate"
            if sig.flag_at is not None and sig.should_stop():
                when = "between pretraining and evaluation"
                raise Interrupted(-1, rd.last_checkpoint, when=when)
            evaluation = self.cell_fns.evaluate(self.cfg, rd.path)
        except claim.ClaimError:
            raise  # another trainer owns the run directory: its files are not ours to touch
        except Interrupted as err:
            log.warning("cell %s interrupted (%s): checkpointed, requeuing", self.cfg.cell_id, err)
            self._requeue(rank, sig, rd)
            raise  # only reached outside submitit
        except (Exception, KeyboardInterrupt) as err:
            if rank == 0:
                reason = (
                    "cancelled (SIGINT)"
                    if isinstance(err, KeyboardInterrupt)
                    else str(err)
                    if isinstance(err, FM4NPPError)
                    else f"{type(err).__name__}: {err}"
                )
                trainer = rd.read_pretrain() or {}
                if trainer.get("status") == "failed":  # the trainer's own failure record
                    reason = str(trainer.get("reason") or reason)
                trained = {**trainer, **(self.pretrain_result or {})}
                rd.write_record(self._record("failed", reason, job_id, trained))
            raise
        record = self._record("done", None, job_id, self.pretrain_result, evaluation)
        rd.write_record(record)
        return record

    def _requeue(self, rank: int, sig: _Signals, rd: RunDir) -> None:
        """Hand over to submitit's handler: checkpoint() → rewrite the pickle → requeue → exit."""
        if rank != 0:
            raise SystemExit(-1)  # rank 0 requeues the whole job
        handler = sig.submitit_handler
        if not callable(handler):
            return
        try:
            handler(signal.SIGUSR2, None)
        except subprocess.CalledProcessError as err:
            # e.g. SLURM is already requeuing a preempted job: it restarts from the checkpoint anyway
            log.warning("requeue refused (%s); exiting for the scheduler to restart", err)
            raise SystemExit(-1) from None
        except Exception as err:  # submitit: "timed-out too many times"
            rd.write_record(self._record("failed", f"not requeued: {err}", "", self.pretrain_result))
            raise

    def _record(
        self,
        status: str,
        reason: str | None,
        job_id: str,
        trainer: dict[str, Any] | None,
        evaluation: dict[str, Any] | None = None,
    ) -> RunRecord:
        elapsed_s = time.monotonic() - self._started if self._started else 0.0
        return RunRecord.final(
            self.cfg,
            trainer,
            status,
            reason,
            wall_time_s=self.elapsed_before_s + elapsed_s,
            attempt=self.attempt,
            job_id=job_id,
            evaluation=evaluation,
        )


def _link_logs(env: Any, rd: RunDir, job_id: str) -> None:
    """``runs/<cell>/logs/<job_id>.out|.err`` → submitit's log files (one pair per attempt)."""
    if env is None:
        return
    paths = env.paths
    for src, suffix in ((paths.stdout, "out"), (paths.stderr, "err")):
        link = rd.logs / f"{job_id}.{suffix}"
        with contextlib.suppress(OSError):
            if not link.is_symlink():
                link.symlink_to(src)
