"""The study catalog ``results/<study>/catalog.duckdb`` (ARCHITECTURE §4).

Written only by the CLI process (jobs never open it). Tables: ``cells`` (the plan), ``submissions``
(job ids, attempts, times, cluster), ``fits``. Views over the run directories, refreshed on every
read-write open: ``losses`` (metrics parts), ``evals`` (eval Parquet of runs and baselines),
``runs`` (summaries). Anyone can open the file with the ``duckdb`` shell.

The catalog carries no version number: its tables only ever gain columns, and a read-write open adds
the missing ones to a catalog written by an older release (:func:`_add_missing_columns`; old rows
read NULL there). A change that is not an added column needs a version rule first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from fm4npp.errors import StoreError
from fm4npp.store.integrity import metrics_part_problem, read_summary_checked, run_problem
from fm4npp.store.rundir import EVAL_COLUMNS, EVENT_COLUMNS, METRIC_COLUMNS, RunDir

CELL_COLUMNS = {
    "cell_id": "VARCHAR PRIMARY KEY",
    "model": "VARCHAR",
    "arch": "VARCHAR",
    "dataset": "VARCHAR",
    "seed": "INTEGER",
    "n_params": "BIGINT",
    "n_params_total": "BIGINT",
    "n_events": "BIGINT",
    "events_seen": "BIGINT",
    "n_hits": "DOUBLE",
    "flops": "DOUBLE",
    "flops_6nd": "DOUBLE",
    "gpus": "INTEGER",
    "nodes": "INTEGER",
    "gpu_hours": "DOUBLE",
    "wall_time_h": "DOUBLE",
    "node_hours": "DOUBLE",
    "fits_qos": "BOOLEAN",
    "n_slots": "INTEGER",
    "cost_source": "VARCHAR",
    "cluster": "VARCHAR",
    "qos": "VARCHAR",
    "config_json": "VARCHAR",
    "planned_at": "TIMESTAMP",
}

SUBMISSION_COLUMNS = {
    "cell_id": "VARCHAR",
    "job_id": "VARCHAR",
    "array_job_id": "VARCHAR",
    "array_task": "INTEGER",
    "cluster": "VARCHAR",
    "qos": "VARCHAR",
    "attempt": "INTEGER",
    "submitted_at": "TIMESTAMP",
    "state": "VARCHAR",
    "log_dir": "VARCHAR",
}

EVAL_GLOBS = ("runs/*/eval/*.parquet", "baselines/eval/*.parquet")
EVENT_GLOBS = ("runs/*/eval/events/*.parquet", "baselines/eval/events/*.parquet")

FIT_COLUMNS = {
    "fit_id": "VARCHAR",
    "name": "VARCHAR",
    "created_at": "TIMESTAMP",
    "settings_json": "VARCHAR",
    "result_json": "VARCHAR",
    # ``by=value`` of a fit to one group of cells (``fit-laws --by arch``: ``arch=transformer``);
    # NULL for a fit to the whole study. Added after the first release (migrated on open).
    "group_key": "VARCHAR",
}


TABLES = {"cells": CELL_COLUMNS, "submissions": SUBMISSION_COLUMNS, "fits": FIT_COLUMNS}


def catalog_path(study_dir: Path) -> Path:
    return Path(study_dir) / "catalog.duckdb"


def run_dir(study_dir: Path, cell_id: str) -> RunDir:
    return RunDir(Path(study_dir) / "runs" / cell_id)


def baselines_dir(study_dir: Path) -> RunDir:
    """Adapter-only and classical baselines, evaluated once per study, stored beside the cells."""
    return RunDir(Path(study_dir) / "baselines")


def _ddl(name: str, columns: dict[str, str]) -> str:
    cols = ", ".join(f"{c} {t}" for c, t in columns.items())
    return f"CREATE TABLE IF NOT EXISTS {name} ({cols})"


def _add_missing_columns(con: duckdb.DuckDBPyConnection, table: str, columns: dict[str, str]) -> None:
    """Migrate a catalog of an older release: append the columns ``table`` lacks (NULL in old rows)."""
    have = {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
    for name, sql_type in columns.items():
        if name not in have:
            con.execute(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")


@contextmanager
def open_catalog(study_dir: Path, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open (creating if needed) the study catalog; read-write opens refresh the views."""
    path = catalog_path(study_dir)
    if read_only and not path.is_file():
        raise StoreError(f"{path}: no catalog here; run `fm4npp-sweep plan SWEEP` first")
    if "?" in str(path.resolve()):  # DuckDB reads '?' in a database path as URL parameters
        raise StoreError(
            f"{path}: DuckDB cannot keep a catalog under a path with '?'; rename the directory"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.Error as err:
        raise StoreError(f"{path}: cannot open catalog ({err})") from None
    try:
        if not read_only:
            con.execute(_ddl("cells", CELL_COLUMNS))
            con.execute(_ddl("submissions", SUBMISSION_COLUMNS))
            con.execute(_ddl("fits", FIT_COLUMNS))
            for table, columns in TABLES.items():
                _add_missing_columns(con, table, columns)
            _refresh_views(con, Path(study_dir))
        yield con
    finally:
        con.close()


def sql_string(value: str) -> str:
    """A SQL string literal: the one way a value is pasted into DuckDB DDL (views cannot be prepared)."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_path(path: Path | str) -> str:
    """A literal path for DuckDB's file readers: glob characters ``* ? [`` escaped as ``[*] [?] [[]``
    (DuckDB globs every path it reads) and quoted by :func:`sql_string`."""
    text = "".join(f"[{ch}]" if ch in "*?[" else ch for ch in str(path))
    return sql_string(text)


def _path_list(paths: list[Path]) -> str:
    return "[" + ", ".join(sql_path(p) for p in paths) + "]"


def _refresh_views(con: duckdb.DuckDBPyConnection, study_dir: Path) -> None:
    """Views over explicit lists of the run directories' readable files (never a glob of the study
    path: ``results_dir: res*`` must not read a sibling study; unreadable files are left out)."""
    root = study_dir.resolve()
    cols = ", ".join(METRIC_COLUMNS)
    parts = [p for p in sorted(root.glob("runs/*/metrics/*.parquet")) if metrics_part_problem(p) is None]
    if parts:
        con.execute(
            "CREATE OR REPLACE VIEW losses AS SELECT "
            "regexp_extract(filename, '/runs/([^/]+)/metrics/[^/]+$', 1) "
            f"AS cell_id, {cols} FROM read_parquet({_path_list(parts)}, filename = true)"
        )
    else:
        typed = ", ".join(f"CAST(NULL AS DOUBLE) AS {c}" for c in METRIC_COLUMNS)
        con.execute(
            f"CREATE OR REPLACE VIEW losses AS SELECT CAST(NULL AS VARCHAR) AS cell_id, {typed} LIMIT 0"
        )
    evals = [p for pat in EVAL_GLOBS for p in sorted(root.glob(pat)) if _readable(p, EVAL_COLUMNS)]
    if evals:
        con.execute(
            f"CREATE OR REPLACE VIEW evals AS SELECT {', '.join(EVAL_COLUMNS)} "
            f"FROM read_parquet({_path_list(evals)}, union_by_name = true)"
        )
    else:
        typed = ", ".join(f"CAST(NULL AS VARCHAR) AS {c}" for c in EVAL_COLUMNS)
        con.execute(f"CREATE OR REPLACE VIEW evals AS SELECT {typed} LIMIT 0")
    summaries = [p for p in sorted(root.glob("runs/*/summary.json")) if read_summary_checked(p)[0]]
    if summaries:
        con.execute(
            "CREATE OR REPLACE VIEW runs AS SELECT * FROM "
            f"read_json_auto({_path_list(summaries)}, union_by_name = true)"
        )
    else:
        con.execute("CREATE OR REPLACE VIEW runs AS SELECT CAST(NULL AS VARCHAR) AS cell_id LIMIT 0")


def _readable(path: Path, columns: tuple[str, ...]) -> bool:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except (OSError, pa.ArrowException):
        return False
    return all(c in names for c in columns)


@dataclass(frozen=True)
class PlanDiff:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged: tuple[str, ...]

    def describe(self) -> str:
        if not self.added and not self.removed:
            return f"catalog unchanged ({len(self.unchanged)} cells)"
        return (
            f"catalog updated: {len(self.added)} added, {len(self.removed)} removed, "
            f"{len(self.unchanged)} unchanged"
        )


def record_cells(study_dir: Path, rows: list[dict[str, Any]]) -> PlanDiff:
    """Replace the ``cells`` table with the plan's rows: idempotent (same ids, no duplicate rows)."""
    frame = pd.DataFrame(rows, columns=list(CELL_COLUMNS))
    with open_catalog(study_dir) as con:
        before = {r[0] for r in con.execute("SELECT cell_id FROM cells").fetchall()}
        new = set(frame["cell_id"])
        con.execute("BEGIN")
        con.execute("DELETE FROM cells")
        con.register("new_cells", frame)
        # by name: a migrated table has its added columns at the end, not in CELL_COLUMNS order
        con.execute("INSERT INTO cells BY NAME SELECT * FROM new_cells")
        con.unregister("new_cells")
        con.execute("COMMIT")
    return PlanDiff(
        added=tuple(sorted(new - before)),
        removed=tuple(sorted(before - new)),
        unchanged=tuple(sorted(new & before)),
    )


