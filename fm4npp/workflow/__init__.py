"""Orchestration across layers (ARCHITECTURE §3, L4): the quickstart study and the one fit-and-save that
``fit-laws`` and the quickstart share. Joins ``fm4npp.sweep`` and ``analysis`` in one process; the CLI
calls it, nothing below imports it."""

from __future__ import annotations
