"""Downstream metrics (layer L2): tracking (ARI, double-majority efficiency/purity, hit efficiency and
purity, TrackML score), PID and noise classification, the scoring of any tracker's output from tables,
and the classical Hough-transform track finder used as a baseline."""

from __future__ import annotations
