"""Fit inputs: validated (N, D, C, L) arrays from a file, a DataFrame, the catalog or plain arrays.

The only module of ``analysis`` that reads user files. Bad input raises :class:`FitError` with one line
naming the file, the column and what is allowed. N, D and C are never recomputed here (SCALING.md
conventions): they come from the plan, through the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from fm4npp.errors import FitError

Array = NDArray[np.float64]

REQUIRED = ("n_params", "loss")
D_COLUMNS = ("n_tokens", "n_events")  # either names D for a plain table
CATALOG_LOSS = {"final": "final_val_loss", "smoothed": "smoothed_val_loss"}
CATALOG_D = {"events": "n_events", "hits": "n_hits"}
# Statuses of cells that have not produced a result yet (finished_cells fills "planned" for no summary).
MAX_POINTS_BYTES = 256 * 2**20  # a points file is a small table; anything larger is refused
PENDING = ("planned", "submitted", "pending", "queued", "running", "nan", "None")


@dataclass(frozen=True, eq=False)
class FitData:
    """Observations, one per run (or checkpoint). All arrays have shape (n,).

    ``cell`` groups rows of one configuration (the bootstrap's cluster, §3.1); ``seed`` the replicate
    within it. ``exclusions`` lists ``(cell, reason)`` for rows dropped before fitting.
    """

    N: Array
    D: Array
    L: Array
    C: Array | None = None
    seed: NDArray[Any] | None = None
    cell: NDArray[Any] = field(default_factory=lambda: np.empty(0))
    d_unit: str = "tokens"
    source: str = "<arrays>"
    exclusions: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if len(self.cell) != len(self.L):
            keys = [f"{n:.6g}|{d:.6g}" for n, d in zip(self.N, self.D, strict=True)]
            object.__setattr__(self, "cell", np.asarray(keys, dtype=object))

    def __len__(self) -> int:
        return len(self.L)

    def axis(self, name: str) -> Array:
        """The column for a form axis ``"N"``, ``"D"`` or ``"C"``."""
        if name == "C":
            if self.C is None:
                raise FitError(f"{self.source}: column 'flops' is required for the compute frontier")
            return self.C
        return self.N if name == "N" else self.D

    def subset(self, mask: NDArray[Any]) -> FitData:
        """Rows selected by a boolean mask or index array."""
        pick = lambda a: None if a is None else np.asarray(a)[mask]
        return replace(
            self, N=self.N[mask], D=self.D[mask], L=self.L[mask], C=pick(self.C), seed=pick(self.seed),
            cell=self.cell[mask],
        )  # fmt: skip

    def cell_ids(self) -> NDArray[np.intp]:
        """Integer cluster id per row."""
        return pd.factorize(pd.Series(self.cell, dtype=object))[0].astype(np.intp)


def _check(name: str, arr: Array, source: str, positive: bool = True) -> None:
    if not np.all(np.isfinite(arr)):
        raise FitError(f"{source}: column '{name}' has NaN or infinite values; drop or fix those rows")
    if positive and np.any(arr <= 0):
        raise FitError(
            f"{source}: column '{name}' must be > 0 everywhere (scaling laws are fitted in log space)"
        )


def from_arrays(
    N: ArrayLike,
    D: ArrayLike | None,
    L: ArrayLike,
    C: ArrayLike | None = None,
    seed: ArrayLike | None = None,
    cell: ArrayLike | None = None,
    *,
    source: str = "<arrays>",
    d_unit: str = "tokens",
) -> FitData:
    """Validated :class:`FitData`; ``D=None`` is allowed for N-only fits (it becomes ones)."""
    n_arr = np.asarray(N, dtype=float)
    l_arr = np.asarray(L, dtype=float)
    d_arr = np.ones_like(n_arr) if D is None else np.asarray(D, dtype=float)
    c_arr = None if C is None else np.asarray(C, dtype=float)
    if not (n_arr.shape == d_arr.shape == l_arr.shape) or n_arr.ndim != 1:
        raise FitError(f"{source}: N, D and loss must be 1-D arrays of equal length")
    for name, arr in (("n_params", n_arr), ("D", d_arr), ("loss", l_arr)):
        _check(name, arr, source)
    if c_arr is not None:
        _check("flops", c_arr, source)
    return FitData(
        n_arr, d_arr, l_arr, c_arr,
        None if seed is None else np.asarray(seed),
        np.empty(0) if cell is None else np.asarray(cell, dtype=object),
        d_unit, source,
    )  # fmt: skip


def from_frame(df: pd.DataFrame, source: str = "<DataFrame>") -> FitData:
    """A plain table: n_params, n_tokens or n_events, loss; optional flops, seed, group."""
    missing = [c for c in REQUIRED if c not in df.columns]
    d_col = next((c for c in D_COLUMNS if c in df.columns), None)
    if d_col is None:
        missing.append("n_tokens|n_events")
    if missing:
        raise FitError(
            f"{source}: missing column(s) {', '.join(missing)}; required: n_params, n_tokens or n_events, "
            "loss (optional: flops, seed, group)"
        )
    return from_arrays(
        df["n_params"].to_numpy(float), df[d_col].to_numpy(float), df["loss"].to_numpy(float),
        df["flops"].to_numpy(float) if "flops" in df.columns else None,
        df["seed"].to_numpy() if "seed" in df.columns else None,
        df["group"].astype(str).to_numpy(object) if "group" in df.columns else None,
        source=source, d_unit=str(d_col).removeprefix("n_"),
    )  # fmt: skip


def load_points(path: str | Path) -> FitData:
    """Read a CSV or Parquet file of points (see :func:`from_frame`)."""
    p = Path(path)
    if not p.is_file():
        raise FitError(f"{p}: no such file; give a CSV or Parquet file of fit points")
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise FitError(f"{p}: unknown file type '{suffix}'; allowed: .csv, .parquet")
    if p.stat().st_size > MAX_POINTS_BYTES:
        raise FitError(
            f"{p}: file is larger than {MAX_POINTS_BYTES // 2**20} MiB; not a table of fit points"
        )
    try:
        df = pd.read_csv(p) if suffix == ".csv" else pd.read_parquet(p)
    except (
        OSError,
        ValueError,
        UnicodeDecodeError,
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
    ) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise FitError(f"{p}: cannot read the table ({msg})") from None
    if len(df) == 0:
        raise FitError(f"{p}: the table has no rows")
    for col in ("n_params", *D_COLUMNS, "loss", "flops"):
        if col in df.columns and not pd.api.types.is_numeric_dtype(df[col]):
            bad = pd.to_numeric(df[col], errors="coerce").isna() & df[col].notna()
            if bad.any():
                raise FitError(
                    f"{p}: column '{col}' must be numeric; row {int(bad.to_numpy().argmax())} is "
                    f"{df[col][bad].iloc[0]!r}"
                )
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return from_frame(df, source=str(p))


def from_cells(
    cells: pd.DataFrame, loss: str = "final", d_unit: str = "events", source: str = "catalog"
) -> FitData:
    """Catalog ``finished_cells`` rows → FitData; unusable rows become ``exclusions`` with a reason."""
    if loss not in CATALOG_LOSS:
        raise FitError(f"{source}: unknown loss '{loss}'; allowed: final, smoothed")
    if d_unit not in CATALOG_D:
        raise FitError(f"{source}: unknown D unit '{d_unit}'; allowed: events, hits")
    l_col, d_col = CATALOG_LOSS[loss], CATALOG_D[d_unit]
    need = ["cell_id", "n_params", d_col, l_col]
    missing = [c for c in need if c not in cells.columns]
    if missing:
        raise FitError(f"{source}: cells table lacks column(s) {', '.join(missing)}")
    excl: list[tuple[str, str]] = []
    keep = np.ones(len(cells), dtype=bool)
    status = cells["status"].astype(str).to_numpy() if "status" in cells.columns else None
    for i, row in enumerate(cells.itertuples(index=False)):
        rec = row._asdict()
        why = ""
        reason = rec.get("reason")
        if status is not None and status[i] in PENDING:
            keep[i] = False  # not run yet: no result to exclude (plot 3 marks it as planned)
            continue
        if status is not None and status[i] not in ("finished", "done", "completed"):
            why = f"status {status[i]}" + (f": {reason}" if isinstance(reason, str) and reason else "")
        elif not _positive_finite(rec[l_col]):
            why = f"{l_col} is {rec[l_col]!r} (diverged, missing or not a number)"
        if why:
            keep[i] = False
            excl.append((str(rec["cell_id"]), why))
    df = cells.loc[keep]
    if len(df) == 0:
        raise FitError(f"{source}: no finished cells with a finite {l_col}; nothing to fit")
    flops = df["flops"].to_numpy(float) if "flops" in df.columns and df["flops"].notna().all() else None
    # Cluster = configuration (planned N, D level); seeds of one configuration share a cluster (§3.1).
    cell = [f"{n:.6g}|{d:.6g}" for n, d in zip(df["n_params"], df[d_col], strict=True)]
    d_vals = df[d_col].to_numpy(float)
    if (
        d_unit == "events" and "events_seen" in df.columns
    ):  # D = events processed (§6.3); planned as fallback
        seen = pd.to_numeric(df["events_seen"], errors="coerce").to_numpy(float)
        d_vals = np.where(np.isfinite(seen) & (seen > 0), seen, d_vals)
    data = from_arrays(
        df["n_params"].to_numpy(float), d_vals, df[l_col].to_numpy(float), flops,
        df["seed"].to_numpy() if "seed" in df.columns else None, cell, source=source, d_unit=d_unit,
    )  # fmt: skip
    return replace(data, exclusions=tuple(excl))


def _positive_finite(value: Any) -> bool:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return False
    return bool(np.isfinite(x) and x > 0)


def as_fit_data(
    obj: FitData | pd.DataFrame | Mapping[str, ArrayLike] | tuple[ArrayLike, ...],
) -> FitData:
    """Accept FitData, a plain-table DataFrame, a mapping with keys N, D, L (C, seed, cell) or (N, D, L)."""
    if isinstance(obj, FitData):
        return obj
    if isinstance(obj, pd.DataFrame):
        return from_frame(obj)
    if isinstance(obj, Mapping):
        return from_arrays(
            obj["N"], obj.get("D"), obj["L"], obj.get("C"), obj.get("seed"), obj.get("cell")
        )
    if isinstance(obj, tuple) and len(obj) in (3, 4):
        return from_arrays(*obj)
    raise FitError(f"cannot fit a {type(obj).__name__}; give a DataFrame, FitData or (N, D, L) arrays")


def split_cells(cells: pd.DataFrame, by: str, source: str = "catalog") -> dict[str, pd.DataFrame]:
    """The catalog's cells split by the value of column ``by`` (``arch``: mamba2, transformer, …), in
    sorted order; cells without a value are left out. One law is fitted per group (model family)."""
    from analysis.choices import GROUP_BY

    if by not in GROUP_BY:
        raise FitError(f"{source}: cannot group cells by '{by}'; allowed: {', '.join(GROUP_BY)}")
    if by not in cells.columns:
        raise FitError(f"{source}: cells table lacks column '{by}' to group by")
    present = cells[cells[by].notna()]
    if present.empty:
        raise FitError(f"{source}: no cell has a value of '{by}'; nothing to group")
    col = present[by].astype(str)
    return {k: present[col == k] for k in sorted(col.unique())}
