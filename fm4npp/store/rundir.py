"""The run directory of one cell (ARCHITECTURE §4): the only place a job ever writes.

```
results/<study>/runs/<cell_id>/
    config.yaml            fully resolved RunConfig (+ git commit, package versions)
    checkpoints/           last.pt (+ step-<k>.pt), written atomically
    metrics/part-<k>.parquet  loss curve parts, immutable, appended every few hundred steps
    eval/<name>.parquet    downstream metrics
    logs/                  job stdout/stderr (submitit)
    summary.json           written last, atomically: its presence means the run finished
```
"""

from __future__ import annotations

import json
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fm4npp.atomic import write_json, write_parquet, write_text
from fm4npp.config import RunConfig, load_dataclass, to_dict
from fm4npp.errors import StoreError

#: Columns of every ``metrics/part-<k>.parquet`` (one row per logged step).
METRIC_COLUMNS = (
    "step",
    "events_seen",
    "hits_seen",
    "lr",
    "train_loss",
    "val_loss",  # NaN on steps without validation
    "tokens_per_s",
    "wall_time_s",
)

#: Columns of every ``eval/*.parquet`` (long format, one row per metric value).
EVAL_COLUMNS = ("cell_id", "variant", "task", "metric", "value", "seed", "n_labelled")


@dataclass(frozen=True)
class RunDir:
    """Paths of one run directory."""

    path: Path

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics"

    @property
    def eval(self) -> Path:
        return self.path / "eval"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def summary_file(self) -> Path:
        return self.path / "summary.json"

    @property
    def is_done(self) -> bool:
        return self.summary_file.is_file()

    def ensure(self) -> None:
        for p in (self.path, self.checkpoints, self.metrics, self.eval, self.logs):
            p.mkdir(parents=True, exist_ok=True)

    # -- config ---------------------------------------------------------------------------------
    def write_config(self, cfg: RunConfig) -> None:
        doc = {"run": to_dict(cfg), "provenance": provenance()}
        write_text(self.config_file, yaml.safe_dump(doc, sort_keys=False))

    def read_config(self) -> RunConfig:
        if not self.config_file.is_file():
            raise StoreError(f"{self.config_file}: run config not found")
        doc = yaml.safe_load(self.config_file.read_text()) or {}
        return load_dataclass(RunConfig, doc.get("run", {}), str(self.config_file), "run")

    # -- metrics --------------------------------------------------------------------------------
    def next_metrics_part(self) -> Path:
        existing = sorted(self.metrics.glob("part-*.parquet"))
        k = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
        return self.metrics / f"part-{k:05d}.parquet"

    def append_metrics(self, rows: dict[str, list[Any]]) -> Path:
        """Write one immutable metrics part (columns :data:`METRIC_COLUMNS`)."""
        missing = set(METRIC_COLUMNS) - set(rows)
        if missing:
            raise ValueError(f"metrics part lacks columns {sorted(missing)}")
        part = self.next_metrics_part()
        write_parquet(part, {c: rows[c] for c in METRIC_COLUMNS})
        return part

    def write_eval(self, name: str, rows: dict[str, list[Any]]) -> Path:
        missing = set(EVAL_COLUMNS) - set(rows)
        if missing:
            raise ValueError(f"eval table lacks columns {sorted(missing)}")
        path = self.eval / f"{name}.parquet"
        write_parquet(path, rows)
        return path

    # -- summary --------------------------------------------------------------------------------
    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.summary_file, summary)

    def read_summary(self) -> dict[str, Any] | None:
        if not self.summary_file.is_file():
            return None
        try:
            return dict(json.loads(self.summary_file.read_text()))
        except json.JSONDecodeError as err:
            raise StoreError(f"{self.summary_file}: corrupt summary ({err})") from None


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=5, check=False
    )
    return out.stdout.strip()


def provenance() -> dict[str, Any]:
    """Git commit (and whether the tree is dirty), Python and key package versions."""
    repo = Path(__file__).resolve().parents[2]
    info: dict[str, Any] = {"python": platform.python_version(), "host": platform.node()}
    try:
        sha = _git(repo, "rev-parse", "HEAD")
        info["git_commit"] = sha or None
        info["git_dirty"] = bool(_git(repo, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.TimeoutExpired):
        info["git_commit"] = None
    from importlib import metadata

    for pkg in ("fm4npp-sweep", "torch", "numpy", "pythia8mc", "mamba-ssm", "submitit"):
        try:
            info[f"version_{pkg}"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            info[f"version_{pkg}"] = None
    return info
