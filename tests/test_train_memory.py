"""Memory bounded by design (issue 13): a training process's peak RSS does not grow with the tier.

Pretraining reads events from the memory-mapped flat layout and serializes them on use, so a short run
on a 50k-event tier peaks within 10 % of the same run on a 2k-event tier (before, tiers below 8 GiB
of serialized events were serialized up front and held in memory: ≈ 0.5 GB more here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from synthetic_events import write_synthetic_shards

from fm4npp.config.schema import DataConfig
from fm4npp.data.prepare import prepare_dataset

N_BIG, N_SMALL = 50_000, 2_000
DATA = {"source": "shards", "val_events": 100, "test_events": 100, "hits_per_event": 50.0}

_RUN = """
import json, resource, sys
from fm4npp.config.schema import DataConfig, RunConfig, TrainConfig
from fm4npp.train.pretrain import pretrain
data_dir, n, out, data = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
train = TrainConfig(batch_events=32, micro_batch_events=16, k_neighbours=30, val_every_steps=100,
                    checkpoint_every_steps=100, threads=1, loader_workers=0)
cfg = RunConfig(study="m", cell_id=f"c{n}", model="q1", dataset="d", n_events=n, seed=0,
                data_dir=data_dir, data=DataConfig(**data), train=train)
pretrain(cfg, out, max_steps=6, device="cpu")
print(json.dumps({"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _peak_rss_kb(data_dir: Path, n: int, out: Path) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", _RUN, str(data_dir), str(n), str(out), json.dumps(DATA)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(json.loads(proc.stdout.strip().splitlines()[-1])["maxrss_kb"])


@pytest.mark.slow
def test_peak_rss_does_not_grow_with_the_tier(tmp_path: Path) -> None:
    data_dir = write_synthetic_shards(tmp_path / "data", N_BIG + 300, hits=(30, 70))
    prepare_dataset(data_dir, DataConfig(**DATA), max_train_events=N_BIG)  # type: ignore[arg-type]
    small = _peak_rss_kb(data_dir, N_SMALL, tmp_path / "small")
    big = _peak_rss_kb(data_dir, N_BIG, tmp_path / "big")
    print(f"peak RSS: 2k tier {small / 1024:.0f} MB, 50k tier {big / 1024:.0f} MB")
    assert big <= 1.10 * small, f"peak RSS {big / 1024:.0f} MB (50k tier) vs {small / 1024:.0f} MB (2k)"
