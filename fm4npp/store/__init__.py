"""Results store: run directories (written by jobs) and the DuckDB catalog (written by the CLI). Torch-free."""

from __future__ import annotations
