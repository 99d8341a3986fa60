"""The sweep file: a study's model × dataset × seed grid and the settings every cell shares.

```yaml
study: quickstart               # results go to <results_dir>/<study>/
models: [q1, q2, q3]            # rung names (fm4npp.model.ladder.RUNGS)
datasets: [qd1, qd2, qd3]       # dataset rung names (fm4npp.model.ladder.DATASETS)
seeds: [0, 1]
cluster: local                  # default profile for `submit`
qos: null                       # default QOS of the profile when null
gpus: {m3: 4}                   # optional per-rung overrides of the ladder's GPUs per cell
budget: {max_node_hours: 100}
data: {...}                     # fm4npp.config.DataConfig
train: {...}                    # fm4npp.config.TrainConfig
eval: {...}                     # fm4npp.config.EvalConfig
```
Precedence: dataclass defaults, then the file, then ``--set key.path=value``. With
``train.recipe: ladder`` the rung's run recipe (``fm4npp.model.recipe``) fills the train keys the
file does not set (recorded in ``SweepSpec.train_set`` by :func:`load_sweep`).
``lr_multipliers: [0.5, 1, 2]`` adds an LR axis (each cell's resolved peak and floor LR × m): an LR
sweep as a study (``sweeps/lr-sweep-cpu.yaml``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from fm4npp.config import DataConfig, EvalConfig, TrainConfig, apply_overrides, load_dataclass, read_yaml
from fm4npp.config.schema import check_seeds
from fm4npp.errors import ConfigError
from fm4npp.model.ladder import get_dataset, get_rung

_STUDY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # used with fullmatch ("t\n" is refused)
MAX_GPUS = 2**20  # GPUs per cell (the catalog's INTEGER columns; no machine has more)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class BudgetConfig:
    max_node_hours: float | None = None  # refuse plans above this unless --allow-over-budget

    def __post_init__(self) -> None:
        if self.max_node_hours is not None and not 0 < self.max_node_hours < math.inf:
            raise ConfigError(
                f"budget.max_node_hours must be > 0 and finite (or null: no budget), "
                f"got {self.max_node_hours}"
            )


@dataclass(frozen=True)
class SweepSpec:
    study: str
    models: tuple[str, ...]
    datasets: tuple[str, ...]
    description: str = ""
    seeds: tuple[int, ...] = (0,)
    cluster: str = "local"
    qos: str | None = None
    results_dir: str = "results"  # relative to the working directory
    gpus: dict[str, int] = field(default_factory=dict)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    lr_multipliers: tuple[float, ...] = (1.0,)  # LR axis: cell LR × m (an LR sweep as a study)
    train_set: tuple[str, ...] = ()  # computed by load_sweep: train keys the file sets (not a file key)

    def __post_init__(self) -> None:
        if not _STUDY_RE.fullmatch(self.study):
            raise ConfigError(f"study: {self.study!r} must be letters, digits, '.', '_' or '-'")
        if not self.results_dir or _CONTROL_RE.search(self.results_dir) or "?" in self.results_dir:
            raise ConfigError(
                f"results_dir: {self.results_dir!r} must be a non-empty path without control characters "
                "or '?' (DuckDB reads it as URL parameters)"
            )
        for key in ("models", "datasets", "seeds"):
            values = getattr(self, key)
            if not values:
                raise ConfigError(f"{key}: must list at least one entry")
            if len(set(values)) != len(values):
                raise ConfigError(f"{key}: duplicate entries in {list(values)}")
        check_seeds("seeds", self.seeds)
        for name, g in self.gpus.items():
            if not 0 < g <= MAX_GPUS:
                raise ConfigError(f"gpus.{name}: must be in [1, {MAX_GPUS}], got {g}")
        if not self.lr_multipliers or any(m <= 0 for m in self.lr_multipliers):
            raise ConfigError(f"lr_multipliers: must list numbers > 0, got {list(self.lr_multipliers)}")
        if len(set(self.lr_multipliers)) != len(self.lr_multipliers):
            raise ConfigError(f"lr_multipliers: duplicate entries in {list(self.lr_multipliers)}")

    @property
    def study_dir(self) -> Path:
        return Path(self.results_dir) / self.study


def load_sweep(path: Path, overrides: list[str] | None = None) -> SweepSpec:
    """Load and validate a sweep file: unknown keys, types, rung and dataset names all checked."""
    src = str(path)
    data = read_yaml(path)
    if overrides:
        data = apply_overrides(data, overrides, src)
    if "train_set" in data:
        raise ConfigError(f"{src}: train_set is computed from the train: block, not a sweep-file key")
    train = data.get("train")
    explicit = tuple(sorted(train)) if isinstance(train, dict) else ()
    spec = replace(load_dataclass(SweepSpec, data, src), train_set=explicit)
    for i, m in enumerate(spec.models):
        get_rung(m, f"{src}: models[{i}]")
    for i, d in enumerate(spec.datasets):
        get_dataset(d, f"{src}: datasets[{i}]")
    for name in spec.gpus:
        if name not in spec.models:
            get_rung(name, f"{src}: gpus.{name}")
    return spec
