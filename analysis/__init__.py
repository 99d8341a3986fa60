"""Scaling-law analysis beside layer L3: fitting (Kaplan, Chinchilla, frontier; variable projection),
uncertainty (delta method, cluster bootstraps), diagnostics, figures and the HTML report. numpy, scipy,
pandas, matplotlib and duckdb only: never torch; of ``fm4npp`` only store, config, errors and the
torch-free model ladder."""

from __future__ import annotations
