"""fm4npp-sweep: neural-scaling studies of the FM4NPP foundation model for sPHENIX TPC data."""

from __future__ import annotations

__version__ = "0.1.0"
