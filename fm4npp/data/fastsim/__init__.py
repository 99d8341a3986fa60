"""Vectorised fast simulation of the sPHENIX TPC (SPEC §3): helix transport, scattering, measurement,
energy deposit and curler noise. Torch-free; every function takes and returns numpy arrays."""

from __future__ import annotations

from fm4npp.data.fastsim.detector import SimConfig, simulate_particles

__all__ = ["SimConfig", "simulate_particles"]
