"""Strict configuration: YAML files load into frozen, typed dataclasses."""

from __future__ import annotations

from fm4npp.config.loader import apply_overrides, load_dataclass, read_yaml, to_dict
from fm4npp.config.schema import DataConfig, EvalConfig, RunConfig, TrainConfig

__all__ = [
    "DataConfig",
    "EvalConfig",
    "RunConfig",
    "TrainConfig",
    "apply_overrides",
    "load_dataclass",
    "read_yaml",
    "to_dict",
]
