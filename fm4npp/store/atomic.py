"""Moved to fm4npp.atomic (kept as an alias while the tree settles)."""

from __future__ import annotations

from fm4npp.atomic import atomic_path, write_json, write_parquet, write_text

__all__ = ["atomic_path", "write_json", "write_parquet", "write_text"]
