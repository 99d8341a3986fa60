"""Is a run directory's output readable? One bad file must exclude its run, never sink a study.

:func:`read_summary_checked` parses ``summary.json`` and checks its shape (a JSON object whose numeric
fields are numbers); :func:`metrics_part_problem` checks that a metrics part is a readable Parquet file
with :data:`~fm4npp.store.rundir.METRIC_COLUMNS`. :func:`run_problem` gives the first problem of a run
directory as ``"<file>: <why>"``; ``status`` shows such a run as ``corrupt``, ``fit-laws`` and ``report``
exclude it with that reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fm4npp.store.rundir import METRIC_COLUMNS, RunDir

#: Summary fields that must be numbers (or null) when present.
NUMERIC_SUMMARY_FIELDS = (
    "final_val_loss",
    "smoothed_val_loss",
    "wall_time_s",
    "hits_seen",
    "events_seen",
    "flops",
    "step",
    "attempt",
)


def read_summary_checked(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(summary, None) when readable, (None, reason) when not; (None, None) when there is none."""
    if not path.is_file():
        return None, None
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"{path}: unreadable summary ({str(err).splitlines()[0] if str(err) else err!r})"
    if not isinstance(doc, dict):
        return None, f"{path}: summary is a JSON {type(doc).__name__}, not an object"
    for key in NUMERIC_SUMMARY_FIELDS:
        value = doc.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, f"{path}: summary field '{key}' is {value!r}, not a number"
    status = doc.get("status")
    if status is not None and not isinstance(status, str):
        return None, f"{path}: summary field 'status' is {status!r}, not a string"
    return doc, None


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
    """The first unreadable file of a run directory (summary, then metrics parts), or None."""
    _, why = read_summary_checked(rd.summary_file)
    if why:
        return why
    for part in metrics_parts(rd):
        why = metrics_part_problem(part)
        if why:
            return why
    return None
