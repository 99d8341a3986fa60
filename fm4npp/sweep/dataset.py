"""A study's events, made ready before any job starts (CLI process only, never concurrently).

For generated sources (``fastsim``, ``gun``) the pool is generated on first use, sized for the largest
dataset rung plus the validation and test splits; for ``shards``/``tpcpp10m`` the shard directory must
exist (``fm4npp-sweep data convert-tpcpp``). Then the splits and voxel edges are written or verified
(``fm4npp.data.prepare``), so that every cell of the study shares one split and one set of edges.
"""

from __future__ import annotations

import math
from pathlib import Path

from fm4npp.data.prepare import PreparedDataset, prepare_dataset, prepare_labelled
from fm4npp.errors import DataError
from fm4npp.sweep.plan import Plan

HIT_LIMIT_MARGIN = 1.02  # events above the hit limit are dropped (≈ 0.2–0.8 %, SPEC §2.2)


def max_train_events(plan: Plan) -> int:
    """Training events any cell needs: the largest dataset tier, or labelled set of the adapters
    (unless the labelled events come from their own source, ``data.labelled_path``)."""
    tiers = max(c.run.n_events for c in plan.cells)
    if plan.spec.data.labelled_path:
        return tiers
    return max(tiers, max(plan.spec.eval.labelled_events))


def pool_size(plan: Plan) -> int:
    """Events to generate: the largest training need + validation + test, with margin."""
    data = plan.spec.data
    return (
        math.ceil((max_train_events(plan) + data.val_events + data.test_events) * HIT_LIMIT_MARGIN) + 10
    )


def ensure_dataset(plan: Plan, *, progress: bool = True, seed: int = 12345) -> PreparedDataset:
    """Generate (if needed) and prepare the study's event pool; returns the prepared dataset."""
    spec = plan.spec
    data_dir = Path(plan.cells[0].run.data_dir)
    has_shards = data_dir.is_dir() and any(data_dir.glob("*.parquet"))
    if not has_shards:
        if spec.data.source in ("shards", "tpcpp10m"):
            raise DataError(
                f"{data_dir}: no event shards for data.source '{spec.data.source}' "
                "(convert TPCpp-10M files with `fm4npp-sweep data convert-tpcpp SRC --out DIR`)"
            )
        from fm4npp.data.fastsim import SimConfig
        from fm4npp.data.generate import generate_dataset
        from fm4npp.data.gun import GunConfig

        gun = GunConfig() if spec.data.source == "gun" else None
        data_dir.parent.mkdir(parents=True, exist_ok=True)  # a new study: no `plan` needed before
        generate_dataset(
            data_dir, pool_size(plan), seed=seed, workers=spec.data.workers, gun=gun, progress=progress,
            sim=SimConfig(trigger=spec.data.trigger),
        )
    prepared = prepare_dataset(data_dir, spec.data, max_train_events(plan), modes=(spec.train.mode,))
    if spec.data.labelled_path:  # TPCpp-10M: labelled subsets and test split from their own source
        labelled = Path(spec.data.labelled_path)
        if not (labelled.is_dir() and any(labelled.glob("*.parquet"))):
            raise DataError(
                f"{labelled}: no labelled event shards for data.labelled_path (convert the archive "
                "with `fm4npp-sweep data convert-tpcpp ROOT --out DIR`: DIR/labelled)"
            )
        prepare_labelled(data_dir, labelled, max(spec.eval.labelled_events))
    return prepared