def planned_cells(study_dir: Path) -> pd.DataFrame:
    """The ``cells`` table as a DataFrame (StoreError if the study has no catalog)."""
    with open_catalog(study_dir, read_only=True) as con:
        return con.execute("SELECT * FROM cells ORDER BY n_params, n_events, seed").df()


def record_submission(study_dir: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    frame = pd.DataFrame(rows, columns=list(SUBMISSION_COLUMNS))
    with open_catalog(study_dir) as con:
        con.register("new_rows", frame)
        con.execute("INSERT INTO submissions BY NAME SELECT * FROM new_rows")
        con.unregister("new_rows")


def submissions(study_dir: Path) -> pd.DataFrame:
    if not catalog_path(study_dir).is_file():
        return pd.DataFrame(columns=list(SUBMISSION_COLUMNS))
    with open_catalog(study_dir, read_only=True) as con:
        return con.execute("SELECT * FROM submissions ORDER BY submitted_at").df()


def read_summaries(study_dir: Path) -> pd.DataFrame:
    """One row per run directory with a summary.json or metrics (any status). A run with an unreadable
    file (summary or metrics part) gets status ``corrupt`` and the file and why as its reason."""
    rows = []
    runs = Path(study_dir) / "runs"
    dirs = sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []
    for path in dirs:
        rd = RunDir(path)
        why = run_problem(rd)
        if why:
            rows.append({"cell_id": path.name, "status": "corrupt", "reason": why})
            continue
        summary, _ = read_summary_checked(rd.summary_file)
        if summary is not None:
            rows.append({**summary, "cell_id": summary.get("cell_id") or path.name})
    return pd.DataFrame(rows)


def finished_cells(study_dir: Path) -> pd.DataFrame:
    """Planned cells joined with their run summaries: what ``fit-laws`` fits.

    Columns: cell_id, model, arch, seed, n_params, n_events, events_seen, n_hits, flops,
    final_val_loss, smoothed_val_loss, status, reason, node_hours_planned, wall_time_s.
    ``n_hits`` and ``flops`` are what the run actually processed when it reports them.
    """
    cells = planned_cells(study_dir)
    summ = read_summaries(study_dir)
    out = cells.rename(columns={"node_hours": "node_hours_planned"})
    keep = [
        "cell_id",
        "status",
        "reason",
        "final_val_loss",
        "smoothed_val_loss",
        "wall_time_s",
        "hits_seen",
        "flops",
    ]
    if summ.empty:
        summ = pd.DataFrame(columns=keep)
    for col in keep:
        if col not in summ:
            summ[col] = None
    out = out.merge(summ[keep].rename(columns={"flops": "flops_run"}), on="cell_id", how="left")
    out["status"] = out["status"].fillna("planned")
    out["n_hits"] = out["hits_seen"].where(out["hits_seen"].notna(), out["n_hits"]).astype(float)
    out["flops"] = out["flops_run"].where(out["flops_run"].notna(), out["flops"]).astype(float)
    cols = [
        "cell_id",
        "model",
        "arch",
        "dataset",
        "seed",
        "n_params",
        "n_events",
        "events_seen",
        "n_hits",
        "flops",
        "final_val_loss",
        "smoothed_val_loss",
        "status",
        "reason",
        "node_hours_planned",
        "wall_time_s",
        "gpus",
    ]
    return out[cols]


def loss_curves(study_dir: Path) -> pd.DataFrame:
    """All metrics parts: cell_id + METRIC_COLUMNS, sorted by cell and step."""
    with open_catalog(study_dir) as con:
        return con.execute("SELECT * FROM losses ORDER BY cell_id, step").df()


def eval_metrics(study_dir: Path) -> pd.DataFrame:
    """Downstream metrics of runs and baselines with the cell's model and N (NaN for baselines)."""
    with open_catalog(study_dir) as con:
        return con.execute(
            "SELECT e.*, c.model, c.n_params FROM evals e LEFT JOIN cells c USING (cell_id)"
        ).df()


def eval_events(study_dir: Path) -> pd.DataFrame:
    """Per-event downstream scores of runs and baselines (``EVENT_COLUMNS``; files without them are left
    out), with the cell's model and N (NaN for baselines). Empty when nothing has per-event scores."""
    root = Path(study_dir).resolve()
    parts = [p for pat in EVENT_GLOBS for p in sorted(root.glob(pat)) if _readable(p, EVENT_COLUMNS)]
    if not parts:
        return pd.DataFrame(columns=[*EVENT_COLUMNS, "model", "n_params"])
    with open_catalog(study_dir) as con:
        return con.execute(
            f"SELECT e.*, c.model, c.n_params FROM (SELECT {', '.join(EVENT_COLUMNS)} FROM "
            f"read_parquet({_path_list(parts)}, union_by_name = true)) e LEFT JOIN cells c USING (cell_id)"
        ).df()


def save_fit(
    study_dir: Path,
    name: str,
    settings: dict[str, Any],
    result: dict[str, Any],
    group_key: str | None = None,
) -> str:
    """Store a fit with its settings in ``fits``; returns its id. ``group_key`` (``arch=mamba2``)
    names the group of cells a grouped fit used; None: the whole study."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    fit_id = f"{name}-{now:%Y%m%dT%H%M%S%f}" + (f"-{group_key}" if group_key else "")
    row = {
        "fit_id": fit_id,
        "name": name,
        "created_at": now,
        "settings_json": json.dumps(settings, default=str),
        "result_json": json.dumps(result, default=str),
        "group_key": group_key,
    }
    with open_catalog(study_dir) as con:
        con.execute(
            f"INSERT INTO fits ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            list(row.values()),
        )
    return fit_id


def fits(study_dir: Path) -> pd.DataFrame:
    """The ``fits`` table (every column of :data:`FIT_COLUMNS`, also on a catalog not yet migrated)."""
    with open_catalog(study_dir, read_only=True) as con:
        df = con.execute("SELECT * FROM fits ORDER BY created_at").df()
    for col in FIT_COLUMNS:
        if col not in df.columns:
            df[col] = None
    return df[list(FIT_COLUMNS)]
