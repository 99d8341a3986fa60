"""Sweeps (layer L3): sweep spec, grid planner, cost model and budgets, cluster profiles, submission
through submitit, the job callable that runs one cell, and status derived from artefacts and the
scheduler. Never imports ``analysis`` (that is ``fm4npp.workflow``'s)."""

from __future__ import annotations
