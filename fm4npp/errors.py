"""Domain errors. The CLI turns each into a one-line message and its exit code; never a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class FM4NPPError(Exception):
    """Base of every user-facing error. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class ConfigError(FM4NPPError):
    """A sweep file, cluster profile or option is invalid (exit 2)."""

    exit_code = 2


class BudgetError(FM4NPPError):
    """A plan exceeds its node-hour budget (exit 3)."""

    exit_code = 3


class DataError(FM4NPPError):
    """An event file, shard or dataset is missing, corrupt or of the wrong schema (exit 4)."""

    exit_code = 4


class StoreError(FM4NPPError):
    """A study directory, run directory or catalog is missing or inconsistent (exit 5)."""

    exit_code = 5


class SubmitError(FM4NPPError):
    """The scheduler refused a submission, or a backend is unusable here (exit 6)."""

    exit_code = 6


class TrainingError(FM4NPPError):
    """A training run failed (NaN loss, missing backend, ...) (exit 7)."""

    exit_code = 7


class FitError(FM4NPPError):
    """A scaling-law fit cannot be attempted on the given data (exit 8)."""

    exit_code = 8


class Interrupted(Exception):
    """A training function was asked to stop (``should_stop()`` turned True): it wrote a checkpoint (and
    the pending metrics) at ``step`` first, so calling it again resumes there. Not a user error: the job
    requeues itself on it, ``fm4npp-sweep train`` exits with status 75."""

    def __init__(self, step: int, checkpoint: Path, *, when: str | None = None) -> None:
        super().__init__(f"stopped {when or f'at step {step}'}; resume from {checkpoint}")
        self.step, self.checkpoint = step, checkpoint


def did_you_mean(word: str, allowed: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest allowed word, or ``""``."""
    close = difflib.get_close_matches(word, list(allowed), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def allowed_list(allowed: Iterable[str]) -> str:
    """Format allowed values for an error message: ``a, b, c``."""
    return ", ".join(sorted(str(a) for a in allowed))
