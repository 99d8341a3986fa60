"""The run directory of one cell (ARCHITECTURE §4): the only place a job ever writes.

```
results/<study>/runs/<cell_id>/
    config.yaml            fully resolved RunConfig (+ git commit, package versions)
    checkpoints/           last.pt (+ step-<k>.pt), written atomically
    metrics/part-<k>.parquet  loss curve parts, immutable, appended every few hundred steps
    eval/<name>.parquet    downstream metrics
    logs/                  job stdout/stderr (submitit)
    pretrain.json          the trainer's result (losses, D, C, provenance), written when pretraining ends
    summary.json           the RunRecord, written once, last, atomically: its presence means the run ended
```

:meth:`RunDir.phase` is the only definition of done / failed / evaluating / corrupt.
"""

from __future__ import annotations

import json
import platform
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from fm4npp.atomic import write_json, write_parquet, write_text
from fm4npp.config import RunConfig, load_dataclass, to_dict
from fm4npp.errors import StoreError
from fm4npp.store import claim
from fm4npp.store.record import CellState, RunRecord

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
#: ``eval/events/<name>.parquet``: per-event scores of every fit on the test split (long format), for
#: seed means, event bootstraps and paired event bootstraps (analysis/downstream_stats.py).
EVENT_COLUMNS = ("cell_id", "variant", "task", "n_labelled", "seed", "event_id", "metric", "value")


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
    def pretrain_file(self) -> Path:
        return self.path / "pretrain.json"

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

    # -- records ------------------------------------------------------------------------------------
    def write_pretrain(self, result: dict[str, Any]) -> None:
        """The trainer's result (``status`` done or failed); the job's final record carries it."""
        claim.check(self.path)  # fencing: a trainer that lost its claim never writes
        write_json(self.pretrain_file, result)

    def read_pretrain(self) -> dict[str, Any] | None:
        return _read_json(self.pretrain_file)

    def write_record(self, record: RunRecord) -> None:
        """``summary.json``: written once per run, last (a retry sets the old one aside first)."""
        claim.check(self.path)
        write_json(self.summary_file, record.to_json())

    def read_record(self) -> RunRecord | None:
        """The final record, None before the run ended; StoreError when it is corrupt."""
        return read_record_file(self.summary_file)

    def phase(self) -> CellState:
        """What the artefacts alone say: DONE / FAILED by the final record (FAILED also when the trainer
        recorded its failure and nobody wrote the final record yet), CORRUPT (unreadable record),
        EVALUATING (pretrained, no final record yet), else PLANNED (the scheduler knows more)."""
        try:
            record = self.read_record()
        except StoreError:
            return CellState.CORRUPT
        if record is not None:
            return CellState.DONE if record.done else CellState.FAILED
        try:
            trained = self.read_pretrain()
        except StoreError:
            return CellState.PLANNED
        if trained is None:
            return CellState.PLANNED
        return CellState.EVALUATING if trained.get("status") == "done" else CellState.FAILED

    def set_failure_aside(self) -> None:
        """Before a retry: move a failed run's records to ``logs/`` so that the retry starts afresh
        (from the last checkpoint); a finished pretraining is kept."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        if self.summary_file.is_file():
            self.summary_file.rename(self.logs / f"summary-failed-{stamp}.json")
        try:
            trained = self.read_pretrain()
        except StoreError:
            trained = {}
        if trained is not None and trained.get("status") != "done":
            self.pretrain_file.rename(self.logs / f"pretrain-failed-{stamp}.json")


def read_record_file(path: Path) -> RunRecord | None:
    """A ``summary.json`` as a validated :class:`RunRecord` (the schema: :meth:`RunRecord.from_json`);
    None when there is none, StoreError naming the file when it is unreadable or against the schema."""
    doc = _read_json(path)
    return None if doc is None else RunRecord.from_json(doc, str(path))


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as err:
        raise StoreError(f"{path}: unreadable ({err.strerror or err})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise StoreError(f"{path}: corrupt JSON ({msg})") from None
    if not isinstance(doc, dict):
        raise StoreError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    return doc


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
