"""The run-record contract (ARCHITECTURE §4): what ``summary.json`` holds, and the states of a cell.

A :class:`RunRecord` is written once per run, last, by whoever finishes the run (the job after
evaluation, ``fm4npp-sweep train`` after pretraining); its presence means the run ended, its
``status`` says how. The trainer's own result (losses, D, C, provenance) is ``pretrain.json``, a
plain JSON object written when pretraining ends; the final record carries its keys in
:attr:`RunRecord.training`. On disk the record is one flat JSON object (the catalog's ``runs`` view
reads it with DuckDB; ``finished_cells`` its columns). ``SCHEMA_VERSION`` changes when a typed key's
meaning does.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from fm4npp.config import RunConfig
from fm4npp.errors import StoreError, allowed_list

SCHEMA_VERSION = 1  # 0: records written before the schema was versioned (read the same way)
STATUSES = ("done", "failed")


class CellState(enum.StrEnum):
    """Where a cell stands. ``RunDir.phase`` derives the first five from artefacts alone; the status
    module adds the scheduler's view (pending, running, preempted-requeued)."""

    PLANNED = "planned"  # no final record (never ran, still running, or died: ask the scheduler)
    EVALUATING = "evaluating"  # pretrained (pretrain.json), final record not yet written
    DONE = "done"
    FAILED = "failed"
    CORRUPT = "corrupt"  # summary.json unreadable or against the schema
    PENDING = "pending"
    RUNNING = "running"
    REQUEUED = "preempted-requeued"


#: States in which a cell has a job in the scheduler (never submitted twice).
ACTIVE = (CellState.PENDING, CellState.RUNNING, CellState.REQUEUED)


# Record keys with their JSON types; everything else the trainer reported goes to ``training``.
_TYPED: dict[str, tuple[tuple[type, ...], str]] = {
    "cell_id": ((str,), "a string"),
    "study": ((str,), "a string"),
    "model": ((str,), "a string"),
    "dataset": ((str,), "a string"),
    "seed": ((int,), "an integer"),
    "n_events": ((int,), "an integer"),
    "wall_time_s": ((int, float), "a number"),
    "status": ((str,), "a string"),
    "reason": ((str,), "a string"),
    "attempt": ((int,), "an integer"),
    "job_id": ((str,), "a string"),
    "evaluated": ((bool,), "true or false"),
    "eval": ((dict,), "an object"),
    "schema_version": ((int,), "an integer"),
}
# The trainer's numeric results (kept in ``training``): numbers or null, never strings.
_NUMERIC_TRAINING = ("final_val_loss", "smoothed_val_loss", "hits_seen", "events_seen", "flops", "step")


@dataclass(frozen=True)
class RunRecord:
    """One finished run (``summary.json``), or the trainer's result (``pretrain.json``)."""

    cell_id: str
    status: str  # one of STATUSES
    reason: str | None = None
    study: str | None = None
    model: str | None = None
    dataset: str | None = None
    seed: int | None = None
    n_events: int | None = None
    wall_time_s: float | None = None  # the trainer's, when it reports one; else the job's
    attempt: int | None = None  # the job's attempt (requeues + 1); None when no job ran it
    job_id: str | None = None
    evaluated: bool | None = None  # None in records written before evaluation was recorded
    eval: Mapping[str, Any] | None = None  # downstream evaluation results
    training: Mapping[str, Any] = field(default_factory=dict)  # losses, D, C, provenance, ...
    schema_version: int = SCHEMA_VERSION

    # -- typed views of the trainer's result ----------------------------------------------------------
    def metric(self, key: str) -> float | None:
        value = self.training.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def done(self) -> bool:
        return self.status == "done"

    # -- JSON -----------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The flat JSON object: identity, the trainer's keys, then the outcome (``None`` keys dropped
        for the job fields a trainer's record does not have)."""
        out: dict[str, Any] = {"schema_version": self.schema_version, "cell_id": self.cell_id}
        for key in ("study", "model", "dataset", "seed", "n_events"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        out.update(self.training)
        if self.wall_time_s is not None:
            out["wall_time_s"] = self.wall_time_s
        out["status"], out["reason"] = self.status, self.reason
        for key in ("attempt", "job_id", "evaluated"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.eval is not None:
            out["eval"] = dict(self.eval)
        return out

    @classmethod
    def from_json(cls, doc: Any, path: str = "summary.json") -> RunRecord:
        """Validate a parsed JSON object; a StoreError names the file, the key and what it must be."""
        if not isinstance(doc, dict):
            raise StoreError(f"{path}: a run record must be a JSON object, got {type(doc).__name__}")
        version = doc.get("schema_version", 0)
        if not isinstance(version, int) or isinstance(version, bool):
            raise StoreError(f"{path}: key 'schema_version' must be an integer, got {version!r}")
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{path}: key 'schema_version' is {version}; this fm4npp-sweep reads up to "
                f"{SCHEMA_VERSION} (upgrade it)"
            )
        if not isinstance(doc.get("cell_id"), str):
            raise StoreError(f"{path}: key 'cell_id' missing or not a string")
        if doc.get("status") not in STATUSES:
            raise StoreError(
                f"{path}: key 'status' is {doc.get('status')!r}; allowed: {allowed_list(STATUSES)}"
            )
        kwargs: dict[str, Any] = {}
        training: dict[str, Any] = {}
        names = {f.name for f in fields(cls)}
        for key, value in doc.items():
            if key in _TYPED:
                kinds, what = _TYPED[key]
                if value is not None and (
                    not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)
                ):
                    raise StoreError(f"{path}: key '{key}' must be {what}, got {value!r}")
                if key in names:
                    kwargs[key] = value
                    continue
            elif key in _NUMERIC_TRAINING and value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float))
            ):
                raise StoreError(f"{path}: key '{key}' must be a number, got {value!r}")
            training[key] = value
        wall = kwargs.get("wall_time_s")
        if wall is not None and not math.isfinite(float(wall)):
            raise StoreError(f"{path}: key 'wall_time_s' must be finite, got {wall!r}")
        kwargs["schema_version"] = SCHEMA_VERSION if version else 0
        return cls(training=training, **kwargs)

    # -- building -------------------------------------------------------------------------------------
    @classmethod
    def final(
        cls,
        cfg: RunConfig,
        trainer: Mapping[str, Any] | None,
        status: str,
        reason: str | None,
        *,
        wall_time_s: float,
        attempt: int | None = None,
        job_id: str | None = None,
        evaluation: Mapping[str, Any] | None = None,
    ) -> RunRecord:
        """The final record of cell ``cfg``: its identity, what the trainer returned (``trainer``
        wins over the identity and ``wall_time_s``), then the outcome. ``evaluated`` is whether an
        evaluation result is attached."""
        doc: dict[str, Any] = {
            "cell_id": cfg.cell_id,
            "study": cfg.study,
            "model": cfg.model,
            "dataset": cfg.dataset,
            "seed": cfg.seed,
            "n_events": cfg.n_events,
            "wall_time_s": wall_time_s,
            **(trainer or {}),
            "status": status,
            "reason": reason,
            "attempt": attempt,
            "job_id": job_id,
            "evaluated": evaluation is not None,
            "eval": dict(evaluation) if evaluation is not None else None,
            "schema_version": SCHEMA_VERSION,
        }
        return cls.from_json(doc, f"run record of cell {cfg.cell_id}")
