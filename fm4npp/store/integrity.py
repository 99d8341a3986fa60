"""Is a run directory's output readable? One bad file must exclude its run, never sink a study.

:func:`read_summary_checked` parses ``summary.json`` and validates it against the run-record schema
(:meth:`~fm4npp.store.record.RunRecord.from_json`, the rule by which ``RunDir.phase`` says ``corrupt``);
:func:`metrics_part_problem` checks that a metrics part is a readable Parquet file
with :data:`~fm4npp.store.rundir.METRIC_COLUMNS`. :func:`run_problem` gives the first problem of a run
directory as ``"<file>: <why>"``; ``status`` shows such a run as ``corrupt``, ``fit-laws`` and ``report``
exclude it with that reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fm4npp.errors import StoreError
from fm4npp.store.rundir import METRIC_COLUMNS, RunDir, read_record_file


def read_summary_checked(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(summary, None) when readable, (None, reason) when not; (None, None) when there is none.
    Readable means valid against the run-record schema (:meth:`RunRecord.from_json`, through
    :func:`~fm4npp.store.rundir.read_record_file`): the rule :meth:`RunDir.phase` applies too."""
    try:
        record = read_record_file(path)
    except StoreError as err:
        return None, str(err)
    return (None, None) if record is None else (record.to_json(), None)


def metrics_part_problem(path: Path) -> str | None:
    """None when ``path`` is a readable metrics part, else ``"<file>: <why>"`` (footer and schema only)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        return f"{path}: unreadable metrics part ({msg})"
    missing = [c for c in METRIC_COLUMNS if c not in schema.names]
    if missing:
        return f"{path}: metrics part lacks column(s) {', '.join(missing)}"
    return None


def metrics_parts(rd: RunDir) -> list[Path]:
    return sorted(rd.metrics.glob("part-*.parquet")) if rd.metrics.is_dir() else []


def run_problem(rd: RunDir) -> str | None:
    """The first unreadable file of a run directory (the record, by the schema ``RunDir.phase``
    applies, then metrics parts), or None."""
    _, why = read_summary_checked(rd.summary_file)
    if why:
        return why
    for part in metrics_parts(rd):
        why = metrics_part_problem(part)
        if why:
            return why
    return None
